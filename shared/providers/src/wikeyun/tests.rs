use super::*;
use crate::account::Protocol;
use crate::registry::Provider;
use crate::testkit::*;
use proptest::prelude::*;
use serde_json::json;

const SECRET_JSON: &str = r#"{"app_key":100001,"app_secret":"TestAppSecret0123"}"#;
const SECRET: &str = "TestAppSecret0123";
const TS_MS: i64 = 1_700_000_000_000;

fn provider_with(options: serde_json::Value) -> Provider {
    provider_coded(options, json!({}))
}

fn provider_coded(options: serde_json::Value, codes: serde_json::Value) -> Provider {
    let mut opts = json!({"store_id": "1234"});
    if let (Some(o), Some(extra)) = (opts.as_object_mut(), options.as_object()) {
        for (k, v) in extra {
            o.insert(k.clone(), v.clone());
        }
    }
    let acct = account(
        Protocol::Wikeyun,
        &[
            (
                "submit",
                "https://router.wikeyun.cn/rest/Recharge/pushOrder",
            ),
            ("query", "https://router.wikeyun.cn/rest/Recharge/query"),
            ("balance", "https://router.wikeyun.cn/rest/User/query"),
        ],
        opts,
    );
    Provider::load(with_codes(acct, codes), SECRET_JSON).unwrap()
}

fn provider() -> Provider {
    provider_with(json!({}))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn common() -> Vec<(&'static str, &'static str)> {
    vec![
        ("app_key", "100001"),
        ("client", "127.0.0.1"),
        ("format", "json"),
        ("timestamp", "1700000000"),
        ("v", "1.0"),
    ]
}

// ---- worked examples (docs/providers/wikeyun.md §4), byte-exact ----

#[test]
fn push_order_sign_string_and_sign_match_the_worked_example() {
    let mut p = common();
    p.extend([
        ("store_id", "1234"),
        ("mobile", "13800138000"),
        ("order_no", "T202401010001"),
        ("money", "100"),
        ("recharge_type", "1"),
        ("notify_url", "https://example.com/notify"),
    ]);
    let params = map(&p);
    assert_eq!(
        sign::top_sign_string(SECRET, &params),
        "TestAppSecret0123app_key100001client127.0.0.1formatjsonmobile13800138000money100notify_urlhttps://example.com/notifyorder_noT202401010001recharge_type1store_id1234timestamp1700000000v1.0TestAppSecret0123"
    );
    assert_eq!(
        sign::top_md5(SECRET, &params),
        "F639BBE261C82EAFA1DCE8A6B34B5C36"
    );
}

#[test]
fn query_and_user_query_signs_match_the_worked_examples() {
    let mut p = common();
    p.push(("order_number", "W202401010000001"));
    assert_eq!(
        sign::top_md5(SECRET, &map(&p)),
        "B2E44C2CC1269A70545007A4BC0D9CF7"
    );
    assert_eq!(
        sign::top_md5(SECRET, &map(&common())),
        "CBC9BB0DF12916303A5AB0FF0C52156B"
    );
}

#[test]
fn push_order_request_is_byte_exact() {
    let p = provider_with(json!({"change": null}));
    let mut req = submit("100", "13800138000", &[]);
    req.callback_url = Some("https://example.com/notify".to_owned());
    let http = p.adapter.build_submit(&req, &ctx_at(TS_MS)).unwrap();
    assert_eq!(http.method, Method::Post);
    // Sign computed independently in Python over the same params (our order_no instead of the example's).
    assert_eq!(
        http.url,
        "https://router.wikeyun.cn/rest/Recharge/pushOrder?app_key=100001&timestamp=1700000000&client=127.0.0.1&format=json&v=1.0&sign=9DA8729D52D11C0A7B8A7C1CBDACE34F"
    );
    assert_eq!(
        String::from_utf8(http.body.clone()).unwrap(),
        "store_id=1234&mobile=13800138000&order_no=7JUWX4CXN3GSIQOKCCTK01&money=100&recharge_type=1&notify_url=https%3A%2F%2Fexample.com%2Fnotify&app_key=100001&timestamp=1700000000&client=127.0.0.1&format=json&v=1.0"
    );
    assert_eq!(
        http.header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[test]
fn change_zero_is_sent_and_signed_by_default() {
    let p = provider();
    let mut req = submit("100", "13800138000", &[]);
    req.callback_url = Some("https://example.com/notify".to_owned());
    let http = p.adapter.build_submit(&req, &ctx_at(TS_MS)).unwrap();
    assert!(http.url.ends_with("&sign=91ED7E4210321C4C563FCDCF18311D74"));
    assert!(String::from_utf8_lossy(&http.body).contains("&change=0&"));
    assert!(p.capabilities().provider_side_failover);
}

#[test]
fn slow_recharge_type_comes_from_the_route_product() {
    let p = provider();
    let http = p
        .adapter
        .build_submit(&submit("50/0", "13800138000", &[]), &ctx_at(TS_MS))
        .unwrap();
    let body = String::from_utf8(http.body).unwrap();
    assert!(body.contains("&money=50&recharge_type=0&"));
    assert!(
        p.adapter
            .build_submit(&submit("fifty", "13800138000", &[]), &ctx_at(TS_MS))
            .is_err()
    );
}

#[test]
fn query_is_by_the_platform_number_once_known_with_the_store_id() {
    let p = provider();
    let known = QueryRequest {
        attempt: attempt(),
        provider_ref: Some("W202401010000001".to_owned()),
    };
    let http = p.adapter.build_query(&known, &ctx_at(TS_MS)).unwrap();
    let body = String::from_utf8_lossy(&http.body).to_string();
    assert!(
        body.starts_with("order_number=W202401010000001&store_id=1234&"),
        "{body}"
    );
    // Before the platform number is known (the submit answer was lost): by our id.
    let lost = QueryRequest {
        attempt: attempt(),
        provider_ref: None,
    };
    let http = p.adapter.build_query(&lost, &ctx_at(TS_MS)).unwrap();
    assert!(
        String::from_utf8_lossy(&http.body)
            .starts_with("order_no=7JUWX4CXN3GSIQOKCCTK01&store_id=1234&")
    );
    // The seed's form (platform number, no store_id) matches the worked example's sign.
    let p = provider_with(json!({"query_sends_store_id": false}));
    let http = p.adapter.build_query(&known, &ctx_at(TS_MS)).unwrap();
    assert!(http.url.ends_with("&sign=B2E44C2CC1269A70545007A4BC0D9CF7"));
    // Always by our id, when an account wants it so (the sign of the earlier default).
    let p = provider_with(json!({"query_by": "order_no", "query_sends_store_id": false}));
    let http = p.adapter.build_query(&known, &ctx_at(TS_MS)).unwrap();
    assert!(http.url.ends_with("&sign=D8C934B663C18D366790D00FB85FE407"));
}

#[test]
fn user_query_request_and_balance() {
    let p = provider();
    let http = p.adapter.build_balance(&ctx_at(TS_MS)).unwrap();
    assert!(
        http.url
            .starts_with("https://router.wikeyun.cn/rest/User/query?")
    );
    assert!(http.url.ends_with("&sign=CBC9BB0DF12916303A5AB0FF0C52156B"));
    assert_eq!(
        p.adapter
            .parse_balance(&ok(&include_bytes!("fixtures/user_query.json")[..])),
        Ok(Fen::new(10_025))
    );
    assert_eq!(
        p.adapter.parse_balance(&ok(
            &br#"{"code":"0000","msg":"","data":{"money":"100","id":1234}}"#[..]
        )),
        Ok(Fen::new(10_000))
    );
    assert!(matches!(
        p.adapter
            .parse_balance(&ok(&include_bytes!("fixtures/error_1003.json")[..])),
        Err(BalanceError::Unknown(r)) if r.code == "1003"
    ));
}

// ---- every documented code and status ----

#[test]
fn push_order_answers_are_classified() {
    let p = provider();
    assert_eq!(
        p.adapter
            .parse_submit(&ok(&include_bytes!("fixtures/push_ok.json")[..]))
            .outcome,
        Outcome::Accepted {
            provider_ref: Some("W202401010000001".to_owned())
        }
    );
    assert!(matches!(
        p.adapter.parse_submit(&ok(&include_bytes!("fixtures/error_1003.json")[..])).outcome,
        Outcome::Rejected { failover_allowed: true, reason } if reason.code == "1003"
    ));
    // Every code but the listed 1003 may follow a recorded order ("order number taken", "system busy",
    // anything unlisted): Unknown, reported as unlisted (docs/providers/README.md §4 rule 1).
    for (code, msg) in [
        ("1005", "订单号已存在"),
        ("2001", "系统繁忙"),
        ("1005", "Duplicate order"),
    ] {
        let body = json!({"code": code, "msg": msg, "data": null}).to_string();
        let parsed = p.adapter.parse_submit(&ok(body));
        assert!(matches!(parsed.outcome, Outcome::Unknown { .. }), "{msg}");
        assert_eq!(parsed.unlisted.map(|u| u.code).as_deref(), Some(code));
    }
    // An account that learned a code lists it.
    let learned = provider_coded(
        json!({}),
        json!({"submit": {"2001": "unknown", "3002": "refusal"}}),
    );
    let busy = learned.adapter.parse_submit(&ok(
        json!({"code": "2001", "msg": "系统繁忙", "data": null}).to_string(),
    ));
    assert!(matches!(busy.outcome, Outcome::Unknown { .. }) && busy.unlisted.is_none());
    assert!(matches!(
        learned
            .adapter
            .parse_submit(&ok(json!({"code": "3002", "msg": "余额不足"}).to_string()))
            .outcome,
        Outcome::Rejected {
            failover_allowed: true,
            ..
        }
    ));
    for bad in [
        HttpResponse::new(500, &br#"{"code":"1003"}"#[..]),
        ok(&b"<html>"[..]),
        ok(&br#"{"msg":"no code"}"#[..]),
        ok(&br#"{"code":""}"#[..]),
        ok(vec![b'{'; 70 * 1024]),
    ] {
        assert!(matches!(
            p.adapter.parse_submit(&bad).outcome,
            Outcome::Unknown { .. }
        ));
    }
}

fn query_body(status: serde_json::Value) -> Vec<u8> {
    json!({"code":"0000","msg":"获取成功","data":{"order_number":"W1","status":status,"arrived_amount":"30.5"}})
        .to_string()
        .into_bytes()
}

#[test]
fn every_documented_status_is_classified() {
    let p = provider();
    let r = Some("W1".to_owned());
    for s in ["0", "1", "6", "7", "8", "12"] {
        assert_eq!(
            p.adapter.parse_query(&ok(query_body(json!(s)))).outcome,
            Outcome::Accepted {
                provider_ref: r.clone()
            },
            "{s}"
        );
    }
    assert_eq!(
        p.adapter.parse_query(&ok(query_body(json!("2")))).outcome,
        Outcome::Succeeded {
            provider_ref: r.clone()
        }
    );
    // Row 5 已超时 is only an [ASSUME] failure: Unknown until an account states it.
    assert!(matches!(
        p.adapter.parse_query(&ok(query_body(json!("5")))).outcome,
        Outcome::Unknown { .. }
    ));
    for s in ["3", "4", "9"] {
        assert!(
            matches!(
                p.adapter.parse_query(&ok(query_body(json!(s)))).outcome,
                Outcome::Failed {
                    failover_allowed: true,
                    ..
                }
            ),
            "{s}"
        );
    }
    assert!(matches!(
        p.adapter.parse_query(&ok(query_body(json!("10")))).outcome,
        Outcome::Reversed { .. }
    ));
    assert_eq!(
        p.adapter.parse_query(&ok(query_body(json!("11")))).outcome,
        Outcome::PartiallySucceeded {
            delivered: Fen::new(3050)
        }
    );
    // Integer statuses (the SDK's types) read the same.
    assert_eq!(
        p.adapter.parse_query(&ok(query_body(json!(2)))).outcome,
        Outcome::Succeeded {
            provider_ref: r.clone()
        }
    );
    for s in [json!("13"), json!("-1"), json!(null), json!(true)] {
        assert!(
            matches!(
                p.adapter.parse_query(&ok(query_body(s.clone()))).outcome,
                Outcome::Unknown { .. }
            ),
            "{s}"
        );
    }
}

#[test]
fn query_fixtures_parse() {
    let p = provider();
    assert_eq!(
        p.adapter
            .parse_query(&ok(&include_bytes!("fixtures/query_seed.json")[..]))
            .outcome,
        Outcome::Accepted {
            provider_ref: Some("W202401010000001".to_owned())
        }
    );
    assert_eq!(
        p.adapter
            .parse_query(&ok(&include_bytes!("fixtures/query_sdk_partial.json")[..]))
            .outcome,
        Outcome::PartiallySucceeded {
            delivered: Fen::new(3000)
        }
    );
    // A failed query (non-0000) says nothing about the order.
    assert!(matches!(
        p.adapter
            .parse_query(&ok(&include_bytes!("fixtures/error_1003.json")[..]))
            .outcome,
        Outcome::Unknown { .. }
    ));
    // Partial without an amount cannot be recorded as partial.
    let body = br#"{"code":"0000","data":{"status":"11"}}"#;
    assert!(matches!(
        p.adapter.parse_query(&ok(&body[..])).outcome,
        Outcome::Unknown { .. }
    ));
}

// ---- callbacks ----

fn cb() -> Vec<u8> {
    include_bytes!("fixtures/callback_success.json").to_vec()
}

fn signing() -> Provider {
    provider_with(json!({"verify_callback_sign": true}))
}

#[test]
fn unsigned_mode_accepts_json_form_and_get_as_unverified_hints() {
    let p = provider();
    assert!(!p.capabilities().callback_signed);
    let ev = p
        .adapter
        .verify_and_parse_callback(&post(&[("content-type", "application/json")], cb()))
        .unwrap();
    assert_eq!(ev.attempt, attempt());
    assert_eq!(ev.trust, CallbackTrust::Unverified);
    assert_eq!(
        ev.outcome,
        Outcome::Succeeded {
            provider_ref: Some("W202401010000001".to_owned())
        }
    );
    let form = "order_no=7JUWX4CXN3GSIQOKCCTK01&order_number=W1&status=3&failReason=%E5%8F%B7%E7%A0%81%E9%94%99%E8%AF%AF";
    let ev = p
        .adapter
        .verify_and_parse_callback(&post(&[], form))
        .unwrap();
    assert!(
        matches!(ev.outcome, Outcome::Failed { ref reason, .. } if reason.message.contains("号码错误"))
    );
    let ev = p
        .adapter
        .verify_and_parse_callback(&get(
            "order_no=7JUWX4CXN3GSIQOKCCTK01&order_number=W1&status=10",
        ))
        .unwrap();
    assert!(matches!(ev.outcome, Outcome::Reversed { .. }));
    let ack = p.adapter.callback_ack(CallbackAck::Accepted);
    assert_eq!((ack.status, ack.body.as_slice()), (200, &b"success"[..]));
    assert_ne!(
        p.adapter.callback_ack(CallbackAck::Rejected).body,
        b"success"
    );
}

#[test]
fn signed_callback_verifies() {
    let p = signing();
    assert!(p.capabilities().callback_signed);
    let ev = p
        .adapter
        .verify_and_parse_callback(&post(&[], cb()))
        .unwrap();
    assert_eq!(ev.trust, CallbackTrust::Signed);
    assert!(matches!(ev.outcome, Outcome::Succeeded { .. }));
}

#[test]
fn tampered_callback_is_refused() {
    let p = signing();
    let body = String::from_utf8(cb())
        .unwrap()
        .replace("\"status\":\"2\"", "\"status\":\"3\"");
    assert_eq!(
        p.adapter.verify_and_parse_callback(&post(&[], body)),
        Err(CallbackError::BadSignature)
    );
}

#[test]
fn callback_signed_with_another_secret_is_refused() {
    let p = signing();
    let mut fields: BTreeMap<String, String> = serde_json::from_slice(&cb()).unwrap();
    fields.remove("sign");
    let sig = sign::top_md5("WrongSecret", &fields);
    fields.insert("sign".to_owned(), sig);
    let body = serde_json::to_vec(&fields).unwrap();
    assert_eq!(
        p.adapter.verify_and_parse_callback(&post(&[], body)),
        Err(CallbackError::BadSignature)
    );
}

#[test]
fn unsigned_callback_is_refused_when_signatures_are_required() {
    let p = signing();
    let mut fields: BTreeMap<String, String> = serde_json::from_slice(&cb()).unwrap();
    fields.remove("sign");
    assert_eq!(
        p.adapter
            .verify_and_parse_callback(&post(&[], serde_json::to_vec(&fields).unwrap())),
        Err(CallbackError::MissingSignature)
    );
}

#[test]
fn callback_in_the_wrong_encoding_is_refused() {
    let p = provider();
    // GBK bytes inside a JSON body (JSON is UTF-8).
    let mut body = br#"{"order_no":"7JUWX4CXN3GSIQOKCCTK01","status":"3","failReason":""#.to_vec();
    body.extend(crate::codec::Charset::Gbk.encode("号码错误").unwrap());
    body.extend(br#""}"#);
    assert!(
        p.adapter
            .verify_and_parse_callback(&post(&[], body))
            .is_err()
    );
    // GBK percent-encoded in a form.
    let form = "order_no=7JUWX4CXN3GSIQOKCCTK01&status=3&failReason=%BA%C5%C2%EB%B4%ED%CE%F3";
    assert!(matches!(
        p.adapter.verify_and_parse_callback(&post(&[], form)),
        Err(CallbackError::Body(_))
    ));
}

#[test]
fn callback_without_our_order_id_is_refused() {
    let p = provider();
    let body = br#"{"order_no":"T202401010001","order_number":"W1","status":"2"}"#;
    assert!(matches!(
        p.adapter.verify_and_parse_callback(&post(&[], &body[..])),
        Err(CallbackError::Malformed(_))
    ));
}

#[test]
fn missing_store_id_or_bad_secret_fails_at_load() {
    let acct = |opts| {
        account(
            Protocol::Wikeyun,
            &[
                ("submit", "https://h/a"),
                ("query", "https://h/b"),
                ("balance", "https://h/c"),
            ],
            opts,
        )
    };
    assert!(Provider::load(acct(json!({})), SECRET_JSON).is_err());
    assert!(
        Provider::load(
            acct(json!({"store_id":"1"})),
            r#"{"app_key":"abc","app_secret":"x"}"#
        )
        .is_err()
    );
    assert!(Provider::load(acct(json!({"store_id":"1","change":5})), SECRET_JSON).is_err());
    assert!(Provider::load(acct(json!({"store_id":"1"})), SECRET_JSON).is_ok());
}

proptest! {
    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let p = signing();
        let _ = p.adapter.parse_submit(&ok(bytes.clone())).outcome;
        let _ = p.adapter.parse_query(&ok(bytes.clone())).outcome;
        let _ = p.adapter.parse_balance(&ok(bytes.clone()));
        let _ = p.adapter.verify_and_parse_callback(&post(&[], bytes.clone()));
    }

    #[test]
    fn json_shaped_input_never_panics(s in "\\{(\"[a-z_]{1,12}\":(\"[0-9]{0,4}\"|[0-9]{1,3}|null|\\{\\}|\\[\\]),?){0,6}\\}") {
        let p = provider();
        let _ = p.adapter.parse_query(&ok(s.clone().into_bytes())).outcome;
        let _ = p.adapter.verify_and_parse_callback(&post(&[], s.into_bytes()));
    }

    #[test]
    fn undocumented_statuses_are_unknown(n in 13u32..100_000) {
        let p = provider();
        let o = p.adapter.parse_query(&ok(query_body(json!(n.to_string())))).outcome;
        let is_unknown = matches!(o, Outcome::Unknown { .. });
        prop_assert!(is_unknown);
    }
}
