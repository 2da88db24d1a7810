//! The local stack: the gateway's API and callback routes on one loopback port, the sweep and the balance
//! check on a fast tick, the five provider simulators on their own ports, and an in-memory store (or DynamoDB);
//! in local mode also the operator console at `/ops/console` (docs/console.md).
//! Every timing is divided by `time_scale` (default 20), so each scripted scenario ends within a minute but
//! account `0009`'s long processing, which takes the simulators' hour divided by it (3 minutes by default).

use crate::demo::{DEMO_VERIFICATION_CODE, LocalAccount, LocalApp, LocalConfig, LocalSimulator};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use recharge_api::apps::{AppConfig, Role};
use recharge_api::{ApiRequest, AppState, BootError, Ports, Settings, StateConfig};
use recharge_core::memory::InMemoryOrderStore;
use recharge_core::secrets::{
    CachedSecretSource, InMemorySecretSource, SecretSource, SecretWriter,
};
use recharge_core::store::{AppStore, BalanceStore, OrderStore};
use recharge_core::{AppId, ProviderAccountId, SystemClock};
use recharge_providers::ProviderAccount;
use recharge_sim::{RunningSim, SimConfig};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Where orders are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    Memory,
    /// DynamoDB at `endpoint` (DynamoDB Local, or AWS when `None`), table created if missing.
    DynamoDb {
        endpoint: Option<String>,
        table: String,
    },
}

impl StoreChoice {
    /// The store the command line asks for. `--store dynamodb` without `--dynamodb-endpoint` would talk to
    /// whatever AWS account the environment's credentials reach, so it is refused unless `aws` (`--aws`) says
    /// that is meant.
    pub fn from_flags(
        store: &str,
        endpoint: Option<String>,
        aws: bool,
        table: String,
    ) -> Result<StoreChoice, String> {
        match (store, endpoint, aws) {
            ("memory", None, false) => Ok(StoreChoice::Memory),
            ("memory", _, _) => {
                Err("--dynamodb-endpoint and --aws apply only to --store dynamodb".into())
            }
            ("dynamodb", Some(_), true) => {
                Err("--dynamodb-endpoint and --aws exclude each other".into())
            }
            ("dynamodb", Some(url), false) => Ok(StoreChoice::DynamoDb {
                endpoint: Some(url),
                table,
            }),
            ("dynamodb", None, true) => Ok(StoreChoice::DynamoDb {
                endpoint: None,
                table,
            }),
            ("dynamodb", None, false) => Err(
                "--store dynamodb needs --dynamodb-endpoint URL (e.g. DynamoDB Local), or --aws to use the AWS \
                 account of the environment's credentials"
                    .into(),
            ),
            (other, _, _) => Err(format!("--store {other}: expected memory or dynamodb")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub listen: SocketAddr,
    pub store: StoreChoice,
    /// Replaces parts of the demo configuration.
    pub config: Option<LocalConfig>,
    /// Divides every provider timing, grace window and retry schedule (and the simulators' clocks).
    pub time_scale: f64,
    /// How often the sweep runs.
    pub sweep_every: Duration,
    /// How often the balance check runs.
    pub balance_every: Duration,
    /// The daily reconciliation on a scaled tick (docs/reconciliation.md §3): every this often it reconciles
    /// today so far and yesterday, every account (an unfinished re-query continues, a finished day is asked
    /// again). `None` (the default, and in tests): only the ops route, the CLI or the console run it.
    pub recon_every: Option<Duration>,
    /// How long a hanging simulator holds a submit (must outlast the 2 s provider call timeout).
    pub sim_hang: Duration,
    /// Chaos for every simulator (fault campaigns): seed and rates.
    pub chaos: Option<recharge_sim::ChaosConfig>,
    /// Dialects by provider account id (accounts not named speak as documented).
    pub dialects: BTreeMap<String, recharge_sim::Dialect>,
    /// Every simulator not named in `dialects` gets a random dialect from this seed and its account id.
    pub dialect_seed: Option<u64>,
    /// Local mode (the default): loopback notify URLs are allowed. Off, the gateway guards notify URLs as in
    /// production (https to public addresses only), so tests can see the SSRF guard over HTTP.
    pub local_mode: bool,
    /// Counts every AWS SDK round trip (the DynamoDB store, Secrets Manager) with this interceptor.
    pub aws_calls: Option<recharge_aws::CallCounter>,
    /// Keep the secrets in Secrets Manager (endpoint from the environment, e.g. moto) behind the in-process
    /// cache, as the Lambda functions do, instead of in memory. Provider credentials are still read at start.
    pub secrets_manager: bool,
    /// How long a PC carrier-billing order waits for its code before it expires; default 15 minutes divided by
    /// the time scale but never under 60 s (a person, or a browser under test, types the code in real time).
    pub verification_expiry: Option<Duration>,
    /// How long the app and account-control caches (and the balance cache) hold what they read; 1 s by
    /// default, so an operator's change shows at once. A test that counts round trips "warm" sets it longer,
    /// so a slow machine cannot let a cache expire between the warm-up and the counted request.
    pub cache_ttl: Duration,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            store: StoreChoice::Memory,
            config: None,
            time_scale: 20.0,
            sweep_every: Duration::from_millis(200),
            balance_every: Duration::from_secs(15),
            recon_every: None,
            sim_hang: Duration::from_secs(4),
            chaos: None,
            dialects: BTreeMap::new(),
            dialect_seed: None,
            local_mode: true,
            aws_calls: None,
            secrets_manager: false,
            verification_expiry: None,
            cache_ttl: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("simulator for {account}")]
    Sim {
        account: String,
        #[source]
        source: recharge_sim::SimError,
    },
    #[error(transparent)]
    Boot(#[from] recharge_api::BootError),
    #[error("DynamoDB table")]
    Table(#[from] recharge_aws::table::TableError),
    #[error("Secrets Manager: {0}")]
    SecretsManager(String),
}

/// A running local stack. Dropping it stops everything.
#[derive(Debug)]
pub struct LocalStack {
    base_url: String,
    state: Arc<AppState>,
    sims: BTreeMap<String, RunningSim>,
    apps: Vec<crate::demo::LocalApp>,
    /// Every secret the stack configured, as (name, JSON value): for tests that look for them where they must
    /// not be (logs).
    secret_values: Vec<(String, String)>,
    tasks: Vec<JoinHandle<()>>,
}

impl LocalStack {
    /// Starts the stack in five steps: the configuration and the listener; the simulators (and the provider
    /// accounts pointed at them) with the stack's secrets; the state over its stores and secret source; the
    /// router (with the console); the server and the background loops.
    pub async fn start(options: LocalOptions) -> Result<LocalStack, LocalError> {
        let config = LocalConfig::demo_with(options.config.clone())
            .map_err(|e| LocalError::Config(e.to_string()))?;
        let apps = config.apps.clone().unwrap_or_default();
        let accounts = config.accounts.clone().unwrap_or_default();
        let (listener, addr) = bind(options.listen).await?;
        let base_url = format!("http://{addr}");

        let mut secrets = LocalSecrets::default();
        let simulated = Simulated::start(&accounts, &options, &base_url, &mut secrets).await?;
        let app_configs = app_configs(&apps, &mut secrets)?;
        // The gateway key of client secrets (issue 18): fresh random bytes per start, like a generated secret.
        secrets.put(CLIENT_KEY_SECRET, json!({"key": random_key()?}).to_string());

        let catalog_text = config.catalog.clone().unwrap_or(Value::Null).to_string();
        let state = Arc::new(
            build_state(
                &options,
                &base_url,
                simulated.accounts,
                catalog_text,
                app_configs,
                &secrets,
            )
            .await?,
        );

        let info = local_info(
            &base_url,
            &simulated.sims,
            &apps,
            &config,
            &options,
            simulated.long_processing,
        );
        let router = router(Arc::clone(&state), info, &options, &apps, &base_url, addr);
        let tasks = spawn_tasks(listener, router, &state, &options);
        Ok(LocalStack {
            base_url,
            state,
            sims: simulated.sims,
            apps,
            secret_values: secrets.values,
            tasks,
        })
    }

    /// Every secret the stack configured (provider credentials and merchant app secrets) as (name, JSON).
    pub fn secret_values(&self) -> &[(String, String)] {
        &self.secret_values
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The simulator started for a provider account.
    pub fn sim(&self, account: &str) -> Option<&RunningSim> {
        self.sims.get(account)
    }

    pub fn sims(&self) -> impl Iterator<Item = (&String, &RunningSim)> {
        self.sims.iter()
    }

    /// A signing client for one of the configured apps.
    pub fn client(&self, app: &str) -> Option<crate::client::SigningClient> {
        self.apps
            .iter()
            .find(|a| a.id == app)
            .map(|a| crate::client::SigningClient::new(&self.base_url, &a.id, &a.secret))
    }

    pub async fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        for (_, sim) in std::mem::take(&mut self.sims) {
            sim.stop().await;
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The listener of the API (port 0: any free one) and the address it got.
async fn bind(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), LocalError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| LocalError::Bind(listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| LocalError::Bind(listen, e))?;
    Ok((listener, addr))
}

/// Every secret the stack configures: in memory, and each kept as (name, JSON) for
/// [`LocalStack::secret_values`] and for the copy into Secrets Manager.
#[derive(Debug, Default)]
struct LocalSecrets {
    memory: Arc<InMemorySecretSource>,
    values: Vec<(String, String)>,
}

impl LocalSecrets {
    fn put(&mut self, name: &str, value: String) {
        self.memory.put(name, &value);
        self.values.push((name.to_owned(), value));
    }
}

/// The simulators started for the configured accounts, and the accounts as the gateway loads them.
#[derive(Debug)]
struct Simulated {
    sims: BTreeMap<String, RunningSim>,
    /// The simulators' longest scripted behaviour (account `0009`), shown at `/_local` so that `order` waits
    /// long enough.
    long_processing: Duration,
    accounts: Vec<ProviderAccount>,
}

impl Simulated {
    /// Starts a simulator for every account that has a `simulator` block and points the account's
    /// `{sim}` endpoints at it; every account's credentials go into `secrets`.
    async fn start(
        accounts: &[LocalAccount],
        options: &LocalOptions,
        base_url: &str,
        secrets: &mut LocalSecrets,
    ) -> Result<Simulated, LocalError> {
        let mut simulated = Simulated {
            sims: BTreeMap::new(),
            long_processing: Duration::ZERO,
            accounts: Vec::new(),
        };
        for a in accounts {
            let mut account_json = a.account.clone();
            let id = account_json
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| LocalError::Config("an account has no id".into()))?
                .to_owned();
            if let Some(sim) = &a.simulator {
                let (running, long_processing) =
                    start_simulator(&id, sim, options, base_url).await?;
                simulated.long_processing = simulated.long_processing.max(long_processing);
                if let Some(endpoints) = account_json
                    .get_mut("endpoints")
                    .and_then(Value::as_object_mut)
                {
                    for v in endpoints.values_mut() {
                        if let Some(s) = v.as_str() {
                            *v = Value::String(s.replace("{sim}", running.base_url()));
                        }
                    }
                }
                simulated.sims.insert(id.clone(), running);
            }
            let account: ProviderAccount = serde_json::from_value(account_json)
                .map_err(|e| LocalError::Config(format!("account {id}: {e}")))?;
            secrets.put(&account.secret_name, a.secret.to_string());
            simulated.accounts.push(account);
        }
        Ok(simulated)
    }
}

/// One account's simulator, with the options' time scale, hang, chaos and dialect; and its longest scripted
/// behaviour.
async fn start_simulator(
    id: &str,
    sim: &LocalSimulator,
    options: &LocalOptions,
    base_url: &str,
) -> Result<(RunningSim, Duration), LocalError> {
    let protocol: recharge_sim::Protocol = sim
        .protocol
        .parse()
        .map_err(|e| LocalError::Config(format!("{id}: simulator protocol: {e}")))?;
    let mut sc = SimConfig::new(protocol, sim.credentials.clone());
    sc.time_scale = options.time_scale;
    sc.scripts = sim.scripts;
    sc.hang = options.sim_hang;
    let long_processing = sc.long_processing;
    sc.chaos = options.chaos.clone();
    if let Some(d) = options.dialects.get(id) {
        sc.dialect = d.clone();
    } else if let Some(seed) = options.dialect_seed {
        let per_account = id.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        sc.dialect = recharge_sim::Dialect::random(protocol, per_account);
    }
    sc.callback_url = Some(format!("{base_url}/v1/callbacks/{id}"));
    let running = recharge_sim::start(sc)
        .await
        .map_err(|source| LocalError::Sim {
            account: id.to_owned(),
            source,
        })?;
    Ok((running, long_processing))
}

/// Where the merchant apps' secrets live in the local stack: `<prefix><app id>`.
const MERCHANT_SECRET_PREFIX: &str = "local/merchant/";

/// The apps as the gateway's seed (`apps.json`), their secrets put into `secrets`.
fn app_configs(
    apps: &[LocalApp],
    secrets: &mut LocalSecrets,
) -> Result<Vec<AppConfig>, LocalError> {
    let mut app_configs = Vec::new();
    for app in apps {
        let id = AppId::parse(&app.id).map_err(|e| LocalError::Config(e.to_string()))?;
        let role = match app.role.as_str() {
            "admin" => Role::Admin,
            "merchant" => Role::Merchant,
            other => {
                return Err(LocalError::Config(format!(
                    "app {}: role {other:?}",
                    app.id
                )));
            }
        };
        secrets.put(
            &format!("{MERCHANT_SECRET_PREFIX}{id}"),
            json!({"app_secret": app.secret}).to_string(),
        );
        app_configs.push(AppConfig {
            id,
            role,
            secret_name: None,
            client: app.client.clone(),
        });
    }
    Ok(app_configs)
}

/// The state over the chosen store and secret source, with the local settings, built by the same
/// `AppState::assemble` as a Lambda cold start.
async fn build_state(
    options: &LocalOptions,
    base_url: &str,
    accounts: Vec<ProviderAccount>,
    catalog_text: String,
    apps: Vec<AppConfig>,
    secrets: &LocalSecrets,
) -> Result<AppState, LocalError> {
    let (store, balances, app_store) = stores(options).await?;
    let clock: Arc<dyn recharge_core::Clock> = Arc::new(SystemClock);
    // Provider credentials are read from the in-memory source at start, whichever source serves the rest.
    let credentials: Arc<dyn SecretSource> = secrets.memory.clone();
    // The operators' API creates and rotates app secrets in the same store the stack reads them from.
    let (secrets, secret_writer): (Arc<dyn SecretSource>, Arc<dyn SecretWriter>) =
        if options.secrets_manager {
            let cached = secrets_manager(
                &secrets.values,
                options.aws_calls.as_ref(),
                Arc::clone(&clock),
            )
            .await?;
            let writer = Arc::new(cached.inner().clone());
            (Arc::new(cached), writer)
        } else {
            (secrets.memory.clone(), secrets.memory.clone())
        };
    let ports = Ports {
        store,
        balances,
        apps: app_store,
        secrets,
        secret_writer: Some(secret_writer),
        clock,
    };
    let state_config = StateConfig {
        accounts,
        providers: recharge_api::state::ProviderLoading::AtStart(credentials),
        catalog_text,
        apps,
        merchant_secret_prefix: MERCHANT_SECRET_PREFIX.to_owned(),
        settings: settings(options, base_url),
        notify_timeout: Duration::from_secs(5),
        // No floor under the lease (`settings`): it is the notifier's timeout + 3 s, shorter than production's
        // 30 s, so a sweep aborted after its claim (the fault campaign does that) is retried within seconds.
        notify_claim_margin: Duration::from_secs(3),
    };
    AppState::assemble(ports, state_config)
        .await
        .map_err(|e| match e {
            BootError::Catalog(e) => LocalError::Config(e.to_string()),
            BootError::HttpClient(e) => LocalError::Config(e),
            e => LocalError::Boot(e),
        })
}

type Stores = (
    Arc<dyn OrderStore>,
    Arc<dyn BalanceStore>,
    Arc<dyn AppStore>,
);

/// The store the options choose: in memory, or DynamoDB (the table created if missing).
async fn stores(options: &LocalOptions) -> Result<Stores, LocalError> {
    match &options.store {
        StoreChoice::Memory => {
            let s = Arc::new(InMemoryOrderStore::new(8));
            Ok((s.clone(), s.clone(), s))
        }
        StoreChoice::DynamoDb { endpoint, table } => {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(url) = endpoint {
                loader = loader.endpoint_url(url);
            }
            let sdk = loader.load().await;
            let mut conf = aws_sdk_dynamodb::config::Builder::from(&sdk);
            if let Some(counter) = &options.aws_calls {
                conf = conf.interceptor(counter.clone());
            }
            let client = aws_sdk_dynamodb::Client::from_conf(conf.build());
            recharge_aws::table::ensure_table(&client, table).await?;
            let s = Arc::new(recharge_aws::DynamoOrderStore::new(
                client,
                table.clone(),
                8,
            ));
            Ok((s.clone(), s.clone(), s))
        }
    }
}

/// Production's settings with the local stack's timings: scaled, fast caches, loopback notify URLs in local
/// mode.
fn settings(options: &LocalOptions, base_url: &str) -> Settings {
    let mut settings = Settings::production(base_url);
    settings.local_mode = options.local_mode;
    settings.time_scale = options.time_scale;
    settings.balance_cache_ttl = options.cache_ttl;
    settings.control_cache_ttl = options.cache_ttl;
    settings.verification_expiry = options.verification_expiry.unwrap_or_else(|| {
        Duration::from_secs_f64(
            settings.verification_expiry.as_secs_f64() / options.time_scale.max(1.0),
        )
        .max(Duration::from_secs(60))
    });
    settings.client_key_secret = Some(CLIENT_KEY_SECRET.to_owned());
    // The lease is the notifier's timeout + the claim margin alone (`build_state`).
    settings.notify_lease = Duration::ZERO;
    settings
}

/// Every route on one router: the gateway's, `/_local`, and in local mode the operator console.
fn router(
    state: Arc<AppState>,
    info: Value,
    options: &LocalOptions,
    apps: &[LocalApp],
    base_url: &str,
    addr: SocketAddr,
) -> axum::Router {
    let mut router = axum::Router::new()
        .fallback(serve)
        .with_state((state, Arc::new(info)));
    // The operator console at /ops/console (docs/console.md), local mode only like `/_local`: its proxy
    // signs the page's calls as the first admin app, as `recharge-ops` does against this stack.
    if options.local_mode
        && let Some(admin) = apps.iter().find(|a| a.role == "admin")
    {
        let client = recharge_ops::OpsClient::hmac(base_url, &admin.id, &admin.secret);
        let console = recharge_ops::console::Console::new(
            client,
            recharge_ops::console::Console::hosts_for(addr),
            None,
        );
        router = recharge_ops::console::router(console).merge(router);
    }
    router
}

/// The server, then the background loops: the sweep's two lanes, the balance check and, when asked for, the
/// daily reconciliation.
fn spawn_tasks(
    listener: TcpListener,
    router: axum::Router,
    state: &Arc<AppState>,
    options: &LocalOptions,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "local server stopped");
        }
    }));
    // The sweep's two lanes as two loops: a pass of notifications waiting on a hanging notify URL never
    // holds up the next pass of provider work (docs/architecture.md §8).
    for lanes in [
        recharge_api::usecases::sweep::Lanes::Work,
        recharge_api::usecases::sweep::Lanes::Notifications,
    ] {
        let sweep_state = Arc::clone(state);
        let sweep_every = options.sweep_every;
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(sweep_every).await;
                recharge_api::usecases::sweep::sweep_lanes(Arc::clone(&sweep_state), lanes).await;
            }
        }));
    }
    let balance_state = Arc::clone(state);
    let balance_every = options.balance_every;
    tasks.push(tokio::spawn(async move {
        loop {
            recharge_api::usecases::balance_check::check_balances(&balance_state).await;
            tokio::time::sleep(balance_every).await;
        }
    }));
    if let Some(every) = options.recon_every {
        tasks.push(tokio::spawn(recon_loop(Arc::clone(state), every)));
    }
    tasks
}

/// The daily reconciliation on a scaled tick: every `every`, yesterday and today so far.
async fn recon_loop(state: Arc<AppState>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let today = recharge_core::recon::ReconDay::containing(
            state.clock.now(),
            state.settings.recon_utc_offset_minutes,
        );
        for day in [today.previous(), today] {
            let options = &state.settings.recon;
            if let Err(e) = recharge_api::usecases::recon::run(&state, day, None, options).await {
                tracing::error!(error = %e, date = %day.date(), "local reconciliation tick failed");
            }
        }
    }
}

/// The secret of the client-secret key in the local stack.
pub const CLIENT_KEY_SECRET: &str = "local/client-key";

/// 32 random bytes as hex, from the kernel.
fn random_key() -> Result<String, LocalError> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| LocalError::Config(format!("random key: {e}")))?;
    Ok(data_encoding::HEXLOWER.encode(&bytes))
}

/// Copies every secret of the in-memory source into Secrets Manager (creating or updating it) and returns a
/// cached Secrets Manager source, as the Lambda functions build theirs.
async fn secrets_manager(
    local: &[(String, String)],
    calls: Option<&recharge_aws::CallCounter>,
    clock: Arc<dyn recharge_core::Clock>,
) -> Result<CachedSecretSource<recharge_aws::SecretsManagerSource>, LocalError> {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let mut conf = aws_sdk_secretsmanager::config::Builder::from(&sdk);
    if let Some(counter) = calls {
        conf = conf.interceptor(counter.clone());
    }
    let client = aws_sdk_secretsmanager::Client::from_conf(conf.build());
    for (name, value) in local {
        let created = client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await;
        if let Err(e) = created {
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_exists_exception())
            {
                client
                    .put_secret_value()
                    .secret_id(name)
                    .secret_string(value)
                    .send()
                    .await
                    .map_err(|e| LocalError::SecretsManager(format!("{name}: {e}")))?;
            } else {
                return Err(LocalError::SecretsManager(format!("{name}: {e}")));
            }
        }
    }
    Ok(CachedSecretSource::new(
        recharge_aws::SecretsManagerSource::new(client),
        Duration::from_secs(300),
        clock,
    ))
}

fn local_info(
    base_url: &str,
    sims: &BTreeMap<String, RunningSim>,
    apps: &[crate::demo::LocalApp],
    config: &LocalConfig,
    options: &LocalOptions,
    long_processing: Duration,
) -> Value {
    let accounts: Vec<Value> = config
        .accounts
        .iter()
        .flatten()
        .map(|a| {
            let id = a
                .account
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            json!({
                "id": id,
                "protocol": a.account.get("protocol"),
                "simulator": sims.get(id).map(|s| s.base_url().to_owned()),
                "scripts": a.simulator.as_ref().map(|s| s.scripts),
                "callback_url": format!("{base_url}/v1/callbacks/{id}"),
            })
        })
        .collect();
    json!({
        "base_url": base_url,
        "apps": apps.iter().map(|a| json!({"id": a.id, "role": a.role, "secret": a.secret,
            "client": {"secret_ttl_secs": a.client.secret_ttl_secs,
                "allowed_origins": a.client.allowed_origins.iter().map(|o| o.as_str()).collect::<Vec<_>>()}})).collect::<Vec<_>>(),
        "accounts": accounts,
        "catalog": config.catalog,
        "time_scale": options.time_scale,
        "longest_scenario_secs": long_processing.as_secs_f64() / options.time_scale.max(f64::MIN_POSITIVE),
        "demo": {"verification_code": DEMO_VERIFICATION_CODE},
    })
}

type Shared = (Arc<AppState>, Arc<Value>);

/// Requests over 1 MiB are cut off here; the handlers refuse anything over 64 KiB with a 413 anyway.
const READ_LIMIT: usize = 1 << 20;

async fn serve(State((state, info)): State<Shared>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // `/_local` shows the apps' secrets: local mode only.
    if parts.method == axum::http::Method::GET
        && parts.uri.path() == "/_local"
        && state.settings.local_mode
    {
        return respond(recharge_api::ApiResponse::json(200, &*info));
    }
    let body = match axum::body::to_bytes(body, READ_LIMIT).await {
        Ok(b) => b.to_vec(),
        Err(_) => return respond(recharge_api::ApiError::TooLarge(READ_LIMIT).to_response()),
    };
    let api = ApiRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        raw_query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body,
    };
    respond(recharge_api::http::routes::handle(&state, api).await)
}

fn respond(r: recharge_api::ApiResponse) -> Response<Body> {
    let mut resp = Response::new(Body::from(r.body));
    *resp.status_mut() =
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in r.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// Parses a provider account id (used by the CLI to find a simulator).
pub fn account_id(s: &str) -> Option<ProviderAccountId> {
    ProviderAccountId::parse(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamodb_without_an_endpoint_is_refused_unless_aws_is_asked_for() {
        let t = || "t".to_owned();
        let err = StoreChoice::from_flags("dynamodb", None, false, t()).unwrap_err();
        assert!(err.contains("--aws"), "{err}");
        assert!(matches!(
            StoreChoice::from_flags("dynamodb", None, true, t()),
            Ok(StoreChoice::DynamoDb { endpoint: None, .. })
        ));
        assert!(matches!(
            StoreChoice::from_flags("dynamodb", Some("http://127.0.0.1:8000".into()), false, t()),
            Ok(StoreChoice::DynamoDb {
                endpoint: Some(_),
                ..
            })
        ));
        assert!(StoreChoice::from_flags("dynamodb", Some("http://x".into()), true, t()).is_err());
        assert!(matches!(
            StoreChoice::from_flags("memory", None, false, t()),
            Ok(StoreChoice::Memory)
        ));
        assert!(StoreChoice::from_flags("memory", None, true, t()).is_err());
        assert!(StoreChoice::from_flags("sqlite", None, false, t()).is_err());
    }
}
