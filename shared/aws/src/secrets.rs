//! The Secrets Manager `SecretSource`. A rotation in Secrets Manager moves the old value to the `AWSPREVIOUS`
//! stage; reading both stages lets the old key keep verifying until every merchant has switched. Put a
//! `CachedSecretSource` in front of it: a warm read then makes no call.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use recharge_core::secrets::{SecretError, SecretSource, SecretVersions};
use secrecy::SecretString;

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
    /// Two calls: the current value, then the `AWSPREVIOUS` stage (absent outside a rotation).
    async fn fetch(&self, name: &str) -> Result<SecretVersions, SecretError> {
        let current = self
            .stage(name, None)
            .await?
            .ok_or_else(|| SecretError::NotFound(name.to_owned()))?;
        let previous = self.stage(name, Some("AWSPREVIOUS")).await?;
        Ok(SecretVersions { current, previous })
    }
}
