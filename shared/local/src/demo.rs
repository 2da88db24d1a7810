//! The demo configuration: three apps, one provider account per protocol (scripted simulators as first
//! routes), a clean backup account, and a catalog that covers every protocol and product kind.
//!
//! `--config FILE` replaces any of its three parts (`apps`, `accounts`, `catalog`) with the file's, in the same
//! JSON shape. In an account's `endpoints`, `{sim}` stands for the base URL of the simulator the stack starts
//! for it; an account without a `simulator` block is used as given (point it at any outside server).

use serde::Deserialize;
use serde_json::{Value, json};

const PRIVATE_KEY: &str = include_str!("../keys/004_rsa_test_private_key.pem");
const PUBLIC_KEY: &str = include_str!("../keys/004_rsa_test_public_key.pem");

/// Where docs/merchant-api.md §6 serves the sample H5 page from; the demo app allows it (and `localhost:8081`).
pub const DEMO_H5_ORIGIN: &str = "http://127.0.0.1:8081";

/// The code the PC carrier-billing simulator "sends" to the user.
pub const DEMO_VERIFICATION_CODE: &str = "123456";

/// A merchant app of the local stack, with its secret (local only: production secrets live in Secrets Manager).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalApp {
    pub id: String,
    pub role: String,
    pub secret: String,
    /// Client secrets' lifetime and the origins of the app's H5 pages (issue 18), as in `apps.json`.
    #[serde(default)]
    pub client: recharge_api::apps::ClientAccess,
}

/// One provider account: its configuration, its credentials, and optionally the simulator to start for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalAccount {
    pub account: Value,
    pub secret: Value,
    #[serde(default)]
    pub simulator: Option<LocalSimulator>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSimulator {
    pub protocol: String,
    pub credentials: Value,
    #[serde(default = "yes")]
    pub scripts: bool,
}

fn yes() -> bool {
    true
}

/// The whole local configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    #[serde(default)]
    pub apps: Option<Vec<LocalApp>>,
    #[serde(default)]
    pub accounts: Option<Vec<LocalAccount>>,
    #[serde(default)]
    pub catalog: Option<Value>,
}

impl LocalConfig {
    /// The demo, with any part replaced by `overrides`.
    pub fn demo_with(overrides: Option<LocalConfig>) -> Result<LocalConfig, serde_json::Error> {
        let demo = demo()?;
        Ok(match overrides {
            None => demo,
            Some(o) => LocalConfig {
                apps: o.apps.or(demo.apps),
                accounts: o.accounts.or(demo.accounts),
                catalog: o.catalog.or(demo.catalog),
            },
        })
    }
}

fn demo() -> Result<LocalConfig, serde_json::Error> {
    serde_json::from_value(json!({
        "apps": [
            // The sample H5 page (examples/h5) served by `python3 -m http.server 8081 -d examples/h5`.
            {"id": "demo", "role": "merchant", "secret": "demo-secret",
             "client": {"allowed_origins": [DEMO_H5_ORIGIN, "http://localhost:8081"]}},
            {"id": "demo2", "role": "merchant", "secret": "demo2-secret"},
            {"id": "ops", "role": "admin", "secret": "ops-secret"}
        ],
        "accounts": accounts(),
        "catalog": catalog()
    }))
}

fn local_account(id: &str, protocol: &str, endpoints: Value, options: Value) -> Value {
    coded_account(id, protocol, endpoints, options, json!({}))
}

/// An account with the code-table entries the simulator of its protocol documents for itself
/// (docs/simulators.md): what the seeds leave unsaid must be stated per account (docs/providers/README.md §4).
fn coded_account(
    id: &str,
    protocol: &str,
    endpoints: Value,
    options: Value,
    codes: Value,
) -> Value {
    json!({
        "id": id,
        "protocol": protocol,
        "endpoints": endpoints,
        "secret_name": format!("local/provider/{id}"),
        // Short enough for a quick demo, longer than the simulators' normal answers.
        "timeouts": {"call_ms": 2000},
        "codes": codes,
        "options": options
    })
}

fn accounts() -> Value {
    let suka_secret = json!({"userid": "10004927", "key": "abcdef0123456789ABCDEF0123456789"});
    let suka_sim = |scripts: bool| {
        json!({"protocol": "suka-xml", "scripts": scripts, "credentials": {
        "userid": "10004927", "key": "abcdef0123456789ABCDEF0123456789", "balance_fen": 100_000_000,
        "products": {
            "3312": {"face_fen": 10000, "price_fen": 9850, "name": "游戏直充"},
            "G60": {"face_fen": 6000, "price_fen": 5900, "name": "游戏直充60"},
            "8801": {"face_fen": 10000, "price_fen": 9950, "name": "电费直充"},
            "M100": {"face_fen": 10000, "price_fen": 9900, "name": "话费100"}
        }}})
    };
    let suka_endpoints = json!({
        "submit": "{sim}/gameonlinepay.do", "query": "{sim}/searchpay.do", "balance": "{sim}/searchbalance.do"
    });
    let sms_secret =
        json!({"channelcode": "CH01", "password": "pw-plain", "sync_key": "SyncKey01"});
    let sms_sim = json!({"protocol": "sms-billing", "credentials": {
        "channelcode": "CH01", "password": "pw-plain", "verify_code": DEMO_VERIFICATION_CODE, "sync_key": "SyncKey01",
        "products": {"P200": {"price_fen": 200, "accessno": "1065553610007", "sms_count": 1}}
    }});
    json!([
        {
            "account": coded_account("wikeyun-main", "wikeyun", json!({
                "submit": "{sim}/rest/Recharge/pushOrder", "query": "{sim}/rest/Recharge/query",
                "balance": "{sim}/rest/User/query"
            }), json!({"store_id": "1234"}),
            // The simulator's refusals before recording (common-param and number checks). Its `2001` is
            // not listed: it also answers it after recording an order (script 0010).
            json!({"submit": {"1001": "refusal", "1004": "refusal", "1005": "refusal", "1006": "refusal",
                              "2005": "refusal"}})),
            "secret": {"app_key": 100001, "app_secret": "TestAppSecret0123"},
            "simulator": {"protocol": "wikeyun", "credentials": {
                "app_key": "100001", "app_secret": "TestAppSecret0123", "store_id": "1234",
                "balance_fen": 100_000_000, "moneys": [50, 100, 200]
            }}
        },
        {
            "account": coded_account("ice-main", "ice-microservice", json!({
                "submit": "{sim}/sign/api/order", "query": "{sim}/sign/api/query"
            }), json!({"company": "彩生活", "supplier": "中国移动"}),
            // The simulator's order statuses. Its only error code, `1`, answers refusals and recorded
            // orders alike (script 0010), so it cannot be listed as a refusal.
            json!({"query": {"0": "accepted", "1": "accepted", "2": "success", "3": "failure"}})),
            "secret": {"app_id": "ICETESTAPPID01", "token": "TestIceToken0123", "access_token": "access-token-1"},
            "simulator": {"protocol": "ice-microservice", "credentials": {
                "app_id": "ICETESTAPPID01", "token": "TestIceToken0123", "access_token": "access-token-1",
                "company": "彩生活", "balance_fen": 100_000_000,
                "products": {"HF100": {"face_fen": 10000, "price_fen": 9900}}
            }}
        },
        {
            "account": local_account("suka-main", "suka-xml", suka_endpoints.clone(), json!({})),
            "secret": suka_secret.clone(),
            "simulator": suka_sim(true)
        },
        {
            "account": local_account("suka-backup", "suka-xml", suka_endpoints, json!({})),
            "secret": suka_secret,
            "simulator": suka_sim(false)
        },
        {
            "account": coded_account("openapi-main", "openapi-rsa", json!({
                "submit": "{sim}/v1/openapi/order/VIPCharge", "query": "{sim}/v1/openapi/order/info",
                "balance": "{sim}/v1/openapi/merchant/business/balance"
            }), json!({"success_status": 0}),
            // The simulator's refusals before recording (params, product, account, balance) and its order
            // statuses; `8` (bizCode taken) and the `500` it answers after recording stay Unknown.
            json!({"submit": {"5": "refusal", "6": "refusal", "7": "refusal", "9": "refusal"},
                   "query": {"1": "accepted", "2": "success", "3": "failure"}})),
            "secret": {
                "business_id": "754ea3e3a699404f9b82e8f881107f19", "merchant_id": "eb1bb305ca3940f8adf1d4e964555699",
                "sign_type": "SHA256-RSA", "private_key_pem": PRIVATE_KEY, "platform_public_key_pem": PUBLIC_KEY,
                "sign_key": "TestSignKey0123"
            },
            "simulator": {"protocol": "openapi-rsa", "credentials": {
                "business_id": "754ea3e3a699404f9b82e8f881107f19", "merchant_id": "eb1bb305ca3940f8adf1d4e964555699",
                "sign_key": "TestSignKey0123", "public_key_pem": PUBLIC_KEY, "balance_fen": 100_000_000,
                "products": {"VIP-MONTH": {"face_fen": 3000, "price_fen": 2800}}
            }}
        },
        {
            "account": coded_account("sms-mp", "sms-billing", json!({"submit": "{sim}/mp/getSms"}), json!({"flow": "mp"}),
                json!({"callback": {"FAIL": "failure_final"}})),
            "secret": sms_secret.clone(),
            "simulator": sms_sim.clone()
        },
        {
            "account": coded_account("sms-pc", "sms-billing", json!({
                "submit": "{sim}/pc/getVerifyCode", "verify": "{sim}/pc/pay"
            }), json!({"flow": "pc"}),
            // 验证码支付: a wrong code and a failed charge charge nothing; the sync's FAIL is final.
            json!({"submit": {"1008": "failure_final", "1009": "failure_final"},
                   "callback": {"FAIL": "failure_final"}})),
            "secret": sms_secret,
            "simulator": sms_sim
        }
    ])
}

fn route(account: &str, product: &str, cost: i64) -> Value {
    json!({"provider_account": account, "provider_product": product, "cost_fen": cost})
}

fn catalog() -> Value {
    json!({
        "products": {
            "mobile.100": {"kind": "mobile_fast", "name": "话费快充 100 元", "face_value_fen": 10000, "price_fen": 10050,
                "routes": [route("wikeyun-main", "100", 10000), route("suka-backup", "M100", 9900)]},
            "mobile.slow.100": {"kind": "mobile_slow", "name": "话费慢充 100 元", "face_value_fen": 10000, "price_fen": 10000,
                "routes": [route("ice-main", "HF100", 9900), route("suka-backup", "M100", 9900)]},
            "mobile.single.100": {"kind": "mobile_fast", "name": "话费 100 元 (单通道)", "face_value_fen": 10000,
                "price_fen": 10050, "routes": [route("wikeyun-main", "100", 10000)]},
            "game.demo.60": {"kind": "game", "name": "游戏直充 60 元", "face_value_fen": 6000, "price_fen": 6000,
                "optional_extra": ["areaid", "serverid"], "routes": [route("suka-main", "G60", 5900)]},
            "electricity.sgcc.100": {"kind": "electricity", "name": "国网电费 100 元", "face_value_fen": 10000,
                "price_fen": 10000, "required_extra": ["area", "city", "phone"], "optional_extra": ["username", "type"],
                "routes": [route("suka-main", "8801", 9950)]},
            "vip.demo.month": {"kind": "vip", "name": "会员月卡", "face_value_fen": 3000, "price_fen": 3000,
                "optional_extra": ["mobile"], "routes": [route("openapi-main", "VIP-MONTH", 2800)]},
            "billing.sms.demo": {"kind": "billing_sms", "name": "短信代计费 2 元", "face_value_fen": 200, "price_fen": 200,
                "required_extra": ["imsi", "imei", "iccid"], "routes": [route("sms-mp", "P200", 1)]},
            "billing.code.demo": {"kind": "billing_code", "name": "验证码计费 2 元", "face_value_fen": 200, "price_fen": 200,
                "routes": [route("sms-pc", "P200", 1)]}
        },
        "accounts": {
            "wikeyun-main": {"enabled": true, "low_balance_fen": 5_000_000},
            "suka-main": {"enabled": true, "low_balance_fen": 5_000_000},
            "suka-backup": {"enabled": true, "low_balance_fen": 5_000_000},
            "openapi-main": {"enabled": true, "low_balance_fen": 1_000_000}
        }
    })
}
