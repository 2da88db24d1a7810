//! Typed configuration from environment variables, parsed once at cold start. A missing or bad variable fails
//! the start with a message that names it. Secret values never come from here, only secret names.

use std::time::Duration;

/// The gateway's non-secret configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `RECHARGE_TABLE`: the orders table.
    pub table: String,
    /// `RECHARGE_DUE_SHARDS` (default 8, 1 to 64): shards of the sweep's due index.
    pub due_shards: u32,
    /// `RECHARGE_MERCHANT_SECRET_PREFIX`: merchant app secrets are named `<prefix><app_id>`.
    pub merchant_secret_prefix: String,
    /// `RECHARGE_SECRET_TTL_SECS` (default 300): how long a secret is served from the in-process cache.
    pub secret_ttl: Duration,
    /// `RECHARGE_PROVIDER_TIMEOUT_MS` (default 10000): default timeout of one provider HTTP call.
    pub provider_timeout: Duration,
}

/// A variable that is missing or does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}: {problem}")]
pub struct EnvConfigError {
    pub var: &'static str,
    pub problem: String,
}

impl Config {
    pub fn from_env() -> Result<Config, EnvConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Parses from any lookup (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, EnvConfigError> {
        let required = |var| required(&get, var);
        let number = |var, default, min, max| number(&get, var, default, min, max);
        let table = required("RECHARGE_TABLE")?;
        if !(3..=255).contains(&table.len())
            || !table
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(EnvConfigError {
                var: "RECHARGE_TABLE",
                problem: format!(
                    "{table:?} is not a DynamoDB table name (3-255 of [A-Za-z0-9_.-])"
                ),
            });
        }
        Ok(Config {
            table,
            due_shards: u32::try_from(number("RECHARGE_DUE_SHARDS", 8, 1, 64)?).unwrap_or(8),
            merchant_secret_prefix: required("RECHARGE_MERCHANT_SECRET_PREFIX")?,
            secret_ttl: Duration::from_secs(number("RECHARGE_SECRET_TTL_SECS", 300, 0, 86_400)?),
            provider_timeout: Duration::from_millis(number(
                "RECHARGE_PROVIDER_TIMEOUT_MS",
                10_000,
                100,
                120_000,
            )?),
        })
    }

    /// The secret name of a merchant app's credentials.
    pub fn merchant_secret_name(&self, app_id: &recharge_core::AppId) -> String {
        format!("{}{}", self.merchant_secret_prefix, app_id)
    }
}

/// The configuration of a deployed function beyond the store (Lambda cold start; see docs/deploy.md §6).
/// Paths are files packaged with the function (or mounted); a bad value names its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionConfig {
    /// `RECHARGE_CATALOG_PATH`: the product catalog JSON.
    pub catalog_path: String,
    /// `RECHARGE_PROVIDER_ACCOUNTS_PATH`: a JSON array of provider accounts (no secrets, secret names only).
    pub provider_accounts_path: String,
    /// `RECHARGE_APPS_PATH`: a JSON array of merchant apps `{id, role, secret_name?}`.
    pub apps_path: String,
    /// `RECHARGE_PUBLIC_BASE_URL`: where providers reach us (`https://…`, no trailing path).
    pub public_base_url: String,
    /// `RECHARGE_NOTIFY_TIMEOUT_MS` (default 5000): timeout of one merchant notification.
    pub notify_timeout: Duration,
    /// `RECHARGE_CLIENT_KEY_SECRET` (optional): name or ARN of the secret `{"key": "…"}` that client secrets
    /// are derived with (issue 18). Unset: no client secrets are issued.
    pub client_key_secret: Option<String>,
}

impl FunctionConfig {
    pub fn from_env() -> Result<FunctionConfig, EnvConfigError> {
        FunctionConfig::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<FunctionConfig, EnvConfigError> {
        let required = |var| required(&get, var);
        let public_base_url = required("RECHARGE_PUBLIC_BASE_URL")?;
        let scheme_ok = public_base_url.starts_with("https://")
            || public_base_url.starts_with("http://127.0.0.1")
            || public_base_url.starts_with("http://localhost");
        if !scheme_ok || public_base_url.contains('?') || public_base_url.contains('#') {
            return Err(EnvConfigError {
                var: "RECHARGE_PUBLIC_BASE_URL",
                problem: format!(
                    "{public_base_url:?} is not an https:// base URL (http only for loopback)"
                ),
            });
        }
        let notify_timeout = Duration::from_millis(number(
            &get,
            "RECHARGE_NOTIFY_TIMEOUT_MS",
            5_000,
            100,
            60_000,
        )?);
        Ok(FunctionConfig {
            catalog_path: required("RECHARGE_CATALOG_PATH")?,
            provider_accounts_path: required("RECHARGE_PROVIDER_ACCOUNTS_PATH")?,
            apps_path: required("RECHARGE_APPS_PATH")?,
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            notify_timeout,
            client_key_secret: get("RECHARGE_CLIENT_KEY_SECRET")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
        })
    }
}

/// The trimmed value of `var`, which must be set and not blank.
fn required(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<String, EnvConfigError> {
    match get(var) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        Some(_) => Err(EnvConfigError {
            var,
            problem: "is empty".into(),
        }),
        None => Err(EnvConfigError {
            var,
            problem: "is not set".into(),
        }),
    }
}

/// `var` as a whole number from `min` to `max`, `default` when it is not set.
fn number(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, EnvConfigError> {
    let Some(raw) = get(var) else {
        return Ok(default);
    };
    match raw.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(EnvConfigError {
            var,
            problem: format!("{raw:?} is not a whole number from {min} to {max}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<Config, EnvConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const MINIMAL: &[(&str, &str)] = &[
        ("RECHARGE_TABLE", "recharge-dev-orders"),
        ("RECHARGE_MERCHANT_SECRET_PREFIX", "recharge/dev/merchant/"),
    ];

    #[test]
    fn minimal_environment_gives_the_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.table, "recharge-dev-orders");
        assert_eq!(c.due_shards, 8);
        assert_eq!(c.secret_ttl, Duration::from_secs(300));
        assert_eq!(c.provider_timeout, Duration::from_secs(10));
        assert_eq!(
            c.merchant_secret_name(&recharge_core::AppId::parse("demo").unwrap()),
            "recharge/dev/merchant/demo"
        );
    }

    #[test]
    fn a_missing_variable_is_named() {
        let e = parse(&MINIMAL[1..]).unwrap_err();
        assert_eq!(e.var, "RECHARGE_TABLE");
        assert_eq!(
            e.to_string(),
            "environment variable RECHARGE_TABLE: is not set"
        );
    }

    #[test]
    fn a_bad_variable_is_named_with_its_rule() {
        let mut vars = MINIMAL.to_vec();
        vars.push(("RECHARGE_DUE_SHARDS", "0"));
        let e = parse(&vars).unwrap_err();
        assert_eq!(e.var, "RECHARGE_DUE_SHARDS");
        assert!(e.problem.contains("from 1 to 64"), "{e}");
        let mut vars = MINIMAL.to_vec();
        vars.push(("RECHARGE_PROVIDER_TIMEOUT_MS", "ten"));
        assert_eq!(
            parse(&vars).unwrap_err().var,
            "RECHARGE_PROVIDER_TIMEOUT_MS"
        );
        let e = parse(&[("RECHARGE_TABLE", "a b"), MINIMAL[1]]).unwrap_err();
        assert_eq!(e.var, "RECHARGE_TABLE");
    }

    fn function(vars: &[(&str, &str)]) -> Result<FunctionConfig, EnvConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        FunctionConfig::from_lookup(|k| map.get(k).cloned())
    }

    const FUNCTION: &[(&str, &str)] = &[
        ("RECHARGE_CATALOG_PATH", "config/catalog.json"),
        (
            "RECHARGE_PROVIDER_ACCOUNTS_PATH",
            "config/provider-accounts.json",
        ),
        ("RECHARGE_APPS_PATH", "config/apps.json"),
        ("RECHARGE_PUBLIC_BASE_URL", "https://gw.example.com/"),
    ];

    #[test]
    fn function_config_reads_its_paths_and_trims_the_base_url() {
        let c = function(FUNCTION).unwrap();
        assert_eq!(c.catalog_path, "config/catalog.json");
        assert_eq!(c.public_base_url, "https://gw.example.com");
        assert_eq!(c.notify_timeout, Duration::from_secs(5));
        assert_eq!(c.client_key_secret, None);
        let mut vars = FUNCTION.to_vec();
        vars.push((
            "RECHARGE_CLIENT_KEY_SECRET",
            " recharge/dev/client-secret-key ",
        ));
        assert_eq!(
            function(&vars).unwrap().client_key_secret.as_deref(),
            Some("recharge/dev/client-secret-key")
        );
    }

    #[test]
    fn function_config_names_the_missing_or_bad_variable() {
        assert_eq!(
            function(&FUNCTION[1..]).unwrap_err().to_string(),
            "environment variable RECHARGE_CATALOG_PATH: is not set"
        );
        let mut vars = FUNCTION[..3].to_vec();
        vars.push(("RECHARGE_PUBLIC_BASE_URL", "http://gw.example.com"));
        assert_eq!(function(&vars).unwrap_err().var, "RECHARGE_PUBLIC_BASE_URL");
        let mut vars = FUNCTION.to_vec();
        vars.push(("RECHARGE_NOTIFY_TIMEOUT_MS", "0"));
        assert_eq!(
            function(&vars).unwrap_err().var,
            "RECHARGE_NOTIFY_TIMEOUT_MS"
        );
    }
}
