//! Merchant apps created, disabled, enabled and rotated through `recharge-ops` (tools/ops) against the local
//! stack, with no restart: the stack's functions find apps in the table on first use and cache them for at
//! most a minute (docs/operations.md §9).

use crate::helpers::*;
use recharge_ops::{CliError, Output};
use serde_json::json;
use std::time::Duration;

/// A fresh app id (1–32 characters of `[A-Za-z0-9_-]`).
fn app_id(label: &str) -> String {
    let no = order_no(label);
    no[no.len().saturating_sub(32)..]
        .trim_start_matches('-')
        .to_owned()
}

/// The secret the CLI printed: the line `secret: …` of its table output, as an operator copies it.
fn printed_secret(out: &Output) -> String {
    let line = out
        .text
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap_or_else(|| panic!("no secret line in {}", out.text));
    assert_eq!(out.json["secret"], line, "the table and --json agree");
    line.to_owned()
}

async fn create_app(h: &Harness, id: &str) -> String {
    let out = h
        .ops_cli(&["apps", "create", id, "--operator", "erin"])
        .await
        .unwrap();
    assert!(out.text.contains("shown once"), "{}", out.text);
    assert_eq!(out.json["app"]["status"], "enabled", "{}", out.json);
    printed_secret(&out)
}

async fn place(h: &Harness, app: &str, secret: &str, no: &str) -> recharge_local::client::Reply {
    h.client((app, secret))
        .create_order(
            &json!({"merchant_order_no": no, "product_code": "game.demo.60",
                              "account": "player-9", "notify_url": h.inbox.url(no)}),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_merchant_app_created_through_the_cli_places_an_order_and_gets_its_notification() {
    let h = Harness::start().await;
    let id = app_id("new");
    let secret = create_app(&h, &id).await;
    assert_eq!(secret.len(), 64);

    let no = order_no("new-app");
    let created = place(&h, &id, &secret, &no).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let merchant = h.client((&id, &secret));
    wait_status(&merchant, &no, "succeeded", Duration::from_secs(30)).await;
    // The notification is signed with the secret the CLI printed (`wait_sequence` checks every signature).
    let bodies = h
        .inbox
        .wait_sequence(&no, &secret, 2, Duration::from_secs(30))
        .await;
    assert_eq!(bodies.last().unwrap()["status"], "succeeded");

    // Listed and shown, never with its secret again.
    let listed = h.ops_cli(&["apps", "list"]).await.unwrap();
    let row = listed.text.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        row.contains("enabled") && row.contains("table") && row.contains("erin (app:ops)"),
        "{row}"
    );
    assert!(
        listed.text.lines().any(|l| l.starts_with("demo ")),
        "the seed's apps too: {}",
        listed.text
    );
    let shown = h.ops_cli(&["--json", "apps", "show", &id]).await.unwrap();
    assert!(!shown.json.to_string().contains(&secret), "{}", shown.json);
    assert!(!listed.json.to_string().contains(&secret));
    // Another app's secret, or a made-up one, opens nothing.
    let wrong = place(&h, &id, DEMO.1, &order_no("wrong")).await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(wrong.body["error"]["code"], "bad_signature");
    // An id taken (by apps.json or by the table) is refused.
    for taken in ["demo", id.as_str()] {
        match h
            .ops_cli(&["apps", "create", taken, "--operator", "erin"])
            .await
        {
            Err(CliError::Api { status, code, .. }) => {
                assert_eq!((status, code.as_str()), (409, "app_exists"), "{taken}")
            }
            other => panic!("{taken}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_disabled_app_is_refused_within_a_minute_and_works_again_once_enabled() {
    let h = Harness::start().await;
    let id = app_id("off");
    let secret = create_app(&h, &id).await;
    assert_eq!(place(&h, &id, &secret, &order_no("on")).await.status, 201);

    let out = h
        .ops_cli(&["apps", "disable", &id, "--operator", "erin"])
        .await
        .unwrap();
    assert!(
        out.text.contains(&format!("{id} is disabled")),
        "{}",
        out.text
    );
    let changed = std::time::Instant::now();
    let refused = poll_async(
        Duration::from_secs(60),
        "the disabled app refused",
        || async {
            let r = place(&h, &id, &secret, &order_no("off")).await;
            (r.status == 401).then_some(r)
        },
    )
    .await;
    assert!(changed.elapsed() < Duration::from_secs(60));
    assert_eq!(
        refused.body["error"]["code"], "app_disabled",
        "{}",
        refused.body
    );
    // Other apps are untouched.
    assert_eq!(
        h.demo()
            .create_order(
                &json!({"merchant_order_no": order_no("demo"), "product_code": "game.demo.60",
                                  "account": "player-1"})
            )
            .await
            .unwrap()
            .status,
        201
    );

    h.ops_cli(&["apps", "enable", &id, "--operator", "erin"])
        .await
        .unwrap();
    poll_async(Duration::from_secs(60), "the app enabled again", || async {
        (place(&h, &id, &secret, &order_no("back")).await.status == 201).then_some(())
    })
    .await;
}

#[tokio::test]
async fn after_a_rotation_the_new_secret_works_and_the_old_one_only_within_the_grace_period() {
    let h = Harness::start().await;
    let id = app_id("rot");
    let old = create_app(&h, &id).await;
    assert_eq!(place(&h, &id, &old, &order_no("before")).await.status, 201);

    let out = h
        .ops_cli(&[
            "apps",
            "rotate",
            &id,
            "--operator",
            "erin",
            "--grace-secs",
            "20",
        ])
        .await
        .unwrap();
    let new = printed_secret(&out);
    assert_ne!(new, old);
    assert_eq!(out.json["app"]["secret_version"], 2, "{}", out.json);
    let until = out.json["app"]["previous_secret_valid_until"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(out.text.contains(&until), "{}", out.text);

    // At once, whatever the caches hold: the new secret works, and the old one still does (grace period).
    let r = place(&h, &id, &new, &order_no("new")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = place(&h, &id, &old, &order_no("old-in-grace")).await;
    assert_eq!(
        r.status, 201,
        "the old secret within its grace period: {}",
        r.body
    );

    // After the grace period only the new one works.
    let refused = poll_async(
        Duration::from_secs(60),
        "the old secret refused",
        || async {
            let r = place(&h, &id, &old, &order_no("old-late")).await;
            (r.status == 401).then_some(r)
        },
    )
    .await;
    assert_eq!(refused.body["error"]["code"], "bad_signature");
    let now = chrono_free_now();
    assert!(
        now.as_str() >= until.as_str(),
        "refused at {now}, before the grace ended at {until}"
    );
    let r = place(&h, &id, &new, &order_no("new-late")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Notifications are signed with the new secret.
    let no = order_no("notified");
    assert_eq!(place(&h, &id, &new, &no).await.status, 201);
    let bodies = h
        .inbox
        .wait_sequence(&no, &new, 2, Duration::from_secs(30))
        .await;
    assert_eq!(bodies.last().unwrap()["status"], "succeeded");
}

/// Now as the API writes times (RFC 3339, UTC, `Z`), for comparing with its answers as text.
fn chrono_free_now() -> String {
    recharge_api::http::view::rfc3339(recharge_core::Clock::now(&recharge_core::SystemClock))
}
