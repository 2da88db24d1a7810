use super::*;
use crate::account::Protocol;
use crate::registry::Provider;
use crate::testkit::*;
use proptest::prelude::*;
use recharge_core::SmsInstruction;
use serde_json::json;

const SECRET: &str = r#"{"channelcode":"CH01","password":"pw&1","sync_key":"SyncKey0123"}"#;
const UNSIGNED_SECRET: &str = r#"{"channelcode":"CH01","password":"pw&1"}"#;

fn provider_with(options: serde_json::Value, secret: &str) -> Provider {
    let acct = account(
        Protocol::SmsBilling,
        &[
            ("submit", "https://billing.example.com/getsms"),
            ("verify", "https://billing.example.com/pay"),
        ],
        options,
    );
    Provider::load(acct, secret).unwrap()
}

fn coded(options: serde_json::Value, codes: serde_json::Value) -> Provider {
    let acct = account(
        Protocol::SmsBilling,
        &[
            ("submit", "https://billing.example.com/getsms"),
            ("verify", "https://billing.example.com/pay"),
        ],
        options,
    );
    Provider::load(with_codes(acct, codes), SECRET).unwrap()
}

fn mp() -> Provider {
    provider_with(json!({"flow": "mp"}), SECRET)
}

fn pc() -> Provider {
    provider_with(serde_json::Value::Null, SECRET)
}

fn sync() -> String {
    include_str!("fixtures/sync_delivered.query").to_owned()
}

fn signed(q: &str, key: &str) -> String {
    signed_as(q, key, Charset::Utf8)
}

fn signed_as(q: &str, key: &str, charset: Charset) -> String {
    let fields: BTreeMap<String, String> = codec::parse_form(q.as_bytes(), charset)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k != "sign")
        .collect();
    let unsigned: Vec<&str> = q.split('&').filter(|p| !p.starts_with("sign=")).collect();
    format!("{}&sign={}", unsigned.join("&"), sync_sign(&fields, key))
}

#[test]
fn sync_sign_has_a_known_answer() {
    let fields: BTreeMap<String, String> = codec::parse_form(sync().as_bytes(), Charset::Utf8)
        .unwrap()
        .into_iter()
        .collect();
    // Python: md5("cpparam=…&mobile=…&orderid=…&port=…&price=200&status=DELIVRD&time=…" + "SyncKey0123")
    assert_eq!(
        sync_sign(&fields, "SyncKey0123"),
        "AF1375F0163A23523C0BA6DE97F0B61C"
    );
}

#[test]
fn mp_request_carries_device_ids_and_our_id_as_cpparam() {
    let p = mp();
    let req = submit(
        "PRD200",
        "13800138000",
        &[
            ("imsi", "460001234567890"),
            ("imei", "860000000000001"),
            ("iccid", "89860000000000000001"),
        ],
    );
    let http = p.adapter.build_submit(&req, &ctx_at(0)).unwrap();
    assert_eq!(http.url, "https://billing.example.com/getsms");
    assert_eq!(
        String::from_utf8(http.body).unwrap(),
        "productcode=PRD200&channelcode=CH01&password=pw%261&imsi=460001234567890&imei=860000000000001&iccid=89860000000000000001&cpparam=7JUWX4CXN3GSIQOKCCTK01"
    );
    assert_eq!(
        p.adapter
            .build_submit(&submit("PRD200", "13800138000", &[]), &ctx_at(0)),
        Err(AdapterError::Missing("imsi"))
    );
    assert!(
        format!("{req:?}").contains("460****7890"),
        "Debug masks device ids"
    );
}

#[test]
fn mp_answer_is_sms_instructions() {
    let p = mp();
    assert_eq!(
        p.adapter
            .parse_submit(&ok(&include_bytes!("fixtures/mp_ok.json")[..]))
            .outcome,
        Outcome::ActionRequired {
            next: NextAction::SendSms {
                messages: vec![
                    SmsInstruction {
                        to: "1065553610007".to_owned(),
                        body: "ZQXX_200#7JUWX4CXN3GSIQOKCCTK01".to_owned()
                    },
                    SmsInstruction {
                        to: "10658008".to_owned(),
                        body: "QR200".to_owned()
                    },
                ]
            },
            provider_ref: Some("MP20240101000001".to_owned())
        }
    );
    for body in [
        r#"{"resultCode":"0","resultDesc":"","array":[],"orderId":"X"}"#,
        r#"{"resultCode":"0","resultDesc":"","array":[{"sms":"A"}],"orderId":"X"}"#,
    ] {
        assert!(matches!(
            p.adapter.parse_submit(&ok(body)).outcome,
            Outcome::Unknown { .. }
        ));
    }
    assert!(matches!(
        p.adapter.parse_submit(&ok(&include_bytes!("fixtures/refused.json")[..])).outcome,
        Outcome::Rejected { failover_allowed: true, reason } if reason.code == "1012"
    ));
    assert!(p.capabilities().two_step);
    assert_eq!(
        p.adapter.build_verification(
            &VerificationRequest {
                attempt: attempt(),
                provider_ref: "X".to_owned(),
                code: "1234".to_owned()
            },
            &ctx_at(0)
        ),
        Err(AdapterError::Unsupported("verification (MP flow)"))
    );
}

#[test]
fn pc_flow_is_code_request_then_verification() {
    let p = pc();
    let http = p
        .adapter
        .build_submit(&submit("PRD200", "13800138000", &[]), &ctx_at(0))
        .unwrap();
    assert_eq!(
        String::from_utf8(http.body).unwrap(),
        format!(
            "productcode=PRD200&channelcode=CH01&password=pw%261&phone=13800138000&cpparam={}",
            attempt()
        )
    );
    assert_eq!(
        p.adapter
            .parse_submit(&ok(&include_bytes!("fixtures/pc_code_sent.json")[..]))
            .outcome,
        Outcome::ActionRequired {
            next: NextAction::EnterVerificationCode,
            provider_ref: Some("PC20240101000001".to_owned())
        }
    );
    let v = VerificationRequest {
        attempt: attempt(),
        provider_ref: "PC20240101000001".to_owned(),
        code: " 123456 ".to_owned(),
    };
    assert!(!format!("{v:?}").contains("123456"));
    let http = p.adapter.build_verification(&v, &ctx_at(0)).unwrap();
    assert_eq!(http.url, "https://billing.example.com/pay");
    assert_eq!(
        String::from_utf8(http.body).unwrap(),
        "verifycode=123456&channelcode=CH01&password=pw%261&orderid=PC20240101000001"
    );
    assert_eq!(
        p.adapter
            .parse_verification(&ok(&include_bytes!("fixtures/pay_ok.json")[..]))
            .outcome,
        Outcome::Succeeded {
            provider_ref: Some("PC20240101000001".to_owned())
        }
    );
    // 验证码支付 charges: a code the account does not list may have charged the user, so it is Unknown
    // (docs/providers/README.md §4 rule 1) …
    let refused = p
        .adapter
        .parse_verification(&ok(&include_bytes!("fixtures/refused.json")[..]));
    assert!(
        matches!(refused.outcome, Outcome::Unknown { .. }),
        "{refused:?}"
    );
    assert!(refused.unlisted.is_some());
    // … until the account lists it as a failure.
    let listed = coded(
        serde_json::Value::Null,
        json!({"submit": {"1012": "failure_final"}}),
    );
    assert!(matches!(
        listed
            .adapter
            .parse_verification(&ok(&include_bytes!("fixtures/refused.json")[..]))
            .outcome,
        Outcome::Failed {
            failover_allowed: false,
            ..
        }
    ));
    // A lost or broken answer to 验证码支付 is Unknown: it may have charged.
    for bad in [HttpResponse::new(504, &b""[..]), ok(&b"<html>"[..])] {
        assert!(matches!(
            p.adapter.parse_verification(&bad).outcome,
            Outcome::Unknown { .. }
        ));
    }
    for code in ["", "12 34", "1234567890abcdefg", "一二三"] {
        let v = VerificationRequest {
            code: code.to_owned(),
            ..v.clone()
        };
        assert!(
            p.adapter.build_verification(&v, &ctx_at(0)).is_err(),
            "{code:?}"
        );
    }
}

#[test]
fn json_body_format_is_an_option() {
    let p = provider_with(json!({"body_format": "json"}), SECRET);
    let http = p
        .adapter
        .build_submit(&submit("PRD200", "13800138000", &[]), &ctx_at(0))
        .unwrap();
    assert_eq!(
        http.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        String::from_utf8(http.body).unwrap(),
        format!(
            r#"{{"productcode":"PRD200","channelcode":"CH01","password":"pw&1","phone":"13800138000","cpparam":"{}"}}"#,
            attempt()
        )
    );
}

#[test]
fn no_query_and_no_balance() {
    let p = pc();
    let q = QueryRequest {
        attempt: attempt(),
        provider_ref: None,
    };
    assert_eq!(
        p.adapter.build_query(&q, &ctx_at(0)),
        Err(AdapterError::Unsupported("query"))
    );
    assert_eq!(
        p.adapter.build_balance(&ctx_at(0)),
        Err(AdapterError::Unsupported("balance"))
    );
    assert!(!p.capabilities().query_by_our_id);
}

#[test]
fn signed_sync_is_verified_and_parsed() {
    let p = mp();
    let ev = p
        .adapter
        .verify_and_parse_callback(&get(&signed(&sync(), "SyncKey0123")))
        .unwrap();
    assert_eq!(ev.attempt, attempt());
    assert_eq!(ev.trust, CallbackTrust::Signed);
    assert_eq!(
        ev.outcome,
        Outcome::Succeeded {
            provider_ref: Some("MP20240101000001".to_owned())
        }
    );
    // Only DELIVRD is known: any other sync status is Unknown unless the account lists it.
    let failed = signed(&sync().replace("DELIVRD", "UNDELIV"), "SyncKey0123");
    let ev = p.adapter.verify_and_parse_callback(&get(&failed)).unwrap();
    assert!(
        matches!(ev.outcome, Outcome::Unknown { .. }),
        "{:?}",
        ev.outcome
    );
    assert_eq!(ev.unlisted.map(|u| u.code).as_deref(), Some("UNDELIV"));
    let listed = coded(
        json!({"flow": "mp"}),
        json!({"callback": {"UNDELIV": "failure_final"}}),
    );
    let ev = listed
        .adapter
        .verify_and_parse_callback(&get(&failed))
        .unwrap();
    assert!(matches!(
        ev.outcome,
        Outcome::Failed {
            failover_allowed: false,
            ..
        }
    ));
    let ack = p.adapter.callback_ack(CallbackAck::Accepted);
    assert_eq!((ack.status, ack.body.as_slice()), (200, &b"ok"[..]));
}

#[test]
fn tampered_sync_is_refused() {
    let q =
        signed(&sync().replace("DELIVRD", "UNDELIV"), "SyncKey0123").replace("UNDELIV", "DELIVRD");
    assert_eq!(
        mp().adapter.verify_and_parse_callback(&get(&q)),
        Err(CallbackError::BadSignature)
    );
}

#[test]
fn sync_signed_with_a_wrong_key_is_refused() {
    assert_eq!(
        mp().adapter
            .verify_and_parse_callback(&get(&signed(&sync(), "OtherKey"))),
        Err(CallbackError::BadSignature)
    );
    // A signed sync we cannot check (no key configured) is refused too.
    let nokey = provider_with(json!({"flow": "mp"}), UNSIGNED_SECRET);
    assert_eq!(
        nokey
            .adapter
            .verify_and_parse_callback(&get(&signed(&sync(), "SyncKey0123"))),
        Err(CallbackError::BadSignature)
    );
}

#[test]
fn unsigned_sync_is_refused_when_signatures_are_required_and_a_hint_otherwise() {
    let strict = provider_with(json!({"flow": "mp", "require_sync_sign": true}), SECRET);
    assert_eq!(
        strict.adapter.verify_and_parse_callback(&get(&sync())),
        Err(CallbackError::MissingSignature)
    );
    let lax = provider_with(json!({"flow": "mp"}), UNSIGNED_SECRET);
    let ev = lax
        .adapter
        .verify_and_parse_callback(&get(&sync()))
        .unwrap();
    assert_eq!(ev.trust, CallbackTrust::Unverified);
    // require_sync_sign without a key is a load-time error.
    let acct = account(
        Protocol::SmsBilling,
        &[("submit", "https://h/a")],
        json!({"flow": "mp", "require_sync_sign": true}),
    );
    assert!(Provider::load(acct, UNSIGNED_SECRET).is_err());
}

#[test]
fn sync_in_the_wrong_encoding_is_refused() {
    // A GBK-encoded field in a channel configured for UTF-8.
    // Signed correctly over the GBK-decoded text, so only the encoding is wrong.
    let q = signed_as(
        &format!("{}&msg=%B3%C9%B9%A6", sync()),
        "SyncKey0123",
        Charset::Gbk,
    );
    assert!(matches!(
        mp().adapter.verify_and_parse_callback(&get(&q)),
        Err(CallbackError::Body(_))
    ));
}

#[test]
fn pc_account_needs_a_verify_endpoint() {
    let acct = account(
        Protocol::SmsBilling,
        &[("submit", "https://h/a")],
        serde_json::Value::Null,
    );
    assert!(matches!(
        Provider::load(acct, SECRET),
        Err(ConfigError::Endpoint { .. })
    ));
}

proptest! {
    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        for p in [mp(), pc()] {
            let _ = p.adapter.parse_submit(&ok(bytes.clone())).outcome;
            let _ = p.adapter.parse_verification(&ok(bytes.clone())).outcome;
            let _ = p.adapter.verify_and_parse_callback(&post(&[], bytes.clone()));
        }
    }
}

#[test]
fn pc_cpparam_can_be_switched_off_for_channels_that_refuse_it() {
    // The seed lists no cpparam for the PC request; without it a sync cannot name our order, so it is on by
    // default and an option for a channel that refuses unknown fields.
    let p = provider_with(
        serde_json::json!({"flow": "pc", "pc_cpparam": false}),
        &serde_json::json!({"channelcode": "CH01", "password": "pw&1"}).to_string(),
    );
    let http = p
        .adapter
        .build_submit(&submit("PRD200", "13800138000", &[]), &ctx_at(0))
        .unwrap();
    assert_eq!(
        String::from_utf8(http.body).unwrap(),
        "productcode=PRD200&channelcode=CH01&password=pw%261&phone=13800138000"
    );
}
