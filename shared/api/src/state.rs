//! `AppState`: the ports and configuration every handler works over, built once per process (Lambda cold start,
//! local stack start: [`AppState::assemble`]). Handlers take `&AppState`; nothing in it is rebuilt per request.

use crate::apps::AppDirectory;
use crate::catalog::Catalog;
use crate::usecases::notify::Notifier;
use crate::usecases::route_choice::AccountView;
use recharge_core::secrets::{SecretError, SecretSource, SecretWriter};
use recharge_core::store::{AccountControl, BalanceSnapshot, BalanceStore, OrderStore};
use recharge_core::{Clock, Policy, ProviderAccountId, Timestamp};
use recharge_providers::codes::CodeOverrides;
use recharge_providers::{Capabilities, ConfigError, Executor, Provider, ProviderAccount};
use secrecy::ExposeSecret;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

mod assembly;
pub use assembly::{Ports, StateConfig};

/// Non-secret runtime settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where providers reach us: callbacks go to `<public_base_url>/v1/callbacks/<account>`.
    pub public_base_url: String,
    /// The local stack: loopback notify URLs are allowed (and nowhere else).
    pub local_mode: bool,
    /// Divides every timing (provider policies, notification retries) in the local stack; 1 in production.
    pub time_scale: f64,
    /// Due orders taken per shard per sweep.
    pub sweep_batch: usize,
    /// Due orders worked on at once by one sweep (provider work; notifications have as many again).
    pub sweep_concurrency: usize,
    /// Due orders of one merchant app worked on per sweep pass when apps compete (an app alone may use the
    /// whole `sweep_batch`): one app's backlog cannot fill a pass others need.
    pub sweep_per_app: usize,
    /// Merchant notifications of one app sent per sweep pass when many apps compete; otherwise each app gets
    /// its share of four rounds of the pool, so a pass with every notify URL hanging lasts about four
    /// notifier timeouts.
    pub notify_per_app: usize,
    /// How long a sender's claim on a notification holds it (`Event::NotifyClaimed`); longer than the
    /// notifier's timeout plus the writes around it, so a claim only lapses when its sender died.
    pub notify_lease: Duration,
    /// How long routing trusts its copy of the balance snapshots.
    pub balance_cache_ttl: Duration,
    /// How long every function trusts its copy of the operators' account controls (docs/operations.md §3: a change
    /// reaches every function within a minute, with no deploy).
    pub control_cache_ttl: Duration,
    /// How long a PC carrier-billing order waits for its verification code before it expires as failed
    /// (nothing was charged: the code never reached the provider). Not scaled: the local stack sets its own.
    pub verification_expiry: Duration,
    /// The secret holding the gateway key of client secrets (issue 18); `None`: no client secrets are issued
    /// and the client routes open nothing.
    pub client_key_secret: Option<String>,
    /// Provider queries that unverifiable callbacks (refused signatures, unsigned hints) may cause per provider
    /// account and minute, in this process: a forged callback is cheap to send, a query is not.
    pub callback_queries_per_minute: u32,
    /// The daily reconciliation's day boundary, minutes east of UTC (docs/reconciliation.md §3; default
    /// Beijing time, 480).
    pub recon_utc_offset_minutes: i32,
    /// How the daily reconciliation paces its re-queries.
    pub recon: ReconOptions,
}

impl Settings {
    pub fn production(public_base_url: impl Into<String>) -> Settings {
        Settings {
            public_base_url: public_base_url.into(),
            local_mode: false,
            time_scale: 1.0,
            sweep_batch: 500,
            sweep_concurrency: 32,
            sweep_per_app: 100,
            notify_per_app: 8,
            notify_lease: Duration::from_secs(30),
            balance_cache_ttl: Duration::from_secs(30),
            verification_expiry: Duration::from_secs(15 * 60),
            control_cache_ttl: Duration::from_secs(30),
            client_key_secret: None,
            callback_queries_per_minute: 30,
            recon_utc_offset_minutes: recharge_core::recon::BEIJING_OFFSET_MINUTES,
            recon: ReconOptions::default(),
        }
    }
}

/// A configuration problem found while building the state: fails the cold start with a clear message.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("provider account {account}: {source}")]
    Provider {
        account: String,
        #[source]
        source: ConfigError,
    },
    #[error("provider account {account}: its secret could not be read")]
    ProviderSecret {
        account: String,
        #[source]
        source: SecretError,
    },
    #[error("provider account {0} is configured twice")]
    DuplicateAccount(String),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    /// The provider executor's or the merchant notifier's HTTP client could not be built.
    #[error("{0}")]
    HttpClient(String),
}

/// The provider accounts: those loaded (with credentials, keys validated), those disabled because their
/// secret was missing or malformed, and, where accounts load on first use, those not needed yet.
#[derive(Debug, Default)]
pub struct Providers {
    /// Every configured account (loaded, disabled, or not loaded on purpose), without credentials.
    configured: BTreeMap<ProviderAccountId, ProviderAccount>,
    /// Every loaded account as configured (the base layer).
    by_id: RwLock<BTreeMap<ProviderAccountId, Arc<Provider>>>,
    /// Accounts configured but not usable, with why (no secret value in it). Routing skips them as "not
    /// loaded"; the catalog still knows their names.
    disabled: RwLock<BTreeMap<ProviderAccountId, String>>,
    /// The operators' runtime code overrides (docs/operations.md §3), per account whose control has them:
    /// rebuilt from the controls each time this process reads them fresh ([`Providers::apply_controls`]).
    runtime: RwLock<HashMap<ProviderAccountId, RuntimeCodes>>,
    /// Where an account not loaded yet reads its credentials when a request first needs it
    /// ([`ProviderLoading::OnUse`]); `None`: nothing loads after the start.
    on_use: Option<OnUse>,
}

/// How a function gets its provider accounts' credentials.
#[derive(Debug, Clone)]
pub enum ProviderLoading {
    /// Never: the accounts are configuration only (order-status calls no provider and has no grant to read
    /// their secrets).
    Never,
    /// Every account at the start, one Secrets Manager batch per 20 accounts: for a function that walks every
    /// account (the sweep, the balance check, reconciliation, the operators' views).
    AtStart(Arc<dyn SecretSource>),
    /// Each account when a request first needs it (the candidates of the product ordered, the account a
    /// callback names), in one batch per request, then kept: for the functions that serve one order at a
    /// time, so their cold start reads no provider secret whatever the number of accounts (issue 16).
    OnUse {
        secrets: Arc<dyn SecretSource>,
        /// Told of each account disabled on first use (the Lambda functions count it in the metric the alarm
        /// `ProviderAccountDisabled` watches).
        disabled_alarm: Option<DisabledAlarm>,
    },
}

/// What is told when an account is disabled on first use.
#[derive(Clone)]
pub struct DisabledAlarm(pub Arc<dyn Fn(&ProviderAccountId) + Send + Sync>);

impl std::fmt::Debug for DisabledAlarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DisabledAlarm")
    }
}

#[derive(Debug, Clone)]
struct OnUse {
    secrets: Arc<dyn SecretSource>,
    disabled_alarm: Option<DisabledAlarm>,
}

/// The credentials of accounts a request needs could not be read now (Secrets Manager failed or was
/// unreachable); the request may be retried. No account was disabled for it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("provider credentials unavailable for {accounts}: {reason}")]
pub struct CredentialsUnavailable {
    pub accounts: String,
    pub reason: String,
}

/// One account's runtime code overrides as this process holds them.
#[derive(Debug)]
struct RuntimeCodes {
    /// The stored value last seen, so an unchanged (or refused) one is not rebuilt at every refresh.
    seen: serde_json::Value,
    /// The overrides in force and the account rebuilt with them; `None`: the configured table.
    in_force: Option<(CodeOverrides, Arc<Provider>)>,
    /// Why the stored value last seen is not in force (the previous table was kept).
    rejected: Option<String>,
}

/// The operators' code overrides of one account as this process classifies with them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CodesInForce {
    /// The overrides in force (empty: none).
    pub overrides: CodeOverrides,
    /// Why the stored overrides were not applied, if they were not (the previous ones stay in force).
    pub rejected: Option<String>,
}

/// Whether a per-account load problem disables only that account (a missing or malformed secret: an
/// operator's mistake in one place) or fails the cold start (the deployed config file is wrong, or Secrets
/// Manager is unreachable, which a retried cold start may cure).
fn disables_only_the_account(e: &BootError) -> bool {
    match e {
        BootError::ProviderSecret { source, .. } => match source {
            SecretError::NotFound(_) | SecretError::Malformed { .. } => true,
            SecretError::Unavailable { .. } => false,
        },
        BootError::Provider { source, .. } => match source {
            ConfigError::Secret { .. } => true,
            ConfigError::Parse(_)
            | ConfigError::Options { .. }
            | ConfigError::Endpoint { .. }
            | ConfigError::Capabilities(_)
            | ConfigError::Codes(_) => false,
        },
        BootError::DuplicateAccount(_)
        | BootError::Config(_)
        | BootError::Catalog(_)
        | BootError::HttpClient(_) => false,
    }
}

/// Whether a load problem is Secrets Manager failing (retryable: nothing is wrong with the account).
fn is_unavailable(e: &BootError) -> bool {
    matches!(
        e,
        BootError::ProviderSecret {
            source: SecretError::Unavailable { .. },
            ..
        }
    )
}

/// What reading some accounts' credentials came to.
struct Loaded {
    providers: Vec<Provider>,
    /// Accounts disabled, with why.
    disabled: Vec<(ProviderAccountId, BootError)>,
    /// Accounts whose error is not theirs alone (a config error, Secrets Manager unavailable).
    failed: Vec<(ProviderAccountId, BootError)>,
}

/// Reads the accounts' credentials in one batch (one Secrets Manager call per 20 names) and builds each
/// account: keys are validated now, not on first use.
async fn load_accounts(accounts: Vec<ProviderAccount>, secrets: &dyn SecretSource) -> Loaded {
    let names: Vec<String> = accounts.iter().map(|a| a.secret_name.clone()).collect();
    let started = std::time::Instant::now();
    let values = secrets.fetch_current_many(&names).await;
    let read = started.elapsed();
    let mut out = Loaded {
        providers: Vec::new(),
        disabled: Vec::new(),
        failed: Vec::new(),
    };
    for (account, value) in accounts.into_iter().zip(values) {
        let id = account.id.clone();
        let result = value
            .map_err(|source| BootError::ProviderSecret {
                account: id.to_string(),
                source,
            })
            .and_then(|secret| {
                Provider::load(account, secret.expose_secret()).map_err(|source| {
                    BootError::Provider {
                        account: id.to_string(),
                        source,
                    }
                })
            });
        match result {
            Ok(provider) => out.providers.push(provider),
            Err(e) if disables_only_the_account(&e) => out.disabled.push((id, e)),
            Err(e) => out.failed.push((id, e)),
        }
    }
    // Where a slow start (or first request) went: waiting for the credentials, or building the adapters.
    tracing::info!(
        accounts = names.len(),
        disabled = out.disabled.len(),
        credentials_read_ms = read.as_secs_f64() * 1000.0,
        providers_built_ms = started.elapsed().saturating_sub(read).as_secs_f64() * 1000.0,
        "provider accounts loaded"
    );
    out
}

fn log_disabled(id: &ProviderAccountId, e: &BootError) {
    // The error names the secret and the faulty field, never a value.
    tracing::error!(
        alert = "provider_account_disabled",
        provider_account = %id,
        reason = %e,
        "provider account disabled: its secret is missing or malformed"
    );
}

impl Providers {
    /// The accounts loaded as `loading` says: none ([`ProviderLoading::Never`]), every one now
    /// ([`Providers::load`]), or each on first use ([`Providers::ensure`]).
    pub async fn start(
        accounts: Vec<ProviderAccount>,
        loading: ProviderLoading,
    ) -> Result<Providers, BootError> {
        match loading {
            ProviderLoading::Never => Providers::without_credentials(accounts),
            ProviderLoading::AtStart(secrets) => Providers::load(accounts, &*secrets).await,
            ProviderLoading::OnUse {
                secrets,
                disabled_alarm,
            } => {
                let mut providers = Providers::without_credentials(accounts)?;
                providers.on_use = Some(OnUse {
                    secrets,
                    disabled_alarm,
                });
                Ok(providers)
            }
        }
    }

    /// Loads every account with its credentials from the secret source: keys are validated now, not on first
    /// use. An account whose secret is missing or malformed is disabled (logged with the alert
    /// `provider_account_disabled`; see [`Providers::disabled`]) and every other account loads; a bad account
    /// config or an unreachable secret store fails the whole load.
    pub async fn load(
        accounts: Vec<ProviderAccount>,
        secrets: &dyn SecretSource,
    ) -> Result<Providers, BootError> {
        let configured = Providers::without_credentials(accounts.clone())?.configured;
        let loaded = load_accounts(accounts, secrets).await;
        if let Some((_, e)) = loaded.failed.into_iter().next() {
            return Err(e);
        }
        let mut disabled = BTreeMap::new();
        for (id, e) in loaded.disabled {
            log_disabled(&id, &e);
            disabled.insert(id, e.to_string());
        }
        let mut providers = Providers::from_loaded(loaded.providers)?;
        providers.configured = configured;
        providers.disabled = RwLock::new(disabled);
        Ok(providers)
    }

    /// The accounts as configuration only, none loaded: for a function that never calls a provider
    /// (order-status lists the accounts with their stored balances), so it needs no provider credentials and
    /// no grant to read them.
    pub fn without_credentials(accounts: Vec<ProviderAccount>) -> Result<Providers, BootError> {
        let mut configured = BTreeMap::new();
        for a in accounts {
            let id = a.id.clone();
            if configured.insert(id.clone(), a).is_some() {
                return Err(BootError::DuplicateAccount(id.to_string()));
            }
        }
        Ok(Providers {
            configured,
            ..Providers::default()
        })
    }

    /// Every configured account's configuration, loaded or not.
    pub fn configured(&self) -> impl Iterator<Item = &ProviderAccount> {
        self.configured.values()
    }

    /// Whether `id` is a configured account (loaded, disabled or not needed yet).
    pub fn is_configured(&self, id: &ProviderAccountId) -> bool {
        self.configured.contains_key(id)
    }

    pub fn from_loaded(providers: Vec<Provider>) -> Result<Providers, BootError> {
        let mut by_id = BTreeMap::new();
        let mut configured = BTreeMap::new();
        for p in providers {
            let id = p.account.id.clone();
            configured.insert(id.clone(), p.account.clone());
            if by_id.insert(id.clone(), Arc::new(p)).is_some() {
                return Err(BootError::DuplicateAccount(id.to_string()));
            }
        }
        Ok(Providers {
            configured,
            by_id: RwLock::new(by_id),
            ..Providers::default()
        })
    }

    /// Loads those of `ids` that are configured and neither loaded nor disabled yet, in one batch (where
    /// accounts load on first use; elsewhere nothing is left to load). An account whose secret is missing or
    /// malformed, or whose configuration does not load, is disabled (the alert `provider_account_disabled`,
    /// and the alarm hook); Secrets Manager failing leaves the accounts unloaded for a later request.
    /// Returns whether any account was loaded now.
    pub async fn ensure<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a ProviderAccountId>,
    ) -> Result<bool, CredentialsUnavailable> {
        let Some(on_use) = &self.on_use else {
            return Ok(false);
        };
        let missing: Vec<ProviderAccount> = {
            let by_id = self.by_id.read().unwrap_or_else(|p| p.into_inner());
            let disabled = self.disabled.read().unwrap_or_else(|p| p.into_inner());
            let mut seen = HashSet::new();
            ids.into_iter()
                .filter(|id| !by_id.contains_key(*id) && !disabled.contains_key(*id))
                .filter(|id| seen.insert(*id))
                .filter_map(|id| self.configured.get(id).cloned())
                .collect()
        };
        if missing.is_empty() {
            return Ok(false);
        }
        let loaded = load_accounts(missing, &*on_use.secrets).await;
        let any = !loaded.providers.is_empty();
        {
            let mut by_id = self.by_id.write().unwrap_or_else(|p| p.into_inner());
            for p in loaded.providers {
                by_id
                    .entry(p.account.id.clone())
                    .or_insert_with(|| Arc::new(p));
            }
        }
        let mut unavailable = Vec::new();
        let mut disable = loaded.disabled;
        for (id, e) in loaded.failed {
            if is_unavailable(&e) {
                unavailable.push((id, e));
            } else {
                // At a start this fails the cold start; on first use the account is taken out of routing.
                disable.push((id, e));
            }
        }
        for (id, e) in disable {
            log_disabled(&id, &e);
            if let Some(alarm) = &on_use.disabled_alarm {
                (alarm.0)(&id);
            }
            self.disabled
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, e.to_string());
        }
        match unavailable.first() {
            Some((_, e)) => Err(CredentialsUnavailable {
                accounts: unavailable
                    .iter()
                    .map(|(id, _)| id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: e.to_string(),
            }),
            None => Ok(any),
        }
    }

    /// The accounts disabled so far, with why.
    pub fn disabled(&self) -> BTreeMap<ProviderAccountId, String> {
        self.disabled
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The account as this process classifies its answers now: with the operators' code overrides last
    /// applied ([`Providers::apply_controls`]; [`AppState::provider`] refreshes them first), else as
    /// configured.
    pub fn get(&self, id: &ProviderAccountId) -> Option<Arc<Provider>> {
        let runtime = self.runtime.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, p)) = runtime.get(id).and_then(|r| r.in_force.as_ref()) {
            return Some(Arc::clone(p));
        }
        self.base(id)
    }

    /// The account as configured, without the operators' code overrides.
    pub fn base(&self, id: &ProviderAccountId) -> Option<Arc<Provider>> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// The operators' code overrides in force for `id` in this process, and why the stored ones were
    /// refused if they were.
    pub fn codes_in_force(&self, id: &ProviderAccountId) -> CodesInForce {
        let runtime = self.runtime.read().unwrap_or_else(|p| p.into_inner());
        runtime
            .get(id)
            .map(|r| CodesInForce {
                overrides: r
                    .in_force
                    .as_ref()
                    .map(|(o, _)| o.clone())
                    .unwrap_or_default(),
                rejected: r.rejected.clone(),
            })
            .unwrap_or_default()
    }

    /// Brings every loaded account's code table in line with the operators' controls: an account whose
    /// stored `code_overrides` changed is rebuilt with them over its configured codes; one whose overrides
    /// were cleared goes back to its configured table. Overrides that do not read or do not load (a
    /// vocabulary the protocol requires taken away) are logged with the alert `code_overrides_rejected`,
    /// naming the account, and the previous table is kept. Unchanged values cost a comparison.
    pub fn apply_controls(&self, controls: &HashMap<ProviderAccountId, AccountControl>) {
        for base in self.loaded() {
            let id = &base.account.id;
            let stored = controls
                .get(id)
                .and_then(|c| c.code_overrides.clone())
                .unwrap_or(serde_json::Value::Null);
            {
                let runtime = self.runtime.read().unwrap_or_else(|p| p.into_inner());
                match runtime.get(id) {
                    Some(r) if r.seen == stored => continue,
                    None if stored.is_null() => continue,
                    _ => {}
                }
            }
            let built = recharge_providers::codes::parse_overrides(&stored).and_then(|o| {
                if o.is_empty() {
                    return Ok(None);
                }
                base.with_code_overrides(&o)
                    .map(|p| Some((o, Arc::new(p))))
                    .map_err(|e| e.to_string())
            });
            let mut runtime = self.runtime.write().unwrap_or_else(|p| p.into_inner());
            match built {
                Ok(None) => {
                    if runtime.remove(id).is_some_and(|r| r.in_force.is_some()) {
                        tracing::warn!(
                            alert = "code_overrides",
                            provider_account = %id,
                            "operator code overrides cleared; the configured code table is in force"
                        );
                    }
                }
                Ok(Some((overrides, provider))) => {
                    tracing::warn!(
                        alert = "code_overrides",
                        provider_account = %id,
                        overrides = %stored,
                        "operator code overrides in force"
                    );
                    runtime.insert(
                        id.clone(),
                        RuntimeCodes {
                            seen: stored,
                            in_force: Some((overrides, provider)),
                            rejected: None,
                        },
                    );
                }
                Err(why) => {
                    tracing::error!(
                        alert = "code_overrides_rejected",
                        provider_account = %id,
                        reason = %why,
                        "operator code overrides do not load; the previous code table is kept"
                    );
                    let kept = runtime.remove(id).and_then(|r| r.in_force);
                    runtime.insert(
                        id.clone(),
                        RuntimeCodes {
                            seen: stored,
                            in_force: kept,
                            rejected: Some(why),
                        },
                    );
                }
            }
        }
    }

    /// Every configured account, loaded or disabled (the catalog may name a disabled one: routing skips it).
    pub fn ids(&self) -> HashSet<ProviderAccountId> {
        self.configured.keys().cloned().collect()
    }

    /// Every account loaded so far, as configured (without the operators' code overrides: use
    /// [`Providers::get`] to classify answers).
    pub fn loaded(&self) -> Vec<Arc<Provider>> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

impl AccountView for Providers {
    fn capabilities(&self, account: &ProviderAccountId) -> Option<Capabilities> {
        self.base(account).map(|p| p.capabilities())
    }
}

/// How a reconciliation run is paced (`crate::usecases::recon`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReconOptions {
    /// Re-queries per second per provider account (the provider's rate limit is shared with live traffic).
    pub queries_per_second: f64,
    /// At most this many re-queries per account in one run (the rest are counted as skipped).
    pub max_queries: usize,
    /// Stop re-querying after this long (a Lambda's time limit); the report is still written.
    pub requery_budget: Duration,
    /// How many orders are read from the store at once.
    pub batch: usize,
}

impl Default for ReconOptions {
    fn default() -> Self {
        ReconOptions {
            queries_per_second: 10.0,
            max_queries: 20_000,
            requery_budget: Duration::from_secs(600),
            batch: 500,
        }
    }
}

/// Everything the handlers need.
#[derive(Debug)]
pub struct AppState {
    pub store: Arc<dyn OrderStore>,
    pub balances: Arc<dyn BalanceStore>,
    pub secrets: Arc<dyn SecretSource>,
    pub clock: Arc<dyn Clock>,
    pub catalog: Catalog,
    pub providers: Providers,
    pub executor: Executor,
    /// Merchant apps: the seed (`apps.json`) and the operators' records, found on first use (`crate::apps`).
    pub apps: AppDirectory,
    /// Creates and rotates merchant app secrets: the ops function's only (`None` everywhere else).
    pub secret_writer: Option<Arc<dyn SecretWriter>>,
    pub notifier: Arc<dyn Notifier>,
    pub settings: Settings,
    /// The per-order rate limit of the client routes (issue 18), in this process.
    pub client_limiter: crate::limits::Limiter,
    /// Provider queries that unverifiable callbacks may cause, per account and minute (issue 15).
    pub callback_queries: crate::limits::QueryBudget,
    balance_cache: Mutex<Option<(Timestamp, BalanceMap)>>,
    control_cache: Mutex<Option<(Timestamp, ControlMap)>>,
}

/// The operators' runtime control of each account that has one.
pub type ControlMap = Arc<HashMap<ProviderAccountId, AccountControl>>;

/// The loaded accounts as routing must see them now: the operators' switches over the providers' capabilities.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeAccounts<'a> {
    pub providers: &'a Providers,
    pub controls: &'a HashMap<ProviderAccountId, AccountControl>,
}

impl AccountView for RuntimeAccounts<'_> {
    fn capabilities(&self, account: &ProviderAccountId) -> Option<Capabilities> {
        self.providers.capabilities(account)
    }

    fn takes_new_orders(&self, account: &ProviderAccountId) -> Option<bool> {
        self.controls
            .get(account)
            .map(|c| c.mode.takes_new_orders())
    }
}

/// The last known balance of each account, as routing reads it.
pub type BalanceMap = Arc<HashMap<ProviderAccountId, BalanceSnapshot>>;

impl AppState {
    /// The state machine's timing for an account, scaled for the local stack.
    pub fn policy(&self, account: &ProviderAccountId) -> Policy {
        let base = self
            .providers
            .base(account)
            .map(|p| p.policy())
            .unwrap_or_default();
        let scale = self.settings.time_scale.max(1.0);
        if scale == 1.0 {
            return base;
        }
        let s = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() / scale);
        // However fast the local clock runs, the sweep must not call a submission lost while our own HTTP
        // call to the provider may still be waiting for its answer.
        let http_timeout = self
            .providers
            .base(account)
            .map(|p| p.account.limits().call_timeout)
            .unwrap_or_default();
        Policy {
            call_timeout: s(base.call_timeout).max(http_timeout + Duration::from_secs(1)),
            poll_backoff: base.poll_backoff.iter().copied().map(s).collect(),
            not_found_grace: s(base.not_found_grace),
            ..base
        }
    }

    /// The last known balances, cached for `balance_cache_ttl`. A store failure leaves routing without
    /// balance input (logged) rather than refusing orders.
    pub async fn known_balances(&self) -> BalanceMap {
        let now = self.clock.now();
        if let Some((at, cached)) = self
            .balance_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && now.since(*at) < self.settings.balance_cache_ttl
        {
            return cached.clone();
        }
        match self.balances.balances().await {
            Ok(list) => {
                let map = Arc::new(list.into_iter().map(|b| (b.account.clone(), b)).collect());
                *self.balance_cache.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((now, Arc::clone(&map)));
                map
            }
            Err(e) => {
                tracing::warn!(error = %e, "balance snapshots unavailable; routing without them");
                Arc::new(HashMap::new())
            }
        }
    }

    /// The operators' account controls, cached for `control_cache_ttl`. A store failure keeps the last copy
    /// (or none), logged: routing then follows the deployed configuration.
    pub async fn account_controls(&self) -> ControlMap {
        let now = self.clock.now();
        let cached = self
            .control_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((at, map)) = &cached
            && now.since(*at) < self.settings.control_cache_ttl
        {
            return Arc::clone(map);
        }
        match self.balances.account_controls().await {
            Ok(list) => {
                let map: ControlMap =
                    Arc::new(list.into_iter().map(|c| (c.account.clone(), c)).collect());
                self.providers.apply_controls(&map);
                *self.control_cache.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((now, Arc::clone(&map)));
                map
            }
            Err(e) => {
                tracing::warn!(error = %e, "account controls unavailable; using the last known");
                cached.map(|(_, m)| m).unwrap_or_default()
            }
        }
    }

    /// The account as its answers must be classified now: the operators' controls refreshed (cached for
    /// `control_cache_ttl`), so their code overrides are in force (docs/operations.md §3). Every call site that
    /// reads a provider answer (submit, query, probe, verification, callback) takes its provider here.
    ///
    /// Where accounts load on first use, this loads `account` if it is not yet; if Secrets Manager fails,
    /// it stays unloaded (logged) and the call site treats it as not configured: nothing is sent, or the
    /// answer stays Unknown.
    pub async fn provider(&self, account: &ProviderAccountId) -> Option<Arc<Provider>> {
        if let Err(e) = self.ensure_accounts([account]).await {
            tracing::warn!(provider_account = %account, error = %e, "provider account not loaded");
        }
        self.account_controls().await;
        self.providers.get(account)
    }

    /// Loads those of `ids` not loaded yet, where accounts load on first use ([`Providers::ensure`]), with
    /// the operators' code overrides applied to them before any answer is classified.
    pub async fn ensure_accounts<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a ProviderAccountId>,
    ) -> Result<(), CredentialsUnavailable> {
        if self.providers.ensure(ids).await? {
            let controls = self.account_controls().await;
            self.providers.apply_controls(&controls);
        }
        Ok(())
    }

    /// Drops the cached controls (after this process changed one).
    pub fn forget_controls(&self) {
        *self.control_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// An account's effective settings: the catalog's, with the operators' control over them.
    pub fn effective_settings(
        &self,
        controls: &HashMap<ProviderAccountId, AccountControl>,
        account: &ProviderAccountId,
    ) -> crate::catalog::AccountSettings {
        let mut settings = self.catalog.settings(account);
        if let Some(c) = controls.get(account) {
            settings.enabled = c.mode.takes_new_orders();
            if c.low_balance_fen.is_some() {
                settings.low_balance_fen = c.low_balance_fen;
            }
        }
        settings
    }

    /// Drops the cached balances (after a balance check wrote new ones in this process).
    pub fn forget_balances(&self) {
        *self.balance_cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// `d` divided by the local stack's time scale (unchanged in production).
    pub fn scaled(&self, d: Duration) -> Duration {
        let scale = self.settings.time_scale.max(1.0);
        Duration::from_secs_f64(d.as_secs_f64() / scale)
    }

    /// The escalation limit of a new order of this kind (docs/operations.md §2), scaled in the local stack.
    pub fn escalate_after(&self, kind: crate::catalog::ProductKind) -> Duration {
        self.scaled(kind.escalate_after())
    }

    /// The escalation limit a new order routed to `account` gets: the operator's for the account, else its
    /// product kind's (docs/operations.md §2), scaled in the local stack.
    pub fn escalate_after_on(
        &self,
        controls: &HashMap<ProviderAccountId, AccountControl>,
        account: &ProviderAccountId,
        kind: crate::catalog::ProductKind,
    ) -> Duration {
        controls
            .get(account)
            .and_then(|c| c.escalate_after_secs)
            .map(|secs| self.scaled(Duration::from_secs(secs)))
            .unwrap_or_else(|| self.escalate_after(kind))
    }

    pub fn callback_url(&self, account: &ProviderAccountId) -> String {
        format!(
            "{}/v1/callbacks/{account}",
            self.settings.public_base_url.trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recharge_core::store::AccountMode;
    use recharge_providers::{Meaning, Phase};
    use serde_json::json;

    fn suka(id: &str) -> Provider {
        let account = ProviderAccount::from_json(&format!(
            r#"{{"id":"{id}","protocol":"suka-xml","secret_name":"s",
                "endpoints":{{"submit":"http://h/a","query":"http://h/b"}},
                "codes":{{"submit":{{"2001":"unknown","3001":"refusal"}}}}}}"#
        ))
        .unwrap();
        Provider::load(account, r#"{"userid":"1","key":"k"}"#).unwrap()
    }

    fn control(id: &str, overrides: Option<serde_json::Value>) -> AccountControl {
        AccountControl {
            account: ProviderAccountId::parse(id).unwrap(),
            mode: AccountMode::Enabled,
            low_balance_fen: None,
            escalate_after_secs: None,
            code_overrides: overrides,
            updated_at: Timestamp::from_millis(0),
            updated_by: "test".into(),
        }
    }

    fn controls(list: Vec<AccountControl>) -> HashMap<ProviderAccountId, AccountControl> {
        list.into_iter().map(|c| (c.account.clone(), c)).collect()
    }

    fn meaning(p: &Providers, id: &ProviderAccountId, phase: Phase, code: &str) -> Option<Meaning> {
        p.get(id)
            .unwrap()
            .account
            .codes
            .get(&phase)
            .and_then(|c| c.get(code).copied())
    }

    #[test]
    fn operator_overrides_take_effect_over_the_config_and_a_bad_one_keeps_the_previous_table() {
        let providers = Providers::from_loaded(vec![suka("suka-a"), suka("suka-b")]).unwrap();
        let a = ProviderAccountId::parse("suka-a").unwrap();
        let b = ProviderAccountId::parse("suka-b").unwrap();
        assert_eq!(meaning(&providers, &a, Phase::Submit, "7777"), None);

        // Set: the operator's code on top, the account's config under it, the other account untouched.
        providers.apply_controls(&controls(vec![control(
            "suka-a",
            Some(json!({"submit": {"7777": "refusal", "3001": "failure_final"}})),
        )]));
        assert_eq!(
            meaning(&providers, &a, Phase::Submit, "7777"),
            Some(Meaning::Refusal)
        );
        assert_eq!(
            meaning(&providers, &a, Phase::Submit, "3001"),
            Some(Meaning::FailureFinal),
            "the operator over the account config"
        );
        assert_eq!(
            meaning(&providers, &a, Phase::Submit, "2001"),
            Some(Meaning::Unknown),
            "the account config where the operator says nothing"
        );
        assert_eq!(meaning(&providers, &b, Phase::Submit, "7777"), None);
        assert!(
            !providers.base(&a).unwrap().account.codes[&Phase::Submit].contains_key("7777"),
            "the base layer is as configured"
        );
        let in_force = providers.codes_in_force(&a);
        assert_eq!(in_force.overrides[&Phase::Submit]["7777"], Meaning::Refusal);
        assert_eq!(in_force.rejected, None);
        // The same value again is not rebuilt: the same Arc comes back.
        let before = providers.get(&a).unwrap();
        providers.apply_controls(&controls(vec![control(
            "suka-a",
            Some(json!({"submit": {"7777": "refusal", "3001": "failure_final"}})),
        )]));
        assert!(Arc::ptr_eq(&before, &providers.get(&a).unwrap()));

        // A stored value that does not read (written around the ops route) is refused, named, and the
        // previous table stays in force.
        providers.apply_controls(&controls(vec![control(
            "suka-a",
            Some(json!({"submit": {"7777": "refused"}})),
        )]));
        assert_eq!(
            meaning(&providers, &a, Phase::Submit, "7777"),
            Some(Meaning::Refusal)
        );
        let in_force = providers.codes_in_force(&a);
        assert!(
            in_force
                .rejected
                .as_deref()
                .is_some_and(|r| r.contains("submit.7777")),
            "{in_force:?}"
        );

        // Cleared (the control gone, or its overrides null): back to the configured table.
        providers.apply_controls(&controls(vec![control("suka-a", None)]));
        assert_eq!(meaning(&providers, &a, Phase::Submit, "7777"), None);
        assert_eq!(providers.codes_in_force(&a), CodesInForce::default());
        providers.apply_controls(&controls(vec![control(
            "suka-a",
            Some(json!({"query": {"x9": "not_found"}})),
        )]));
        assert_eq!(
            meaning(&providers, &a, Phase::Query, "x9"),
            Some(Meaning::NotFound)
        );
        providers.apply_controls(&HashMap::new());
        assert_eq!(meaning(&providers, &a, Phase::Query, "x9"), None);
    }

    /// Secrets in memory that count the batch reads and can be made to fail as an outage does.
    #[derive(Debug, Default)]
    struct Flaky {
        values: recharge_core::secrets::InMemorySecretSource,
        batches: Mutex<Vec<Vec<String>>>,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl SecretSource for Flaky {
        async fn fetch(
            &self,
            name: &str,
        ) -> Result<recharge_core::secrets::SecretVersions, SecretError> {
            self.values.fetch(name).await
        }

        async fn fetch_current_many(
            &self,
            names: &[String],
        ) -> Vec<Result<secrecy::SecretString, SecretError>> {
            self.batches.lock().unwrap().push(names.to_vec());
            let mut out = Vec::new();
            for name in names {
                out.push(if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                    Err(SecretError::Unavailable {
                        name: name.clone(),
                        source: "connection refused".into(),
                    })
                } else {
                    self.values.fetch(name).await.map(|v| v.current)
                });
            }
            out
        }
    }

    /// Secrets holding account a's credentials.
    fn flaky_with_a() -> Arc<Flaky> {
        let secrets = Arc::new(Flaky::default());
        secrets
            .values
            .put("secret-a", r#"{"userid":"1","key":"k"}"#);
        secrets
    }

    fn suka_account(id: &str) -> ProviderAccount {
        ProviderAccount::from_json(&format!(
            r#"{{"id":"{id}","protocol":"suka-xml","secret_name":"secret-{id}",
                "endpoints":{{"submit":"http://h/a","query":"http://h/b"}}}}"#
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn accounts_loaded_on_use_are_read_once_in_one_batch_per_request_and_a_bad_one_is_disabled()
     {
        let secrets = flaky_with_a();
        secrets
            .values
            .put("secret-b", r#"{"userid":"2","key":"k"}"#);
        secrets.values.put("secret-c", "not json {");
        let alarmed = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = Arc::clone(&alarmed);
        let loading = ProviderLoading::OnUse {
            secrets: Arc::clone(&secrets) as Arc<dyn SecretSource>,
            disabled_alarm: Some(DisabledAlarm(Arc::new(move |id| {
                seen.lock().unwrap().push(id.to_string())
            }))),
        };
        let ids: Vec<ProviderAccountId> = ["a", "b", "c", "d"]
            .iter()
            .map(|i| ProviderAccountId::parse(i).unwrap())
            .collect();
        let providers = Providers::start(["a", "b", "c", "d"].map(suka_account).to_vec(), loading)
            .await
            .unwrap();
        // The start reads nothing; routing sees no account until it is loaded.
        assert!(secrets.batches.lock().unwrap().is_empty());
        assert!(providers.capabilities(&ids[0]).is_none());
        assert_eq!(providers.ids().len(), 4);

        assert!(providers.ensure([&ids[0]]).await.unwrap());
        assert!(providers.capabilities(&ids[0]).is_some());
        // Loaded accounts are not read again; the rest of a request's candidates come in one batch.
        assert!(!providers.ensure([&ids[0]]).await.unwrap());
        assert!(providers.ensure(&ids[..3]).await.unwrap());
        assert_eq!(
            *secrets.batches.lock().unwrap(),
            [
                vec!["secret-a".to_owned()],
                vec!["secret-b".to_owned(), "secret-c".to_owned()]
            ]
        );
        let loaded: Vec<String> = providers
            .loaded()
            .iter()
            .map(|p| p.account.id.to_string())
            .collect();
        assert_eq!(loaded, ["a", "b"]);
        // The malformed secret disables its account (alarm told, no value in the reason), once.
        let disabled = providers.disabled();
        assert_eq!(
            disabled.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert!(
            !disabled[&ids[2]].contains("not json"),
            "{}",
            disabled[&ids[2]]
        );
        assert_eq!(*alarmed.lock().unwrap(), ["c"]);
        assert!(!providers.ensure(&ids[..3]).await.unwrap());
        assert_eq!(secrets.batches.lock().unwrap().len(), 2);

        // An outage is not the account's fault: an error for this request, nothing disabled, and the next
        // request loads it.
        secrets
            .values
            .put("secret-d", r#"{"userid":"4","key":"k"}"#);
        secrets
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let err = providers.ensure([&ids[3]]).await.unwrap_err();
        assert_eq!(err.accounts, "d");
        assert!(!providers.disabled().contains_key(&ids[3]));
        assert!(providers.base(&ids[3]).is_none());
        secrets
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(providers.ensure([&ids[3]]).await.unwrap());
        assert!(providers.base(&ids[3]).is_some());
        assert_eq!(*alarmed.lock().unwrap(), ["c"]);
    }

    #[tokio::test]
    async fn accounts_loaded_at_start_or_never_load_nothing_on_use() {
        let secrets = flaky_with_a();
        let a = ProviderAccountId::parse("a").unwrap();
        let at_start = Providers::start(
            vec![suka_account("a")],
            ProviderLoading::AtStart(Arc::clone(&secrets) as Arc<dyn SecretSource>),
        )
        .await
        .unwrap();
        assert!(at_start.base(&a).is_some());
        assert!(!at_start.ensure([&a]).await.unwrap());
        let never = Providers::start(vec![suka_account("a")], ProviderLoading::Never)
            .await
            .unwrap();
        assert!(!never.ensure([&a]).await.unwrap());
        assert!(never.base(&a).is_none());
        assert_eq!(secrets.batches.lock().unwrap().len(), 1);
    }

    /// A state whose accounts load on use from `secrets`, over an in-memory store.
    async fn on_use_state(
        secrets: &Arc<Flaky>,
        accounts: Vec<ProviderAccount>,
        catalog: &str,
    ) -> (AppState, Arc<recharge_core::memory::InMemoryOrderStore>) {
        let store = Arc::new(recharge_core::memory::InMemoryOrderStore::new(1));
        let ports = Ports {
            store: Arc::clone(&store) as Arc<dyn OrderStore>,
            balances: Arc::clone(&store) as Arc<dyn BalanceStore>,
            apps: Arc::clone(&store) as Arc<dyn recharge_core::store::AppStore>,
            secrets: Arc::clone(secrets) as Arc<dyn SecretSource>,
            secret_writer: None,
            clock: Arc::new(recharge_core::time::SystemClock),
        };
        let config = StateConfig {
            accounts,
            providers: ProviderLoading::OnUse {
                secrets: Arc::clone(secrets) as Arc<dyn SecretSource>,
                disabled_alarm: None,
            },
            catalog_text: catalog.into(),
            apps: Vec::new(),
            merchant_secret_prefix: "m/".into(),
            settings: Settings::production("https://gw.example.com"),
            notify_timeout: Duration::from_secs(5),
            notify_claim_margin: Duration::from_secs(10),
        };
        (AppState::assemble(ports, config).await.unwrap(), store)
    }

    #[tokio::test]
    async fn an_account_loaded_on_use_classifies_with_the_operators_overrides_from_its_first_answer()
     {
        let secrets = flaky_with_a();
        let (state, store) =
            on_use_state(&secrets, vec![suka_account("a")], r#"{"products":{}}"#).await;
        let a = ProviderAccountId::parse("a").unwrap();
        store
            .put_account_control(&control("a", Some(json!({"submit": {"9999": "refusal"}}))))
            .await
            .unwrap();
        // The controls were read (and cached) before the account was loaded, as a warm process would have.
        state.account_controls().await;
        assert!(state.providers.base(&a).is_none());
        let p = state.provider(&a).await.unwrap();
        assert_eq!(
            p.account
                .codes
                .get(&Phase::Submit)
                .and_then(|c| c.get("9999").copied()),
            Some(Meaning::Refusal)
        );
    }

    #[tokio::test]
    async fn a_create_whose_candidates_cannot_be_loaded_is_a_503_that_writes_nothing() {
        let secrets = flaky_with_a();
        // Port 9 on loopback: closed, so the submit is a connection never made (a refusal), quickly.
        let account = ProviderAccount::from_json(
            r#"{"id":"a","protocol":"suka-xml","secret_name":"secret-a",
                "endpoints":{"submit":"http://127.0.0.1:9/a","query":"http://127.0.0.1:9/b"}}"#,
        )
        .unwrap();
        let catalog = r#"{"products":{"mobile.fast.100":{"kind":"mobile_fast","name":"x","face_value_fen":10000,
            "price_fen":9980,"routes":[{"provider_account":"a","provider_product":"100","cost_fen":9850}]}}}"#;
        let (state, store) = on_use_state(&secrets, vec![account], catalog).await;
        let caller = crate::apps::Caller {
            app: recharge_core::AppId::parse("demo").unwrap(),
            role: crate::apps::Role::Merchant,
            client_ttl: Duration::from_secs(600),
        };
        let body = br#"{"merchant_order_no":"N1","product_code":"mobile.fast.100","account":"13800138000"}"#;
        secrets
            .down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let err = crate::usecases::orders::create_order(&state, &caller, body)
            .await
            .unwrap_err();
        assert!(matches!(err, crate::ApiError::Unavailable), "{err:?}");
        let id = recharge_core::OrderId::derive(
            &caller.app,
            &recharge_core::MerchantOrderNo::parse("N1").unwrap(),
        );
        assert!(store.get(&id).await.unwrap().is_none());
        assert!(state.providers.disabled().is_empty());
        // Secrets Manager back: the same request creates the order.
        secrets
            .down
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let r = crate::usecases::orders::create_order(&state, &caller, body)
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert!(store.get(&id).await.unwrap().is_some());
    }
}
