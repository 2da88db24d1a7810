//! A bad provider account degrades only itself: a missing or a malformed provider secret disables that
//! account when it is loaded, at cold start or on its first use (logged, `ProviderAccountDisabled` metric, the
//! template's alarm on it), and every other account and every merchant route keeps working. On moto and DynamoDB Local, through `bootstrap_with`.

use crate::deployed::{Deployment, good_provider_secrets, signed};
use crate::support::{DEMO_SECRET, OPS_SECRET};
use recharge_aws::CallCounter;
use recharge_lambda::bootstrap::{Function, Loading};
use serde_json::{Value, json};

#[tokio::test]
async fn a_missing_or_malformed_provider_secret_disables_only_that_account() {
    let mut secrets = good_provider_secrets();
    // wikeyun-1: no secret at all; openapi-1: JSON without its keys; sms-1: not JSON.
    secrets.insert("wikeyun-1".into(), None);
    secrets.insert("openapi-1".into(), Some(r#"{"business_id":"b"}"#.into()));
    secrets.insert("sms-1".into(), Some("not json {".into()));
    let d = Deployment::create("degraded", secrets, None).await;
    let counter = CallCounter::new();

    for function in [
        Function::SubmitOrder,
        Function::ProviderCallback,
        Function::Reconcile,
        Function::CheckBalance,
    ] {
        let (service, metrics) = d.cold_start(function, &counter).await;
        if function.provider_loading() == Loading::OnUse {
            // Nothing read at cold start: the accounts load (or are disabled) on the first request that
            // needs them, here all four at once.
            assert!(
                service.state.providers.loaded().is_empty(),
                "{}",
                function.name()
            );
            assert!(
                service.state.providers.disabled().is_empty(),
                "{}",
                function.name()
            );
            let ids = service.state.providers.ids();
            service.state.ensure_accounts(ids.iter()).await.unwrap();
        }
        let loaded: Vec<String> = service
            .state
            .providers
            .loaded()
            .iter()
            .map(|p| p.account.id.to_string())
            .collect();
        assert_eq!(loaded, ["dingyin-1"], "{}", function.name());
        let disabled: Vec<String> = service
            .state
            .providers
            .disabled()
            .keys()
            .map(|id| id.to_string())
            .collect();
        assert_eq!(
            disabled,
            ["openapi-1", "sms-1", "wikeyun-1"],
            "{}",
            function.name()
        );
        for why in service.state.providers.disabled().values() {
            assert!(
                !why.contains("not json") && !why.contains("\"b\""),
                "no value in {why}"
            );
        }
        let lines = metrics.lock().unwrap();
        let mut flagged: Vec<&str> = lines
            .iter()
            .filter(|l| l.get("ProviderAccountDisabled").is_some())
            .map(|l| l["ProviderAccount"].as_str().unwrap())
            .collect();
        flagged.sort_unstable();
        assert_eq!(
            flagged,
            ["openapi-1", "sms-1", "wikeyun-1"],
            "{}",
            function.name()
        );
    }

    // The good account takes orders; a product routed only over a disabled one has no route.
    let (submit, _) = d.cold_start(Function::SubmitOrder, &counter).await;
    let create = |no: &str, product: &str| {
        let body =
            json!({"merchant_order_no": no, "product_code": product, "account": "13800138000"})
                .to_string();
        signed(
            ("demo", DEMO_SECRET),
            d.now_secs(),
            "POST",
            "/v1/orders",
            body.as_bytes(),
        )
    };
    let r = recharge_api::http::routes::handle(&submit.state, create("G1", "mobile.100")).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = recharge_api::http::routes::handle(&submit.state, create("W1", "mobile.wky.100")).await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["error"]["code"], "no_route");

    // Merchant reads: order-status needs no provider secret at all, and lists every configured account.
    let (status, _) = d.cold_start(Function::OrderStatus, &counter).await;
    let r = d
        .send(&status, ("demo", DEMO_SECRET), "GET", "/v1/orders/G1", b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = d
        .send(&status, ("ops", OPS_SECRET), "GET", "/v1/balances", b"")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    let listed: Vec<&str> = body["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["provider_account"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["dingyin-1", "openapi-1", "sms-1", "wikeyun-1"]);
}

#[tokio::test]
async fn an_unreachable_secret_store_still_fails_the_cold_start() {
    // Not a bad account but an outage: Lambda retries a failed init, while a disabled account would stay
    // disabled for the life of the container. Pointing Secrets Manager at a closed port shows it.
    let d = Deployment::create("outage", good_provider_secrets(), None).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let sdk = recharge_aws::sdk_config().await;
    let sm = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk)
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build(),
    );
    let source = recharge_aws::SecretsManagerSource::new(sm);
    let accounts: Vec<recharge_providers::ProviderAccount> =
        serde_json::from_value(d.accounts.clone()).unwrap();
    let err = recharge_api::Providers::load(accounts, &source)
        .await
        .expect_err("the load fails");
    assert!(
        matches!(err, recharge_api::BootError::ProviderSecret { .. }),
        "{err}"
    );
}
