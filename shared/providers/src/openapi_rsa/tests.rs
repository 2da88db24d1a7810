use super::*;
use crate::account::Protocol;
use crate::registry::Provider;
use crate::testkit::*;
use proptest::prelude::*;
use serde_json::json;

const PRIVATE: &str = include_str!("fixtures/004_rsa_test_private_key.pem");
const PUBLIC: &str = include_str!("fixtures/004_rsa_test_public_key.pem");
const BUSINESS: &str = "754ea3e3a699404f9b82e8f881107f19";
const MERCHANT: &str = "eb1bb305ca3940f8adf1d4e964555699";
const NONCE: &str = "24bc2c17-0fef-440e-ba32-385c47c6cfa4";
const TS: i64 = 1_628_772_138_668;
const DOC_BODY: &str = r#"{"businessId":"754ea3e3a699404f9b82e8f881107f19","merchantId":"eb1bb305ca3940f8adf1d4e964555699"}"#;
const RSA_DOC_SIGN: &str = "wek13Sv38t4kL8Rk+KuXDXbAWdyowQC/6N3Yw4FzkGMgX1oJi0sUHIdeao0pUXjXzzamB8y+FqGF0/n7nUvQnukFsEOmy+uItuxwrsuzhACs1S6UeefUZb0HYohI0ic4eve/oCRlI1VVPuEmvASkcVq+kycwP6yz1pLCs/5V7Bu+YkX/68vCB78xx28LJT9AUPsRTlFqJjHr1rzWOiQqOY2LVjFN7ZBCUp3kjklTjMjyrqBJFnY1zxuMN1kRAKkK1VmLfmBGmGigh5KkHfdCIbOvMNBJa23UmSw5HsW+S8bUqUVsri5hUC0u0oIwX8O9KJr/VIBNa1mzcGJgnKvI5A==";

fn rsa_secret() -> String {
    json!({
        "business_id": BUSINESS,
        "merchant_id": MERCHANT,
        "sign_type": "SHA256-RSA",
        "private_key_pem": PRIVATE,
        "platform_public_key_pem": PUBLIC,
    })
    .to_string()
}

fn md5_secret() -> String {
    json!({"business_id": BUSINESS, "merchant_id": MERCHANT, "sign_type": "MD5", "sign_key": "TestSignKey0123"})
        .to_string()
}

/// A test account states what the seed does not give (docs/providers/README.md §4 rule 2): the success status (0 unless
/// `options` says otherwise) and the order statuses 1 processing, 2 success, 3 failed.
fn acct(options: serde_json::Value) -> ProviderAccount {
    let mut options = if options.is_null() {
        json!({})
    } else {
        options
    };
    if let Some(o) = options.as_object_mut() {
        o.entry("success_status").or_insert(json!(0));
    }
    with_codes(
        bare_acct(options),
        json!({"query": {"1": "accepted", "2": "success", "3": "failure"}}),
    )
}

fn bare_acct(options: serde_json::Value) -> ProviderAccount {
    account(
        Protocol::OpenapiRsa,
        &[
            (
                "submit",
                "https://dh.example.com/v1/openapi/order/VIPCharge",
            ),
            ("query", "https://dh.example.com/v1/openapi/order/info"),
            (
                "balance",
                "https://dh.example.com/v1/openapi/merchant/business/balance",
            ),
        ],
        options,
    )
}

fn rsa() -> Provider {
    Provider::load(acct(serde_json::Value::Null), &rsa_secret()).unwrap()
}

fn md5() -> Provider {
    Provider::load(acct(serde_json::Value::Null), &md5_secret()).unwrap()
}

fn headers(sign_type: Option<&'static str>) -> BTreeMap<&'static str, &'static str> {
    let mut h = BTreeMap::new();
    h.insert("businessId", BUSINESS);
    h.insert("nonce", NONCE);
    h.insert("timestamp", "1628772138668");
    if let Some(t) = sign_type {
        h.insert("signType", t);
    }
    h
}

// ---- worked examples (docs/providers/openapi-rsa.md §4), byte-exact ----

#[test]
fn sign_content_matches_the_doc_example() {
    let c = sign_content(&headers(Some("SHA256-RSA")), DOC_BODY.as_bytes());
    assert_eq!(
        String::from_utf8(c).unwrap(),
        format!(
            "businessId={BUSINESS}&nonce={NONCE}&signType=SHA256-RSA&timestamp=1628772138668{DOC_BODY}"
        )
    );
}

#[test]
fn md5_signs_match_the_worked_examples() {
    let c = sign_content(&headers(Some("MD5")), DOC_BODY.as_bytes());
    assert_eq!(
        md5_sign(&c, "TestSignKey0123"),
        "09AE596CD5BD8133EE0536CCBE19A56B"
    );
    let cb = sign_content(&headers(None), br#"{"orderCode":"O1","bizCode":"B1"}"#);
    assert_eq!(
        String::from_utf8(cb.clone()).unwrap(),
        format!(
            "businessId={BUSINESS}&nonce={NONCE}&timestamp=1628772138668{{\"orderCode\":\"O1\",\"bizCode\":\"B1\"}}"
        )
    );
    assert_eq!(
        md5_sign(&cb, "TestSignKey0123"),
        "F65D65C95DB72989FE32318FBF64D7D4"
    );
}

#[test]
fn rsa_sign_matches_the_worked_example_and_verifies_with_the_public_key() {
    let signer = RsaSigner::from_pem(PRIVATE).unwrap();
    let c = sign_content(&headers(Some("SHA256-RSA")), DOC_BODY.as_bytes());
    let sig = signer.sign_base64(&c).unwrap();
    assert!(sig.starts_with(
        "wek13Sv38t4kL8Rk+KuXDXbAWdyowQC/6N3Yw4FzkGMgX1oJi0sUHIdeao0pUXjXzzamB8y+FqGF0/n7nUvQnukF"
    ));
    // Full value computed with `openssl dgst -sha256 -sign` over the same content.
    assert_eq!(sig, RSA_DOC_SIGN);
    let verifier = RsaVerifier::from_pem(PUBLIC).unwrap();
    assert!(verifier.verify_base64(&c, &sig));
    let mut tampered = c.clone();
    tampered[0] = b'B';
    assert!(!verifier.verify_base64(&tampered, &sig));
    assert!(!verifier.verify_base64(&c, "not base64!"));
}

#[test]
fn the_doc_example_is_our_balance_request_byte_for_byte() {
    let p = rsa();
    let http = p.adapter.build_balance(&ctx_at(TS)).unwrap();
    assert_eq!(http.method, Method::Post);
    assert_eq!(http.body, DOC_BODY.as_bytes());
    let h: Vec<(&str, &str)> = http
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        h,
        vec![
            ("Content-Type", "application/json; charset=utf-8"),
            ("Accept", "application/json"),
            ("businessId", BUSINESS),
            ("nonce", NONCE),
            ("signType", "SHA256-RSA"),
            ("timestamp", "1628772138668"),
            ("sign", RSA_DOC_SIGN),
        ]
    );
    let m = md5().adapter.build_balance(&ctx_at(TS)).unwrap();
    assert_eq!(m.header("sign"), Some("09AE596CD5BD8133EE0536CCBE19A56B"));
}

#[test]
fn sign_type_header_is_left_out_of_the_string_when_not_sent() {
    let p = Provider::load(acct(json!({"send_sign_type": false})), &md5_secret()).unwrap();
    let http = p.adapter.build_balance(&ctx_at(TS)).unwrap();
    assert_eq!(http.header("signType"), None);
    let c = sign_content(&headers(None), DOC_BODY.as_bytes());
    assert_eq!(
        http.header("sign"),
        Some(md5_sign(&c, "TestSignKey0123").as_str())
    );
}

#[test]
fn vip_charge_request_is_ordered_json_signed_over_the_sent_bytes() {
    let p = md5();
    let mut req = submit("VIP-TX-MONTH", "13800138000", &[("mobile", "13800138000")]);
    req.callback_url = Some("https://gw.example.com/v1/callbacks/dh-1".to_owned());
    let http = p.adapter.build_submit(&req, &ctx_at(TS)).unwrap();
    assert_eq!(
        http.url,
        "https://dh.example.com/v1/openapi/order/VIPCharge"
    );
    let body = String::from_utf8(http.body.clone()).unwrap();
    assert_eq!(
        body,
        format!(
            r#"{{"merchantId":"{MERCHANT}","businessId":"{BUSINESS}","productCode":"VIP-TX-MONTH","mobile":"13800138000","account":"13800138000","bizCode":"7JUWX4CXN3GSIQOKCCTK01","callbackUrl":"https://gw.example.com/v1/callbacks/dh-1"}}"#
        )
    );
    let c = sign_content(&headers(Some("MD5")), &http.body);
    assert_eq!(
        http.header("sign"),
        Some(md5_sign(&c, "TestSignKey0123").as_str())
    );
    // Query addresses our bizCode (and the platform's orderCode when known).
    let q = p
        .adapter
        .build_query(
            &QueryRequest {
                attempt: attempt(),
                provider_ref: Some("P1".to_owned()),
            },
            &ctx_at(TS),
        )
        .unwrap();
    assert_eq!(
        q.body,
        br#"{"orderCode":"P1","bizCode":"7JUWX4CXN3GSIQOKCCTK01"}"#
    );
}

#[test]
fn fresh_contexts_have_distinct_nonces() {
    let a = RequestContext::fresh(recharge_core::Timestamp::from_millis(TS)).unwrap();
    let b = RequestContext::fresh(recharge_core::Timestamp::from_millis(TS)).unwrap();
    assert_ne!(a.nonce, b.nonce);
    assert_eq!(a.nonce.len(), 36);
}

// ---- responses ----

#[test]
fn submit_answers_are_classified() {
    let p = rsa();
    assert_eq!(
        p.adapter
            .parse_submit(&ok(&include_bytes!("fixtures/vipcharge_ok.json")[..]))
            .outcome,
        Outcome::Accepted {
            provider_ref: Some("P202108120001".to_owned())
        }
    );
    assert!(matches!(
        p.adapter.parse_submit(&ok(&include_bytes!("fixtures/sign_failed.json")[..])).outcome,
        Outcome::Rejected { failover_allowed: true, reason } if reason.code == "2"
    ));
    // The seed's 961 is a placeholder, not success. Under an account whose success status is 0 it is an
    // unlisted status: Unknown, never a refusal that fails over (docs/providers/README.md §4 rule 1) …
    let placeholder = p
        .adapter
        .parse_submit(&ok(&include_bytes!("fixtures/seed_placeholder.json")[..]));
    assert!(matches!(placeholder.outcome, Outcome::Unknown { .. }));
    assert_eq!(placeholder.unlisted.map(|u| u.code).as_deref(), Some("961"));
    // … as is an in-band "busy" answer that may have followed a recorded order …
    let busy = json!({"status": 500, "message": "系统繁忙", "data": null}).to_string();
    assert!(matches!(
        p.adapter.parse_submit(&ok(busy)).outcome,
        Outcome::Unknown { .. }
    ));
    // … and success when an account is configured that way.
    let custom = Provider::load(acct(json!({"success_status": 961})), &rsa_secret()).unwrap();
    assert!(matches!(
        custom
            .adapter
            .parse_submit(&ok(&include_bytes!("fixtures/seed_placeholder.json")[..]))
            .outcome,
        Outcome::Accepted { .. }
    ));
    for msg in ["bizCode已存在", "订单号重复", "Order already EXISTS"] {
        let body = json!({"status": 1001, "message": msg, "data": null}).to_string();
        assert!(
            matches!(
                p.adapter.parse_submit(&ok(body)).outcome,
                Outcome::Unknown { .. }
            ),
            "{msg}"
        );
    }
    for bad in [
        HttpResponse::new(503, &br#"{"status":0}"#[..]),
        ok(&b"garbage"[..]),
        ok(&br#"{"message":"no status"}"#[..]),
        ok(&br#"{"status":"x"}"#[..]),
    ] {
        assert!(matches!(
            p.adapter.parse_submit(&bad).outcome,
            Outcome::Unknown { .. }
        ));
    }
}

fn order(status: serde_json::Value) -> Vec<u8> {
    json!({"status":0,"message":"success","data":{"orderCode":"P1","bizCode":"7JUWX4CXN3GSIQOKCCTK01","status":status}})
        .to_string()
        .into_bytes()
}

#[test]
fn order_statuses_follow_the_configurable_map() {
    let p = rsa();
    let r = Some("P1".to_owned());
    assert_eq!(
        p.adapter.parse_query(&ok(order(json!(1)))).outcome,
        Outcome::Accepted {
            provider_ref: r.clone()
        }
    );
    assert_eq!(
        p.adapter.parse_query(&ok(order(json!("2")))).outcome,
        Outcome::Succeeded {
            provider_ref: r.clone()
        }
    );
    assert!(matches!(
        p.adapter.parse_query(&ok(order(json!(3)))).outcome,
        Outcome::Failed {
            failover_allowed: true,
            ..
        }
    ));
    for s in [json!(0), json!(4), json!(null), json!("SUCCESS")] {
        assert!(
            matches!(
                p.adapter.parse_query(&ok(order(s.clone()))).outcome,
                Outcome::Unknown { .. }
            ),
            "{s}"
        );
    }
    assert!(matches!(
        p.adapter
            .parse_query(&ok(&include_bytes!("fixtures/sign_failed.json")[..]))
            .outcome,
        Outcome::Unknown { .. }
    ));
    let custom = Provider::load(
        with_codes(
            bare_acct(json!({"success_status": 0, "status_field": "orderStatus"})),
            json!({"query": {"PROCESSING": "accepted", "SUCCESS": "success", "FAIL": "failure"}}),
        ),
        &rsa_secret(),
    )
    .unwrap();
    let body = json!({"status":0,"data":{"orderCode":"P1","orderStatus":"SUCCESS"}}).to_string();
    assert!(matches!(
        custom.adapter.parse_query(&ok(body)).outcome,
        Outcome::Succeeded { .. }
    ));
}

#[test]
fn an_account_without_a_stated_success_status_refuses_to_load_naming_it() {
    let no_success = with_codes(bare_acct(json!({})), json!({"query": {"2": "success"}}));
    let e = Provider::load(no_success, &rsa_secret())
        .unwrap_err()
        .to_string();
    assert!(e.contains("success_status"), "{e}");
    let no_statuses = bare_acct(json!({"success_status": 0}));
    let e = Provider::load(no_statuses, &rsa_secret())
        .unwrap_err()
        .to_string();
    assert!(e.contains("codes.query"), "{e}");
}

#[test]
fn answers_echo_the_biz_code_and_report_the_settlement_price() {
    let p = rsa();
    let parsed = p.adapter.parse_query(&ok(json!({"status":0,"data":{
        "orderCode":"P1","bizCode":"OTHERORDER0000000000001","status":2,"settlementPrice":"28.00"}})
    .to_string()));
    assert_eq!(parsed.echoed.as_deref(), Some("OTHERORDER0000000000001"));
    assert_eq!(parsed.reported.cost, Some(Fen::new(2800)));
}

#[test]
fn balance_is_amount_in_yuan() {
    let p = rsa();
    assert_eq!(
        p.adapter
            .parse_balance(&ok(&include_bytes!("fixtures/balance_ok.json")[..])),
        Ok(Fen::new(123_450))
    );
    assert!(
        p.adapter
            .parse_balance(&ok(&include_bytes!("fixtures/sign_failed.json")[..]))
            .is_err()
    );
}

#[test]
fn response_signatures_are_checked_when_enabled() {
    let p = Provider::load(acct(json!({"verify_response_sign": true})), &md5_secret()).unwrap();
    let body = include_bytes!("fixtures/vipcharge_ok.json").to_vec();
    let c = sign_content(&headers(None), &body);
    let mut resp = ok(body.clone());
    resp.headers = vec![
        ("businessId".to_owned(), BUSINESS.to_owned()),
        ("nonce".to_owned(), NONCE.to_owned()),
        ("timestamp".to_owned(), "1628772138668".to_owned()),
        ("sign".to_owned(), md5_sign(&c, "TestSignKey0123")),
    ];
    assert!(matches!(
        p.adapter.parse_submit(&resp).outcome,
        Outcome::Accepted { .. }
    ));
    resp.headers[3].1 = md5_sign(&c, "other");
    assert!(matches!(
        p.adapter.parse_submit(&resp).outcome,
        Outcome::Unknown { .. }
    ));
}

// ---- callbacks ----

fn callback_body() -> Vec<u8> {
    include_bytes!("fixtures/callback_success.json").to_vec()
}

/// A callback as the platform sends it: headers businessId, nonce, timestamp, sign (no signType).
fn signed_callback(body: &[u8], sign_with: impl Fn(&[u8]) -> String) -> RawCallback {
    let c = sign_content(&headers(None), body);
    post(
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("businessid", BUSINESS),
            ("nonce", NONCE),
            ("timestamp", "1628772138668"),
            ("sign", &sign_with(&c)),
        ],
        body.to_vec(),
    )
}

fn rsa_sign(c: &[u8]) -> String {
    RsaSigner::from_pem(PRIVATE)
        .unwrap()
        .sign_base64(c)
        .unwrap()
}

fn md5_with(key: &'static str) -> impl Fn(&[u8]) -> String {
    move |c| md5_sign(c, key)
}

#[test]
fn valid_callbacks_verify_with_rsa_and_md5() {
    for (p, raw) in [
        (rsa(), signed_callback(&callback_body(), rsa_sign)),
        (
            md5(),
            signed_callback(&callback_body(), md5_with("TestSignKey0123")),
        ),
    ] {
        let ev = p.adapter.verify_and_parse_callback(&raw).unwrap();
        assert_eq!(ev.attempt, attempt());
        assert_eq!(ev.trust, CallbackTrust::Signed);
        assert_eq!(
            ev.outcome,
            Outcome::Succeeded {
                provider_ref: Some("P202108120001".to_owned())
            }
        );
        let ack = p.adapter.callback_ack(CallbackAck::Accepted);
        assert_eq!((ack.status, ack.body.as_slice()), (200, &b"SUCCESS"[..]));
        assert_ne!(
            p.adapter.callback_ack(CallbackAck::Rejected).body,
            b"SUCCESS"
        );
    }
}

#[test]
fn tampered_callback_body_or_header_is_refused() {
    let p = rsa();
    let mut raw = signed_callback(&callback_body(), rsa_sign);
    raw.body = String::from_utf8(raw.body)
        .unwrap()
        .replace("\"status\":2", "\"status\":3")
        .into_bytes();
    assert_eq!(
        p.adapter.verify_and_parse_callback(&raw),
        Err(CallbackError::BadSignature)
    );
    let mut raw = signed_callback(&callback_body(), rsa_sign);
    raw.headers[2].1 = "another-nonce".to_owned();
    assert_eq!(
        p.adapter.verify_and_parse_callback(&raw),
        Err(CallbackError::BadSignature)
    );
    // Re-serialising the JSON (whitespace) breaks the signature: we verify the raw bytes.
    let mut raw = signed_callback(&callback_body(), rsa_sign);
    raw.body =
        serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(&raw.body).unwrap())
            .unwrap();
    assert_eq!(
        p.adapter.verify_and_parse_callback(&raw),
        Err(CallbackError::BadSignature)
    );
}

#[test]
fn callback_signed_with_a_wrong_key_is_refused() {
    assert_eq!(
        md5()
            .adapter
            .verify_and_parse_callback(&signed_callback(&callback_body(), md5_with("WrongKey"))),
        Err(CallbackError::BadSignature)
    );
    // An MD5-signed callback does not pass an RSA account (no sign key to check it with).
    assert_eq!(
        rsa().adapter.verify_and_parse_callback(&signed_callback(
            &callback_body(),
            md5_with("TestSignKey0123")
        )),
        Err(CallbackError::BadSignature)
    );
}

#[test]
fn unsigned_callback_is_refused() {
    let mut raw = signed_callback(&callback_body(), rsa_sign);
    raw.headers.retain(|(k, _)| k != "sign");
    assert_eq!(
        rsa().adapter.verify_and_parse_callback(&raw),
        Err(CallbackError::MissingSignature)
    );
}

#[test]
fn callback_in_the_wrong_encoding_is_refused() {
    let mut body =
        br#"{"orderCode":"P1","bizCode":"7JUWX4CXN3GSIQOKCCTK01","status":3,"message":""#.to_vec();
    body.extend(crate::codec::Charset::Gbk.encode("充值失败").unwrap());
    body.extend(br#""}"#);
    // Even correctly signed over those bytes, a non-UTF-8 JSON body is refused.
    let raw = signed_callback(&body, rsa_sign);
    assert!(matches!(
        rsa().adapter.verify_and_parse_callback(&raw),
        Err(CallbackError::Body(_))
    ));
}

#[test]
fn callback_for_another_business_is_refused_even_when_signed() {
    let mut h = headers(None);
    h.insert("businessId", "someoneelse");
    let body = callback_body();
    let c = sign_content(&h, &body);
    let raw = post(
        &[
            ("businessId", "someoneelse"),
            ("nonce", NONCE),
            ("timestamp", "1628772138668"),
            ("sign", &rsa_sign(&c)),
        ],
        body,
    );
    assert_eq!(
        rsa().adapter.verify_and_parse_callback(&raw),
        Err(CallbackError::WrongAccount)
    );
}

#[test]
fn keys_are_checked_at_load() {
    let bad = json!({"business_id": BUSINESS, "merchant_id": MERCHANT, "private_key_pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "platform_public_key_pem": PUBLIC}).to_string();
    assert!(Provider::load(acct(serde_json::Value::Null), &bad).is_err());
    let no_platform =
        json!({"business_id": BUSINESS, "merchant_id": MERCHANT, "private_key_pem": PRIVATE})
            .to_string();
    assert!(Provider::load(acct(serde_json::Value::Null), &no_platform).is_err());
    let md5_without_key =
        json!({"business_id": BUSINESS, "merchant_id": MERCHANT, "sign_type": "MD5"}).to_string();
    assert!(Provider::load(acct(serde_json::Value::Null), &md5_without_key).is_err());
    let p = rsa();
    let dbg = format!("{p:?}");
    assert!(!dbg.contains("MIIE"), "Debug must not show key material");
}

proptest! {
    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400), sign in "\\PC{0,40}") {
        let p = rsa();
        let _ = p.adapter.parse_submit(&ok(bytes.clone())).outcome;
        let _ = p.adapter.parse_query(&ok(bytes.clone())).outcome;
        let _ = p.adapter.parse_balance(&ok(bytes.clone()));
        let raw = post(&[("businessId", BUSINESS), ("nonce", "n"), ("timestamp", "1"), ("sign", &sign)], bytes);
        let refused = p.adapter.verify_and_parse_callback(&raw).is_err();
        prop_assert!(refused);
    }
}

fn rsa_secret_with_sign_key() -> String {
    json!({
        "business_id": BUSINESS, "merchant_id": MERCHANT, "sign_type": "SHA256-RSA",
        "private_key_pem": PRIVATE, "platform_public_key_pem": PUBLIC, "sign_key": "TestSignKey0123",
    })
    .to_string()
}

#[test]
fn an_rsa_account_with_a_sign_key_verifies_callbacks_with_the_documented_md5_routine() {
    // docs/providers/openapi-rsa.md §4 step 4: callbacks carry no signType and the doc verifies them with the MD5
    // routine, whatever the account signs its own requests with.
    let p = Provider::load(acct(serde_json::Value::Null), &rsa_secret_with_sign_key()).unwrap();
    let raw = signed_callback(&callback_body(), md5_with("TestSignKey0123"));
    assert_eq!(
        p.adapter.verify_and_parse_callback(&raw).unwrap().trust,
        CallbackTrust::Signed
    );
    // An RSA-signed callback does not pass the MD5 check.
    let raw = signed_callback(&callback_body(), rsa_sign);
    assert_eq!(
        p.adapter.verify_and_parse_callback(&raw),
        Err(CallbackError::BadSignature)
    );
}

#[test]
fn callback_sign_type_option_overrides_the_default() {
    let p = Provider::load(
        acct(json!({"callback_sign_type": "SHA256-RSA"})),
        &rsa_secret_with_sign_key(),
    )
    .unwrap();
    let md5_signed = signed_callback(&callback_body(), md5_with("TestSignKey0123"));
    assert_eq!(
        p.adapter.verify_and_parse_callback(&md5_signed),
        Err(CallbackError::BadSignature)
    );
    let rsa_signed = signed_callback(&callback_body(), rsa_sign);
    assert!(p.adapter.verify_and_parse_callback(&rsa_signed).is_ok());
    // MD5 callbacks need a sign key: refused at load, not on the first callback.
    let err =
        Provider::load(acct(json!({"callback_sign_type": "MD5"})), &rsa_secret()).unwrap_err();
    assert!(err.to_string().contains("sign_key"), "{err}");
}
