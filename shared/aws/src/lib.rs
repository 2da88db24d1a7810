//! `recharge-aws`: the AWS adapters behind `recharge-core`'s ports. The DynamoDB `OrderStore`, the Secrets
//! Manager `SecretSource`, the table definition shared with the SAM template, an SDK call counter for the
//! round-trip budget, and typed configuration from the environment.

pub mod calls;
pub mod config;
pub mod dynamo;
pub mod secrets;
pub mod table;

pub use calls::{CallCounter, IndexUnits, RecordedCall, Units};
pub use config::{Config, EnvConfigError, FunctionConfig};
pub use dynamo::DynamoOrderStore;
pub use secrets::SecretsManagerSource;

/// Loads the SDK configuration once (region, credentials, and `AWS_ENDPOINT_URL_*` overrides, which point
/// the clients at DynamoDB Local and a local Secrets Manager in tests).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
