//! The Secrets Manager source on moto's Secrets Manager endpoint: stages, rotation, caching, errors.

use recharge_aws::{CallCounter, SecretsManagerSource};
use recharge_core::secrets::{
    CachedSecretSource, MerchantSecret, SecretError, SecretSource, parse_json,
};
use recharge_core::{Clock, ManualClock, Timestamp};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

async fn client(counter: &CallCounter) -> aws_sdk_secretsmanager::Client {
    let sdk = crate::common::local_sdk().await;
    let conf = aws_sdk_secretsmanager::config::Builder::from(&sdk).interceptor(counter.clone());
    aws_sdk_secretsmanager::Client::from_conf(conf.build())
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("recharge/test/{name}-{}-{nanos}", std::process::id())
}

async fn create(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) {
    client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn reads_the_current_value_and_no_previous_outside_a_rotation() {
    let calls = CallCounter::new();
    let client = client(&calls).await;
    let name = unique("merchant-demo");
    create(&client, &name, r#"{"app_secret":"demo-secret"}"#).await;
    let source = SecretsManagerSource::new(client);
    let v = source.fetch(&name).await.unwrap();
    assert_eq!(v.current.expose_secret(), r#"{"app_secret":"demo-secret"}"#);
    assert!(v.previous.is_none());
}

#[tokio::test]
async fn during_a_rotation_both_the_new_and_the_old_key_verify() {
    let calls = CallCounter::new();
    let client = client(&calls).await;
    let name = unique("merchant-rotating");
    create(&client, &name, r#"{"app_secret":"old-secret"}"#).await;
    client
        .put_secret_value()
        .secret_id(&name)
        .secret_string(r#"{"app_secret":"new-secret"}"#)
        .send()
        .await
        .unwrap();
    let source = SecretsManagerSource::new(client);
    let parsed = parse_json::<MerchantSecret>(&name, &source.fetch(&name).await.unwrap()).unwrap();
    let keys: Vec<&str> = parsed
        .candidates()
        .map(|c| c.app_secret.expose_secret())
        .collect();
    assert_eq!(keys, vec!["new-secret", "old-secret"]);
    assert!(
        !format!("{parsed:?}").contains("secret\""),
        "Debug must redact: {parsed:?}"
    );
}

#[tokio::test]
async fn a_warm_read_makes_no_secrets_manager_call() {
    let calls = CallCounter::new();
    let client = client(&calls).await;
    let name = unique("merchant-cached");
    create(&client, &name, r#"{"app_secret":"s"}"#).await;
    let clock = ManualClock::new(Timestamp::from_millis(0));
    let cached = CachedSecretSource::new(
        SecretsManagerSource::new(client),
        Duration::from_secs(300),
        Arc::new(clock.clone()) as Arc<dyn Clock>,
    );
    calls.reset();
    cached.fetch(&name).await.unwrap();
    let cold = calls.get("GetSecretValue");
    assert_eq!(cold, 2, "current and AWSPREVIOUS stages");
    for _ in 0..10 {
        clock.advance(Duration::from_secs(20));
        cached.fetch(&name).await.unwrap();
    }
    assert_eq!(
        calls.get("GetSecretValue"),
        cold,
        "warm reads within the TTL make no call"
    );
    clock.advance(Duration::from_secs(300));
    cached.fetch(&name).await.unwrap();
    assert_eq!(
        calls.get("GetSecretValue"),
        cold + 2,
        "refreshed after the TTL"
    );
}

#[tokio::test]
async fn a_missing_secret_is_not_found() {
    let calls = CallCounter::new();
    let source = SecretsManagerSource::new(client(&calls).await);
    assert!(matches!(
        source.fetch(&unique("absent")).await,
        Err(SecretError::NotFound(_))
    ));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_and_retryable() {
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let sdk = crate::common::local_sdk().await;
    let conf = aws_sdk_secretsmanager::config::Builder::from(&sdk)
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .retry_config(aws_sdk_secretsmanager::config::retry::RetryConfig::disabled());
    let source = SecretsManagerSource::new(aws_sdk_secretsmanager::Client::from_conf(conf.build()));
    let err = source.fetch("anything").await.unwrap_err();
    assert!(matches!(err, SecretError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_cold_start_reads_many_current_values_in_one_batch_call_and_names_the_missing_one() {
    let calls = CallCounter::new();
    let client = client(&calls).await;
    let a = unique("provider-a");
    let b = unique("provider-b");
    create(&client, &a, r#"{"key":"a-old"}"#).await;
    client
        .put_secret_value()
        .secret_id(&a)
        .secret_string(r#"{"key":"a-new"}"#)
        .send()
        .await
        .unwrap();
    create(&client, &b, r#"{"key":"b"}"#).await;
    let missing = unique("provider-missing");
    let source = SecretsManagerSource::new(client);
    calls.reset();
    let names = vec![a.clone(), missing.clone(), b.clone(), a.clone()];
    let got = source.fetch_current_many(&names).await;
    let shown: Vec<Result<String, String>> = got
        .into_iter()
        .map(|r| {
            r.map(|v| v.expose_secret().to_owned())
                .map_err(|e| e.to_string())
        })
        .collect();
    assert_eq!(
        shown,
        vec![
            Ok(r#"{"key":"a-new"}"#.to_owned()),
            Err(format!("secret {missing} does not exist")),
            Ok(r#"{"key":"b"}"#.to_owned()),
            Ok(r#"{"key":"a-new"}"#.to_owned()),
        ]
    );
    assert_eq!(
        calls.get("BatchGetSecretValue"),
        1,
        "{:?}",
        calls.snapshot()
    );
    assert_eq!(calls.get("GetSecretValue"), 0, "{:?}", calls.snapshot());
}

#[tokio::test]
async fn a_hundred_accounts_take_five_batch_calls_and_each_value_comes_back_under_its_own_name() {
    let calls = CallCounter::new();
    let client = client(&calls).await;
    let names: Vec<String> = (0..100)
        .map(|i| unique(&format!("provider-{i:03}")))
        .collect();
    for (i, name) in names.iter().enumerate() {
        create(&client, name, &format!(r#"{{"key":"k{i}"}}"#)).await;
    }
    let source = SecretsManagerSource::new(client);
    calls.reset();
    let got = source.fetch_current_many(&names).await;
    for (i, value) in got.into_iter().enumerate() {
        assert_eq!(
            value
                .map(|v| v.expose_secret().to_owned())
                .map_err(|e| e.to_string()),
            Ok(format!(r#"{{"key":"k{i}"}}"#)),
            "{}",
            names[i]
        );
    }
    assert_eq!(
        calls.get("BatchGetSecretValue"),
        5,
        "{:?}",
        calls.snapshot()
    );
    assert_eq!(calls.get("GetSecretValue"), 0, "{:?}", calls.snapshot());
}

#[tokio::test]
async fn the_writer_creates_once_and_a_rotation_leaves_the_old_value_as_previous() {
    use recharge_core::secrets::{SecretWriteError, SecretWriter};
    use secrecy::SecretString;
    let calls = CallCounter::new();
    let source = SecretsManagerSource::new(client(&calls).await);
    let name = unique("merchant-written");
    let v = |s: &str| SecretString::from(s.to_owned());
    assert!(matches!(
        source.rotate(&name, &v("{}")).await,
        Err(SecretWriteError::NotFound(_))
    ));
    source
        .create(&name, &v(r#"{"app_secret":"first"}"#))
        .await
        .unwrap();
    assert!(matches!(
        source.create(&name, &v(r#"{"app_secret":"again"}"#)).await,
        Err(SecretWriteError::Exists(_))
    ));
    source
        .rotate(&name, &v(r#"{"app_secret":"second"}"#))
        .await
        .unwrap();
    let got = source.fetch(&name).await.unwrap();
    assert_eq!(got.current.expose_secret(), r#"{"app_secret":"second"}"#);
    assert_eq!(
        got.previous.unwrap().expose_secret(),
        r#"{"app_secret":"first"}"#
    );
}
