//! The Lambda figures: every function's release `bootstrap` binary run as Lambda runs it, against the runtime
//! API of [`crate::runtime_api`], DynamoDB Local and Secrets Manager (moto), with config files written from the
//! local stack's demo configuration (its simulators are the providers).
//!
//! - cold start: exec to the first `GET …/invocation/next` (the end of init), median of `starts` starts after
//!   one discarded start, and the same for a Python 3 peer (boto3 DynamoDB + Secrets Manager clients and one
//!   secret read: `tools/bench/python/peer.py`);
//! - warm latency of `POST /v1/orders`, a provider callback and `GET /v1/orders/{no}` through the runtime API
//!   loop (event handed out to answer received), beside the bare store calls they need;
//! - peak resident memory (`VmHWM`) of each function after its load.

use crate::perf::{Floor, Row, row};
use crate::runtime_api::{Answer, RuntimeApi};
use crate::util::{percentile, signed_request};
use recharge_api::ApiRequest;
use recharge_local::LocalStack;
use recharge_local::demo::LocalConfig;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const FUNCTIONS: [&str; 5] = [
    "submit-order",
    "order-status",
    "provider-callback",
    "reconcile",
    "check-balance",
];
const MERCHANT_PREFIX: &str = "local/merchant/";
/// The memory the SAM template gives every function (`Globals.Function.MemorySize`).
const MEMORY_MB: u64 = 256;
const INIT_GOAL_MS: f64 = 40.0;
const PEER_RATIO_GOAL: f64 = 10.0;

#[derive(Debug, Clone)]
pub struct LambdaOptions {
    /// Where the functions' release binaries are (`target/release`).
    pub bin_dir: PathBuf,
    /// The Python with boto3 for the peer (`.tools/venv/bin/python`); `None` skips the peer.
    pub python: Option<PathBuf>,
    /// Config files and logs go here.
    pub work_dir: PathBuf,
    /// Measured cold starts per binary.
    pub starts: usize,
}

impl LambdaOptions {
    /// The binaries beside the running `recharge-bench` (both are built into the same `target/release`).
    pub fn beside_this_binary(work_dir: PathBuf) -> anyhow::Result<LambdaOptions> {
        let exe = std::env::current_exe()?;
        let bin_dir = exe
            .parent()
            .ok_or_else(|| anyhow::anyhow!("{} has no directory", exe.display()))?
            .to_path_buf();
        Ok(LambdaOptions {
            bin_dir,
            python: None,
            work_dir,
            starts: 20,
        })
    }
}

/// The environment a deployed function gets (Lambda's own variables, the SAM template's, the endpoints of
/// the local AWS servers), with config files written for this run.
#[derive(Debug)]
struct Deployment {
    env: Vec<(String, String)>,
    logs: PathBuf,
}

impl Deployment {
    fn write(stack: &LocalStack, table: &str, dir: &Path) -> anyhow::Result<Deployment> {
        std::fs::create_dir_all(dir)?;
        let config = LocalConfig::demo_with(None)?;
        let mut accounts = Vec::new();
        for a in config.accounts.iter().flatten() {
            let mut account = a.account.clone();
            let id = account
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(sim) = stack.sim(&id)
                && let Some(endpoints) = account.get_mut("endpoints").and_then(Value::as_object_mut)
            {
                for v in endpoints.values_mut() {
                    if let Some(s) = v.as_str() {
                        *v = Value::String(s.replace("{sim}", sim.base_url()));
                    }
                }
            }
            accounts.push(account);
        }
        let apps: Vec<Value> = config
            .apps
            .iter()
            .flatten()
            .map(|a| json!({"id": a.id, "role": a.role}))
            .collect();
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        std::fs::write(
            path("provider-accounts.json"),
            serde_json::to_vec(&accounts)?,
        )?;
        std::fs::write(path("apps.json"), serde_json::to_vec(&apps)?)?;
        std::fs::write(path("catalog.json"), serde_json::to_vec(&config.catalog)?)?;

        let mut env: Vec<(String, String)> = [
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
            // The template's LoggingConfig (LogFormat JSON, ApplicationLogLevel INFO).
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("RECHARGE_MERCHANT_SECRET_PREFIX", MERCHANT_PREFIX),
            ("RECHARGE_METRICS_NAMESPACE", "Recharge/bench"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.push((
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            MEMORY_MB.to_string(),
        ));
        for var in [
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        ] {
            let value = std::env::var(var).map_err(|_| anyhow::anyhow!("{var} is not set"))?;
            env.push((var.into(), value));
        }
        env.push(("RECHARGE_TABLE".into(), table.to_owned()));
        env.push(("RECHARGE_CATALOG_PATH".into(), path("catalog.json")));
        env.push((
            "RECHARGE_PROVIDER_ACCOUNTS_PATH".into(),
            path("provider-accounts.json"),
        ));
        env.push(("RECHARGE_APPS_PATH".into(), path("apps.json")));
        env.push((
            "RECHARGE_PUBLIC_BASE_URL".into(),
            stack.base_url().to_owned(),
        ));
        // No user configuration (~/.aws) may leak into either runtime.
        env.push(("HOME".into(), dir.to_string_lossy().into_owned()));
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        Ok(Deployment { env, logs })
    }
}

/// A started function (or peer): its process and its runtime API.
#[derive(Debug)]
struct Running {
    child: tokio::process::Child,
    api: RuntimeApi,
    name: String,
}

impl Running {
    async fn invoke(&self, event: &Value) -> anyhow::Result<(Value, Duration)> {
        let invoked = tokio::time::timeout(Duration::from_secs(30), self.api.invoke(event))
            .await
            .map_err(|_| anyhow::anyhow!("{}: no answer within 30 s", self.name))??;
        match invoked.answer {
            Answer::Response(body) => Ok((serde_json::from_slice(&body)?, invoked.in_function)),
            Answer::Error(body) => anyhow::bail!(
                "{}: invocation error {}",
                self.name,
                String::from_utf8_lossy(&body)
            ),
        }
    }

    /// The peak resident set size so far, in KiB (`VmHWM`).
    fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let pid = self
            .child
            .id()
            .ok_or_else(|| anyhow::anyhow!("{} has exited", self.name))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Execs `program` as Lambda would and waits for its first `next` call; returns it running, with its init
/// time (exec to first `next`).
async fn start(
    name: &str,
    program: &Path,
    args: &[&str],
    deployment: &Deployment,
    extra_env: &[(&str, &str)],
) -> anyhow::Result<(Running, Duration)> {
    let mut api = RuntimeApi::start().await?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(deployment.logs.join(format!("{name}.log")))?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(deployment.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(extra_env.iter().copied())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let exec = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("{name}: cannot exec {}: {e}", program.display()))?;
    let first = tokio::select! {
        first = api.first_next() => first?,
        status = child.wait() => anyhow::bail!(
            "{name} exited during init ({}): {} (log: {})",
            status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
            api.init_error().unwrap_or_else(|| "no init error reported".into()),
            deployment.logs.join(format!("{name}.log")).display()
        ),
        () = tokio::time::sleep(Duration::from_secs(30)) => anyhow::bail!("{name}: no next call within 30 s of exec"),
    };
    Ok((
        Running {
            child,
            api,
            name: name.to_owned(),
        },
        first.saturating_duration_since(exec),
    ))
}

/// Median, min and max of `starts` cold starts, after one discarded start (so every measured start finds the
/// binary in the page cache, as a warm Lambda host would).
async fn cold_starts(
    name: &str,
    program: &Path,
    args: &[&str],
    deployment: &Deployment,
    extra_env: &[(&str, &str)],
    starts: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(starts);
    for i in 0..=starts {
        let (running, init) = start(name, program, args, deployment, extra_env).await?;
        running.stop().await;
        if i > 0 {
            times.push(ms(init));
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An API Gateway HTTP API (payload 2.0) event for a request, as the `$default` stage sends it.
fn http_event(req: &ApiRequest) -> anyhow::Result<Value> {
    let headers: BTreeMap<&str, &str> = req
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("host", "bench.execute-api.us-east-1.amazonaws.com")])
        .collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    Ok(json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": req.path,
        "rawQueryString": req.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "bench",
            "domainName": "bench.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "bench",
            "http": {"method": req.method, "path": req.path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "recharge-bench"},
            "requestId": format!("bench{}", now.as_nanos()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "22/Nov/2026:00:00:00 +0000",
            "timeEpoch": u64::try_from(now.as_millis()).unwrap_or(0)
        },
        "body": String::from_utf8(req.body.clone())?,
        "isBase64Encoded": false
    }))
}

fn status_of(answer: &Value) -> u64 {
    answer
        .get("statusCode")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn body_of(answer: &Value) -> &str {
    answer.get("body").and_then(Value::as_str).unwrap_or("")
}

/// An EventBridge scheduled event (what the reconcile and check-balance schedules send).
fn scheduled_event() -> Value {
    json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-22T00:00:00Z",
        "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/bench"],
        "detail": {}
    })
}

/// The whole Lambda section. `stack` runs on the DynamoDB Local table `table` with its secrets in Secrets
/// Manager; `floor` is the latency of the bare store calls measured on the same servers.
pub async fn run(
    stack: &LocalStack,
    table: &str,
    floor: &Floor,
    app: (&str, &str),
    samples: usize,
    opts: &LambdaOptions,
) -> anyhow::Result<Vec<Row>> {
    let deployment = Deployment::write(stack, table, &opts.work_dir)?;
    let mut rows = Vec::new();
    let cold = "Lambda cold start: release binary, exec to first /next, local runtime API + DynamoDB Local + moto";

    let peer = match &opts.python {
        Some(python) => {
            let script = opts.work_dir.join("peer.py");
            std::fs::write(&script, include_str!("../python/peer.py"))?;
            let script = script.to_string_lossy().into_owned();
            eprintln!("cold start: python peer x{} ...", opts.starts);
            let times = cold_starts(
                "python-peer",
                python,
                &[script.as_str()],
                &deployment,
                &[("PEER_SECRET_ID", &format!("{MERCHANT_PREFIX}{}", app.0))],
                opts.starts,
            )
            .await?;
            Some(times)
        }
        None => None,
    };
    let peer_median = peer.as_ref().map(|t| percentile(t, 50.0));
    for name in FUNCTIONS {
        eprintln!("cold start: {name} x{} ...", opts.starts);
        let times = cold_starts(
            name,
            &opts.bin_dir.join(name),
            &[],
            &deployment,
            &[],
            opts.starts,
        )
        .await?;
        let median = percentile(&times, 50.0);
        let ratio = peer_median.map(|p| p / median);
        let meets = median <= INIT_GOAL_MS && ratio.is_none_or(|r| r >= PEER_RATIO_GOAL);
        rows.push(row(
            cold,
            &format!("{name}, n={}", times.len()),
            format!(
                "median {median:.1} ms (min {:.1}, max {:.1}){}",
                times.first().copied().unwrap_or(f64::NAN),
                times.last().copied().unwrap_or(f64::NAN),
                ratio
                    .map(|r| format!(", Python peer / this = {r:.1}x"))
                    .unwrap_or_default()
            ),
            "<= 40 ms, >= 10x faster than the Python peer",
            if meets { "meets" } else { "MISSES" },
        ));
    }
    if let Some(times) = &peer {
        rows.push(row(
            cold,
            &format!(
                "Python 3 peer (boto3 DynamoDB + Secrets Manager clients, 1 secret read), n={}",
                times.len()
            ),
            format!(
                "median {:.1} ms (min {:.1}, max {:.1})",
                percentile(times, 50.0),
                times.first().copied().unwrap_or(f64::NAN),
                times.last().copied().unwrap_or(f64::NAN)
            ),
            "",
            "",
        ));
    }

    eprintln!("warm latency through the runtime API loop: {samples} samples per route ...");
    rows.extend(warm(stack, &deployment, floor, app, samples, opts).await?);
    Ok(rows)
}

/// Warm latency through the runtime API loop, and each function's peak memory after its load.
async fn warm(
    stack: &LocalStack,
    deployment: &Deployment,
    floor: &Floor,
    (app, secret): (&str, &str),
    samples: usize,
    opts: &LambdaOptions,
) -> anyhow::Result<Vec<Row>> {
    let bin = |name: &str| opts.bin_dir.join(name);
    let sim = stack
        .sim("wikeyun-main")
        .ok_or_else(|| anyhow::anyhow!("no wikeyun simulator"))?;
    let mut peaks = Vec::new();

    // The bench sends each order's success callback itself.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let numbers: Vec<String> = (0..samples).map(|i| format!("LR{run_id}-{i}")).collect();
    let (submit, _) = start("submit-order", &bin("submit-order"), &[], deployment, &[]).await?;
    let mut post = Vec::with_capacity(samples);
    for no in &numbers {
        // Script 0006 (by the number's last four digits): accepted, never called back.
        let body = json!({"merchant_order_no": no, "product_code": "mobile.100", "account": "13800130006"});
        let req = signed_request(
            app,
            secret,
            "POST",
            "/v1/orders",
            body.to_string().into_bytes(),
        );
        let (answer, took) = submit.invoke(&http_event(&req)?).await?;
        anyhow::ensure!(
            status_of(&answer) == 201,
            "submit-order: HTTP {} {}",
            status_of(&answer),
            body_of(&answer)
        );
        post.push(ms(took));
    }
    peaks.push(("submit-order", samples, submit.peak_rss_kib()?));
    submit.stop().await;

    let ledger: BTreeMap<String, recharge_sim::OrderRecord> = sim
        .orders()
        .into_iter()
        .map(|o| (o.caller_order_id.clone(), o))
        .collect();
    let (callback, _) = start(
        "provider-callback",
        &bin("provider-callback"),
        &[],
        deployment,
        &[],
    )
    .await?;
    let mut cb = Vec::with_capacity(samples);
    for no in &numbers {
        let id = recharge_core::OrderId::derive(
            &recharge_core::AppId::parse(app)?,
            &recharge_core::MerchantOrderNo::parse(no)?,
        );
        let attempt = format!("{id}01");
        let rec = ledger
            .get(&attempt)
            .ok_or_else(|| anyhow::anyhow!("the simulator has no {attempt}"))?;
        let req = crate::perf::wikeyun_success_callback(rec);
        let (answer, took) = callback.invoke(&http_event(&req)?).await?;
        anyhow::ensure!(
            status_of(&answer) == 200 && body_of(&answer) == "success",
            "provider-callback: HTTP {} {}",
            status_of(&answer),
            body_of(&answer)
        );
        cb.push(ms(took));
    }
    peaks.push(("provider-callback", samples, callback.peak_rss_kib()?));
    callback.stop().await;

    let (status, _) = start("order-status", &bin("order-status"), &[], deployment, &[]).await?;
    let mut get = Vec::with_capacity(samples);
    for no in &numbers {
        let req = signed_request(app, secret, "GET", &format!("/v1/orders/{no}"), Vec::new());
        let (answer, took) = status.invoke(&http_event(&req)?).await?;
        anyhow::ensure!(
            status_of(&answer) == 200 && body_of(&answer).contains("\"succeeded\""),
            "order-status: HTTP {} {}",
            status_of(&answer),
            body_of(&answer)
        );
        get.push(ms(took));
    }
    peaks.push(("order-status", samples, status.peak_rss_kib()?));
    status.stop().await;

    for name in ["reconcile", "check-balance"] {
        let (f, _) = start(name, &bin(name), &[], deployment, &[]).await?;
        let runs = 20;
        for _ in 0..runs {
            f.invoke(&scheduled_event()).await?;
        }
        peaks.push((name, runs, f.peak_rss_kib()?));
        f.stop().await;
    }

    let mut rows = crate::perf::latency_rows(
        "Lambda warm latency: event handed out by the runtime API to answer received",
        samples,
        floor,
        [post, cb, get],
    );
    let mem = "Lambda peak memory: VmHWM of the release binary after its load";
    for (name, invocations, kib) in peaks {
        let mib = kib as f64 / 1024.0;
        rows.push(row(
            mem,
            &format!("{name} after {invocations} invocations"),
            format!("{mib:.1} MiB"),
            &format!("< {MEMORY_MB} MB (template MemorySize)"),
            if mib < MEMORY_MB as f64 {
                "meets"
            } else {
                "MISSES"
            },
        ));
    }
    Ok(rows)
}

/// The deployable artifacts: each function's arm64 `bootstrap` as `cargo lambda build --release --arm64`
/// leaves it in `dir` (`target/lambda/<function>/`), checked to be an aarch64 ELF, and the `bootstrap.zip`
/// beside it (deflate, what Lambda stores).
pub fn package_sizes(dir: &Path) -> anyhow::Result<Vec<Row>> {
    const LIMIT: u64 = 6 * 1024 * 1024;
    const EM_AARCH64: u16 = 183;
    let sec = "Lambda packages: zipped arm64 bootstrap (cargo lambda build --release --arm64)";
    let mut rows = Vec::new();
    for name in FUNCTIONS {
        let binary = dir.join(name).join("bootstrap");
        let elf = std::fs::read(&binary)
            .map_err(|e| anyhow::anyhow!("{}: {e} (scripts/bench builds it)", binary.display()))?;
        let machine = elf
            .get(18..20)
            .filter(|_| elf.starts_with(b"\x7fELF"))
            .map(|m| u16::from_le_bytes([m[0], m[1]]));
        anyhow::ensure!(
            machine == Some(EM_AARCH64),
            "{}: not an aarch64 ELF (e_machine {machine:?})",
            binary.display()
        );
        let zip = dir.join(name).join("bootstrap.zip");
        let size = std::fs::metadata(&zip)
            .map_err(|e| anyhow::anyhow!("{}: {e} (scripts/bench zips it)", zip.display()))?
            .len();
        rows.push(row(
            sec,
            name,
            format!(
                "{size} bytes zipped ({:.2} MiB; binary {:.2} MiB)",
                size as f64 / 1024.0 / 1024.0,
                elf.len() as f64 / 1024.0 / 1024.0
            ),
            "<= 6 MB (6,291,456 bytes)",
            if size <= LIMIT { "meets" } else { "MISSES" },
        ));
    }
    Ok(rows)
}
