//! `recharge-ops`: the operators' command line over the gateway's `/ops` API (docs/operations.md §9).
//!
//! ```text
//! recharge-ops [--base URL] [--app ID --secret S | --sigv4 [--region R]] [--json] <command>
//!   orders list [--status S] [--account A] [--app-filter A] [--older-than 30m] [--needs-operator] [--limit N] [--all]
//!   orders show <order_id | attempt_id | app/merchant_order_no>
//!   orders query <order_id>
//!   orders resolve <order_id> --attempt N --outcome succeeded|failed|partially_succeeded|not_submitted
//!                  [--delivered-fen N] [--failover true|false] --reason R --evidence E --operator O
//!   orders notify <order_id>
//!   notifications                       abandoned merchant notifications
//!   balances                            last known provider balances
//!   accounts list | show A | enable A | disable A | drain A --operator O | set A --operator O [--low-balance-fen N] [--escalate-after-secs S]
//!   accounts codes A --operator O [--clear | --file F.json] [--unset PHASE:CODE]... [--set PHASE:CODE=MEANING]...
//!   apps list | show APP
//!   apps create APP --operator O [--role merchant|admin] [--client-secret-ttl-secs S] [--allowed-origin URL]...
//!   apps disable APP | enable APP --operator O
//!   apps rotate APP --operator O [--grace-secs S]     the new secret is printed once
//!   console [--listen 127.0.0.1:PORT]   the operator console in a browser, signed here (docs/console.md)
//! ```
//!
//! Authentication: against the local stack, an admin app's HMAC signature (`--app`/`--secret`, or
//! `RECHARGE_OPS_APP`/`RECHARGE_OPS_SECRET`); against a deployment, SigV4 for `execute-api` with the default
//! AWS credential chain (`--sigv4`; region from `--region` or the AWS config). The base URL comes from `--base`
//! or `RECHARGE_OPS_URL` (default `http://127.0.0.1:8080`). Tables for people, `--json` for scripts; a listing
//! with `--all` follows every page and shows its progress on stderr.

pub mod console;
pub mod recon;

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use clap::{Parser, Subcommand};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

#[derive(Debug, Parser)]
#[command(
    name = "recharge-ops",
    about = "Operate the recharge gateway: orders, the operator queue, notifications, balances"
)]
pub struct Cli {
    /// The gateway's base URL (default: $RECHARGE_OPS_URL, else http://127.0.0.1:8080).
    #[arg(long)]
    pub base: Option<String>,
    /// Admin app id for HMAC signing (local stack; default $RECHARGE_OPS_APP, else `ops`).
    #[arg(long)]
    pub app: Option<String>,
    /// Admin app secret (default $RECHARGE_OPS_SECRET).
    #[arg(long)]
    pub secret: Option<String>,
    /// Sign with SigV4 and the default AWS credential chain (a deployment behind the IAM authorizer).
    #[arg(long)]
    pub sigv4: bool,
    /// AWS region for SigV4 (default: the AWS config's).
    #[arg(long)]
    pub region: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Find, inspect and resolve orders.
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// Orders whose merchant notification was abandoned.
    Notifications {
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Last known provider balances.
    Balances,
    /// Provider accounts: runtime control with no deploy (every function sees a change within 60 s).
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// The daily reconciliation (对账): run a day now, show or export its reports.
    #[command(subcommand)]
    Recon(recon::ReconCommand),
    /// Serve the operator console on loopback; its API calls are signed here, as this CLI signs its own.
    Console {
        /// A loopback address (default 127.0.0.1 on an ephemeral port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Merchant apps: create, disable, enable, rotate with no deploy (every function follows within 60 s).
    #[command(subcommand)]
    Apps(AppsCommand),
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Every app (apps.json's and the operators'), without secrets.
    List,
    Show {
        app: String,
    },
    /// A new app; its secret is generated, stored in Secrets Manager and printed once.
    Create {
        app: String,
        #[arg(long)]
        operator: String,
        /// merchant (default) or admin (may also read balances and, locally, the ops routes).
        #[arg(long)]
        role: Option<String>,
        /// Lifetime of the client secrets of its orders (default 86400).
        #[arg(long)]
        client_secret_ttl_secs: Option<u64>,
        /// An origin of its H5 pages (repeatable).
        #[arg(long = "allowed-origin")]
        allowed_origins: Vec<String>,
    },
    /// Refuse its requests (`app_disabled`) everywhere within 60 s; its orders go on.
    Disable {
        app: String,
        #[arg(long)]
        operator: String,
    },
    Enable {
        app: String,
        #[arg(long)]
        operator: String,
    },
    /// A new secret, printed once; the previous one keeps verifying for the grace period.
    Rotate {
        app: String,
        #[arg(long)]
        operator: String,
        /// How long the previous secret keeps verifying (default 86400; 0: not at all).
        #[arg(long)]
        grace_secs: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Every provider account with its mode, thresholds and balance.
    List,
    Show {
        account: String,
    },
    /// Route new orders to it again.
    Enable {
        account: String,
        #[arg(long)]
        operator: String,
    },
    /// No new orders and no balance checks; open orders are still followed to the end.
    Disable {
        account: String,
        #[arg(long)]
        operator: String,
    },
    /// No new orders; open ones continue.
    Drain {
        account: String,
        #[arg(long)]
        operator: String,
    },
    /// Map provider codes at runtime: the account's code table with no deploy (every function follows within
    /// 60 s; docs/operations.md §3). Starts from the stored overrides (none with --clear, FILE's with --file),
    /// then applies --unset and --set; nothing left clears them. The gateway refuses (400) a bad phase, code
    /// or meaning, and overrides the account does not load with.
    #[command(
        after_help = "Phases: submit, query, callback. Meanings: success, accepted, refusal, failure, \
                      failure_final, not_found, partial, reversed, duplicate, unknown.\n\
                      Example: recharge-ops accounts codes wikeyun-main --set submit:7777=refusal --operator dave\n\
                      A file holds {\"submit\": {\"7777\": \"refusal\"}, \"query\": {...}}."
    )]
    Codes {
        account: String,
        #[arg(long)]
        operator: String,
        /// PHASE:CODE=MEANING, e.g. submit:7777=refusal (repeatable).
        #[arg(long = "set", value_name = "PHASE:CODE=MEANING")]
        set: Vec<String>,
        /// PHASE:CODE: drop one override, back to the configured meaning (repeatable).
        #[arg(long = "unset", value_name = "PHASE:CODE")]
        unset: Vec<String>,
        /// Start from no overrides instead of the stored ones (alone: clear them all).
        #[arg(long)]
        clear: bool,
        /// Start from this JSON file's overrides instead of the stored ones.
        #[arg(long, conflicts_with = "clear")]
        file: Option<std::path::PathBuf>,
    },
    /// Change thresholds: the low-balance alarm, the escalation limit of new orders.
    Set {
        account: String,
        #[arg(long)]
        operator: String,
        #[arg(long)]
        low_balance_fen: Option<i64>,
        #[arg(long)]
        escalate_after_secs: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// List orders, newest first (the operator queue: oldest first).
    List {
        #[arg(long)]
        status: Option<String>,
        /// Provider account of the latest attempt.
        #[arg(long)]
        account: Option<String>,
        /// Merchant app.
        #[arg(long = "app-filter")]
        app_filter: Option<String>,
        /// Created at least this long ago: 90, 30m, 2h, 3d.
        #[arg(long)]
        older_than: Option<String>,
        /// Only orders in the operator queue.
        #[arg(long)]
        needs_operator: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Follow every page.
        #[arg(long)]
        all: bool,
    },
    /// One order with its attempts and audit trail: by order id, attempt id or `app/merchant_order_no`.
    Show { id: String },
    /// Query the open attempt now.
    Query { order_id: String },
    /// Close an attempt with an outcome and evidence.
    Resolve {
        order_id: String,
        #[arg(long)]
        attempt: u8,
        /// succeeded, failed, partially_succeeded or not_submitted.
        #[arg(long)]
        outcome: String,
        #[arg(long)]
        delivered_fen: Option<i64>,
        /// After failed / not_submitted: may the order go on to the next route?
        #[arg(long)]
        failover: Option<bool>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        evidence: String,
        #[arg(long)]
        operator: String,
    },
    /// Redeliver the merchant notification now.
    Notify { order_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("AWS credentials: {0}")]
    Credentials(String),
    #[error("SigV4 signing: {0}")]
    Signing(String),
    /// The API answered with an error: status and `{"error":{code,message}}`.
    #[error("HTTP {status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        body: Value,
    },
}

/// How requests are signed.
#[derive(Debug, Clone)]
enum Signer {
    Hmac {
        app: String,
        secret: String,
    },
    /// The credentials are asked for on every request: the default chain caches them and renews them before
    /// they expire, so a long-running `recharge-ops console` keeps signing with a session's fresh keys.
    SigV4 {
        credentials: SharedCredentialsProvider,
        region: String,
    },
}

/// A signed client of the `/ops` API.
#[derive(Debug, Clone)]
pub struct OpsClient {
    base: String,
    signer: Signer,
    http: reqwest::Client,
}

/// The API's answer as it came: status, content type and body (the console's proxy passes it on untouched).
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

fn hex_hmac(secret: &[u8], message: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(message);
    data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
}

fn nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("ops{nanos:x}{:x}", N.fetch_add(1, Ordering::Relaxed))
}

/// The SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token` with session credentials) of a
/// request to API Gateway (`execute-api`) carrying `content-type: application/json`: what every request of the
/// CLI and of the console's proxy is signed with.
pub fn sigv4_headers(
    method: &str,
    url: &str,
    body: &[u8],
    credentials: Credentials,
    region: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, CliError> {
    let identity: aws_smithy_runtime_api::client::identity::Identity = credentials.into();
    sigv4_sign(
        &SigV4Request {
            method,
            url,
            headers: &[("content-type", "application/json")],
            body,
        },
        &identity,
        region,
        "execute-api",
        time,
    )
}

impl OpsClient {
    /// HMAC signing as the admin app `app` (the local stack).
    pub fn hmac(base: &str, app: &str, secret: &str) -> OpsClient {
        OpsClient {
            base: base.trim_end_matches('/').to_owned(),
            signer: Signer::Hmac {
                app: app.to_owned(),
                secret: secret.to_owned(),
            },
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
        }
    }

    /// SigV4 with the default AWS credential chain (a deployment). The credentials are fetched once here, so
    /// a missing or expired login is reported before anything is served.
    pub async fn sigv4(base: &str, region: Option<String>) -> Result<OpsClient, CliError> {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let provider = sdk
            .credentials_provider()
            .ok_or_else(|| CliError::Credentials("no credential provider configured".into()))?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| CliError::Credentials(e.to_string()))?;
        let region = region
            .or_else(|| sdk.region().map(ToString::to_string))
            .ok_or_else(|| CliError::Usage("no AWS region: pass --region".into()))?;
        Ok(OpsClient::sigv4_with(base, provider, &region))
    }

    /// SigV4 with the given credentials provider.
    pub fn sigv4_with(
        base: &str,
        credentials: SharedCredentialsProvider,
        region: &str,
    ) -> OpsClient {
        OpsClient {
            base: base.trim_end_matches('/').to_owned(),
            signer: Signer::SigV4 {
                credentials,
                region: region.to_owned(),
            },
            http: reqwest::Client::new(),
        }
    }

    /// The base URL requests go to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a signed request; `path_and_query` is signed as sent. An error answer is `CliError::Api`.
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<Value, CliError> {
        let raw = self.send_raw(method, path_and_query, body).await?;
        let value: Value = serde_json::from_slice(&raw.body).unwrap_or_else(
            |_| json!({"error": {"code": "not_json", "message": String::from_utf8_lossy(&raw.body)}}),
        );
        if (200..300).contains(&raw.status) {
            Ok(value)
        } else {
            Err(CliError::Api {
                status: raw.status,
                code: value["error"]["code"].as_str().unwrap_or("?").to_owned(),
                message: value["error"]["message"].as_str().unwrap_or("").to_owned(),
                body: value,
            })
        }
    }

    /// `send` with `body` as JSON.
    pub async fn send_json(
        &self,
        method: &str,
        path_and_query: &str,
        body: &Value,
    ) -> Result<Value, CliError> {
        self.send(method, path_and_query, body.to_string().as_bytes())
            .await
    }

    /// Sends a signed request and returns the answer whatever its status; only a failure to sign or to reach
    /// the API is an error.
    pub async fn send_raw(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<RawResponse, CliError> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let url = format!("{}{path_and_query}", self.base);
        let m = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| CliError::Usage(format!("bad method {method}")))?;
        let mut req = self
            .http
            .request(m, &url)
            .header("content-type", "application/json");
        match &self.signer {
            Signer::Hmac { app, secret } => {
                let ts = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
                    .to_string();
                let nonce = nonce();
                let body_hash = data_encoding::HEXLOWER.encode(&Sha256::digest(body));
                let sts = format!("{method}\n{path}\n{query}\n{ts}\n{nonce}\n{body_hash}");
                req = req
                    .header("X-Recharge-App", app)
                    .header("X-Recharge-Timestamp", ts)
                    .header("X-Recharge-Nonce", nonce)
                    .header(
                        "X-Recharge-Signature",
                        hex_hmac(secret.as_bytes(), sts.as_bytes()),
                    );
            }
            Signer::SigV4 {
                credentials,
                region,
            } => {
                let credentials = credentials
                    .provide_credentials()
                    .await
                    .map_err(|e| CliError::Credentials(e.to_string()))?;
                for (name, value) in
                    sigv4_headers(method, &url, body, credentials, region, SystemTime::now())?
                {
                    req = req.header(name, value);
                }
            }
        }
        let resp = req.body(body.to_vec()).send().await?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.bytes().await?.to_vec();
        Ok(RawResponse {
            status,
            content_type,
            body,
        })
    }
}

/// A request to sign with SigV4, as it will be sent.
#[derive(Debug, Clone, Copy)]
pub struct SigV4Request<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// Headers that are sent and signed (the `host` comes from the URL).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

/// The headers SigV4 adds to `req` (`authorization`, `x-amz-date`, and `x-amz-security-token` with temporary
/// credentials) for `service` in `region` at `time`: what the CLI sends to a deployment's IAM authorizer
/// (service `execute-api`, through [`sigv4_headers`]). Checked against AWS's published SigV4 test suite
/// (`get-vanilla`).
pub fn sigv4_sign(
    req: &SigV4Request<'_>,
    identity: &aws_smithy_runtime_api::client::identity::Identity,
    region: &str,
    service: &str,
    time: SystemTime,
) -> Result<Vec<(String, String)>, CliError> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| CliError::Signing(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        req.method,
        req.url,
        req.headers.iter().copied(),
        SignableBody::Bytes(req.body),
    )
    .map_err(|e| CliError::Signing(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| CliError::Signing(e.to_string()))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect())
}

/// What a command produced: the API's JSON and the table for people.
#[derive(Debug, Clone)]
pub struct Output {
    pub json: Value,
    pub text: String,
}

fn enc(s: &str) -> String {
    // Query values: ids, statuses and ages are plain; escape the few characters that could break a query.
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A table: header row, then rows, columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// The elements of a JSON array (none if `v` is not one).
fn elements(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// A `table` of `items`, one column a `(header, field)`, each cell the field as `s` shows it.
fn fields_table(items: &[Value], columns: &[(&str, &str)]) -> String {
    let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|(_, f)| s(&item[*f])).collect())
        .collect();
    table(&header, &rows)
}

/// The answer to a change of an account or app (the answer's `key`): what its `state` field is now, that
/// every function follows, and its row of `row`.
fn changed(v: Value, key: &str, name: &str, state: &str, row: fn(&[Value]) -> String) -> Output {
    let text = format!(
        "{} is {} (every function follows within 60 s)\n{}",
        s(&v[key][name]),
        s(&v[key][state]),
        row(std::slice::from_ref(&v[key]))
    );
    Output { json: v, text }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn orders_table(orders: &[Value]) -> String {
    let rows: Vec<Vec<String>> = orders
        .iter()
        .map(|o| {
            vec![
                s(&o["order_id"]),
                s(&o["app"]),
                s(&o["status"]),
                s(&o["provider_account"]),
                s(&o["product_code"]),
                s(&o["created_at"]),
                if o["needs_operator"] == true {
                    format!(
                        "{} since {}",
                        s(&o["attention"]["reason"]),
                        s(&o["attention"]["since"])
                    )
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    table(
        &[
            "ORDER",
            "APP",
            "STATUS",
            "ACCOUNT",
            "PRODUCT",
            "CREATED",
            "NEEDS OPERATOR",
        ],
        &rows,
    )
}

fn order_text(o: &Value) -> String {
    let mut out = vec![
        format!(
            "order     {}  ({} / {})",
            s(&o["order_id"]),
            s(&o["app"]),
            s(&o["merchant_order_no"])
        ),
        format!(
            "product   {}  account {}  face value {} fen",
            s(&o["product_code"]),
            s(&o["account"]),
            s(&o["face_value_fen"])
        ),
        format!(
            "status    {}  failure {}  raw {}",
            s(&o["status"]),
            s(&o["failure"]["code"]),
            s(&o["raw_failure"]["code"])
        ),
        format!(
            "queue     {}{}",
            if o["needs_operator"] == true {
                "NEEDS AN OPERATOR: "
            } else {
                ""
            },
            s(&o["attention"]["reason"])
        ),
        format!(
            "notify    acknowledged {} of {}, failed tries {}, abandoned {}",
            s(&o["notification"]["notified_sequence"]),
            s(&o["sequence"]),
            s(&o["notification"]["failed_tries"]),
            s(&o["notification"]["abandoned"])
        ),
        String::new(),
    ];
    let attempts: Vec<Vec<String>> = elements(&o["attempts"])
        .iter()
        .map(|a| {
            vec![
                s(&a["attempt"]),
                s(&a["attempt_id"]),
                s(&a["provider_account"]),
                s(&a["state"]["state"]),
                format!(
                    "{} {}",
                    s(&a["state"]["reason"]["code"]),
                    s(&a["state"]["reason"]["message"])
                ),
                s(&a["opened_at"]),
                s(&a["polls"]),
            ]
        })
        .collect();
    out.push(table(
        &[
            "#",
            "ATTEMPT ID",
            "ACCOUNT",
            "STATE",
            "REASON",
            "OPENED",
            "POLLS",
        ],
        &attempts,
    ));
    if let Some(audit) = o["audit"].as_array() {
        out.push(String::new());
        out.push(fields_table(
            audit,
            &[
                ("V", "version"),
                ("AT", "at"),
                ("CHANGE", "summary"),
                ("DETAIL", "detail"),
            ],
        ));
    }
    out.join("\n")
}

/// Resolves `orders show`'s argument: an order id, an attempt id, or `app/merchant_order_no`.
async fn find_order(client: &OpsClient, id: &str) -> Result<String, CliError> {
    let query = match id.split_once('/') {
        Some((app, no)) => format!("app={}&merchant_order_no={}", enc(app), enc(no)),
        None if id.len() == 22 => format!("attempt_id={}", enc(id)),
        None => return Ok(id.to_owned()),
    };
    let page = client
        .send("GET", &format!("/ops/orders?{query}"), b"")
        .await?;
    page["orders"][0]["order_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Usage(format!("no order {id}")))
}

/// Runs one command.
pub async fn run(client: &OpsClient, command: &Command) -> Result<Output, CliError> {
    match command {
        Command::Orders(OrdersCommand::List {
            status,
            account,
            app_filter,
            older_than,
            needs_operator,
            limit,
            all,
        }) => {
            let mut query = vec![format!("limit={limit}")];
            let mut push = |k: &str, v: &Option<String>| {
                if let Some(v) = v {
                    query.push(format!("{k}={}", enc(v)));
                }
            };
            push("status", status);
            push("provider_account", account);
            push("app", app_filter);
            push("older_than", older_than);
            if *needs_operator {
                query.push("needs_operator=true".into());
            }
            let base = query.join("&");
            let mut orders: Vec<Value> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let q = match &cursor {
                    Some(c) => format!("{base}&cursor={}", enc(c)),
                    None => base.clone(),
                };
                let page = client.send("GET", &format!("/ops/orders?{q}"), b"").await?;
                orders.extend(page["orders"].as_array().cloned().unwrap_or_default());
                cursor = page["next"].as_str().map(str::to_owned);
                if !*all || cursor.is_none() {
                    break;
                }
                eprint!("\rfetched {} orders…", orders.len());
            }
            if *all {
                eprintln!("\rfetched {} orders", orders.len());
            }
            let text = orders_table(&orders);
            Ok(Output {
                json: json!({"orders": orders, "next": cursor}),
                text,
            })
        }
        Command::Orders(OrdersCommand::Show { id }) => {
            let id = find_order(client, id).await?;
            let v = client
                .send("GET", &format!("/ops/orders/{}", enc(&id)), b"")
                .await?;
            Ok(Output {
                text: order_text(&v["order"]),
                json: v,
            })
        }
        Command::Orders(OrdersCommand::Query { order_id }) => {
            let v = client
                .send(
                    "POST",
                    &format!("/ops/orders/{}/query", enc(order_id)),
                    b"{}",
                )
                .await?;
            Ok(Output {
                text: order_text(&v["order"]),
                json: v,
            })
        }
        Command::Orders(OrdersCommand::Resolve {
            order_id,
            attempt,
            outcome,
            delivered_fen,
            failover,
            reason,
            evidence,
            operator,
        }) => {
            let mut body = json!({"attempt": attempt, "outcome": outcome, "reason": reason,
                                  "evidence": evidence, "operator": operator});
            if let Some(d) = delivered_fen {
                body["delivered_fen"] = json!(d);
            }
            if let Some(f) = failover {
                body["failover"] = json!(f);
            }
            let v = client
                .send_json(
                    "POST",
                    &format!("/ops/orders/{}/resolve", enc(order_id)),
                    &body,
                )
                .await?;
            Ok(Output {
                text: format!("resolved.\n{}", order_text(&v["order"])),
                json: v,
            })
        }
        Command::Orders(OrdersCommand::Notify { order_id }) => {
            let v = client
                .send(
                    "POST",
                    &format!("/ops/orders/{}/notify", enc(order_id)),
                    b"{}",
                )
                .await?;
            let text = if v["delivered"] == true {
                format!("delivered sequence {}", s(&v["sequence"]))
            } else {
                format!("not delivered: {}", s(&v["failure"]))
            };
            Ok(Output { json: v, text })
        }
        Command::Notifications { limit } => {
            let v = client
                .send(
                    "GET",
                    &format!("/ops/notifications?abandoned=true&limit={limit}"),
                    b"",
                )
                .await?;
            let text = orders_table(elements(&v["orders"]));
            Ok(Output { json: v, text })
        }
        Command::Accounts(AccountsCommand::List) => {
            let v = client.send("GET", "/ops/accounts", b"").await?;
            let text = accounts_table(elements(&v["accounts"]));
            Ok(Output { json: v, text })
        }
        Command::Accounts(AccountsCommand::Show { account }) => {
            let v = client
                .send("GET", &format!("/ops/accounts/{}", enc(account)), b"")
                .await?;
            let a = &v["account"];
            let mut text = accounts_table(std::slice::from_ref(a));
            text.push_str(&format!(
                "\ncode overrides: {}\n",
                overrides_text(&a["code_overrides"])
            ));
            if a["code_overrides_in_force"] != a["code_overrides"]
                && !(a["code_overrides"].is_null()
                    && a["code_overrides_in_force"]
                        .as_object()
                        .is_some_and(|m| m.is_empty()))
            {
                text.push_str(&format!(
                    "in force here: {}\n",
                    overrides_text(&a["code_overrides_in_force"])
                ));
            }
            if let Some(why) = a["code_overrides_rejected"].as_str() {
                text.push_str(&format!("REFUSED (previous table kept): {why}\n"));
            }
            Ok(Output { json: v, text })
        }
        Command::Accounts(
            AccountsCommand::Enable { account, operator }
            | AccountsCommand::Disable { account, operator }
            | AccountsCommand::Drain { account, operator },
        ) => {
            let mode = match command {
                Command::Accounts(AccountsCommand::Enable { .. }) => "enabled",
                Command::Accounts(AccountsCommand::Disable { .. }) => "disabled",
                _ => "draining",
            };
            let body = json!({"mode": mode, "operator": operator});
            put_account(client, account, &body).await
        }
        Command::Accounts(AccountsCommand::Set {
            account,
            operator,
            low_balance_fen,
            escalate_after_secs,
        }) => {
            let mut body = json!({"operator": operator});
            if let Some(f) = low_balance_fen {
                body["low_balance_fen"] = json!(f);
            }
            if let Some(secs) = escalate_after_secs {
                body["escalate_after_secs"] = json!(secs);
            }
            put_account(client, account, &body).await
        }
        Command::Accounts(AccountsCommand::Codes {
            account,
            operator,
            set,
            unset,
            clear,
            file,
        }) => {
            let start = if *clear {
                json!({})
            } else if let Some(path) = file {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
                serde_json::from_str(&text)
                    .map_err(|e| CliError::Usage(format!("{}: not JSON: {e}", path.display())))?
            } else {
                if set.is_empty() && unset.is_empty() {
                    return Err(CliError::Usage(
                        "accounts codes: nothing to change (--set, --unset, --clear or --file)"
                            .into(),
                    ));
                }
                let v = client
                    .send("GET", &format!("/ops/accounts/{}", enc(account)), b"")
                    .await?;
                match &v["account"]["code_overrides"] {
                    Value::Null => json!({}),
                    stored => stored.clone(),
                }
            };
            let overrides = edit_overrides(start, unset, set)?;
            let body = json!({"operator": operator, "code_overrides": overrides});
            let v = client
                .send_json("PUT", &format!("/ops/accounts/{}", enc(account)), &body)
                .await?;
            let text = format!(
                "{} code overrides: {} (every function follows within 60 s)\n{}",
                s(&v["account"]["provider_account"]),
                overrides_text(&v["account"]["code_overrides"]),
                accounts_table(std::slice::from_ref(&v["account"]))
            );
            Ok(Output { json: v, text })
        }
        Command::Apps(cmd) => apps(client, cmd).await,
        Command::Console { listen } => {
            let bound = console::Bound::bind(*listen).await?;
            // The address goes to the terminal only: it carries the token that admits the page.
            println!(
                "operator console: {}\nsigning for {} (Ctrl-C stops it)",
                bound.url(),
                client.base()
            );
            bound.serve(client.clone()).await?;
            Ok(Output {
                json: json!({"stopped": true}),
                text: "console stopped".into(),
            })
        }
        Command::Recon(c) => recon::run(client, c).await,
        Command::Balances => {
            let v = client.send("GET", "/ops/balances", b"").await?;
            let rows: Vec<Vec<String>> = elements(&v["accounts"])
                .iter()
                .map(|a| {
                    vec![
                        s(&a["provider_account"]),
                        s(&a["protocol"]),
                        s(&a["enabled"]),
                        s(&a["balance_fen"]),
                        s(&a["checked_at"]),
                        if a["low"] == true {
                            "LOW".into()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            let text = table(
                &[
                    "ACCOUNT",
                    "PROTOCOL",
                    "ENABLED",
                    "BALANCE FEN",
                    "CHECKED",
                    "",
                ],
                &rows,
            );
            Ok(Output { json: v, text })
        }
    }
}

async fn put_account(client: &OpsClient, account: &str, body: &Value) -> Result<Output, CliError> {
    let v = client
        .send_json("PUT", &format!("/ops/accounts/{}", enc(account)), body)
        .await?;
    Ok(changed(
        v,
        "account",
        "provider_account",
        "mode",
        accounts_table,
    ))
}

async fn apps(client: &OpsClient, cmd: &AppsCommand) -> Result<Output, CliError> {
    match cmd {
        AppsCommand::List => {
            let v = client.send("GET", "/ops/apps", b"").await?;
            let text = apps_table(elements(&v["apps"]));
            Ok(Output { json: v, text })
        }
        AppsCommand::Show { app } => {
            let v = client
                .send("GET", &format!("/ops/apps/{}", enc(app)), b"")
                .await?;
            let text = apps_table(std::slice::from_ref(&v["app"]));
            Ok(Output { json: v, text })
        }
        AppsCommand::Create {
            app,
            operator,
            role,
            client_secret_ttl_secs,
            allowed_origins,
        } => {
            let mut body = json!({"id": app, "operator": operator});
            if let Some(r) = role {
                body["role"] = json!(r);
            }
            if client_secret_ttl_secs.is_some() || !allowed_origins.is_empty() {
                let mut c = json!({"allowed_origins": allowed_origins});
                if let Some(t) = client_secret_ttl_secs {
                    c["secret_ttl_secs"] = json!(t);
                }
                body["client"] = c;
            }
            let v = client.send_json("POST", "/ops/apps", &body).await?;
            Ok(with_secret(v, "created"))
        }
        AppsCommand::Disable { app, operator } | AppsCommand::Enable { app, operator } => {
            let action = match cmd {
                AppsCommand::Disable { .. } => "disable",
                _ => "enable",
            };
            let body = json!({"action": action, "operator": operator});
            let v = client
                .send_json("PUT", &format!("/ops/apps/{}", enc(app)), &body)
                .await?;
            Ok(changed(v, "app", "app_id", "status", apps_table))
        }
        AppsCommand::Rotate {
            app,
            operator,
            grace_secs,
        } => {
            let mut body = json!({"action": "rotate", "operator": operator});
            if let Some(g) = grace_secs {
                body["grace_secs"] = json!(g);
            }
            let v = client
                .send_json("PUT", &format!("/ops/apps/{}", enc(app)), &body)
                .await?;
            Ok(with_secret(v, "rotated"))
        }
    }
}

/// The answer of a create or rotate: the secret on its own line, said to be shown once.
fn with_secret(v: Value, what: &str) -> Output {
    let previous = match v["app"]["previous_secret_valid_until"].as_str() {
        Some(until) => format!("\nthe previous secret verifies until {until}"),
        None => String::new(),
    };
    let text = format!(
        "{} {what}; role {}, status {}, secret {} (version {}){previous}\n\nsecret: {}\n\nthe secret is shown once: store it now (it signs requests and verifies notifications)",
        s(&v["app"]["app_id"]),
        s(&v["app"]["role"]),
        s(&v["app"]["status"]),
        s(&v["app"]["secret_name"]),
        s(&v["app"]["secret_version"]),
        s(&v["secret"]),
    );
    Output { json: v, text }
}

fn apps_table(apps: &[Value]) -> String {
    fields_table(
        apps,
        &[
            ("APP", "app_id"),
            ("ROLE", "role"),
            ("STATUS", "status"),
            ("SOURCE", "source"),
            ("SECRET V", "secret_version"),
            ("PREVIOUS VALID UNTIL", "previous_secret_valid_until"),
            ("CHANGED BY", "updated_by"),
        ],
    )
}

/// `--unset PHASE:CODE` then `--set PHASE:CODE=MEANING` over `start` (an object of phases); `null` when
/// nothing is left (the gateway clears them). Phase, code and meaning are checked by the gateway.
pub fn edit_overrides(start: Value, unset: &[String], set: &[String]) -> Result<Value, CliError> {
    let Value::Object(mut phases) = start else {
        return Err(CliError::Usage(
            "code overrides: an object of phases, {\"submit\": {\"7777\": \"refusal\"}}".into(),
        ));
    };
    let split = |arg: &str, flag: &str, form: &str| -> Result<(String, String), CliError> {
        arg.split_once(':')
            .filter(|(p, c)| !p.is_empty() && !c.is_empty())
            .map(|(p, c)| (p.to_owned(), c.to_owned()))
            .ok_or_else(|| CliError::Usage(format!("{flag} {arg}: expected {form}")))
    };
    for arg in unset {
        let (phase, code) = split(arg, "--unset", "PHASE:CODE")?;
        if let Some(Value::Object(codes)) = phases.get_mut(&phase) {
            codes.remove(&code);
        }
    }
    for arg in set {
        let (phase, rest) = split(arg, "--set", "PHASE:CODE=MEANING")?;
        let (code, meaning) = rest
            .rsplit_once('=')
            .filter(|(c, m)| !c.is_empty() && !m.is_empty())
            .ok_or_else(|| CliError::Usage(format!("--set {arg}: expected PHASE:CODE=MEANING")))?;
        let codes = phases.entry(phase).or_insert_with(|| json!({}));
        match codes {
            Value::Object(codes) => {
                codes.insert(code.to_owned(), json!(meaning));
            }
            _ => *codes = json!({ code: meaning }),
        }
    }
    phases.retain(|_, codes| codes.as_object().is_none_or(|c| !c.is_empty()));
    Ok(if phases.is_empty() {
        Value::Null
    } else {
        Value::Object(phases)
    })
}

/// `submit:7777=refusal, query:9=unknown`, or `none`.
fn overrides_text(v: &Value) -> String {
    let mut out = Vec::new();
    if let Some(phases) = v.as_object() {
        for (phase, codes) in phases {
            for (code, meaning) in codes.as_object().into_iter().flatten() {
                out.push(format!("{phase}:{code}={}", s(meaning)));
            }
        }
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

fn accounts_table(accounts: &[Value]) -> String {
    fields_table(
        accounts,
        &[
            ("ACCOUNT", "provider_account"),
            ("PROTOCOL", "protocol"),
            ("MODE", "mode"),
            ("BALANCE FEN", "balance_fen"),
            ("LOW BELOW", "low_balance_fen"),
            ("ESCALATE S", "escalate_after_secs"),
            ("CHANGED BY", "updated_by"),
        ],
    )
}

/// Builds the client the flags ask for.
pub async fn client_for(cli: &Cli) -> Result<OpsClient, CliError> {
    let base = cli
        .base
        .clone()
        .or_else(|| std::env::var("RECHARGE_OPS_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
    if cli.sigv4 {
        return OpsClient::sigv4(&base, cli.region.clone()).await;
    }
    let app = cli
        .app
        .clone()
        .or_else(|| std::env::var("RECHARGE_OPS_APP").ok())
        .unwrap_or_else(|| "ops".to_owned());
    let secret = cli
        .secret
        .clone()
        .or_else(|| std::env::var("RECHARGE_OPS_SECRET").ok())
        .ok_or_else(|| {
            CliError::Usage(
                "an admin app secret is needed: --secret or RECHARGE_OPS_SECRET (or --sigv4)"
                    .into(),
            )
        })?;
    Ok(OpsClient::hmac(&base, &app, &secret))
}

/// Parses `args`, runs the command and prints its output: the whole program.
pub async fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match client_for(&cli).await {
        Ok(client) => run(&client, &cli.command).await,
        Err(e) => Err(e),
    };
    let mut stdout = std::io::stdout().lock();
    match result {
        Ok(out) => {
            let shown = if cli.json {
                serde_json::to_string_pretty(&out.json).unwrap_or_default()
            } else {
                out.text
            };
            let _ = writeln!(stdout, "{shown}");
            ExitCode::SUCCESS
        }
        Err(CliError::Api {
            body,
            status,
            code,
            message,
        }) if cli.json => {
            let _ = writeln!(
                stdout,
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
            eprintln!("HTTP {status} {code}: {message}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("recharge-ops: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column_to_its_widest_cell() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["xyz".into(), "1".into()],
                vec!["q".into(), "22".into()],
            ],
        );
        assert_eq!(t, "A    BB\nxyz  1\nq    22");
    }

    #[test]
    fn code_overrides_are_edited_unset_first_then_set_and_nothing_left_clears_them() {
        let strs = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let stored =
            json!({"submit": {"7777": "refusal", "8": "unknown"}, "query": {"9": "unknown"}});
        let edited = edit_overrides(
            stored,
            &strs(&["submit:8", "query:9", "callback:absent"]),
            &strs(&["submit:7777=failure_final", "query:x=y=not_found"]),
        )
        .unwrap();
        assert_eq!(
            edited,
            json!({"submit": {"7777": "failure_final"}, "query": {"x=y": "not_found"}})
        );
        assert_eq!(
            edit_overrides(
                json!({"submit": {"1": "refusal"}}),
                &strs(&["submit:1"]),
                &[]
            )
            .unwrap(),
            Value::Null
        );
        assert_eq!(edit_overrides(json!({}), &[], &[]).unwrap(), Value::Null);
        for bad in [
            "7777=refusal",
            "submit:7777",
            "submit:=refusal",
            ":1=refusal",
            "submit:1=",
        ] {
            assert!(
                matches!(
                    edit_overrides(json!({}), &[], &strs(&[bad])),
                    Err(CliError::Usage(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            edit_overrides(json!([]), &[], &[]),
            Err(CliError::Usage(_))
        ));
        assert_eq!(
            overrides_text(&json!({"query": {"9": "unknown"}, "submit": {"7777": "refusal"}})),
            "query:9=unknown, submit:7777=refusal"
        );
        assert_eq!(overrides_text(&Value::Null), "none");
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(enc("30m"), "30m");
        assert_eq!(enc("a&b=c d"), "a%26b%3Dc%20d");
    }

    #[test]
    fn the_hmac_signature_has_the_gateway_s_known_answer() {
        // known answer of docs/merchant-api.md §1 for the merchant signature, which the admin app's requests use too.
        let body_hash = data_encoding::HEXLOWER.encode(&Sha256::digest(br#"{"a":1}"#));
        let sts = format!("POST\n/v1/orders\n\n1700000000\nabcdef12\n{body_hash}");
        assert_eq!(
            hex_hmac(b"demo-secret", sts.as_bytes()),
            "242ca62aaf7390cb851c37a9223d18396ca48ac8517d3646e22612e3fe652f89"
        );
    }

    #[test]
    fn the_sigv4_signer_gives_the_aws_test_suite_answer_for_get_vanilla() {
        // AWS SigV4 test suite, case get-vanilla: GET / on example.amazonaws.com at 20150830T123600Z, region
        // us-east-1, service "service", credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY.
        let credentials = aws_credential_types::Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "sigv4-test-suite",
        );
        let identity = credentials.into();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        let headers = sigv4_sign(
            &SigV4Request {
                method: "GET",
                url: "https://example.amazonaws.com/",
                headers: &[],
                body: b"",
            },
            &identity,
            "us-east-1",
            "service",
            at,
        )
        .unwrap();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            get("authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                 SignedHeaders=host;x-amz-date, \
                 Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn every_command_parses() {
        for args in [
            vec![
                "recharge-ops",
                "orders",
                "list",
                "--needs-operator",
                "--all",
            ],
            vec!["recharge-ops", "--json", "orders", "show", "demo/M1"],
            vec![
                "recharge-ops",
                "orders",
                "resolve",
                "ABC",
                "--attempt",
                "1",
                "--outcome",
                "succeeded",
                "--reason",
                "r",
                "--evidence",
                "e",
                "--operator",
                "o",
            ],
            vec![
                "recharge-ops",
                "--sigv4",
                "--region",
                "us-east-1",
                "balances",
            ],
            vec!["recharge-ops", "notifications"],
            vec![
                "recharge-ops",
                "recon",
                "show",
                "--account",
                "wikeyun-main",
                "--date",
                "2025-11-13",
            ],
            vec!["recharge-ops", "recon", "run"],
            vec!["recharge-ops", "recon", "export", "--format", "csv"],
            vec!["recharge-ops", "--sigv4", "console"],
            vec!["recharge-ops", "console", "--listen", "127.0.0.1:8099"],
            vec![
                "recharge-ops",
                "apps",
                "create",
                "shop-7",
                "--operator",
                "alice",
                "--allowed-origin",
                "https://h5.shop.example",
            ],
            vec![
                "recharge-ops",
                "apps",
                "rotate",
                "shop-7",
                "--operator",
                "alice",
                "--grace-secs",
                "3600",
            ],
            vec!["recharge-ops", "--json", "apps", "list"],
            vec![
                "recharge-ops",
                "apps",
                "disable",
                "shop-7",
                "--operator",
                "a",
            ],
            vec![
                "recharge-ops",
                "accounts",
                "disable",
                "wikeyun-main",
                "--operator",
                "dave",
            ],
            vec![
                "recharge-ops",
                "accounts",
                "set",
                "x",
                "--operator",
                "d",
                "--low-balance-fen",
                "5",
            ],
        ] {
            assert!(Cli::try_parse_from(args.clone()).is_ok(), "{args:?}");
        }
        assert!(Cli::try_parse_from(["recharge-ops", "orders", "resolve", "ABC"]).is_err());
    }
}
