//! An in-memory `Service` shaped like production: the same config file shapes as `infra/`, secrets in an
//! `InMemorySecretSource`, provider endpoints on a closed loopback port (every provider call is refused at
//! once, so a submit ends `unknown`, as a timeout would).

use recharge_api::Settings;
use recharge_core::memory::InMemoryOrderStore;
use recharge_core::secrets::InMemorySecretSource;
use recharge_core::{ManualClock, Timestamp};
use recharge_lambda::Service;
use recharge_lambda::bootstrap::{Files, Function, Ports, Setup, assemble};
use recharge_lambda::metrics::Metrics;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The time every signed merchant event was signed at (2025-11-22T03:33:20Z).
pub const SIGNED_AT: i64 = 1_763_782_400;
pub const MERCHANT_PREFIX: &str = "recharge/test/merchant/";
pub const DEMO_SECRET: &str = "demo-app-secret-0123456789";
pub const OPS_SECRET: &str = "ops-app-secret-9876543210";
/// The gateway key of client secrets in these tests (issue 18), and the origin the demo app lists.
pub const CLIENT_KEY_SECRET: &str = "recharge/test/client-secret-key";
pub const CLIENT_KEY: &str = "test-client-key-0123456789abcdef0123";
pub const DEMO_ORIGIN: &str = "https://h5.demo.example.cn";
/// A provider that takes the connection, reads the request and hangs up without a word: every call to it
/// ends Unknown (a refused connection would be a definite refusal, docs/providers/README.md §4 rule 3).
fn dead() -> &'static str {
    static DEAD: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DEAD.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    use std::io::Read;
                    let mut stream = stream;
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf);
                });
            }
        });
        format!("http://{addr}")
    })
}

pub const RSA_PRIVATE: &str =
    include_str!("../../shared/providers/src/openapi_rsa/fixtures/004_rsa_test_private_key.pem");
pub const RSA_PUBLIC: &str =
    include_str!("../../shared/providers/src/openapi_rsa/fixtures/004_rsa_test_public_key.pem");
pub const RSA_BUSINESS: &str = "754ea3e3a699404f9b82e8f881107f19";
pub const RSA_MERCHANT: &str = "eb1bb305ca3940f8adf1d4e964555699";

pub fn accounts() -> Value {
    let dead = dead();
    json!([
        {"id": "dingyin-1", "protocol": "suka-xml", "secret_name": "recharge/test/provider/dingyin-1",
         "endpoints": {"submit": format!("{dead}/gameonlinepay.do"), "query": format!("{dead}/searchpay.do"),
                       "balance": format!("{dead}/searchbalance.do")}},
        {"id": "wikeyun-1", "protocol": "wikeyun", "secret_name": "recharge/test/provider/wikeyun-1",
         "endpoints": {"submit": format!("{dead}/rest/Recharge/pushOrder"), "query": format!("{dead}/rest/Recharge/query"),
                       "balance": format!("{dead}/rest/User/query")},
         "options": {"store_id": "1234", "verify_callback_sign": true}},
        {"id": "openapi-1", "protocol": "openapi-rsa", "secret_name": "recharge/test/provider/openapi-1",
         "endpoints": {"submit": format!("{dead}/v1/openapi/order/VIPCharge"), "query": format!("{dead}/v1/openapi/order/info")},
         "options": {"success_status": 0}, "codes": {"query": {"1": "accepted", "2": "success", "3": "failure"}}},
        {"id": "sms-1", "protocol": "sms-billing", "secret_name": "recharge/test/provider/sms-1",
         "endpoints": {"submit": format!("{dead}/getsms"), "verify": format!("{dead}/pay")},
         "options": {"flow": "mp"}}
    ])
}

pub fn catalog() -> Value {
    let route = |account: &str, product: &str| json!([{"provider_account": account, "provider_product": product, "cost_fen": 9850}]);
    json!({
        "products": {
            "mobile.100": {"kind": "mobile_fast", "name": "话费100", "face_value_fen": 10000, "price_fen": 9980,
                           "routes": route("dingyin-1", "3312")},
            "mobile.wky.100": {"kind": "mobile_fast", "name": "话费100 (wikeyun)", "face_value_fen": 10000,
                               "price_fen": 9980, "routes": route("wikeyun-1", "100")},
            "vip.month": {"kind": "vip", "name": "会员月卡", "face_value_fen": 10000, "price_fen": 9980,
                          "routes": route("openapi-1", "VIP-M")},
            "billing.sms.2": {"kind": "billing_sms", "name": "短信计费2元", "face_value_fen": 10000, "price_fen": 9980,
                              "routes": route("sms-1", "PRD200")}
        },
        "accounts": {"dingyin-1": {"enabled": true, "low_balance_fen": 100000}}
    })
}

pub fn apps() -> Value {
    json!([{"id": "demo", "role": "merchant", "client": {"allowed_origins": [DEMO_ORIGIN]}},
           {"id": "ops", "role": "admin"}])
}

fn secrets() -> InMemorySecretSource {
    let s = InMemorySecretSource::new();
    s.put(CLIENT_KEY_SECRET, &json!({ "key": CLIENT_KEY }).to_string());
    s.put(
        &format!("{MERCHANT_PREFIX}demo"),
        &json!({"app_secret": DEMO_SECRET}).to_string(),
    );
    s.put(
        &format!("{MERCHANT_PREFIX}ops"),
        &json!({"app_secret": OPS_SECRET}).to_string(),
    );
    s.put(
        "recharge/test/provider/dingyin-1",
        r#"{"userid":"10004927","key":"abcdef0123456789ABCDEF0123456789"}"#,
    );
    s.put(
        "recharge/test/provider/wikeyun-1",
        r#"{"app_key":100001,"app_secret":"TestAppSecret0123"}"#,
    );
    s.put(
        "recharge/test/provider/openapi-1",
        &json!({"business_id": RSA_BUSINESS, "merchant_id": RSA_MERCHANT, "sign_type": "SHA256-RSA",
                "private_key_pem": RSA_PRIVATE, "platform_public_key_pem": RSA_PUBLIC})
        .to_string(),
    );
    s.put(
        "recharge/test/provider/sms-1",
        r#"{"channelcode":"CH01","password":"pw&1","sync_key":"SyncKey0123"}"#,
    );
    s
}

/// A state as a function builds it at cold start, at the time the events were signed, with the clock.
pub async fn service_with_clock(
    function: Function,
) -> (Service, Arc<Mutex<Vec<Value>>>, ManualClock) {
    let store = Arc::new(InMemoryOrderStore::new(8));
    service_over(function, store).await
}

/// A state over a given store: two functions' states over one store behave as two deployed functions over
/// one table (order-status cannot create an order: it loads no provider).
pub async fn service_over(
    function: Function,
    store: Arc<InMemoryOrderStore>,
) -> (Service, Arc<Mutex<Vec<Value>>>, ManualClock) {
    let clock = ManualClock::new(Timestamp::from_millis(SIGNED_AT * 1000));
    let files = Files {
        accounts: serde_json::from_value(accounts()).unwrap(),
        apps: serde_json::from_value(apps()).unwrap(),
        catalog_text: catalog().to_string(),
    };
    let secrets = Arc::new(secrets());
    let ports = Ports {
        store: store.clone(),
        balances: store.clone(),
        apps: store,
        secrets: secrets.clone(),
        secret_writer: match function {
            Function::Ops => Some(secrets),
            _ => None,
        },
        clock: Arc::new(clock.clone()),
    };
    let (metrics, lines) = Metrics::capturing(function.name());
    let setup = Setup {
        function,
        merchant_secret_prefix: MERCHANT_PREFIX.to_owned(),
        settings: Settings {
            client_key_secret: Some(CLIENT_KEY_SECRET.to_owned()),
            ..Settings::production("https://gw.example.com")
        },
        notify_timeout: Duration::from_secs(1),
        metrics: metrics.clone(),
        catalog_path: "test catalog".to_owned(),
    };
    let state = assemble(setup, files, ports).await.unwrap();
    (
        Service {
            state: Arc::new(state),
            metrics,
        },
        lines,
        clock,
    )
}
