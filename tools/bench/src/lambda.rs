//! The Lambda figures: every function's release `bootstrap` binary run as Lambda runs it, against the runtime
//! API of [`crate::runtime_api`], DynamoDB Local and Secrets Manager (moto), with config files written from the
//! local stack's demo configuration (its simulators are the providers).
//!
//! - cold start: exec to the first `GET …/invocation/next` (the end of init), median of `starts` starts after
//!   one discarded start, and the same for a Python 3 peer (boto3 DynamoDB + Secrets Manager clients and one
//!   secret read: `tools/bench/python/peer.py`);
//! - warm latency of `POST /v1/orders`, a provider callback and `GET /v1/orders/{no}` through the runtime API
//!   loop (event handed out to answer received), beside the bare store calls they need;
//! - peak resident memory (`VmHWM`) of each function after its load;
//! - the first invocation (exec to the first answer: what a cold user request pays);
//! - init with the demo's 3 apps and 7 accounts beside 1,000 apps and 100 accounts (issue 16);
//! - what the cost model needs: CPU time and log bytes per warm invocation ([`crate::cost`]).

use crate::runtime_api::{Answer, RuntimeApi};
use crate::table::{Floor, Row, row};
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
/// The memory the runtime reports to the functions here (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`); the template's
/// sizes per function come from the cost rows (docs/benchmarks.md §8).
const MEMORY_MB: u64 = 256;
const INIT_GOAL_MS: f64 = 40.0;
const PEER_RATIO_GOAL: f64 = 15.0;
/// The large tenant configuration of the init row, and the allowed ratio to the demo's.
const MANY_APPS: usize = 1000;
const MANY_ACCOUNTS: usize = 100;
const SCALE_RATIO_GOAL: f64 = 1.2;

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
    /// How many provider accounts and merchant apps its config files hold.
    accounts: usize,
    apps: usize,
}

impl Deployment {
    fn write(stack: &LocalStack, table: &str, dir: &Path) -> anyhow::Result<Deployment> {
        Self::write_scaled(stack, table, dir, None)
    }

    /// As [`Deployment::write`], with `scale = Some((apps, accounts))`: that many merchant apps and provider
    /// accounts in the config files (copies of the demo's, each with its own secret, which the caller creates
    /// with [`Deployment::extra_secrets`]).
    fn write_scaled(
        stack: &LocalStack,
        table: &str,
        dir: &Path,
        scale: Option<(usize, usize)>,
    ) -> anyhow::Result<Deployment> {
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
        let mut apps: Vec<Value> = config
            .apps
            .iter()
            .flatten()
            .map(|a| json!({"id": a.id, "role": a.role}))
            .collect();
        if let Some((n_apps, n_accounts)) = scale {
            let demo = accounts.clone();
            for i in accounts.len()..n_accounts {
                let mut copy = demo[i % demo.len()].clone();
                let id = format!("scale-{i:03}");
                copy["id"] = json!(id);
                copy["secret_name"] = json!(format!("local/provider/{id}"));
                accounts.push(copy);
            }
            for i in apps.len()..n_apps {
                apps.push(json!({"id": format!("scaleapp{i:04}"), "role": "merchant"}));
            }
        }
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
        Ok(Deployment {
            env,
            logs,
            accounts: accounts.len(),
            apps: apps.len(),
        })
    }

    /// The secrets of the scaled configuration's copies (`scale-NNN` accounts with their demo original's
    /// credentials, `scaleappNNNN` apps), created or overwritten in Secrets Manager.
    async fn extra_secrets(n_apps: usize, n_accounts: usize) -> anyhow::Result<()> {
        let sdk = recharge_aws::sdk_config().await;
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        let config = LocalConfig::demo_with(None)?;
        let demo: Vec<Value> = config
            .accounts
            .iter()
            .flatten()
            .map(|a| a.secret.clone())
            .collect();
        let demo_apps = config.apps.iter().flatten().count();
        let mut secrets: Vec<(String, String)> = (demo.len()..n_accounts)
            .map(|i| {
                (
                    format!("local/provider/scale-{i:03}"),
                    demo[i % demo.len()].to_string(),
                )
            })
            .collect();
        secrets.extend((demo_apps..n_apps).map(|i| {
            (
                format!("{MERCHANT_PREFIX}scaleapp{i:04}"),
                json!({"app_secret": format!("scale-secret-{i}")}).to_string(),
            )
        }));
        for (name, value) in secrets {
            let created = client
                .create_secret()
                .name(&name)
                .secret_string(&value)
                .send()
                .await;
            if let Err(e) = created {
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_exists_exception())
                {
                    client
                        .put_secret_value()
                        .secret_id(&name)
                        .secret_string(&value)
                        .send()
                        .await
                        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                } else {
                    anyhow::bail!("{name}: {e}");
                }
            }
        }
        Ok(())
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

    /// CPU time (user + system) the process has used so far, in ms (`/proc/<pid>/stat`, 100 ticks a second).
    fn cpu_ms(&self) -> anyhow::Result<f64> {
        let pid = self
            .child
            .id()
            .ok_or_else(|| anyhow::anyhow!("{} has exited", self.name))?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        match (tick(11), tick(12)) {
            (Some(u), Some(s)) => Ok((u + s) * 10.0),
            _ => anyhow::bail!("unreadable /proc/{pid}/stat"),
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The warm figures of one function the cost model reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Warm {
    pub p50_ms: f64,
    pub cpu_ms: f64,
    pub log_bytes: f64,
    /// Peak resident memory after the function's load (`VmHWM`), MiB.
    pub peak_mib: f64,
}

/// What the Lambda section measured for the cost model, by function name.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub warm: BTreeMap<&'static str, Warm>,
    pub init_ms: BTreeMap<&'static str, f64>,
}

fn log_len(deployment: &Deployment, name: &str) -> f64 {
    std::fs::metadata(deployment.logs.join(format!("{name}.log")))
        .map(|m| m.len() as f64)
        .unwrap_or(0.0)
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
) -> anyhow::Result<(Vec<Row>, Measured)> {
    let deployment = Deployment::write(stack, table, &opts.work_dir)?;
    let mut rows = Vec::new();
    let mut measured = Measured::default();
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
        measured.init_ms.insert(name, median);
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
            "<= 40 ms, >= 15x faster than the Python peer",
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

    let (scale_rows, large) = tenant_scale(stack, table, &deployment, opts).await?;
    rows.extend(scale_rows);
    rows.extend(first_invocations(stack, &deployment, app, opts, &FUNCTIONS, "").await?);
    // The two functions that read an account's credentials on its first use pay that read in their first
    // request: shown with the large tenant set beside the small one above.
    let label = format!(" with {} apps / {} accounts", large.apps, large.accounts);
    let on_use = ["submit-order", "provider-callback"];
    rows.extend(first_invocations(stack, &large, app, opts, &on_use, &label).await?);

    eprintln!("warm latency through the runtime API loop: {samples} samples per route ...");
    let (warm_rows, warm) = warm(stack, &deployment, floor, app, samples, opts).await?;
    rows.extend(warm_rows);
    measured.warm = warm;
    Ok((rows, measured))
}

/// Init of the three request-serving functions with the demo's apps and accounts beside `MANY_APPS` apps and
/// `MANY_ACCOUNTS` accounts (each with its secret in Secrets Manager): the large within `SCALE_RATIO_GOAL`
/// of the small, measured in alternating starts.
async fn tenant_scale(
    stack: &LocalStack,
    table: &str,
    small: &Deployment,
    opts: &LambdaOptions,
) -> anyhow::Result<(Vec<Row>, Deployment)> {
    eprintln!(
        "init with {MANY_APPS} apps and {MANY_ACCOUNTS} accounts: creating their secrets ..."
    );
    Deployment::extra_secrets(MANY_APPS, MANY_ACCOUNTS).await?;
    let large = Deployment::write_scaled(
        stack,
        table,
        &opts.work_dir.join("scaled"),
        Some((MANY_APPS, MANY_ACCOUNTS)),
    )?;
    let sec = "Lambda init by tenant count: exec to first /next, median";
    let mut rows = Vec::new();
    for name in ["submit-order", "order-status", "provider-callback"] {
        eprintln!(
            "cold start: {name} with {} apps, {} accounts x{} ...",
            large.apps, large.accounts, opts.starts
        );
        // Small and large alternate, start for start, so a change in the machine's load between two blocks of
        // starts does not pass for a difference between the tenant sets (one discarded start of each first).
        let program = opts.bin_dir.join(name);
        let (mut small_times, mut large_times) = (Vec::new(), Vec::new());
        for i in 0..=opts.starts {
            for (deployment, times) in [(small, &mut small_times), (&large, &mut large_times)] {
                let (running, init) = start(name, &program, &[], deployment, &[]).await?;
                running.stop().await;
                if i > 0 {
                    times.push(ms(init));
                }
            }
        }
        small_times.sort_by(f64::total_cmp);
        large_times.sort_by(f64::total_cmp);
        let big = percentile(&large_times, 50.0);
        let base = percentile(&small_times, 50.0);
        let ratio = big / base;
        rows.push(row(
            sec,
            &format!(
                "{name}: {} apps / {} accounts vs {} / {}",
                large.apps, large.accounts, small.apps, small.accounts
            ),
            format!(
                "{big:.1} ms vs {base:.1} ms = {ratio:.2}x (alternating starts, n={} each)",
                large_times.len()
            ),
            &format!("<= {SCALE_RATIO_GOAL}x"),
            if ratio <= SCALE_RATIO_GOAL {
                "meets"
            } else {
                "MISSES"
            },
        ));
    }
    Ok((rows, large))
}

/// Exec to the first answer (init plus the first request, what a cold user request pays), median of a few
/// starts per function: a POST, a GET of an order it just created, a provider callback of an accepted order,
/// and a scheduled run of each scheduled function. `label` follows the function's name in the row.
async fn first_invocations(
    stack: &LocalStack,
    deployment: &Deployment,
    (app, secret): (&str, &str),
    opts: &LambdaOptions,
    functions: &[&str],
    label: &str,
) -> anyhow::Result<Vec<Row>> {
    let starts = opts.starts.div_ceil(4).max(3);
    let sec = "Lambda first invocation: exec to the first answer (init + first request)";
    let sim = stack
        .sim("wikeyun-main")
        .ok_or_else(|| anyhow::anyhow!("no wikeyun simulator"))?;
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let mut rows = Vec::new();
    for &name in functions {
        eprintln!("first invocation: {name}{label} x{starts} ...");
        let mut times = Vec::with_capacity(starts);
        for i in 0..starts {
            let no = format!("FI{run_id}-{name}-{}-{i}", deployment.accounts);
            let create = |no: &str| {
                let body = json!({"merchant_order_no": no, "product_code": "mobile.100", "account": "13800130006"});
                signed_request(
                    app,
                    secret,
                    "POST",
                    "/v1/orders",
                    body.to_string().into_bytes(),
                )
            };
            let event = match name {
                "submit-order" => http_event(&create(&no))?,
                "order-status" | "provider-callback" => {
                    let r = recharge_api::http::routes::handle(stack.state(), create(&no)).await;
                    anyhow::ensure!(
                        r.status == 201,
                        "first invocation: create HTTP {}",
                        r.status
                    );
                    if name == "order-status" {
                        http_event(&signed_request(
                            app,
                            secret,
                            "GET",
                            &format!("/v1/orders/{no}"),
                            Vec::new(),
                        ))?
                    } else {
                        let id = recharge_core::OrderId::derive(
                            &recharge_core::AppId::parse(app)?,
                            &recharge_core::MerchantOrderNo::parse(&no)?,
                        );
                        let attempt = format!("{id}01");
                        let rec = sim
                            .orders()
                            .into_iter()
                            .find(|o| o.caller_order_id == attempt)
                            .ok_or_else(|| anyhow::anyhow!("the simulator has no {attempt}"))?;
                        http_event(&crate::util::wikeyun_success_callback(&rec))?
                    }
                }
                _ => scheduled_event(),
            };
            let exec = Instant::now();
            let (f, _) = start(name, &opts.bin_dir.join(name), &[], deployment, &[]).await?;
            let (answer, _) = f.invoke(&event).await?;
            times.push(ms(exec.elapsed()));
            f.stop().await;
            if matches!(name, "submit-order" | "order-status" | "provider-callback") {
                anyhow::ensure!(
                    matches!(status_of(&answer), 200 | 201),
                    "{name} first invocation: HTTP {} {}",
                    status_of(&answer),
                    body_of(&answer)
                );
            }
        }
        times.sort_by(f64::total_cmp);
        rows.push(row(
            sec,
            &format!("{name}{label}, n={}", times.len()),
            format!(
                "median {:.1} ms (min {:.1}, max {:.1})",
                percentile(&times, 50.0),
                times.first().copied().unwrap_or(f64::NAN),
                times.last().copied().unwrap_or(f64::NAN)
            ),
            "",
            "",
        ));
    }
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
) -> anyhow::Result<(Vec<Row>, BTreeMap<&'static str, Warm>)> {
    let bin = |name: &str| opts.bin_dir.join(name);
    let mut use_of: BTreeMap<&'static str, Warm> = BTreeMap::new();
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
    let (cpu0, log0) = (submit.cpu_ms()?, log_len(deployment, "submit-order"));
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
    use_of.insert(
        "submit-order",
        warm_use(&submit, deployment, cpu0, log0, &post)?,
    );
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
    let (cpu0, log0) = (callback.cpu_ms()?, log_len(deployment, "provider-callback"));
    for no in &numbers {
        let id = recharge_core::OrderId::derive(
            &recharge_core::AppId::parse(app)?,
            &recharge_core::MerchantOrderNo::parse(no)?,
        );
        let attempt = format!("{id}01");
        let rec = ledger
            .get(&attempt)
            .ok_or_else(|| anyhow::anyhow!("the simulator has no {attempt}"))?;
        let req = crate::util::wikeyun_success_callback(rec);
        let (answer, took) = callback.invoke(&http_event(&req)?).await?;
        anyhow::ensure!(
            status_of(&answer) == 200 && body_of(&answer) == "success",
            "provider-callback: HTTP {} {}",
            status_of(&answer),
            body_of(&answer)
        );
        cb.push(ms(took));
    }
    use_of.insert(
        "provider-callback",
        warm_use(&callback, deployment, cpu0, log0, &cb)?,
    );
    peaks.push(("provider-callback", samples, callback.peak_rss_kib()?));
    callback.stop().await;

    let (status, _) = start("order-status", &bin("order-status"), &[], deployment, &[]).await?;
    let mut get = Vec::with_capacity(samples);
    let (cpu0, log0) = (status.cpu_ms()?, log_len(deployment, "order-status"));
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
    use_of.insert(
        "order-status",
        warm_use(&status, deployment, cpu0, log0, &get)?,
    );
    peaks.push(("order-status", samples, status.peak_rss_kib()?));
    status.stop().await;

    for name in ["reconcile", "check-balance"] {
        let (f, _) = start(name, &bin(name), &[], deployment, &[]).await?;
        let runs = 20;
        let (cpu0, log0) = (f.cpu_ms()?, log_len(deployment, name));
        let mut took = Vec::with_capacity(runs);
        for _ in 0..runs {
            took.push(ms(f.invoke(&scheduled_event()).await?.1));
        }
        use_of.insert(name, warm_use(&f, deployment, cpu0, log0, &took)?);
        peaks.push((name, runs, f.peak_rss_kib()?));
        f.stop().await;
    }

    let mut rows = crate::table::latency_rows(
        "Lambda warm latency: event handed out by the runtime API to answer received",
        samples,
        floor,
        [post, cb, get],
    );
    let mem = "Lambda peak memory: VmHWM of the release binary after its load";
    for (name, invocations, kib) in peaks {
        let mib = kib as f64 / 1024.0;
        if let Some(w) = use_of.get_mut(name) {
            w.peak_mib = mib;
        }
        rows.push(row(
            mem,
            &format!("{name} after {invocations} invocations"),
            format!("{mib:.1} MiB"),
            "< 128 MB (the smallest template MemorySize)",
            if mib < 128.0 { "meets" } else { "MISSES" },
        ));
    }
    Ok((rows, use_of))
}

/// The warm figures of a function after `took.len()` invocations that began at `cpu0` ms of CPU and `log0`
/// bytes of log.
fn warm_use(
    f: &Running,
    deployment: &Deployment,
    cpu0: f64,
    log0: f64,
    took: &[f64],
) -> anyhow::Result<Warm> {
    let n = took.len().max(1) as f64;
    let mut sorted = took.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(Warm {
        p50_ms: percentile(&sorted, 50.0),
        cpu_ms: (f.cpu_ms()? - cpu0) / n,
        log_bytes: (log_len(deployment, &f.name) - log0) / n,
        // Filled in once the peaks are read, after the last invocation.
        peak_mib: 0.0,
    })
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
