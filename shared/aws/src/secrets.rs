//! The Secrets Manager `SecretSource`. A rotation in Secrets Manager moves the old value to the `AWSPREVIOUS`
//! stage; reading both stages lets the old key keep verifying until every merchant has switched. Put a
//! `CachedSecretSource` in front of it: a warm read then makes no call. A cold start reads every provider
//! account's current credentials with one `BatchGetSecretValue` (20 names per call) instead of two calls each.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::SdkError;
use recharge_core::secrets::{
    SecretError, SecretSource, SecretVersions, SecretWriteError, SecretWriter,
};
use secrecy::ExposeSecret;
use secrecy::SecretString;
use std::collections::HashMap;

/// `BatchGetSecretValue` takes at most 20 secret ids per call.
const BATCH: usize = 20;

/// What one name came back as from a batch read (errors kept as text: they are re-created per asker).
enum Batched {
    Value(SecretString),
    NotFound,
    Binary,
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct SecretsManagerSource {
    client: Client,
}

impl SecretsManagerSource {
    pub fn new(client: Client) -> Self {
        SecretsManagerSource { client }
    }

    async fn stage(
        &self,
        name: &str,
        stage: Option<&str>,
    ) -> Result<Option<SecretString>, SecretError> {
        let result = self
            .client
            .get_secret_value()
            .secret_id(name)
            .set_version_stage(stage.map(str::to_owned))
            .send()
            .await;
        match result {
            Ok(out) => match out.secret_string() {
                Some(s) => Ok(Some(SecretString::from(s.to_owned()))),
                None => Err(SecretError::Malformed {
                    name: name.to_owned(),
                    reason: "binary secrets are not supported; store JSON text".into(),
                }),
            },
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(SecretError::Unavailable {
                name: name.to_owned(),
                source: Box::new(e),
            }),
        }
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    /// Two calls: the current value and the `AWSPREVIOUS` stage (absent outside a rotation).
    async fn fetch(&self, name: &str) -> Result<SecretVersions, SecretError> {
        // Both stages at once: a cold start's first merchant request waits for the slower of the two only.
        let (current, previous) = tokio::join!(
            self.stage(name, None),
            self.stage(name, Some("AWSPREVIOUS"))
        );
        let current = current?.ok_or_else(|| SecretError::NotFound(name.to_owned()))?;
        let previous = previous?;
        Ok(SecretVersions { current, previous })
    }

    /// One `BatchGetSecretValue` per 20 names, the chunks side by side (a cold start with 100 accounts waits for
    /// one round trip, not five: docs/benchmarks.md §8). If the batch call itself fails (an older IAM policy
    /// without `secretsmanager:BatchGetSecretValue`, a throttle), that chunk is read one name at a time instead.
    async fn fetch_current_many(&self, names: &[String]) -> Vec<Result<SecretString, SecretError>> {
        let mut unique: Vec<&String> = names.iter().collect();
        unique.sort();
        unique.dedup();
        let mut chunks = tokio::task::JoinSet::new();
        for chunk in unique.chunks(BATCH) {
            let ids: Vec<String> = chunk.iter().map(|n| (*n).clone()).collect();
            let source = self.clone();
            chunks.spawn(async move { source.chunk(ids).await });
        }
        let mut found: HashMap<String, Batched> = HashMap::new();
        let mut lost = None;
        while let Some(done) = chunks.join_next().await {
            match done {
                Ok(part) => found.extend(part),
                // Only a panic ends a task early (release builds abort instead): its names are unavailable.
                Err(e) => lost = Some(e.to_string()),
            }
        }
        if let Some(why) = lost {
            for name in &unique {
                found
                    .entry((*name).clone())
                    .or_insert_with(|| Batched::Failed(format!("secret read task failed: {why}")));
            }
        }
        names
            .iter()
            .map(|name| match found.get(name) {
                Some(Batched::Value(v)) => Ok(v.clone()),
                Some(Batched::NotFound) | None => Err(SecretError::NotFound(name.clone())),
                Some(Batched::Binary) => Err(SecretError::Malformed {
                    name: name.clone(),
                    reason: "binary secrets are not supported; store JSON text".into(),
                }),
                Some(Batched::Failed(why)) => Err(SecretError::Unavailable {
                    name: name.clone(),
                    source: why.clone().into(),
                }),
            })
            .collect()
    }
}

impl SecretsManagerSource {
    /// One chunk: through `BatchGetSecretValue`, or name by name if that call fails.
    async fn chunk(&self, ids: Vec<String>) -> HashMap<String, Batched> {
        let mut found = HashMap::new();
        if let Err(e) = self.batch(&ids, &mut found).await {
            tracing::warn!(secrets = ids.len(), error = %e, "BatchGetSecretValue failed; reading the secrets one by one");
            for name in ids {
                let one = match self.stage(&name, None).await {
                    Ok(Some(v)) => Batched::Value(v),
                    Ok(None) => Batched::NotFound,
                    Err(SecretError::Malformed { .. }) => Batched::Binary,
                    Err(e) => Batched::Failed(e.to_string()),
                };
                found.insert(name, one);
            }
        }
        found
    }

    /// One chunk through `BatchGetSecretValue` (following `NextToken`), each value or per-secret error filed
    /// under the id it was asked by.
    async fn batch(
        &self,
        ids: &[String],
        found: &mut HashMap<String, Batched>,
    ) -> Result<(), String> {
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(ids.to_vec()))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string())?;
            for v in out.secret_values() {
                let value = match v.secret_string() {
                    Some(s) => Batched::Value(SecretString::from(s.to_owned())),
                    None => Batched::Binary,
                };
                // Asked by name or by ARN: file it under whichever of the two was asked.
                let asked = ids
                    .iter()
                    .find(|id| Some(id.as_str()) == v.name() || Some(id.as_str()) == v.arn());
                if let Some(id) = asked {
                    found.insert(id.clone(), value);
                }
            }
            for e in out.errors() {
                if let Some(id) = e.secret_id() {
                    let failure = if e.error_code() == Some("ResourceNotFoundException") {
                        Batched::NotFound
                    } else {
                        Batched::Failed(format!(
                            "{}: {}",
                            e.error_code().unwrap_or("error"),
                            e.message().unwrap_or("")
                        ))
                    };
                    found.insert(id.to_owned(), failure);
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => return Ok(()),
            }
        }
    }
}

/// `CreateSecret` and `PutSecretValue`: the operators' function creates and rotates merchant app secrets.
/// `PutSecretValue` moves the `AWSCURRENT` stage to the new version and `AWSPREVIOUS` to the old one, which
/// `fetch` reads back as the previous value.
#[async_trait]
impl SecretWriter for SecretsManagerSource {
    async fn create(&self, name: &str, value: &SecretString) -> Result<(), SecretWriteError> {
        let result = self
            .client
            .create_secret()
            .name(name)
            .description("recharge merchant app secret, created by the ops API")
            .secret_string(value.expose_secret())
            .send()
            .await;
        written(result, name, |e| {
            e.is_resource_exists_exception()
                .then(|| SecretWriteError::Exists(name.to_owned()))
        })
    }

    async fn rotate(&self, name: &str, value: &SecretString) -> Result<(), SecretWriteError> {
        let result = self
            .client
            .put_secret_value()
            .secret_id(name)
            .secret_string(value.expose_secret())
            .send()
            .await;
        written(result, name, |e| {
            e.is_resource_not_found_exception()
                .then(|| SecretWriteError::NotFound(name.to_owned()))
        })
    }
}

/// A write's answer: `refusal` says which service error is the caller's to know (the secret exists, or does not);
/// any other failure is `Unavailable`.
fn written<O, E, R>(
    result: Result<O, SdkError<E, R>>,
    name: &str,
    refusal: impl FnOnce(&E) -> Option<SecretWriteError>,
) -> Result<(), SecretWriteError>
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(e.as_service_error().and_then(refusal).unwrap_or_else(|| {
            SecretWriteError::Unavailable {
                name: name.to_owned(),
                source: Box::new(e),
            }
        })),
    }
}
