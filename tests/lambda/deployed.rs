//! A function cold-started as deployed, over DynamoDB Local and moto (Secrets Manager): the config files of
//! `support` written to disk, every secret created in moto under a stage of the test's own, the orders table
//! created, and `bootstrap_with` given SDK clients that record every call (`CallCounter::recording`).
//!
//! `./scripts/test` starts both servers and exports `AWS_ENDPOINT_URL_DYNAMODB` and
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`; these tests refuse to run without them, and refuse any endpoint that is
//! not loopback, so no test can touch a real AWS account.

use crate::support::{
    self, DEMO_SECRET, OPS_SECRET, RSA_BUSINESS, RSA_MERCHANT, RSA_PRIVATE, RSA_PUBLIC,
};
use recharge_api::ApiRequest;
use recharge_api::http::auth::{hmac_hex, string_to_sign};
use recharge_aws::{CallCounter, Config, FunctionConfig};
use recharge_core::{Clock, ManualClock, Timestamp};
use recharge_lambda::Service;
use recharge_lambda::bootstrap::{Clients, Function, bootstrap_with};
use recharge_lambda::metrics::Metrics;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// One deployment: its stage, table, files and the provider secrets as created.
pub struct Deployment {
    pub stage: String,
    pub table: String,
    dir: PathBuf,
    pub clock: ManualClock,
    pub accounts: Value,
}

/// The provider secrets of `support`, by account id.
pub fn good_provider_secrets() -> BTreeMap<String, Option<String>> {
    BTreeMap::from([
        (
            "dingyin-1".to_owned(),
            Some(r#"{"userid":"10004927","key":"abcdef0123456789ABCDEF0123456789"}"#.to_owned()),
        ),
        (
            "wikeyun-1".to_owned(),
            Some(r#"{"app_key":100001,"app_secret":"TestAppSecret0123"}"#.to_owned()),
        ),
        (
            "openapi-1".to_owned(),
            Some(
                json!({"business_id": RSA_BUSINESS, "merchant_id": RSA_MERCHANT, "sign_type": "SHA256-RSA",
                       "private_key_pem": RSA_PRIVATE, "platform_public_key_pem": RSA_PUBLIC})
                .to_string(),
            ),
        ),
        (
            "sms-1".to_owned(),
            Some(r#"{"channelcode":"CH01","password":"pw&1","sync_key":"SyncKey0123"}"#.to_owned()),
        ),
    ])
}

/// A stage no other test (or run) uses: tables and secrets of parallel tests never meet.
fn unique_stage(label: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{label}{}x{millis}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn sdk_clients(counter: &CallCounter, sdk: &aws_config::SdkConfig) -> Clients {
    Clients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(counter.clone())
                .build(),
        ),
        secrets_manager: aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(sdk)
                .interceptor(counter.clone())
                .build(),
        ),
    }
}

impl Deployment {
    /// Creates the table, the merchant secrets and the given provider secrets, and writes the config files.
    /// `accounts` replaces `support::accounts()` when given (secret names are rewritten to the stage).
    pub async fn create(
        label: &str,
        provider_secrets: BTreeMap<String, Option<String>>,
        accounts: Option<Value>,
    ) -> Deployment {
        let stage = unique_stage(label);
        let table = format!("recharge-{stage}-orders");
        let sdk = crate::common::local_sdk().await;
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        recharge_aws::table::ensure_table(&ddb, &table)
            .await
            .unwrap();
        let sm = aws_sdk_secretsmanager::Client::new(&sdk);
        let put = |name: String, value: String| {
            let sm = sm.clone();
            async move {
                sm.create_secret()
                    .name(&name)
                    .secret_string(value)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("create {name}: {e:?}"));
            }
        };
        put(
            format!("recharge/{stage}/merchant/demo"),
            json!({"app_secret": DEMO_SECRET}).to_string(),
        )
        .await;
        put(
            format!("recharge/{stage}/client-secret-key"),
            json!({"key": "client-secret-key-of-the-test-0123456789"}).to_string(),
        )
        .await;
        put(
            format!("recharge/{stage}/merchant/ops"),
            json!({"app_secret": OPS_SECRET}).to_string(),
        )
        .await;
        for (id, value) in &provider_secrets {
            if let Some(v) = value {
                put(format!("recharge/{stage}/provider/{id}"), v.clone()).await;
            }
        }
        let mut accounts = accounts.unwrap_or_else(support::accounts);
        for a in accounts.as_array_mut().unwrap() {
            let id = a["id"].as_str().unwrap().to_owned();
            a["secret_name"] = json!(format!("recharge/{stage}/provider/{id}"));
        }
        let dir = std::env::temp_dir().join(format!("recharge-lambda-{stage}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("accounts.json"), accounts.to_string()).unwrap();
        std::fs::write(dir.join("apps.json"), support::apps().to_string()).unwrap();
        std::fs::write(dir.join("catalog.json"), support::catalog().to_string()).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        Deployment {
            stage,
            table,
            dir,
            clock: ManualClock::new(Timestamp::from_millis(i64::try_from(now).unwrap())),
            accounts,
        }
    }

    /// The environment the template gives every function, for this stage.
    fn env(&self) -> BTreeMap<&'static str, String> {
        let path = |f: &str| self.dir.join(f).to_string_lossy().into_owned();
        BTreeMap::from([
            ("RECHARGE_TABLE", self.table.clone()),
            (
                "RECHARGE_MERCHANT_SECRET_PREFIX",
                format!("recharge/{}/merchant/", self.stage),
            ),
            ("RECHARGE_SECRET_TTL_SECS", "300".to_owned()),
            ("RECHARGE_CATALOG_PATH", path("catalog.json")),
            ("RECHARGE_PROVIDER_ACCOUNTS_PATH", path("accounts.json")),
            ("RECHARGE_APPS_PATH", path("apps.json")),
            (
                "RECHARGE_PUBLIC_BASE_URL",
                "https://gw.example.com".to_owned(),
            ),
            ("RECHARGE_NOTIFY_TIMEOUT_MS", "1000".to_owned()),
            (
                "RECHARGE_CLIENT_KEY_SECRET",
                format!("recharge/{}/client-secret-key", self.stage),
            ),
        ])
    }

    /// One cold start of `function`, its SDK calls recorded by `counter`.
    pub async fn cold_start(
        &self,
        function: Function,
        counter: &CallCounter,
    ) -> (Service, Arc<Mutex<Vec<Value>>>) {
        let env = self.env();
        let get = |k: &str| env.get(k).cloned();
        let config = Config::from_lookup(get).unwrap();
        let fcfg = FunctionConfig::from_lookup(get).unwrap();
        let sdk = crate::common::local_sdk().await;
        let (metrics, lines) = Metrics::capturing(function.name());
        let service = bootstrap_with(
            function,
            config,
            fcfg,
            sdk_clients(counter, &sdk),
            Arc::new(self.clock.clone()),
            metrics,
        )
        .await
        .unwrap_or_else(|e| panic!("{} cold start: {e}", function.name()));
        (service, lines)
    }

    pub fn now_secs(&self) -> i64 {
        self.clock.now().seconds()
    }

    /// `method path` with `body`, signed by `app` at the deployment's clock, through `service`'s router.
    pub async fn send(
        &self,
        service: &Service,
        app: (&str, &str),
        method: &str,
        path: &str,
        body: &[u8],
    ) -> recharge_api::ApiResponse {
        recharge_api::http::routes::handle(
            &service.state,
            signed(app, self.now_secs(), method, path, body),
        )
        .await
    }
}

/// A merchant request signed at `now` by `app`.
pub fn signed(app: (&str, &str), now: i64, method: &str, path: &str, body: &[u8]) -> ApiRequest {
    static N: AtomicU64 = AtomicU64::new(0);
    let ts = now.to_string();
    let nonce = format!("nonce{:08}", N.fetch_add(1, Ordering::Relaxed));
    let sts = string_to_sign(method, path, "", &ts, &nonce, body);
    ApiRequest {
        method: method.to_owned(),
        path: path.to_owned(),
        raw_query: String::new(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("X-Recharge-App".into(), app.0.to_owned()),
            ("X-Recharge-Timestamp".into(), ts),
            ("X-Recharge-Nonce".into(), nonce),
            (
                "X-Recharge-Signature".into(),
                hmac_hex(app.1.as_bytes(), sts.as_bytes()),
            ),
        ],
        body: body.to_vec(),
    }
}
