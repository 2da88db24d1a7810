use super::*;
use crate::account::Protocol;
use crate::registry::Provider;
use crate::testkit::*;
use proptest::prelude::*;
use serde_json::json;

const KEY: &str = "abcdef0123456789ABCDEF0123456789";
const SECRET: &str = r#"{"userid":"10004927","key":"abcdef0123456789ABCDEF0123456789"}"#;

fn provider_with(options: serde_json::Value) -> Provider {
    let acct = account(
        Protocol::SukaXml,
        &[
            ("submit", "http://dy.example.com:9086/gameonlinepay.do"),
            ("query", "http://dy.example.com:8001/searchpay.do"),
            ("balance", "http://dy.example.com:9086/searchbalance.do"),
        ],
        options,
    );
    Provider::load(acct, SECRET).unwrap()
}

fn provider() -> Provider {
    provider_with(serde_json::Value::Null)
}

fn md5u(s: &str) -> String {
    sign::md5_gbk_hex(s, HexCase::Upper).unwrap()
}

// ---- worked examples (docs/providers/suka-xml.md §4), byte-exact ----

#[test]
fn submit_sign_matches_the_worked_example() {
    let s = submit_sign_string(
        "10004927",
        "3312",
        "1",
        "",
        "",
        "13590101510",
        "20210224134552",
        "2009042800001",
        KEY,
    );
    assert_eq!(
        s,
        "userid=10004927&productid=3312&num=1&areaid=&serverid=&account=13590101510&spordertime=20210224134552&sporderid=2009042800001&key=abcdef0123456789ABCDEF0123456789"
    );
    assert_eq!(md5u(&s), "70C929C81195291EA5B7D6352850873F");
}

#[test]
fn electricity_sign_is_over_gbk_bytes_not_utf8() {
    let acct = electricity_account("123123123", "", "1", "江苏", "南京");
    assert_eq!(
        acct,
        r#"{"product_type":"3","userid":"123123123","username":"","type":"1","area":"江苏","city":"南京"}"#
    );
    let s = submit_sign_string(
        "10004927",
        "8801",
        "1",
        "13800138000",
        "",
        &acct,
        "20210224134552",
        "DF2021022400001",
        KEY,
    );
    assert_eq!(md5u(&s), "624D03A3AE309ED6B3D5B5842E1322FB");
    assert_eq!(
        sign::md5_hex(s.as_bytes(), HexCase::Upper),
        "6B29390D55D908F4CC7B98B7AC14E2AA"
    );
}

#[test]
fn query_balance_and_callback_signs_match_the_worked_examples() {
    assert_eq!(
        md5u(&query_sign_string("10004927", "2009042800001", KEY)),
        "4E768AD1A3A491CCC1154E289ED3D083"
    );
    assert_eq!(
        md5u(&balance_sign_string("10004927", KEY)),
        "2BE890F8DB0405112D21DF9F1F1FF86C"
    );
    assert_eq!(
        md5u(&callback_sign_string(
            "10004927",
            "XS090428000003",
            "2009042800001",
            "20210224134800",
            "1",
            KEY
        )),
        "CDF8C7CF2DEAA55875F35D951871FA39"
    );
}

#[test]
fn electricity_submit_request_is_byte_exact_gbk_form() {
    let p = provider();
    // The merchant sends the 户号 and the region; the adapter builds the seed's account JSON and puts the
    // contact phone in `areaid` (docs/providers/suka-xml.md §1, electricity).
    let mut req = submit(
        "8801",
        "123123123",
        &[("area", "江苏"), ("city", "南京"), ("phone", "13800138000")],
    );
    req.kind = recharge_core::ProductKind::Electricity;
    req.callback_url = Some("https://gw.example.com/v1/callbacks/dingyin-1".to_owned());
    // 2021-02-24 13:45:52 Beijing.
    let http = p
        .adapter
        .build_submit(&req, &ctx_at(1_614_145_552_000))
        .unwrap();
    assert_eq!(http.method, Method::Post);
    assert_eq!(http.url, "http://dy.example.com:9086/gameonlinepay.do");
    assert_eq!(
        http.header("content-type"),
        Some("application/x-www-form-urlencoded;charset=gbk")
    );
    // Expected bytes computed independently (Python: quote_plus(v.encode('gbk')), hashlib.md5 over GBK).
    assert_eq!(
        String::from_utf8(http.body).unwrap(),
        "userid=10004927&productid=8801&num=1&areaid=13800138000&serverid=&account=%7B%22product_type%22%3A%223%22%2C%22userid%22%3A%22123123123%22%2C%22username%22%3A%22%22%2C%22type%22%3A%221%22%2C%22area%22%3A%22%BD%AD%CB%D5%22%2C%22city%22%3A%22%C4%CF%BE%A9%22%7D&spordertime=20210224134552&sporderid=7JUWX4CXN3GSIQOKCCTK01&sign=9B43A0C8062F5659F5B98551C0289593&back_url=https%3A%2F%2Fgw.example.com%2Fv1%2Fcallbacks%2Fdingyin-1"
    );
}

#[test]
fn the_quantity_is_the_routes_never_the_merchants() {
    let p = provider();
    let http = p
        .adapter
        .build_submit(
            &submit("3312", "13590101510", &[("num", "100")]),
            &ctx_at(1_614_145_552_000),
        )
        .unwrap();
    let body = String::from_utf8(http.body).unwrap();
    assert!(body.contains("&num=1&"), "{body}");
}

#[test]
fn answers_echo_our_id_and_report_cost_and_quantity() {
    let p = provider();
    let body = "<order><orderid>XS1</orderid><num>2</num><ordercash>98.5</ordercash>\
                <sporderid>7JUWX4CXN3GSIQOKCCTK01</sporderid><resultno>0</resultno></order>";
    let parsed = p.adapter.parse_submit(&ok(body.as_bytes().to_vec()));
    assert_eq!(parsed.echoed.as_deref(), Some("7JUWX4CXN3GSIQOKCCTK01"));
    assert_eq!(parsed.reported.cost, Some(Fen::new(9850)));
    assert_eq!(parsed.reported.quantity, Some(2));
}

#[test]
fn duplicate_order_id_is_unknown_and_tells_the_probe_the_provider_has_it() {
    let p = provider();
    let parsed = p.adapter.parse_submit(&ok(order_xml("5006")));
    assert!(matches!(parsed.outcome, Outcome::Unknown { .. }));
    assert_eq!(parsed.meaning, Some(crate::codes::Meaning::Duplicate));
    assert!(parsed.unlisted.is_none());
}

#[test]
fn text_gbk_cannot_carry_does_not_fit_a_gbk_account() {
    let p = provider();
    assert!(p.adapter.text_fits("江苏南京 123"));
    assert!(!p.adapter.text_fits("emoji 😀"));
    assert!(!p.adapter.text_fits("\u{1F600}"));
    let utf8 = provider_with(json!({"form_charset": "utf8"}));
    assert!(utf8.adapter.text_fits("emoji 😀"));
}

#[test]
fn cdata_in_an_answer_is_read() {
    let p = provider();
    let body =
        "<order><orderid><![CDATA[XS9]]></orderid><resultno><![CDATA[1]]></resultno></order>";
    assert_eq!(
        p.adapter.parse_query(&ok(body.as_bytes().to_vec())).outcome,
        Outcome::Succeeded {
            provider_ref: Some("XS9".to_owned())
        }
    );
}

#[test]
fn userip_is_sent_unsigned_and_checkprice_only_when_enabled() {
    let plain = provider();
    let req = submit("3312", "13590101510", &[("userip", "110101199003074518")]);
    let a = plain.adapter.build_submit(&req, &ctx_at(0)).unwrap();
    let b = plain
        .adapter
        .build_submit(&submit("3312", "13590101510", &[]), &ctx_at(0))
        .unwrap();
    let sign_of = |body: &[u8]| {
        let pairs = codec::parse_form(body, Charset::Gbk).unwrap();
        codec::field(&pairs, "sign").unwrap().to_owned()
    };
    assert_eq!(sign_of(&a.body), sign_of(&b.body));
    assert!(String::from_utf8_lossy(&a.body).contains("&userip=110101199003074518&"));
    assert!(!String::from_utf8_lossy(&a.body).contains("checkprice"));
    let with = provider_with(json!({"send_checkprice": true}));
    let c = with.adapter.build_submit(&req, &ctx_at(0)).unwrap();
    assert!(String::from_utf8_lossy(&c.body).ends_with("&checkprice=98.50"));
}

#[test]
fn utf8_form_charset_option_sends_utf8() {
    let p = provider_with(json!({"form_charset": "utf8"}));
    let req = submit("8801", "江苏", &[]);
    let http = p.adapter.build_submit(&req, &ctx_at(0)).unwrap();
    assert_eq!(
        http.header("content-type"),
        Some("application/x-www-form-urlencoded;charset=utf-8")
    );
    assert!(String::from_utf8_lossy(&http.body).contains("account=%E6%B1%9F%E8%8B%8F"));
}

#[test]
fn query_sign_case_follows_the_option() {
    let body = |opts| {
        let p = provider_with(opts);
        let q = QueryRequest {
            attempt: attempt(),
            provider_ref: None,
        };
        String::from_utf8(p.adapter.build_query(&q, &ctx_at(0)).unwrap().body).unwrap()
    };
    let s = query_sign_string("10004927", attempt().as_str(), KEY);
    let upper = md5u(&s);
    assert_eq!(
        body(serde_json::Value::Null),
        format!("userid=10004927&sporderid=7JUWX4CXN3GSIQOKCCTK01&sign={upper}")
    );
    assert_eq!(
        body(json!({"query_sign": "lower"})),
        format!(
            "userid=10004927&sporderid=7JUWX4CXN3GSIQOKCCTK01&sign={}",
            upper.to_ascii_lowercase()
        )
    );
    assert_eq!(
        body(json!({"query_sign": "none"})),
        "userid=10004927&sporderid=7JUWX4CXN3GSIQOKCCTK01"
    );
}

#[test]
fn balance_request_and_answer() {
    let p = provider();
    let http = p.adapter.build_balance(&ctx_at(0)).unwrap();
    assert_eq!(http.url, "http://dy.example.com:9086/searchbalance.do");
    assert_eq!(
        String::from_utf8(http.body).unwrap(),
        "userid=10004927&sign=2BE890F8DB0405112D21DF9F1F1FF86C"
    );
    let answer = include_bytes!("fixtures/balance.xml");
    assert_eq!(
        p.adapter.parse_balance(&ok(&answer[..])),
        Ok(Fen::new(331_200))
    );
    let failed = b"<user><userid>1</userid><balance/><resultno>5005</resultno></user>";
    assert!(matches!(
        p.adapter.parse_balance(&ok(&failed[..])),
        Err(BalanceError::Unknown(r)) if r.code == "5005"
    ));
}

#[test]
fn balance_without_endpoint_is_unsupported() {
    let acct = account(
        Protocol::SukaXml,
        &[
            ("submit", "http://h/gameonlinepay.do"),
            ("query", "http://h/searchpay.do"),
        ],
        serde_json::Value::Null,
    );
    let p = Provider::load(acct, SECRET).unwrap();
    assert!(!p.capabilities().has_balance);
    assert!(matches!(
        p.adapter.build_balance(&ctx_at(0)),
        Err(AdapterError::Unsupported(_))
    ));
}

// ---- every documented code ----

fn order_xml(code: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"GB2312\"?><order><orderid>XS1</orderid><sporderid>7JUWX4CXN3GSIQOKCCTK01</sporderid><resultno>{code}</resultno></order>"
    )
    .into_bytes()
}

#[test]
fn submit_fixtures_parse() {
    let p = provider();
    assert_eq!(
        p.adapter
            .parse_submit(&ok(&include_bytes!("fixtures/submit_ok.xml")[..]))
            .outcome,
        Outcome::Accepted {
            provider_ref: Some("XS090428000003".to_owned())
        }
    );
    assert!(matches!(
        p.adapter.parse_submit(&ok(&include_bytes!("fixtures/submit_error.xml")[..])).outcome,
        Outcome::Rejected { failover_allowed: true, reason } if reason.code == "5005"
    ));
    assert_eq!(
        p.adapter
            .parse_query(&ok(&include_bytes!("fixtures/query_success.xml")[..]))
            .outcome,
        Outcome::Succeeded {
            provider_ref: Some("XS090428000003".to_owned())
        }
    );
}

#[test]
fn every_documented_code_is_classified_at_submit() {
    let p = provider();
    let r = Some("XS1".to_owned());
    let parse = |c: &str| p.adapter.parse_submit(&ok(order_xml(c))).outcome;
    assert_eq!(
        parse("0"),
        Outcome::Accepted {
            provider_ref: r.clone()
        }
    );
    assert_eq!(
        parse("1"),
        Outcome::Succeeded {
            provider_ref: r.clone()
        }
    );
    assert_eq!(
        parse("2"),
        Outcome::Accepted {
            provider_ref: r.clone()
        }
    );
    assert!(matches!(
        parse("9"),
        Outcome::Failed {
            failover_allowed: true,
            ..
        }
    ));
    for code in [
        "5001", "5002", "5003", "5004", "5005", "5008", "5009", "5010", "5011", "5012", "5013",
    ] {
        assert!(
            matches!(parse(code), Outcome::Rejected { failover_allowed: true, ref reason } if reason.code == code),
            "{code}"
        );
    }
    for code in ["5006", "9999", "5007", "9001", "9002", "4242", ""] {
        assert!(matches!(parse(code), Outcome::Unknown { .. }), "{code}");
    }
}

#[test]
fn every_documented_code_is_classified_at_query() {
    let p = provider();
    let r = Some("XS1".to_owned());
    let parse = |c: &str| p.adapter.parse_query(&ok(order_xml(c))).outcome;
    assert_eq!(
        parse("0"),
        Outcome::Accepted {
            provider_ref: r.clone()
        }
    );
    assert_eq!(
        parse("2"),
        Outcome::Accepted {
            provider_ref: r.clone()
        }
    );
    assert_eq!(
        parse("1"),
        Outcome::Succeeded {
            provider_ref: r.clone()
        }
    );
    for code in ["9", "9001", "9002"] {
        assert!(
            matches!(
                parse(code),
                Outcome::Failed {
                    failover_allowed: true,
                    ..
                }
            ),
            "{code}"
        );
    }
    assert_eq!(parse("5007"), Outcome::NotFound);
    for code in [
        "9999", "5001", "5002", "5003", "5004", "5005", "5006", "5008", "5009", "5010", "5011",
        "5012", "5013", "77",
    ] {
        assert!(matches!(parse(code), Outcome::Unknown { .. }), "{code}");
    }
}

#[test]
fn transport_level_trouble_is_unknown_never_failed() {
    let p = provider();
    for resp in [
        HttpResponse::new(500, order_xml("9")),
        HttpResponse::new(502, &b""[..]),
        HttpResponse::new(404, order_xml("9")),
        ok(&b"<html>gateway</html>"[..]),
        ok(&b"not xml at all"[..]),
        ok(vec![0xff, 0xfe, 0x00]),
        ok(vec![b' '; 70 * 1024]),
    ] {
        assert!(matches!(
            p.adapter.parse_submit(&resp).outcome,
            Outcome::Unknown { .. }
        ));
        assert!(matches!(
            p.adapter.parse_query(&resp).outcome,
            Outcome::Unknown { .. }
        ));
    }
}

#[test]
fn xml_with_doctype_is_refused_as_unknown() {
    let p = provider();
    let evil = b"<?xml version=\"1.0\"?><!DOCTYPE order [<!ENTITY x \"9\">]><order><resultno>&x;</resultno></order>";
    assert!(matches!(
        p.adapter.parse_query(&ok(&evil[..])).outcome,
        Outcome::Unknown { reason } if reason.code == "unparsable"
    ));
}

// ---- callbacks ----

fn callback_body() -> Vec<u8> {
    include_bytes!("fixtures/callback_success.form").to_vec()
}

fn resign(body: &str, key: &str) -> String {
    let pairs = codec::parse_form(body.as_bytes(), Charset::Gbk).unwrap();
    let f = |k: &str| codec::field(&pairs, k).unwrap_or("").to_owned();
    let sig = md5u(&callback_sign_string(
        &f("userid"),
        &f("orderid"),
        &f("sporderid"),
        &f("merchantsubmittime"),
        &f("resultno"),
        key,
    ));
    let unsigned: Vec<&str> = body
        .split('&')
        .filter(|p| !p.starts_with("sign="))
        .collect();
    format!("{}&sign={sig}", unsigned.join("&"))
}

#[test]
fn valid_callback_is_verified_and_parsed() {
    let p = provider();
    let ev = p
        .adapter
        .verify_and_parse_callback(&post(&[], callback_body()))
        .unwrap();
    assert_eq!(ev.attempt, attempt());
    assert_eq!(ev.trust, CallbackTrust::Signed);
    assert_eq!(
        ev.outcome,
        Outcome::Succeeded {
            provider_ref: Some("WHT22120118070084396".to_owned())
        }
    );
    let ack = p.adapter.callback_ack(CallbackAck::Accepted);
    assert_eq!((ack.status, ack.body.as_slice()), (200, &b"ok"[..]));
    let nack = p.adapter.callback_ack(CallbackAck::Rejected);
    assert_ne!(nack.body, b"ok");
}

#[test]
fn callback_codes_other_than_1_and_9_are_unknown() {
    let p = provider();
    let base = String::from_utf8(callback_body()).unwrap();
    for (code, failed) in [("9", true), ("0", false), ("2", false), ("5003", false)] {
        let body = resign(
            &base.replace("resultno=1", &format!("resultno={code}")),
            KEY,
        );
        let ev = p
            .adapter
            .verify_and_parse_callback(&post(&[], body))
            .unwrap();
        if failed {
            assert!(matches!(
                ev.outcome,
                Outcome::Failed {
                    failover_allowed: true,
                    ..
                }
            ));
        } else {
            assert!(matches!(ev.outcome, Outcome::Unknown { .. }), "{code}");
        }
    }
}

#[test]
fn tampered_callback_is_refused() {
    let p = provider();
    let body = String::from_utf8(callback_body())
        .unwrap()
        .replace("resultno=1", "resultno=9");
    assert_eq!(
        p.adapter.verify_and_parse_callback(&post(&[], body)),
        Err(CallbackError::BadSignature)
    );
    let body = String::from_utf8(callback_body()).unwrap().replace(
        "sporderid=7JUWX4CXN3GSIQOKCCTK01",
        "sporderid=7JUWX4CXN3GSIQOKCCTK02",
    );
    assert_eq!(
        p.adapter.verify_and_parse_callback(&post(&[], body)),
        Err(CallbackError::BadSignature)
    );
}

#[test]
fn callback_signed_with_another_key_is_refused() {
    let p = provider();
    let body = resign(&String::from_utf8(callback_body()).unwrap(), "WRONGKEY");
    assert_eq!(
        p.adapter.verify_and_parse_callback(&post(&[], body)),
        Err(CallbackError::BadSignature)
    );
}

#[test]
fn unsigned_callback_is_refused() {
    let p = provider();
    let body = String::from_utf8(callback_body()).unwrap();
    let unsigned: Vec<&str> = body
        .split('&')
        .filter(|p| !p.starts_with("sign="))
        .collect();
    assert_eq!(
        p.adapter
            .verify_and_parse_callback(&post(&[], unsigned.join("&"))),
        Err(CallbackError::MissingSignature)
    );
}

#[test]
fn callback_for_another_merchant_is_refused_even_when_signed() {
    let p = provider();
    let body = resign(
        &String::from_utf8(callback_body())
            .unwrap()
            .replace("userid=10004927", "userid=999"),
        KEY,
    );
    assert_eq!(
        p.adapter.verify_and_parse_callback(&post(&[], body)),
        Err(CallbackError::WrongAccount)
    );
}

#[test]
fn callback_in_the_wrong_encoding_is_refused() {
    let p = provider();
    // remark1 percent-encoded as UTF-8 成功 (E6 88 90 E5 8A 9F) ends in a byte sequence that is not GBK.
    let body = String::from_utf8(callback_body())
        .unwrap()
        .replace("remark1=%B3%C9%B9%A6", "remark1=%E6%88%90%E5%8A%9F%FF");
    assert!(matches!(
        p.adapter.verify_and_parse_callback(&post(&[], body)),
        Err(CallbackError::Body(_))
    ));
    // And a GBK body is refused by an account configured for UTF-8 callbacks.
    let utf8 = provider_with(json!({"callback_charset": "utf8"}));
    assert!(matches!(
        utf8.adapter
            .verify_and_parse_callback(&post(&[], callback_body())),
        Err(CallbackError::Body(_))
    ));
}

#[test]
fn callback_ack_text_is_configurable() {
    let p = provider_with(json!({"callback_reply": "success"}));
    assert_eq!(
        p.adapter.callback_ack(CallbackAck::Accepted).body,
        b"success"
    );
}

#[test]
fn unknown_options_are_refused_at_load() {
    let acct = account(
        Protocol::SukaXml,
        &[("submit", "http://h/a"), ("query", "http://h/b")],
        json!({"query_sing": "upper"}),
    );
    assert!(matches!(
        Provider::load(acct, SECRET),
        Err(ConfigError::Options { .. })
    ));
}

#[test]
fn bad_credentials_are_refused_at_load_without_leaking_the_key() {
    let acct = || {
        account(
            Protocol::SukaXml,
            &[("submit", "http://h/a"), ("query", "http://h/b")],
            serde_json::Value::Null,
        )
    };
    let e = Provider::load(acct(), r#"{"userid":"","key":"k-secret-value"}"#).unwrap_err();
    assert!(!e.to_string().contains("k-secret-value"));
    assert!(Provider::load(acct(), r#"{"userid":"1"}"#).is_err());
    let p = Provider::load(acct(), SECRET).unwrap();
    assert!(!format!("{p:?}").contains(KEY));
}

proptest! {
    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let p = provider();
        let _ = p.adapter.parse_submit(&ok(bytes.clone())).outcome;
        let _ = p.adapter.parse_query(&ok(bytes.clone())).outcome;
        let _ = p.adapter.parse_balance(&ok(bytes.clone()));
        let _ = p.adapter.verify_and_parse_callback(&post(&[], bytes.clone()));
    }

    #[test]
    fn unknown_codes_are_never_failed(code in "[0-9]{1,5}") {
        prop_assume!(!["9", "9001", "9002"].contains(&code.as_str()));
        let p = provider();
        let q = p.adapter.parse_query(&ok(order_xml(&code))).outcome;
        let failed = matches!(q, Outcome::Failed { .. });
        prop_assert!(!failed);
    }
}
