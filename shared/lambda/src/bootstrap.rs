//! Cold start: typed config from the environment, AWS clients, cached secrets, the provider accounts with
//! their credentials validated, the catalog, the executor and the notifier, built once into an `AppState`.
//! Any problem fails the cold start with a message naming the variable or file (Lambda reports it as an
//! init error and never routes a request to a half-built function).

use crate::metrics::{Metrics, ObservedStore};
use aws_sdk_dynamodb::types::AttributeValue;
use recharge_api::apps::AppConfig;
use recharge_api::state::{DisabledAlarm, ProviderLoading};
use recharge_api::{AppState, BootError, Settings, StateConfig};
use recharge_aws::{
    Config, DynamoOrderStore, EnvConfigError, FunctionConfig, SecretsManagerSource,
};
use recharge_core::secrets::{CachedSecretSource, SecretSource, SecretWriter};
use recharge_core::store::{BalanceStore, OrderStore};
use recharge_core::{Clock, SystemClock};
use recharge_providers::ProviderAccount;
use std::sync::Arc;

/// The six functions; what each needs at cold start differs a little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    SubmitOrder,
    OrderStatus,
    ProviderCallback,
    Reconcile,
    CheckBalance,
    /// The operators' API (`/ops/...`, IAM-authorised).
    Ops,
}

/// When a function reads its provider accounts' credentials (`recharge_api::state::ProviderLoading`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loading {
    Never,
    AtStart,
    OnUse,
}

impl Function {
    /// The name used in metrics, logs, the template and `functions/<name>`.
    pub fn name(self) -> &'static str {
        match self {
            Function::SubmitOrder => "submit-order",
            Function::OrderStatus => "order-status",
            Function::ProviderCallback => "provider-callback",
            Function::Reconcile => "reconcile",
            Function::CheckBalance => "check-balance",
            Function::Ops => "ops",
        }
    }

    /// When a function reads its provider accounts' credentials. The two that serve one order at a time
    /// read an account's on its first use, so their cold start reads none whatever the number of accounts;
    /// the three that walk every account read them all at cold start (one batch per 20); order-status only
    /// lists the accounts (with their stored balances) and gets no grant to provider secrets.
    pub fn provider_loading(self) -> Loading {
        match self {
            Function::SubmitOrder | Function::ProviderCallback => Loading::OnUse,
            Function::Reconcile
            | Function::CheckBalance
            // An operator's "query now" asks the provider; the views list every account's codes.
            | Function::Ops => Loading::AtStart,
            Function::OrderStatus => Loading::Never,
        }
    }

    /// Functions serving the client routes read the client-secret key: they warm it at cold start (one
    /// secret, whatever the number of apps; merchant secrets are read on first use, `recharge_api::apps`).
    fn serves_merchants(self) -> bool {
        match self {
            Function::SubmitOrder | Function::OrderStatus => true,
            Function::ProviderCallback
            | Function::Reconcile
            | Function::CheckBalance
            | Function::Ops => false,
        }
    }
}

/// Why a cold start failed. Every variant names what to fix; none carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Env(#[from] EnvConfigError),
    #[error("{var} = {path}: cannot read the file")]
    File {
        var: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{var} = {path}: {problem}")]
    Parse {
        var: &'static str,
        path: String,
        problem: String,
    },
    #[error(transparent)]
    State(#[from] BootError),
    #[error("provider HTTP client: {0}")]
    Client(String),
}

/// The non-secret configuration files, read and parsed (no AWS needed: the tests build states from these).
#[derive(Debug)]
pub struct Files {
    pub accounts: Vec<ProviderAccount>,
    pub apps: Vec<AppConfig>,
    pub catalog_text: String,
}

impl Files {
    pub async fn read(cfg: &FunctionConfig) -> Result<Files, BootstrapError> {
        let read = |var: &'static str, path: String| async move {
            tokio::fs::read_to_string(&path)
                .await
                .map_err(|source| BootstrapError::File { var, path, source })
        };
        let accounts_text = read(
            "RECHARGE_PROVIDER_ACCOUNTS_PATH",
            cfg.provider_accounts_path.clone(),
        )
        .await?;
        let apps_text = read("RECHARGE_APPS_PATH", cfg.apps_path.clone()).await?;
        let catalog_text = read("RECHARGE_CATALOG_PATH", cfg.catalog_path.clone()).await?;
        let accounts = serde_json::from_str(&accounts_text).map_err(|e| BootstrapError::Parse {
            var: "RECHARGE_PROVIDER_ACCOUNTS_PATH",
            path: cfg.provider_accounts_path.clone(),
            problem: e.to_string(),
        })?;
        let apps = serde_json::from_str(&apps_text).map_err(|e| BootstrapError::Parse {
            var: "RECHARGE_APPS_PATH",
            path: cfg.apps_path.clone(),
            problem: e.to_string(),
        })?;
        Ok(Files {
            accounts,
            apps,
            catalog_text,
        })
    }
}

/// The ports a function's state is built over (`recharge_api::Ports`: the AWS ones in production, in-memory ones
/// in tests).
pub use recharge_api::Ports;

/// Everything besides files and ports that shapes a function's state.
#[derive(Debug, Clone)]
pub struct Setup {
    pub function: Function,
    pub merchant_secret_prefix: String,
    pub settings: Settings,
    pub notify_timeout: std::time::Duration,
    pub metrics: Metrics,
    /// Only to name the file in a catalog error.
    pub catalog_path: String,
}

/// Builds a function's state from parsed files and ports with `AppState::assemble` (every provider account
/// loaded with its credentials, keys validated now, when the function calls providers; the catalog checked
/// against them), with the store inside the metrics decorator; reports the disabled accounts as a metric.
pub async fn assemble(
    setup: Setup,
    files: Files,
    mut ports: Ports,
) -> Result<AppState, BootstrapError> {
    let Setup {
        function,
        merchant_secret_prefix,
        settings,
        notify_timeout,
        metrics,
        catalog_path,
    } = setup;
    let providers = match function.provider_loading() {
        Loading::Never => ProviderLoading::Never,
        Loading::AtStart => ProviderLoading::AtStart(Arc::clone(&ports.secrets)),
        Loading::OnUse => ProviderLoading::OnUse {
            secrets: Arc::clone(&ports.secrets),
            disabled_alarm: Some({
                let metrics = metrics.clone();
                DisabledAlarm(Arc::new(move |account| {
                    metrics.provider_account_disabled(account.as_str())
                }))
            }),
        },
    };
    ports.store = Arc::new(ObservedStore::new(
        ports.store,
        metrics.clone(),
        Arc::clone(&ports.clock),
        function == Function::Reconcile,
    ));
    let config = StateConfig {
        accounts: files.accounts,
        providers,
        catalog_text: files.catalog_text,
        apps: files.apps,
        merchant_secret_prefix,
        settings,
        notify_timeout,
        // The DynamoDB writes around a notification's try fit in 10 s beyond the notifier's timeout.
        notify_claim_margin: std::time::Duration::from_secs(10),
    };
    let state = AppState::assemble(ports, config)
        .await
        .map_err(|e| match e {
            BootError::Catalog(e) => BootstrapError::Parse {
                var: "RECHARGE_CATALOG_PATH",
                path: catalog_path,
                problem: e.to_string(),
            },
            BootError::HttpClient(e) => BootstrapError::Client(e),
            e => BootstrapError::State(e),
        })?;
    // A missing or malformed provider secret disables only that account (logged by `Providers::load`); the
    // alarm `ProviderAccountDisabled` of the template watches this metric.
    for account in state.providers.disabled().keys() {
        metrics.provider_account_disabled(account.as_str());
    }
    Ok(state)
}

/// What a handler works with: the state and the metrics sink of this function.
#[derive(Debug, Clone)]
pub struct Service {
    pub state: Arc<AppState>,
    pub metrics: Metrics,
}

/// The whole cold start of a deployed function.
pub async fn bootstrap(function: Function) -> Result<Service, BootstrapError> {
    let started = std::time::Instant::now();
    let config = Config::from_env()?;
    let fcfg = FunctionConfig::from_env()?;
    // The system's roots are read once: the AWS SDK's client and every provider and notification client trust
    // the same ones (recharge_providers::tls).
    let roots = recharge_providers::tls::system_roots()
        .map_err(|e| BootstrapError::Client(e.to_string()))?;
    let sdk = recharge_aws::sdk_config_trusting(&roots.certs)
        .await
        .map_err(|e| BootstrapError::Client(format!("the AWS SDK's HTTPS client: {e}")))?;
    tracing::info!(
        roots = roots.certs.len(),
        roots_source = %roots.source,
        roots_skipped = roots.skipped,
        sdk_config_ms = started.elapsed().as_secs_f64() * 1000.0,
        "environment and AWS configuration read"
    );
    let clients = Clients {
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        secrets_manager: aws_sdk_secretsmanager::Client::new(&sdk),
    };
    let metrics = Metrics::from_env(function.name());
    bootstrap_with(
        function,
        config,
        fcfg,
        clients,
        Arc::new(SystemClock),
        metrics,
    )
    .await
}

/// The AWS clients a function uses (tests build them with an interceptor that records every call).
#[derive(Debug, Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secrets_manager: aws_sdk_secretsmanager::Client,
}

/// The cold start from parsed configuration and built clients: exactly what [`bootstrap`] does after reading
/// the environment, so a test that records the calls of this sees the calls of a deployed function.
pub async fn bootstrap_with(
    function: Function,
    config: Config,
    fcfg: FunctionConfig,
    clients: Clients,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
) -> Result<Service, BootstrapError> {
    let started = std::time::Instant::now();
    let files = Files::read(&fcfg).await?;
    let files_read = started.elapsed();
    let dynamo = clients.dynamodb;
    let secrets: Arc<dyn SecretSource> = Arc::new(CachedSecretSource::new(
        SecretsManagerSource::new(clients.secrets_manager.clone()),
        config.secret_ttl,
        Arc::clone(&clock),
    ));
    let store = Arc::new(DynamoOrderStore::new(
        dynamo.clone(),
        config.table.clone(),
        config.due_shards,
    ));
    // No merchant secret is read here: each is read on its app's first request and cached, so a cold start
    // makes the same AWS calls for 3 apps as for 1,000 (issue 16). The client-secret key is one secret.
    let warm_names: Vec<String> = if function.serves_merchants() {
        fcfg.client_key_secret.clone().into_iter().collect()
    } else {
        Vec::new()
    };
    let secret_writer: Option<Arc<dyn SecretWriter>> = match function {
        Function::Ops => Some(Arc::new(SecretsManagerSource::new(
            clients.secrets_manager.clone(),
        ))),
        Function::SubmitOrder
        | Function::OrderStatus
        | Function::ProviderCallback
        | Function::Reconcile
        | Function::CheckBalance => None,
    };
    let ports = Ports {
        store: Arc::clone(&store) as Arc<dyn OrderStore>,
        balances: Arc::clone(&store) as Arc<dyn BalanceStore>,
        apps: store,
        secrets: Arc::clone(&secrets),
        secret_writer,
        clock,
    };
    let setup = Setup {
        function,
        merchant_secret_prefix: config.merchant_secret_prefix.clone(),
        settings: Settings {
            client_key_secret: fcfg.client_key_secret.clone(),
            // The day boundary of the daily reconciliation (docs/reconciliation.md §3), minutes east of UTC.
            recon_utc_offset_minutes: std::env::var("RECON_UTC_OFFSET_MINUTES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(recharge_core::recon::BEIJING_OFFSET_MINUTES),
            // Re-queries stop well inside the function's time limit (reconcile 55 s, ops 29 s); the report is
            // written either way, with the rest counted as skipped.
            recon: recharge_api::state::ReconOptions {
                requery_budget: std::time::Duration::from_secs(
                    if function == Function::Reconcile {
                        35
                    } else {
                        15
                    },
                ),
                ..recharge_api::state::ReconOptions::default()
            },
            ..Settings::production(fcfg.public_base_url.clone())
        },
        notify_timeout: fcfg.notify_timeout,
        metrics: metrics.clone(),
        catalog_path: fcfg.catalog_path.clone(),
    };
    // The three waits of a cold start overlap: the provider credentials (one batch read) while the DynamoDB
    // connection opens and the client-secret key fills the cache.
    let ((state, assembled), ((), dynamodb_warmed), ((), secrets_warmed)) = tokio::join!(
        timed(assemble(setup, files, ports)),
        timed(warm_dynamodb(&dynamo, &config.table)),
        timed(warm_secrets(secrets, warm_names)),
    );
    let state = state?;
    tracing::info!(
        function = function.name(),
        providers = state.providers.loaded().len(),
        disabled_providers = state.providers.disabled().len(),
        files_ms = files_read.as_secs_f64() * 1000.0,
        state_ms = started.elapsed().saturating_sub(files_read).as_secs_f64() * 1000.0,
        assemble_ms = assembled.as_secs_f64() * 1000.0,
        dynamodb_warm_ms = dynamodb_warmed.as_secs_f64() * 1000.0,
        secrets_warm_ms = secrets_warmed.as_secs_f64() * 1000.0,
        "cold start complete"
    );
    Ok(Service {
        state: Arc::new(state),
        metrics,
    })
}

/// A future's output and how long it took (the cold start logs where its time went).
async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, std::time::Duration) {
    let started = std::time::Instant::now();
    let out = f.await;
    (out, started.elapsed())
}

/// One GetItem of a key that never exists: opens the TLS connection to DynamoDB during init (free CPU burst)
/// instead of in the first invocation. GetItem is an action every function is granted anyway. Failure is
/// logged, not fatal: the first real call will tell.
async fn warm_dynamodb(client: &aws_sdk_dynamodb::Client, table: &str) {
    let result = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S("WARMUP".to_owned()))
        .key("sk", AttributeValue::S("WARMUP".to_owned()))
        .send()
        .await;
    if let Err(e) = result {
        tracing::warn!(table, error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "DynamoDB warm-up call failed");
    }
}

/// Reads the given secrets once, all at once, so the cache is filled (and Secrets Manager's connection open)
/// before the first request. A missing secret is logged by name, never by value.
async fn warm_secrets(secrets: Arc<dyn SecretSource>, names: Vec<String>) {
    let mut reads = tokio::task::JoinSet::new();
    for name in names {
        let secrets = Arc::clone(&secrets);
        reads.spawn(async move {
            let read = secrets.fetch(&name).await;
            (name, read)
        });
    }
    while let Some(done) = reads.join_next().await {
        if let Ok((name, Err(e))) = done {
            tracing::warn!(secret = %name, error = %e, "merchant secret not readable at cold start");
        }
    }
}
