//! Merchant apps at run time (docs/operations.md §9): the operators create, disable, enable and
//! rotate apps through `/ops/apps` with no deploy; `apps.json` stays the seed.
//!
//! Every function finds an app **on first use**: one `GetItem` of its record (`pk = CONFIG`, `sk = APP#<id>`),
//! falling back to the seed when the operators never wrote one, cached for `ttl` (30 s in AWS, 1 s locally;
//! unknown ids are cached too, so a flood of made-up ids costs one read per id and TTL). A disabled app is
//! therefore refused everywhere within a minute. Its secret is read on first use as well (through the
//! in-process secret cache), so a cold start makes no per-app AWS call whatever the number of apps (issue 16).
//!
//! Rotation: the record's `secret_version` grows with every rotation; a function that read the secret for
//! another version reads it again, bypassing its secret cache. The previous secret (Secrets Manager's
//! `AWSPREVIOUS`) verifies only until the record's `previous_secret_valid_until`. A signature that matches no
//! key makes the directory look again (app record and secret, at most once per app per
//! [`REFRESH_ON_MISMATCH`]), so a merchant that switches to the new secret at once is not refused while a cache
//! still holds the old one.

use crate::http::client_secret::{DEFAULT_TTL, TTL_RANGE_SECS};
use recharge_core::secrets::{
    MerchantSecret, Rotating, SecretError, SecretSource, SecretVersions, parse_json,
};
use recharge_core::store::{AppRecord, AppStatus, AppStore, StoreError};
use recharge_core::{AppId, Clock, Timestamp};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What an app may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Merchant,
    /// May also read provider balances.
    Admin,
}

/// One merchant application (not secret): its id, role and where its secret lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub id: AppId,
    pub role: Role,
    /// Secret name; default `<RECHARGE_MERCHANT_SECRET_PREFIX><id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Client secrets and browser origins of this app's end-user pages (issue 18; `crate::usecases::client`, configured by [`ClientAccess`]).
    #[serde(default)]
    pub client: ClientAccess,
}

/// An app's client settings (`apps.json`: `"client": {"secret_ttl_secs": 86400, "allowed_origins": [...]}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAccess {
    /// Lifetime of this app's client secrets (1 s to 30 days; default 24 h).
    #[serde(default = "default_ttl", deserialize_with = "ttl_secs")]
    pub secret_ttl_secs: u64,
    /// Origins of the app's H5 pages (`https://h5.example.com`); empty: no browser page may call.
    #[serde(default)]
    pub allowed_origins: Vec<Origin>,
}

impl Default for ClientAccess {
    fn default() -> Self {
        ClientAccess {
            secret_ttl_secs: default_ttl(),
            allowed_origins: Vec::new(),
        }
    }
}

impl ClientAccess {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.secret_ttl_secs)
    }

    pub fn allows(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|o| o.0 == origin)
    }
}

fn default_ttl() -> u64 {
    DEFAULT_TTL.as_secs()
}

fn ttl_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = u64::deserialize(d)?;
    if !TTL_RANGE_SECS.contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "secret_ttl_secs must be from {} to {}",
            TTL_RANGE_SECS.start(),
            TTL_RANGE_SECS.end()
        )));
    }
    Ok(n)
}

/// A web origin as browsers send it: `https://host[:port]`, lowercase, no path. `http` only for loopback
/// (a local H5 page under test).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub struct Origin(String);

impl Origin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Origin {
    type Error = String;

    fn try_from(value: String) -> Result<Origin, String> {
        let bad =
            || format!("{value:?} is not an origin (https://host[:port], http only for loopback)");
        let (scheme, rest) = value.split_once("://").ok_or_else(bad)?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p))
                if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) =>
            {
                (h, Some(p))
            }
            Some(_) => return Err(bad()),
            None => (rest, None),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        let loopback = host == "127.0.0.1" || host == "localhost";
        let scheme_ok = scheme == "https" || (scheme == "http" && loopback);
        if !host_ok || !scheme_ok || port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return Err(bad());
        }
        Ok(Origin(value))
    }
}

/// An authenticated caller: the app a use case acts for (`crate::http::auth::authenticate` makes one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub app: AppId,
    pub role: Role,
    /// Lifetime of the client secrets of this app's orders (issue 18).
    pub client_ttl: std::time::Duration,
}

/// The deployed apps (`apps.json`): the seed of the app directory (`crate::apps`).
#[derive(Debug, Clone, Default)]
pub struct Apps {
    by_id: HashMap<AppId, AppConfig>,
    secret_prefix: String,
}

impl Apps {
    pub fn new(apps: Vec<AppConfig>, secret_prefix: impl Into<String>) -> Apps {
        Apps {
            by_id: apps.into_iter().map(|a| (a.id.clone(), a)).collect(),
            secret_prefix: secret_prefix.into(),
        }
    }

    pub fn get(&self, id: &AppId) -> Option<&AppConfig> {
        self.by_id.get(id)
    }

    pub fn secret_name(&self, app: &AppConfig) -> String {
        app.secret_name
            .clone()
            .unwrap_or_else(|| format!("{}{}", self.secret_prefix, app.id))
    }

    pub fn ids(&self) -> impl Iterator<Item = &AppId> {
        self.by_id.keys()
    }

    /// Secret names default to this prefix and the app id.
    pub fn secret_prefix(&self) -> &str {
        &self.secret_prefix
    }
}

/// How often a signature that matches no key may make the directory read an app again.
pub const REFRESH_ON_MISMATCH: Duration = Duration::from_secs(10);
/// Cached lookups are dropped wholesale beyond this many ids (made-up app ids must not grow memory forever).
const MAX_CACHED: usize = 10_000;

/// Until when an app's previous secret verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousKey {
    /// A seed app the operators never changed: Secrets Manager's `AWSPREVIOUS` verifies as long as it exists
    /// (rotations by `scripts/create-secrets`, docs/deploy.md).
    WhileItExists,
    /// Rotated through the ops API: until this time.
    Until(Timestamp),
    /// Never rotated through the ops API since its record was written: no previous key.
    Never,
}

/// One app as a function sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub config: AppConfig,
    pub status: AppStatus,
    pub secret_name: String,
    pub secret_version: u64,
    pub previous: PreviousKey,
    /// The operators' record, if any (`None`: the seed's app as deployed).
    pub record: Option<AppRecord>,
}

impl App {
    pub fn id(&self) -> &AppId {
        &self.config.id
    }

    /// A seed app the operators never changed.
    pub fn of_seed(config: &AppConfig, seed: &Apps) -> App {
        App {
            secret_name: seed.secret_name(config),
            config: config.clone(),
            status: AppStatus::Enabled,
            secret_version: 0,
            previous: PreviousKey::WhileItExists,
            record: None,
        }
    }

    /// The app a record describes; `None` if its configuration does not parse (logged).
    pub fn of_record(record: &AppRecord, seed: &Apps) -> Option<App> {
        let config: AppConfig = match serde_json::from_value(record.config.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(app = %record.app, error = %e, "unreadable app record: the app is unknown");
                return None;
            }
        };
        Some(App {
            secret_name: seed.secret_name(&config),
            config,
            status: record.status,
            secret_version: record.secret_version,
            previous: record
                .previous_secret_valid_until
                .map_or(PreviousKey::Never, PreviousKey::Until),
            record: Some(record.clone()),
        })
    }
}

/// What a function knows about one app id, and since when.
#[derive(Debug, Clone)]
struct Cached {
    at: Timestamp,
    app: Option<Arc<App>>,
}

/// Which secret version this process last read an app's secret for, and when it last read it bypassing the cache.
#[derive(Debug, Clone, Copy)]
struct KeyRead {
    version: u64,
    fresh_at: Option<Timestamp>,
}

/// The apps of the seed and of the table, read on first use through a short cache.
#[derive(Debug)]
pub struct AppDirectory {
    seed: Apps,
    store: Arc<dyn AppStore>,
    secrets: Arc<dyn SecretSource>,
    clock: Arc<dyn Clock>,
    ttl: Duration,
    apps: Mutex<HashMap<AppId, Cached>>,
    keys: Mutex<HashMap<AppId, KeyRead>>,
    /// Every usable app, for the client routes' CORS check (which app an origin belongs to is not known
    /// before the order is read): one `Query` of the config partition per TTL, on those routes only.
    all: Mutex<Option<(Timestamp, Arc<Vec<AppConfig>>)>>,
}

impl AppDirectory {
    pub fn new(
        seed: Apps,
        store: Arc<dyn AppStore>,
        secrets: Arc<dyn SecretSource>,
        clock: Arc<dyn Clock>,
        ttl: Duration,
    ) -> AppDirectory {
        AppDirectory {
            seed,
            store,
            secrets,
            clock,
            ttl,
            apps: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            all: Mutex::new(None),
        }
    }

    /// The deployed `apps.json`.
    pub fn seed(&self) -> &Apps {
        &self.seed
    }

    pub fn store(&self) -> &Arc<dyn AppStore> {
        &self.store
    }

    /// The app `id` as it stands now (cached for the TTL): its record if the operators wrote one, else the
    /// seed's. `None`: no such app, or one still being created. Round trips: 1 `GetItem` on a cache miss, 0
    /// otherwise. If the store fails, a cached copy is served however old; without one the error is returned.
    pub async fn get(&self, id: &AppId) -> Result<Option<Arc<App>>, StoreError> {
        let now = self.clock.now();
        let cached = self.lock_apps().get(id).cloned();
        if let Some(c) = &cached
            && now.since(c.at) < self.ttl
        {
            return Ok(c.app.clone());
        }
        self.read(id, now, cached).await
    }

    async fn read(
        &self,
        id: &AppId,
        now: Timestamp,
        cached: Option<Cached>,
    ) -> Result<Option<Arc<App>>, StoreError> {
        let app = match self.store.get_app(id).await {
            Ok(Some(record)) => match record.status {
                AppStatus::Pending => None,
                AppStatus::Enabled | AppStatus::Disabled => {
                    App::of_record(&record, &self.seed).map(Arc::new)
                }
            },
            Ok(None) => self
                .seed
                .get(id)
                .map(|c| Arc::new(App::of_seed(c, &self.seed))),
            Err(e) => {
                return match cached {
                    Some(c) => {
                        tracing::warn!(app = %id, error = %e, "app store unavailable; using the cached app");
                        Ok(c.app)
                    }
                    None => Err(e),
                };
            }
        };
        let mut apps = self.lock_apps();
        if apps.len() >= MAX_CACHED {
            apps.clear();
        }
        apps.insert(
            id.clone(),
            Cached {
                at: now,
                app: app.clone(),
            },
        );
        Ok(app)
    }

    /// The keys that verify `app`'s requests now: the current secret, and the previous one while its grace
    /// period lasts. Round trips: none when the secret cache holds this secret version; else one read
    /// (Secrets Manager: 2 `GetSecretValue`, current and `AWSPREVIOUS`).
    pub async fn keys(&self, app: &App) -> Result<Rotating<MerchantSecret>, SecretError> {
        let seen = self.lock_keys().get(app.id()).copied();
        let versions = match seen {
            Some(k) if k.version == app.secret_version => {
                self.secrets.fetch(&app.secret_name).await?
            }
            // First use in this process: whatever the secret cache holds is what this process read.
            None => self.secrets.fetch(&app.secret_name).await?,
            Some(_) => self.fresh(app).await?,
        };
        self.lock_keys()
            .entry(app.id().clone())
            .and_modify(|k| k.version = app.secret_version)
            .or_insert(KeyRead {
                version: app.secret_version,
                fresh_at: None,
            });
        self.usable(app, &versions)
    }

    async fn fresh(&self, app: &App) -> Result<SecretVersions, SecretError> {
        let versions = self.secrets.fetch_fresh(&app.secret_name).await?;
        let now = self.clock.now();
        self.lock_keys().insert(
            app.id().clone(),
            KeyRead {
                version: app.secret_version,
                fresh_at: Some(now),
            },
        );
        Ok(versions)
    }

    fn usable(
        &self,
        app: &App,
        versions: &SecretVersions,
    ) -> Result<Rotating<MerchantSecret>, SecretError> {
        let mut keys = parse_json::<MerchantSecret>(&app.secret_name, versions)?;
        let previous_ok = match app.previous {
            PreviousKey::WhileItExists => true,
            PreviousKey::Until(t) => self.clock.now() < t,
            PreviousKey::Never => false,
        };
        if !previous_ok {
            keys.previous = None;
        }
        Ok(keys)
    }

    /// After a signature matched none of `app`'s keys: the app and its secret read again, bypassing every
    /// cache, if this process has not done so for this app within [`REFRESH_ON_MISMATCH`]. `None`: not
    /// refreshed (too soon), or the app is gone. Round trips: 1 `GetItem` + 1 secret read.
    pub async fn refreshed(
        &self,
        app: &App,
    ) -> Result<Option<(Arc<App>, Rotating<MerchantSecret>)>, crate::ApiError> {
        let now = self.clock.now();
        let last = self.lock_keys().get(app.id()).and_then(|k| k.fresh_at);
        if last.is_some_and(|t| now.since(t) < REFRESH_ON_MISMATCH) {
            return Ok(None);
        }
        let Some(again) = self.read(app.id(), now, None).await? else {
            return Ok(None);
        };
        let versions = self.fresh(&again).await.map_err(secret_error(app.id()))?;
        let keys = self
            .usable(&again, &versions)
            .map_err(secret_error(app.id()))?;
        Ok(Some((again, keys)))
    }

    /// Whether any usable app lists `origin` for its H5 pages (the client routes' CORS). Round trips: 1
    /// `Query` of the config partition per TTL; a store failure answers from the last copy, or the seed.
    pub async fn any_allows_origin(&self, origin: &str) -> bool {
        let now = self.clock.now();
        let cached = self.all.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let all = match cached {
            Some((at, all)) if now.since(at) < self.ttl => all,
            stale => match self.list().await {
                Ok(list) => {
                    let configs: Arc<Vec<AppConfig>> = Arc::new(
                        list.into_iter()
                            .filter(|a| a.status == AppStatus::Enabled)
                            .map(|a| a.config)
                            .collect(),
                    );
                    *self.all.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((now, Arc::clone(&configs)));
                    configs
                }
                Err(e) => {
                    tracing::warn!(error = %e, "app store unavailable; CORS from the last known apps");
                    stale.map(|(_, a)| a).unwrap_or_else(|| {
                        Arc::new(
                            self.seed
                                .ids()
                                .filter_map(|id| self.seed.get(id))
                                .cloned()
                                .collect(),
                        )
                    })
                }
            },
        };
        all.iter().any(|a| a.client.allows(origin))
    }

    /// Every app: the table's records (pending ones included, as the operators see them) and the seed's apps
    /// without one, ordered by id. Round trips: 1 `Query` per page of the config partition.
    pub async fn list(&self) -> Result<Vec<App>, StoreError> {
        let records = self.store.list_apps().await?;
        let mut by_id: std::collections::BTreeMap<AppId, App> = self
            .seed
            .ids()
            .filter_map(|id| self.seed.get(id))
            .map(|c| (c.id.clone(), App::of_seed(c, &self.seed)))
            .collect();
        for r in &records {
            if let Some(app) = App::of_record(r, &self.seed) {
                by_id.insert(r.app.clone(), app);
            }
        }
        Ok(by_id.into_values().collect())
    }

    /// Drops what this process cached about `id` (after it changed the app itself).
    pub fn forget(&self, id: &AppId) {
        self.lock_apps().remove(id);
        *self.all.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn lock_apps(&self) -> std::sync::MutexGuard<'_, HashMap<AppId, Cached>> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<AppId, KeyRead>> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A merchant secret that cannot be read: 503 when the store is down (retry), else 500 (fix the secret).
pub fn secret_error(app: &AppId) -> impl Fn(SecretError) -> crate::ApiError + '_ {
    move |e| match e {
        SecretError::Unavailable { .. } => {
            tracing::error!(app = %app, error = %e, "merchant secret unavailable");
            crate::ApiError::Unavailable
        }
        SecretError::NotFound(_) | SecretError::Malformed { .. } => {
            tracing::error!(app = %app, error = %e, "merchant secret missing or malformed");
            crate::ApiError::Internal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Role;
    use super::*;
    use recharge_core::ManualClock;
    use recharge_core::memory::InMemoryOrderStore;
    use recharge_core::secrets::InMemorySecretSource;
    use secrecy::ExposeSecret;

    const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn setup() -> (
        AppDirectory,
        Arc<InMemoryOrderStore>,
        Arc<InMemorySecretSource>,
        ManualClock,
    ) {
        let seed = Apps::new(
            vec![AppConfig {
                id: AppId::parse("demo").unwrap(),
                role: Role::Merchant,
                secret_name: None,
                client: Default::default(),
            }],
            "m/",
        );
        let store = Arc::new(InMemoryOrderStore::new(4));
        let secrets = Arc::new(InMemorySecretSource::new());
        secrets.put("m/demo", r#"{"app_secret":"s1"}"#);
        let clock = ManualClock::new(T0);
        let dir = AppDirectory::new(
            seed,
            store.clone(),
            secrets.clone(),
            Arc::new(clock.clone()),
            Duration::from_secs(30),
        );
        (dir, store, secrets, clock)
    }

    fn record(status: AppStatus, version: u64, secret_version: u64) -> AppRecord {
        AppRecord {
            app: AppId::parse("demo").unwrap(),
            status,
            config: serde_json::json!({"id": "demo", "role": "merchant"}),
            secret_version,
            previous_secret_valid_until: Some(T0.plus(Duration::from_secs(120))),
            version,
            created_at: T0,
            updated_at: T0,
            updated_by: "alice".into(),
        }
    }

    #[tokio::test]
    async fn a_record_replaces_the_seed_once_the_cache_expires() {
        let (dir, store, _, clock) = setup();
        let id = AppId::parse("demo").unwrap();
        let app = dir.get(&id).await.unwrap().unwrap();
        assert_eq!(app.status, AppStatus::Enabled);
        assert!(app.record.is_none(), "the seed's app");
        assert!(
            store
                .put_app(&record(AppStatus::Disabled, 1, 0))
                .await
                .unwrap()
        );
        clock.advance(Duration::from_secs(29));
        assert_eq!(
            dir.get(&id).await.unwrap().unwrap().status,
            AppStatus::Enabled,
            "cached"
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            dir.get(&id).await.unwrap().unwrap().status,
            AppStatus::Disabled
        );
        let unknown = AppId::parse("nobody").unwrap();
        assert!(dir.get(&unknown).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_rotation_is_read_past_the_secret_cache_and_the_previous_key_expires() {
        let (dir, store, secrets, clock) = setup();
        let id = AppId::parse("demo").unwrap();
        let app = dir.get(&id).await.unwrap().unwrap();
        let keys = dir.keys(&app).await.unwrap();
        assert_eq!(keys.current.app_secret.expose_secret(), "s1");
        secrets.put("m/demo", r#"{"app_secret":"s2"}"#);
        assert!(
            store
                .put_app(&record(AppStatus::Enabled, 1, 1))
                .await
                .unwrap()
        );
        dir.forget(&id);
        let app = dir.get(&id).await.unwrap().unwrap();
        let keys = dir.keys(&app).await.unwrap();
        let shown: Vec<&str> = keys
            .candidates()
            .map(|k| k.app_secret.expose_secret())
            .collect();
        assert_eq!(
            shown,
            vec!["s2", "s1"],
            "both verify during the grace period"
        );
        clock.advance(Duration::from_secs(120));
        let keys = dir.keys(&app).await.unwrap();
        let shown: Vec<&str> = keys
            .candidates()
            .map(|k| k.app_secret.expose_secret())
            .collect();
        assert_eq!(
            shown,
            vec!["s2"],
            "the old one stops at the end of the grace period"
        );
    }

    #[tokio::test]
    async fn a_mismatch_refreshes_at_most_once_per_interval() {
        let (dir, _, secrets, clock) = setup();
        let id = AppId::parse("demo").unwrap();
        let app = dir.get(&id).await.unwrap().unwrap();
        dir.keys(&app).await.unwrap();
        secrets.put("m/demo", r#"{"app_secret":"s2"}"#);
        let (_, keys) = dir.refreshed(&app).await.unwrap().unwrap();
        assert_eq!(keys.current.app_secret.expose_secret(), "s2");
        assert!(dir.refreshed(&app).await.unwrap().is_none(), "too soon");
        clock.advance(REFRESH_ON_MISMATCH);
        assert!(dir.refreshed(&app).await.unwrap().is_some());
    }
}
