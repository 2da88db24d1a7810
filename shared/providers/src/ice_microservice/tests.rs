use super::*;
use crate::account::Protocol;
use crate::registry::Provider;
use crate::testkit::*;
use proptest::prelude::*;
use serde_json::json;

const SECRET: &str =
    r#"{"app_id":"ICETESTAPPID01","token":"TestIceToken0123","access_token":"AT-123"}"#;
const TS_MS: i64 = 1_700_000_000_000;

/// What a test account states about order statuses (the seed gives none: docs/providers/README.md §4 rule 2).
fn test_codes() -> serde_json::Value {
    json!({"query": {
        "0": "accepted", "1": "accepted",
        "2": "success", "7": "success", "0007": "success",
        "3": "failure", "8": "failure", "0008": "failure"
    }})
}

fn provider_with(extra: serde_json::Value) -> Provider {
    provider_coded(extra, test_codes())
}

fn provider_coded(extra: serde_json::Value, codes: serde_json::Value) -> Provider {
    let mut opts = json!({"company": "彩生活", "supplier": "中国移动"});
    if let (Some(o), Some(e)) = (opts.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    let acct = account(
        Protocol::IceMicroservice,
        &[
            ("submit", "http://ice.example.com/sign/api/order"),
            ("query", "http://ice.example.com/sign/api/status"),
        ],
        opts,
    );
    Provider::load(with_codes(acct, codes), SECRET).unwrap()
}

fn provider() -> Provider {
    provider_with(json!({}))
}

#[test]
fn ice_and_privilege_signs_match_the_worked_examples() {
    assert_eq!(
        ice_sign(
            "ICETESTAPPID01",
            "1700000000",
            "TestIceToken0123",
            true,
            HexCase::Lower
        ),
        "a72cd4ddb320c46e8e35a2f0619c8499"
    );
    assert_eq!(
        privilege_sign(
            "88a2b3c4d5e6f7a8b9c2-FAKE",
            "1700000000",
            "TestPrivilegeSecret"
        ),
        "bb1b61db172000c40d3bfdb5a04baea8"
    );
}

#[test]
fn order_request_puts_ice_params_in_the_query_and_business_in_the_form() {
    let p = provider();
    let http = p
        .adapter
        .build_submit(&submit("P100", "13800138000", &[]), &ctx_at(TS_MS))
        .unwrap();
    assert_eq!(http.method, Method::Post);
    assert_eq!(
        http.url,
        "http://ice.example.com/sign/api/order?ts=1700000000&appID=ICETESTAPPID01&sign=a72cd4ddb320c46e8e35a2f0619c8499"
    );
    assert_eq!(
        String::from_utf8(http.body).unwrap(),
        "access_token=AT-123&company=%E5%BD%A9%E7%94%9F%E6%B4%BB&Supplier=%E4%B8%AD%E5%9B%BD%E7%A7%BB%E5%8A%A8&phoneNo=13800138000&productId=P100&cstmOrderName=recharge-gateway&cstmOrderNo=7JUWX4CXN3GSIQOKCCTK01"
    );
}

#[test]
fn sign_style_knobs() {
    let ice2 = provider_with(json!({"sign_style": "ice2"}));
    let http = ice2
        .adapter
        .build_submit(&submit("P100", "13800138000", &[]), &ctx_at(TS_MS))
        .unwrap();
    assert!(http.url.ends_with("&sign=f608b8f54460c23f3b8318f91f905af7"));
    let sorted = provider_with(json!({"sign_style": "sorted_params"}));
    let http = sorted
        .adapter
        .build_submit(&submit("P100", "13800138000", &[]), &ctx_at(TS_MS))
        .unwrap();
    // Python: md5("Supplier=中国移动&access_token=AT-123&appID=…&ts=1700000000&key=TestIceToken0123").upper()
    assert!(http.url.ends_with("&sign=8E0129DA509243E48B5D67FB613F49BE"));
    let millis = provider_with(json!({"ts_unit": "millis", "sign_case": "upper"}));
    let http = millis
        .adapter
        .build_submit(&submit("P100", "13800138000", &[]), &ctx_at(TS_MS))
        .unwrap();
    let expected = ice_sign(
        "ICETESTAPPID01",
        "1700000000000",
        "TestIceToken0123",
        true,
        HexCase::Upper,
    );
    assert!(http.url.contains("ts=1700000000000&"));
    assert!(http.url.ends_with(&format!("&sign={expected}")));
}

#[test]
fn status_query_is_a_get_with_everything_in_the_query() {
    let p = provider();
    let http = p
        .adapter
        .build_query(
            &QueryRequest {
                attempt: attempt(),
                provider_ref: Some("VBP1".to_owned()),
            },
            &ctx_at(TS_MS),
        )
        .unwrap();
    assert_eq!(http.method, Method::Get);
    assert!(http.body.is_empty());
    assert_eq!(
        http.url,
        "http://ice.example.com/sign/api/status?access_token=AT-123&company=%E5%BD%A9%E7%94%9F%E6%B4%BB&Supplier=%E4%B8%AD%E5%9B%BD%E7%A7%BB%E5%8A%A8&cstmOrderNo=7JUWX4CXN3GSIQOKCCTK01&orderNo=VBP1&ts=1700000000&appID=ICETESTAPPID01&sign=a72cd4ddb320c46e8e35a2f0619c8499"
    );
}

#[test]
fn order_answers_are_classified() {
    let p = provider();
    assert_eq!(
        p.adapter
            .parse_submit(&ok(&include_bytes!("fixtures/order_ok.json")[..]))
            .outcome,
        Outcome::Accepted {
            provider_ref: Some("VBP14656954660051458".to_owned())
        }
    );
    // The answer echoes our order number: the registry compares it with the attempt.
    assert_eq!(
        p.adapter
            .parse_submit(&ok(&include_bytes!("fixtures/order_ok.json")[..]))
            .echoed
            .as_deref(),
        Some("7JUWX4CXN3GSIQOKCCTK01")
    );
    // `code 1` is a bare 失败 with no table behind it: the order may have been recorded, so it is Unknown
    // and reported as unlisted (docs/providers/README.md §4 rule 1), never a refusal that fails over.
    let failed = p
        .adapter
        .parse_submit(&ok(&include_bytes!("fixtures/order_failed.json")[..]));
    assert!(
        matches!(failed.outcome, Outcome::Unknown { .. }),
        "{failed:?}"
    );
    assert_eq!(failed.unlisted.map(|u| u.code).as_deref(), Some("1"));
    for bad in [
        ok(&br#"{"code":"500","message":"x"}"#[..]),
        HttpResponse::new(500, &include_bytes!("fixtures/order_ok.json")[..]),
        ok(&b"<html/>"[..]),
    ] {
        assert!(matches!(
            p.adapter.parse_submit(&bad).outcome,
            Outcome::Unknown { .. }
        ));
    }
}

fn status(s: &str) -> Vec<u8> {
    json!({"code":"0","message":"成功","data":{"orderNo":"VBP1","status":s}})
        .to_string()
        .into_bytes()
}

#[test]
fn every_mapped_status_is_classified_and_others_are_unknown() {
    let p = provider();
    let r = Some("VBP1".to_owned());
    for s in ["0", "1"] {
        assert_eq!(
            p.adapter.parse_query(&ok(status(s))).outcome,
            Outcome::Accepted {
                provider_ref: r.clone()
            }
        );
    }
    for s in ["2", "7", "0007"] {
        assert_eq!(
            p.adapter.parse_query(&ok(status(s))).outcome,
            Outcome::Succeeded {
                provider_ref: r.clone()
            },
            "{s}"
        );
    }
    for s in ["3", "8", "0008"] {
        assert!(
            matches!(
                p.adapter.parse_query(&ok(status(s))).outcome,
                Outcome::Failed { .. }
            ),
            "{s}"
        );
    }
    for s in ["4", "07", "", "成功"] {
        assert!(
            matches!(
                p.adapter.parse_query(&ok(status(s))).outcome,
                Outcome::Unknown { .. }
            ),
            "{s}"
        );
    }
    // `content` instead of `data`, integer code.
    assert_eq!(
        p.adapter
            .parse_query(&ok(
                &include_bytes!("fixtures/query_content_success.json")[..]
            ))
            .outcome,
        Outcome::Succeeded {
            provider_ref: Some("VBP14656954660051458".to_owned())
        }
    );
    // A failed query is not a failed order.
    assert!(matches!(
        p.adapter
            .parse_query(&ok(&include_bytes!("fixtures/order_failed.json")[..]))
            .outcome,
        Outcome::Unknown { .. }
    ));
    // ICE envelope form: result/reason.
    assert!(matches!(
        p.adapter.parse_query(&ok(&br#"{"result":1,"reason":"token expired"}"#[..])).outcome,
        Outcome::Unknown { reason } if reason.message == "token expired"
    ));
}

#[test]
fn order_statuses_are_the_accounts_code_table() {
    let p = provider_coded(
        json!({}),
        json!({"query": {"0": "accepted", "9": "success"}}),
    );
    assert!(matches!(
        p.adapter.parse_query(&ok(status("9"))).outcome,
        Outcome::Succeeded { .. }
    ));
    let two = p.adapter.parse_query(&ok(status("2")));
    assert!(matches!(two.outcome, Outcome::Unknown { .. }));
    assert_eq!(two.unlisted.map(|u| u.phase), Some(Phase::Query));
}

#[test]
fn an_account_that_states_no_success_status_refuses_to_load_naming_the_field() {
    let acct = account(
        Protocol::IceMicroservice,
        &[("submit", "http://h/a"), ("query", "http://h/b")],
        json!({"company": "彩生活", "supplier": "中国移动"}),
    );
    let e = Provider::load(acct, SECRET).unwrap_err().to_string();
    assert!(e.contains("codes.query"), "{e}");
}

#[test]
fn a_merchant_extra_cannot_choose_the_supplier() {
    let p = provider();
    let http = p
        .adapter
        .build_submit(
            &submit("HF100", "13800138000", &[("Supplier", "中国联通")]),
            &ctx_at(TS_MS),
        )
        .unwrap();
    let body = String::from_utf8(http.body).unwrap();
    assert!(
        body.contains("Supplier=%E4%B8%AD%E5%9B%BD%E7%A7%BB%E5%8A%A8"),
        "{body}"
    );
}

#[test]
fn no_balance_and_no_callbacks() {
    let p = provider();
    let caps = p.capabilities();
    assert!(!caps.has_balance && !caps.sends_callbacks);
    assert_eq!(
        p.adapter.build_balance(&ctx_at(0)),
        Err(AdapterError::Unsupported("balance"))
    );
    assert_eq!(
        p.adapter.parse_balance(&ok(&b"{}"[..])),
        Err(BalanceError::Unsupported)
    );
    assert_eq!(
        p.adapter.verify_and_parse_callback(&post(&[], &b"{}"[..])),
        Err(CallbackError::Unsupported)
    );
    assert_eq!(p.adapter.callback_ack(CallbackAck::Accepted).status, 404);
}

#[test]
fn company_and_supplier_are_required_at_load() {
    let acct = account(
        Protocol::IceMicroservice,
        &[("submit", "http://h/a"), ("query", "http://h/b")],
        json!({"company": "彩生活"}),
    );
    assert!(Provider::load(with_codes(acct, test_codes()), SECRET).is_err());
    let acct = account(
        Protocol::IceMicroservice,
        &[("submit", "http://h/a"), ("query", "ftp://h/b")],
        json!({"company": "a", "supplier": "b"}),
    );
    let acct = with_codes(acct, test_codes());
    assert!(matches!(
        Provider::load(acct, SECRET),
        Err(ConfigError::Endpoint { .. })
    ));
}

proptest! {
    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let p = provider();
        let _ = p.adapter.parse_submit(&ok(bytes.clone())).outcome;
        let _ = p.adapter.parse_query(&ok(bytes)).outcome;
    }
}
