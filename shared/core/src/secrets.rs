//! The `SecretSource` port and the in-process cache in front of it (docs/security.md §2).
//!
//! A secret has a current value and, during a rotation, a previous one; both verify, so a merchant that has
//! not yet switched keys keeps working. Values are `SecretString`s: their `Debug` is redacted, and they are
//! exposed only where a signature is computed or checked.

use crate::time::{Clock, Timestamp};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The current and, during a rotation, the previous value of one secret.
#[derive(Debug, Clone)]
pub struct SecretVersions {
    pub current: SecretString,
    pub previous: Option<SecretString>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {0} does not exist")]
    NotFound(String),
    #[error("secret {name} could not be read")]
    Unavailable {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The value is not the JSON shape its user expects. The message names fields, never values.
    #[error("secret {name} is malformed: {reason}")]
    Malformed { name: String, reason: String },
}

impl SecretError {
    pub fn is_retryable(&self) -> bool {
        match self {
            SecretError::Unavailable { .. } => true,
            SecretError::NotFound(_) | SecretError::Malformed { .. } => false,
        }
    }
}

/// Where secrets come from.
#[async_trait]
pub trait SecretSource: Send + Sync + std::fmt::Debug {
    /// The secret's current value and its previous one if a rotation left one. `NotFound` if the secret does
    /// not exist; `Unavailable` if the backing service failed (retryable).
    async fn fetch(&self, name: &str) -> Result<SecretVersions, SecretError>;

    /// The current values of several secrets, one result per name in the order asked: what a cold start
    /// needs for the provider accounts' credentials (they sign with the current value only). This default
    /// reads them one by one; Secrets Manager overrides it with one batch call per 20 names.
    async fn fetch_current_many(&self, names: &[String]) -> Vec<Result<SecretString, SecretError>> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(self.fetch(name).await.map(|v| v.current));
        }
        out
    }
}

/// A parsed secret with its rotation partner.
#[derive(Debug, Clone)]
pub struct Rotating<T> {
    pub current: T,
    pub previous: Option<T>,
}

impl<T> Rotating<T> {
    /// Current first, then previous: the order in which to try keys when verifying.
    pub fn candidates(&self) -> impl Iterator<Item = &T> {
        std::iter::once(&self.current).chain(self.previous.as_ref())
    }
}

/// Parses both versions of a JSON secret into `T`. A malformed previous version is dropped (it is about to
/// expire and must not take the current key down with it); a malformed current version is an error.
pub fn parse_json<T: DeserializeOwned>(
    name: &str,
    versions: &SecretVersions,
) -> Result<Rotating<T>, SecretError> {
    let parse = |s: &SecretString| {
        // serde_json's messages name the field and position, never the value of a string.
        serde_json::from_str::<T>(s.expose_secret()).map_err(|e| SecretError::Malformed {
            name: name.to_owned(),
            reason: redacted_json_error(&e),
        })
    };
    let current = parse(&versions.current)?;
    let previous = versions.previous.as_ref().and_then(|p| parse(p).ok());
    Ok(Rotating { current, previous })
}

fn redacted_json_error(e: &serde_json::Error) -> String {
    // `invalid type: string "hunter2", expected u32` would quote the value: keep only the category and place.
    let category = match e.classify() {
        serde_json::error::Category::Io => "io error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "wrong or missing field",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    let text = e.to_string();
    let field = text
        .split('`')
        .nth(1)
        .filter(|_| text.starts_with("missing field") || text.starts_with("unknown field"))
        .map(|f| format!(" `{f}`"))
        .unwrap_or_default();
    format!(
        "{category}{field} at line {} column {}",
        e.line(),
        e.column()
    )
}

/// A merchant app's credentials: `{"app_secret": "..."}`.
#[derive(Debug, Clone, Deserialize)]
pub struct MerchantSecret {
    pub app_secret: SecretString,
}

/// Caches a `SecretSource` in-process: within `ttl` a read makes no call. After `ttl` the value is fetched
/// again; if that fails, the old value is served for up to `max_stale` more (a Secrets Manager outage must not
/// stop signing), then the error is returned.
#[derive(Debug)]
pub struct CachedSecretSource<S> {
    inner: S,
    ttl: Duration,
    max_stale: Duration,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<String, (Timestamp, SecretVersions)>>,
}

impl<S: SecretSource> CachedSecretSource<S> {
    pub fn new(inner: S, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        CachedSecretSource {
            inner,
            ttl,
            max_stale: ttl.saturating_mul(12),
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn cached(&self, name: &str) -> Option<(Timestamp, SecretVersions)> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

#[async_trait]
impl<S: SecretSource> SecretSource for CachedSecretSource<S> {
    async fn fetch(&self, name: &str) -> Result<SecretVersions, SecretError> {
        let now = self.clock.now();
        let cached = self.cached(name);
        if let Some((at, value)) = &cached
            && now.since(*at) < self.ttl
        {
            return Ok(value.clone());
        }
        match self.inner.fetch(name).await {
            Ok(fresh) => {
                self.entries
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_owned(), (now, fresh.clone()));
                Ok(fresh)
            }
            Err(e) if e.is_retryable() => match cached {
                Some((at, value)) if now.since(at) < self.ttl + self.max_stale => {
                    tracing::warn!(secret = name, error = %e, "secret refresh failed; serving the cached value");
                    Ok(value)
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Fresh cached values are served; the rest are read in one batch and not cached (a batch read has no
    /// previous version, which `fetch` must return).
    async fn fetch_current_many(&self, names: &[String]) -> Vec<Result<SecretString, SecretError>> {
        let now = self.clock.now();
        let fresh: Vec<Option<SecretString>> = names
            .iter()
            .map(|n| {
                self.cached(n)
                    .filter(|(at, _)| now.since(*at) < self.ttl)
                    .map(|(_, v)| v.current)
            })
            .collect();
        let missing: Vec<String> = names
            .iter()
            .zip(&fresh)
            .filter(|(_, f)| f.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        let mut read = self.inner.fetch_current_many(&missing).await.into_iter();
        fresh
            .into_iter()
            .zip(names)
            .map(|(f, name)| match f {
                Some(v) => Ok(v),
                None => read
                    .next()
                    .unwrap_or_else(|| Err(SecretError::NotFound(name.clone()))),
            })
            .collect()
    }
}

/// Secrets held in memory: for the local stack and tests. `put` rotates like Secrets Manager does: the old
/// current value becomes the previous one.
#[derive(Debug, Default)]
pub struct InMemorySecretSource {
    values: Mutex<HashMap<String, SecretVersions>>,
}

impl InMemorySecretSource {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&self, name: &str, value: &str) {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let previous = values.remove(name).map(|v| v.current);
        values.insert(
            name.to_owned(),
            SecretVersions {
                current: SecretString::from(value.to_owned()),
                previous,
            },
        );
    }
}

#[async_trait]
impl SecretSource for InMemorySecretSource {
    async fn fetch(&self, name: &str) -> Result<SecretVersions, SecretError> {
        self.values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::NotFound(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::ManualClock;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Counts calls and can be made to fail, to observe the cache.
    #[derive(Debug, Default)]
    struct Counting {
        inner: InMemorySecretSource,
        calls: AtomicUsize,
        down: AtomicBool,
    }

    #[async_trait]
    impl SecretSource for Counting {
        async fn fetch(&self, name: &str) -> Result<SecretVersions, SecretError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(SecretError::Unavailable {
                    name: name.into(),
                    source: "connection refused".into(),
                });
            }
            self.inner.fetch(name).await
        }
    }

    fn cached() -> (CachedSecretSource<Counting>, ManualClock) {
        let clock = ManualClock::new(Timestamp::from_millis(0));
        let source = Counting::default();
        source
            .inner
            .put("merchant/demo", r#"{"app_secret":"demo-secret"}"#);
        (
            CachedSecretSource::new(source, Duration::from_secs(300), Arc::new(clock.clone())),
            clock,
        )
    }

    #[tokio::test]
    async fn a_batch_read_serves_fresh_cached_values_reads_the_rest_in_order_and_names_the_missing()
    {
        let (cache, clock) = cached();
        cache.inner.inner.put("provider/a", "A");
        cache.inner.inner.put("provider/b", "B");
        cache.fetch("provider/b").await.unwrap();
        let calls = cache.inner.calls.load(Ordering::SeqCst);
        let names: Vec<String> = ["provider/a", "provider/b", "nope", "provider/a"]
            .map(String::from)
            .to_vec();
        let got = cache.fetch_current_many(&names).await;
        let shown: Vec<Result<&str, String>> = got
            .iter()
            .map(|r| {
                r.as_ref()
                    .map(|v| v.expose_secret())
                    .map_err(|e| e.to_string())
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                Ok("A"),
                Ok("B"),
                Err("secret nope does not exist".to_owned()),
                Ok("A")
            ]
        );
        assert_eq!(
            cache.inner.calls.load(Ordering::SeqCst) - calls,
            3,
            "the cached one made no call"
        );
        // After the TTL the cached one is read again.
        clock.advance(Duration::from_secs(301));
        let _ = cache.fetch_current_many(&names[1..2]).await;
        assert_eq!(cache.inner.calls.load(Ordering::SeqCst) - calls, 4);
    }

    #[tokio::test]
    async fn a_warm_read_makes_no_call() {
        let (cache, clock) = cached();
        cache.fetch("merchant/demo").await.unwrap();
        clock.advance(Duration::from_secs(299));
        cache.fetch("merchant/demo").await.unwrap();
        assert_eq!(cache.inner().calls.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(1));
        cache.fetch("merchant/demo").await.unwrap();
        assert_eq!(
            cache.inner().calls.load(Ordering::SeqCst),
            2,
            "refetched after the TTL"
        );
    }

    #[tokio::test]
    async fn an_outage_serves_the_cached_value_for_a_while_then_fails() {
        let (cache, clock) = cached();
        cache.fetch("merchant/demo").await.unwrap();
        cache.inner().down.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(600));
        assert!(cache.fetch("merchant/demo").await.is_ok());
        clock.advance(Duration::from_secs(3600 * 2));
        assert!(matches!(
            cache.fetch("merchant/demo").await,
            Err(SecretError::Unavailable { .. })
        ));
    }

    #[tokio::test]
    async fn a_missing_secret_is_not_served_stale_and_not_cached() {
        let (cache, _) = cached();
        assert!(matches!(
            cache.fetch("nope").await,
            Err(SecretError::NotFound(_))
        ));
        assert!(matches!(
            cache.fetch("nope").await,
            Err(SecretError::NotFound(_))
        ));
        assert_eq!(cache.inner().calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn rotation_keeps_the_previous_key_as_a_candidate() {
        let source = InMemorySecretSource::new();
        source.put("m", r#"{"app_secret":"old"}"#);
        source.put("m", r#"{"app_secret":"new"}"#);
        let parsed: Rotating<MerchantSecret> =
            parse_json("m", &source.fetch("m").await.unwrap()).unwrap();
        let keys: Vec<&str> = parsed
            .candidates()
            .map(|c| c.app_secret.expose_secret())
            .collect();
        assert_eq!(keys, vec!["new", "old"]);
    }

    #[test]
    fn malformed_secrets_are_reported_without_their_value() {
        let versions = SecretVersions {
            current: SecretString::from(r#"{"app_secret": 12345678}"#.to_owned()),
            previous: None,
        };
        let err = parse_json::<MerchantSecret>("m", &versions)
            .unwrap_err()
            .to_string();
        assert!(err.contains("malformed"), "{err}");
        assert!(!err.contains("12345678"), "{err}");
        let missing = SecretVersions {
            current: SecretString::from(r#"{"secret": "hunter2"}"#.to_owned()),
            previous: None,
        };
        let err = parse_json::<MerchantSecret>("m", &missing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`app_secret`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let s: MerchantSecret = serde_json::from_str(r#"{"app_secret":"demo-secret"}"#).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("demo-secret"), "{shown}");
    }
}
