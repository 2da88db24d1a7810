//! The one assembly of an [`AppState`]: the Lambda cold start (`recharge-lambda`'s bootstrap) and the local
//! stack (`recharge-local`) hand it their ports and configuration, and it builds the providers, the catalog,
//! the app directory, the executor and the notifier by the same rules. What only one of them does (the
//! Lambda metrics decorator around the store, the local simulators and secrets) stays with it.

use super::{AppState, BootError, ProviderLoading, Providers, Settings};
use crate::apps::AppDirectory;
use crate::apps::{AppConfig, Apps};
use crate::catalog::Catalog;
use crate::usecases::notify::HttpNotifier;
use recharge_core::Clock;
use recharge_core::secrets::{SecretSource, SecretWriter};
use recharge_core::store::{AppStore, BalanceStore, OrderStore};
use recharge_providers::{Executor, ProviderAccount};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The ports an `AppState` is built over (the AWS ones in production, in-memory ones in tests and locally).
#[derive(Debug)]
pub struct Ports {
    pub store: Arc<dyn OrderStore>,
    pub balances: Arc<dyn BalanceStore>,
    /// The operators' merchant apps (the orders table's config partition in production).
    pub apps: Arc<dyn AppStore>,
    pub secrets: Arc<dyn SecretSource>,
    /// Creates and rotates app secrets: the ops function's and the local stack's only.
    pub secret_writer: Option<Arc<dyn SecretWriter>>,
    pub clock: Arc<dyn Clock>,
}

/// Everything besides the ports that an `AppState` is built from.
#[derive(Debug)]
pub struct StateConfig {
    /// The provider accounts (no secrets, secret names only).
    pub accounts: Vec<ProviderAccount>,
    /// When and where the accounts' credentials are read (and their keys validated): at the start, on
    /// first use, or never (order-status never calls a provider).
    pub providers: ProviderLoading,
    /// The product catalog JSON, checked against the accounts.
    pub catalog_text: String,
    /// The deployed apps (`apps.json`), the seed of the app directory.
    pub apps: Vec<AppConfig>,
    /// An app's secret is `<prefix><id>` unless its config names one.
    pub merchant_secret_prefix: String,
    pub settings: Settings,
    /// The timeout of one merchant notification.
    pub notify_timeout: Duration,
    /// What a claim on a notification must outlast beyond that timeout: the writes around the try
    /// (docs/state-machine.md §5). The lease is raised to `notify_timeout + notify_claim_margin` if shorter.
    pub notify_claim_margin: Duration,
}

impl AppState {
    /// Builds the state: loads the provider accounts as `providers` says (an account whose secret is missing
    /// or malformed is disabled, see [`Providers::load`] and [`Providers::ensure`]), checks the catalog
    /// against them, seeds the app directory, builds the provider executor and the merchant notifier, and
    /// makes the notification lease outlast the notifier's timeout.
    pub async fn assemble(ports: Ports, config: StateConfig) -> Result<AppState, BootError> {
        let StateConfig {
            accounts,
            providers,
            catalog_text,
            apps,
            merchant_secret_prefix,
            mut settings,
            notify_timeout,
            notify_claim_margin,
        } = config;
        let providers = Providers::start(accounts, providers).await?;
        let catalog = Catalog::from_json(&catalog_text, &providers.ids())?;
        let executor = Executor::new().map_err(|e| BootError::HttpClient(e.to_string()))?;
        // A claim on a notification must outlast the try it covers (docs/state-machine.md §5).
        settings.notify_lease = settings
            .notify_lease
            .max(notify_timeout.saturating_add(notify_claim_margin));
        let notifier = HttpNotifier::new(notify_timeout, settings.local_mode)
            .map_err(|e| BootError::HttpClient(e.to_string()))?;
        let apps = AppDirectory::new(
            Apps::new(apps, merchant_secret_prefix),
            ports.apps,
            Arc::clone(&ports.secrets),
            Arc::clone(&ports.clock),
            settings.control_cache_ttl,
        );
        Ok(AppState {
            store: ports.store,
            balances: ports.balances,
            secrets: ports.secrets,
            clock: ports.clock,
            catalog,
            providers,
            executor,
            apps,
            secret_writer: ports.secret_writer,
            notifier: Arc::new(notifier),
            settings,
            client_limiter: crate::limits::Limiter::default(),
            callback_queries: crate::limits::QueryBudget::default(),
            balance_cache: Mutex::new(None),
            control_cache: Mutex::new(None),
        })
    }
}
