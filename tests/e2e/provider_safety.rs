//! The first law when a provider speaks differently than we think (docs/providers/README.md §4), end to end:
//! - a first route whose provider never accepted the connection fails over at once, for every protocol that
//!   can be a first route (nothing was sent, so nothing can have been charged);
//! - a carrier-billing sync that cannot be verified, on a channel with no query, is neither taken nor
//!   dropped: it is kept on the attempt for an operator, raised, and not acknowledged, so the channel resends;
//! - an account whose vocabulary the seeds do not give, and which does not state it, stops the stack at start
//!   with the account and the field named.
//!
//! (Recorded-then-in-band-error orders, script 0010, are in `scripted`; undeclared extras in `merchant_api`.)

use crate::helpers::*;
use recharge_core::AttemptState;
use recharge_local::{LocalConfig, LocalOptions, LocalStack};
use serde_json::{Value, json};
use std::time::Duration;

/// A port on loopback that nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A demo account's configuration with every endpoint moved to `base` and no simulator.
fn moved(accounts: &[Value], id: &str, new_id: &str, base: &str) -> Value {
    let mut a = accounts
        .iter()
        .find(|a| a["account"]["id"] == id)
        .unwrap_or_else(|| panic!("no demo account {id}"))
        .clone();
    a["account"]["id"] = json!(new_id);
    a["account"]["secret_name"] = json!(format!("local/provider/{new_id}"));
    let endpoints = a["account"]["endpoints"].as_object_mut().unwrap();
    for v in endpoints.values_mut() {
        let path = v.as_str().unwrap().replace("{sim}", "");
        *v = json!(format!("{base}{path}"));
    }
    a.as_object_mut().unwrap().remove("simulator");
    a
}

/// The demo's accounts in the JSON shape `--config` takes.
fn demo_accounts(config: &mut LocalConfig) -> Vec<Value> {
    config
        .accounts
        .take()
        .unwrap()
        .into_iter()
        .map(|a| {
            let mut v = json!({"account": a.account, "secret": a.secret});
            if let Some(s) = a.simulator {
                v["simulator"] =
                    json!({"protocol": s.protocol, "credentials": s.credentials, "scripts": s.scripts});
            }
            v
        })
        .collect()
}

#[tokio::test]
async fn a_first_route_whose_connection_is_refused_fails_over_at_once_for_every_protocol() {
    let base = format!("http://127.0.0.1:{}", closed_port());
    let mut config = LocalConfig::demo_with(None).unwrap();
    let mut accounts = demo_accounts(&mut config);
    let dead: Vec<Value> = [
        ("wikeyun-main", "wikeyun-dead"),
        ("ice-main", "ice-dead"),
        ("openapi-main", "openapi-dead"),
    ]
    .iter()
    .map(|(id, new_id)| moved(&accounts, id, new_id, &base))
    .collect();
    accounts.extend(dead);
    let catalog = config.catalog.as_mut().unwrap();
    for (code, kind, first, product) in [
        ("dead.wikeyun.100", "mobile_fast", "wikeyun-dead", "100"),
        ("dead.ice.100", "mobile_slow", "ice-dead", "HF100"),
        ("dead.openapi.100", "vip", "openapi-dead", "VIP-MONTH"),
    ] {
        catalog["products"][code] = json!({
            "kind": kind, "name": code, "face_value_fen": 10000, "price_fen": 10000,
            "routes": [
                {"provider_account": first, "provider_product": product, "cost_fen": 9900},
                {"provider_account": "suka-backup", "provider_product": "M100", "cost_fen": 9900}
            ]
        });
    }
    let h = Harness::start_with(LocalOptions {
        config: Some(
            serde_json::from_value(json!({"accounts": accounts, "catalog": catalog})).unwrap(),
        ),
        ..options()
    })
    .await;
    for (code, first, account) in [
        ("dead.wikeyun.100", "wikeyun-dead", "13800138000"),
        ("dead.ice.100", "ice-dead", "13800138000"),
        ("dead.openapi.100", "openapi-dead", "vip-user-8000"),
    ] {
        let no = order_no(&code.replace('.', "-"));
        let created = h
            .demo()
            .create_order(
                &json!({"merchant_order_no": no, "product_code": code, "account": account}),
            )
            .await
            .unwrap();
        assert_eq!(created.status, 201, "{code}: {}", created.body);
        // The refusal and the failover happen inside the create: the answer already shows the backup's work.
        let view = wait_status(&h.demo(), &no, "succeeded", Duration::from_secs(30)).await;
        let stored = h.stored(DEMO.0, &no).await;
        let accounts: Vec<&str> = stored
            .attempts()
            .iter()
            .map(|a| a.route().provider_account.as_str())
            .collect();
        assert_eq!(accounts, [first, "suka-backup"], "{code}: {view}");
        let refused = &stored.attempts()[0];
        assert!(
            matches!(refused.state(), AttemptState::Rejected { failover_allowed: true, reason } if reason.code == "not_connected"),
            "{code}: {refused:?}"
        );
        assert_eq!(
            refused.polls(),
            0,
            "{code}: refused at submit, never queried"
        );
        assert_eq!(
            h.assert_at_most_one_delivery(stored.id().as_str()),
            1,
            "{code}"
        );
    }
}

#[tokio::test]
async fn an_unsigned_sync_on_a_channel_with_no_query_is_kept_for_an_operator_and_not_acknowledged()
{
    // A carrier-billing channel that sends its syncs unsigned: neither the gateway nor the simulator has a
    // sync key.
    let mut config = LocalConfig::demo_with(None).unwrap();
    let mut accounts = demo_accounts(&mut config);
    for v in &mut accounts {
        if v["account"]["id"] == "sms-mp" {
            v["secret"].as_object_mut().unwrap().remove("sync_key");
            v["simulator"]["credentials"]
                .as_object_mut()
                .unwrap()
                .remove("sync_key");
        }
    }
    let h = Harness::start_with(LocalOptions {
        config: Some(serde_json::from_value(json!({"accounts": accounts})).unwrap()),
        ..options()
    })
    .await;
    let no = order_no("unsigned-sync");
    let phone = "13800138000";
    let created = h
        .demo()
        .create_order(&json!({
            "merchant_order_no": no, "product_code": "billing.sms.demo", "account": phone,
            "extra": {"imsi": format!("4600{phone}"), "imei": "860000000000001", "iccid": "89860000000000000001"}
        }))
        .await
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body["status"], "action_required",
        "{}",
        created.body
    );
    let order_id = created.body["order_id"].as_str().unwrap().to_owned();
    // The user sends the SMS: the channel bills and syncs, unsigned.
    let provider_id = user_sends_the_sms(&h, "sms-mp", &order_id).await;
    let sim = h.sim("sms-mp");
    let kept = poll_async(
        Duration::from_secs(10),
        "the unverified sync kept",
        || async {
            let order = h.stored(DEMO.0, &no).await;
            let a = order.attempts()[0].clone();
            (!a.unverified().is_empty()).then_some((order, a))
        },
    )
    .await;
    let (order, attempt) = kept;
    let content = &attempt.unverified()[0].content;
    assert!(content.contains("status=DELIVRD"), "{content}");
    assert!(
        !content.contains(phone),
        "the phone number is masked: {content}"
    );
    assert!(
        order
            .anomalies()
            .iter()
            .any(|a| a.kind == recharge_core::AnomalyKind::UnverifiedResult),
        "{:?}",
        order.anomalies()
    );
    // Nothing was decided on it, and the channel was told to resend.
    let view = h.demo().get_order(&no).await.unwrap().body;
    assert_eq!(view["status"], "action_required", "{view}");
    assert!(
        matches!(attempt.state(), AttemptState::ActionRequired { .. }),
        "{attempt:?}"
    );
    let tries: Vec<_> = sim
        .callbacks()
        .into_iter()
        .filter(|c| c.provider_order_id == provider_id)
        .collect();
    assert!(!tries.is_empty());
    assert!(
        tries.iter().all(|c| c.http_status != Some(200)),
        "no sync was acknowledged: {tries:#?}"
    );
}

#[tokio::test]
async fn an_account_that_does_not_state_what_the_seeds_leave_unsaid_stops_the_stack_naming_it() {
    let mut config = LocalConfig::demo_with(None).unwrap();
    for a in config.accounts.as_mut().unwrap() {
        if a.account["id"] == "openapi-main" {
            a.account["options"] = json!({});
        }
    }
    let Err(e) = LocalStack::start(LocalOptions {
        config: Some(config),
        ..options()
    })
    .await
    else {
        panic!("the stack must not start");
    };
    let text = format!("{e:#}");
    assert!(text.contains("openapi-main"), "{text}");
    assert!(text.contains("success_status"), "{text}");
}
