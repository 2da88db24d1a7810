//! Every scripted account of docs/simulators.md §5 on every demo product whose protocol can express it (the table
//! docs/simulators.md §5), all orders of a product at once on one stack.
//!
//! For each order: the final public status (or, for 0009, that it is still open), the attempts the gateway
//! made (failover shows as a second attempt on the backup account), what every simulator's ledger holds (never
//! two deliveries; the backup sees an order only after the first provider definitely failed it), the
//! callbacks (all acknowledged, duplicates and stale ones included) and the merchant notifications (signed,
//! sequence increasing, the last one is the final view).

use crate::helpers::*;
use recharge_core::order::AttemptState;
use recharge_local::SigningClient;
use recharge_sim::OrderState;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// The script of an ordinary account (the last four digits are no script).
const NORMAL: &str = "8000";
/// Time for a scripted order to end (most take well under a second; 0003 and failovers a few).
const SETTLE: Duration = Duration::from_secs(30);
/// How long 0009 is watched at least: 5 minutes of provider time at the test's time scale.
const WATCH_OPEN: Duration = Duration::from_secs(3);
/// How long the test waits, beyond `WATCH_OPEN`, for the sweep to have queried 0009 twice: a loaded machine
/// runs the sweep late, and 0009 keeps the order processing for 1 h of provider time (36 s here).
const WATCH_POLLS: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Submit, then callbacks and queries.
    OneStep,
    /// Carrier billing, MP: the user sends an SMS (the test tells the simulator it arrived).
    Mp,
    /// Carrier billing, PC: the user enters the code the simulator "sent" (123456).
    Pc,
}

#[derive(Debug, Clone, Copy)]
struct Product {
    code: &'static str,
    first: &'static str,
    backup: Option<&'static str>,
    flow: Flow,
    /// What becomes of the first account's callbacks.
    callbacks: Callbacks,
    /// The first account's protocol can report reversal and partial delivery (wikeyun).
    reversal_and_partial: bool,
    /// The first account's code table lists the simulator's refusal as a refusal. ICE's only error code
    /// answers refusals and recorded orders alike, so its refusal (0001) is Unknown and stays for an
    /// operator: never failed over (docs/providers/README.md §4 rule 1).
    refusal_listed: bool,
}

impl Product {
    /// The recharge account (and extras) whose last four digits select `script` on the first simulator.
    fn order_body(&self, no: &str, script: &str, notify_url: &str) -> Value {
        let phone = format!("1380013{script}");
        let (account, extra) = match self.code {
            "game.demo.60" => (format!("gamer{script}"), json!({})),
            "vip.demo.month" => (format!("vip-user-{script}"), json!({})),
            "electricity.sgcc.100" => (
                format!("330012345{script}"),
                json!({"area": "江苏", "city": "南京", "phone": "13800138000"}),
            ),
            // The MP simulator reads the script from the IMSI.
            "billing.sms.demo" => (
                phone.clone(),
                json!({"imsi": format!("4600{phone}"), "imei": "860000000000001",
                       "iccid": "89860000000000000001"}),
            ),
            _ => (phone, json!({})),
        };
        json!({
            "merchant_order_no": no,
            "product_code": self.code,
            "account": account,
            "extra": extra,
            "notify_url": notify_url,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callbacks {
    /// The protocol has none.
    Never,
    /// Verified and applied (or recognised as duplicate or stale) and acknowledged.
    Taken,
}

/// What the first provider's ledger holds for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FirstLedger {
    /// Refused at submit: nothing recorded.
    Absent,
    Is(OrderState),
}

#[derive(Debug, Clone)]
struct Expect {
    /// The final public status, or the status the order stays in (`stays_open`).
    status: &'static str,
    stays_open: bool,
    /// Provider accounts of the attempts, in order.
    attempts: Vec<&'static str>,
    first_ledger: FirstLedger,
    delivered_fen: Option<i64>,
    /// Exactly this many callbacks from the first simulator (all of them acknowledged).
    first_callbacks: Option<usize>,
}

fn expect(p: &Product, script: &str) -> Expect {
    let on_first = |status, state| Expect {
        status,
        stays_open: false,
        attempts: vec![p.first],
        first_ledger: FirstLedger::Is(state),
        delivered_fen: None,
        first_callbacks: None,
    };
    // A definite failure by the first provider: the backup takes over, or the order fails.
    let failed_first = |ledger| match p.backup {
        Some(backup) => Expect {
            status: "succeeded",
            stays_open: false,
            attempts: vec![p.first, backup],
            first_ledger: ledger,
            delivered_fen: None,
            first_callbacks: None,
        },
        None => Expect {
            status: "failed",
            stays_open: false,
            attempts: vec![p.first],
            first_ledger: ledger,
            delivered_fen: None,
            first_callbacks: None,
        },
    };
    let callbacks = |n: usize| (p.callbacks == Callbacks::Taken).then_some(n);
    match script {
        NORMAL => Expect {
            first_callbacks: callbacks(1),
            ..on_first("succeeded", OrderState::Succeeded)
        },
        "0001" if p.refusal_listed => failed_first(FirstLedger::Absent),
        "0001" => Expect {
            stays_open: true,
            first_ledger: FirstLedger::Absent,
            ..on_first("processing", OrderState::Processing)
        },
        // Recorded, then answered an in-band error no table lists (or 001's 9999): Unknown, settled by the
        // query or the callback, never failed over, delivered once.
        "0010" => Expect {
            first_callbacks: callbacks(1),
            ..on_first("succeeded", OrderState::Succeeded)
        },
        "0002" | "0004" => failed_first(FirstLedger::Is(OrderState::Failed)),
        "0003" => on_first("succeeded", OrderState::Succeeded),
        // Three callbacks of the result, then a stale "processing" one (a sync cannot say "processing").
        "0005" => Expect {
            first_callbacks: callbacks(if p.flow == Flow::OneStep { 4 } else { 3 }),
            ..on_first("succeeded", OrderState::Succeeded)
        },
        "0006" => Expect {
            first_callbacks: (p.callbacks != Callbacks::Never).then_some(0),
            ..on_first("succeeded", OrderState::Succeeded)
        },
        "0007" if p.reversal_and_partial => on_first("reversed", OrderState::Reversed),
        "0008" if p.reversal_and_partial => Expect {
            delivered_fen: Some(5_000),
            ..on_first("partially_succeeded", OrderState::Partial)
        },
        "0009" => Expect {
            stays_open: true,
            // MP: the user sent the SMS, the provider keeps processing, and only a sync could say more.
            status: if p.flow == Flow::Mp {
                "action_required"
            } else {
                "processing"
            },
            ..on_first("processing", OrderState::Processing)
        },
        other => panic!("script {other} is not expressible on {}", p.code),
    }
}

/// Plays the end user of carrier billing, where the flow needs one.
async fn act_as_user(
    h: &Harness,
    p: &Product,
    client: &SigningClient,
    no: &str,
    order_id: &str,
    created: &Value,
) {
    match p.flow {
        Flow::OneStep => {}
        Flow::Mp => {
            if created["status"] == "failed" {
                return;
            }
            if created["status"] == "action_required" {
                assert_eq!(created["next_action"]["type"], "send_sms", "{created}");
                let messages = created["next_action"]["messages"].as_array().unwrap();
                assert!(!messages.is_empty(), "{created}");
            }
            // Even when our submit timed out (0003) or got a 500 (0004), the provider recorded the order and
            // the user may send the SMS: the provider's order id is in its ledger.
            user_sends_the_sms(h, p.first, order_id).await;
        }
        Flow::Pc => {
            if created["status"] == "failed" {
                return;
            }
            assert_eq!(created["status"], "action_required", "{created}");
            assert_eq!(
                created["next_action"]["type"], "enter_verification_code",
                "{created}"
            );
            let r = client
                .verify(no, recharge_local::demo::DEMO_VERIFICATION_CODE)
                .await
                .unwrap();
            assert_eq!(r.status, 200, "verification: {}", r.body);
            // The code is sent once: a second one finds the order no longer waiting for it.
            let again = client.verify(no, "123456").await.unwrap();
            assert_eq!(again.status, 409, "{}", again.body);
            assert_eq!(again.body["error"]["code"], "verification_not_expected");
        }
    }
}

async fn run_case(h: Arc<Harness>, p: Product, script: &'static str) {
    let want = expect(&p, script);
    let client = h.demo();
    let no = order_no(&format!("{}-{script}", p.code.replace('.', "_")));
    let body = p.order_body(&no, script, &h.inbox.url(&no));
    let created = client.create_order(&body).await.unwrap();
    assert_eq!(created.status, 201, "{script}: create {}", created.body);
    let created = created.body;
    let order_id = created["order_id"].as_str().unwrap().to_owned();
    assert_eq!(created["merchant_order_no"], no.as_str());
    assert_eq!(created["product_code"], p.code);

    act_as_user(&h, &p, &client, &no, &order_id, &created).await;

    let view = if want.stays_open {
        tokio::time::sleep(WATCH_OPEN).await;
        if p.flow == Flow::OneStep {
            // Poll for the condition rather than trusting the machine to run the sweep on time.
            let deadline = tokio::time::Instant::now() + WATCH_POLLS;
            while tokio::time::Instant::now() < deadline
                && h.stored(DEMO.0, &no)
                    .await
                    .open_attempt()
                    .is_none_or(|a| a.polls() < 2)
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let v = client.get_order(&no).await.unwrap().body;
        assert_eq!(
            v["status"], want.status,
            "{script}: still open after {WATCH_OPEN:?}: {v}"
        );
        assert!(v["failure"].is_null(), "{v}");
        v
    } else {
        let v = wait_status(&client, &no, want.status, SETTLE).await;
        let delivered_fen = match want.status {
            "partially_succeeded" => want.delivered_fen,
            "succeeded" => v["face_value_fen"].as_i64(),
            _ => None,
        };
        assert_eq!(v["delivered_fen"].as_i64(), delivered_fen, "{script}: {v}");
        if matches!(want.status, "failed" | "reversed") {
            assert!(
                v["failure"]["code"].as_str().is_some_and(|c| !c.is_empty()),
                "{v}"
            );
        } else {
            assert!(v["failure"].is_null(), "{v}");
        }
        v
    };

    // The attempts the gateway made, as stored.
    let stored = h.stored(DEMO.0, &no).await;
    let accounts = attempt_accounts(&stored);
    assert_eq!(
        accounts,
        want.attempts,
        "{script}: attempts {:#?}",
        stored.attempts()
    );
    if want.stays_open {
        let open = stored.open_attempt().expect("an open attempt");
        assert!(
            !matches!(open.state(), AttemptState::Submitting),
            "{script}: {:?}",
            open.state()
        );
        match p.flow {
            Flow::OneStep => {
                assert!(
                    open.polls() >= 2,
                    "{script}: the provider was queried: {open:?}"
                );
            }
            Flow::Pc => {
                // The code was sent (accepted before the call); the answer never came.
                assert!(
                    matches!(
                        open.state(),
                        AttemptState::Accepted | AttemptState::Unknown { .. }
                    ),
                    "{script}: {open:?}"
                );
            }
            Flow::Mp => {}
        }
    }

    // The simulators' books.
    let ledger = h.ledger_of(&stored);
    let delivered = deliveries(&ledger);
    let first: Vec<_> = ledger.iter().filter(|(a, _)| a == p.first).collect();
    match want.first_ledger {
        FirstLedger::Absent => assert!(first.is_empty(), "{script}: {ledger:#?}"),
        FirstLedger::Is(state) => {
            assert_eq!(
                first.len(),
                1,
                "{script}: one order at the first provider: {ledger:#?}"
            );
            assert_eq!(first[0].1.state, state, "{script}: {ledger:#?}");
        }
    }
    let elsewhere: Vec<_> = ledger.iter().filter(|(a, _)| a != p.first).collect();
    if !elsewhere.is_empty() {
        // Failover only after a definite failure: refused (nothing recorded) or failed and refunded.
        assert!(
            first.iter().all(|(_, o)| o.state == OrderState::Failed),
            "{script}: failed over while the first provider may still deliver: {ledger:#?}"
        );
    }
    assert_eq!(
        elsewhere.len(),
        want.attempts.len() - 1,
        "{script}: {ledger:#?}"
    );
    let expect_delivery = matches!(
        want.status,
        "succeeded" | "partially_succeeded" | "reversed"
    ) || matches!(
        want.first_ledger,
        FirstLedger::Is(OrderState::Succeeded | OrderState::Partial | OrderState::Reversed)
    );
    assert_eq!(
        delivered,
        u32::from(expect_delivery),
        "{script}: {ledger:#?}"
    );

    // Callbacks: every one acknowledged, duplicates and stale ones included.
    if let Some(n) = want.first_callbacks {
        poll(
            Duration::from_secs(10),
            &format!("{script}: {n} callbacks"),
            || {
                let got = h
                    .callbacks(&order_id)
                    .iter()
                    .filter(|(a, _)| a == p.first)
                    .count();
                (got >= n).then_some(())
            },
        )
        .await;
        let got = h
            .callbacks(&order_id)
            .iter()
            .filter(|(a, _)| a == p.first)
            .count();
        assert_eq!(got, n, "{script}: {:#?}", h.callbacks(&order_id));
    }
    if p.callbacks == Callbacks::Taken {
        let callbacks = h.callbacks(&order_id);
        assert!(
            callbacks.iter().all(|(_, c)| c.acknowledged),
            "{script}: a callback was not acknowledged: {callbacks:#?}"
        );
    }

    // The merchant's notifications: signed, increasing, and the last is the view the merchant reads.
    if view["sequence"].as_u64() > created["sequence"].as_u64() {
        let sequence = view["sequence"].as_u64().unwrap();
        let bodies = h.inbox.wait_sequence(&no, DEMO.1, sequence, SETTLE).await;
        let last = bodies
            .iter()
            .max_by_key(|b| b["sequence"].as_u64())
            .unwrap();
        assert_eq!(
            comparable(last),
            comparable(&view),
            "{script}: last notification"
        );
    } else {
        check_notifications(&h.inbox.received(&no), DEMO.1);
    }
}

/// Runs every script of `product` at once on one stack; reports every failing script.
async fn run_product(product: Product, scripts: &[&'static str]) {
    let h = Arc::new(Harness::start().await);
    let mut set = JoinSet::new();
    let mut names = std::collections::HashMap::new();
    for &script in scripts {
        let handle = set.spawn(run_case(Arc::clone(&h), product, script));
        names.insert(handle.id(), script);
    }
    let mut failed = Vec::new();
    while let Some(joined) = set.join_next_with_id().await {
        if let Err(e) = joined {
            let script = names.get(&e.id()).copied().unwrap_or("?");
            let why = if e.is_panic() {
                let p = e.into_panic();
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            } else {
                e.to_string()
            };
            failed.push(format!("{script}: {why}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{}: {} script(s) failed:\n{}",
        product.code,
        failed.len(),
        failed.join("\n")
    );
}

/// A product on one account (no backup) whose protocol has callbacks, lists the simulator's refusal and has no
/// reversal or partial state: the 001 family, openapi-rsa and the carrier-billing accounts.
const fn one_account(code: &'static str, first: &'static str) -> Product {
    Product {
        code,
        first,
        backup: None,
        flow: Flow::OneStep,
        callbacks: Callbacks::Taken,
        reversal_and_partial: false,
        refusal_listed: true,
    }
}

/// Every script but the reversal and partial delivery ones (0007, 0008), for a protocol that can express
/// neither.
const NO_REVERSAL_OR_PARTIAL: &[&str] = &[
    NORMAL, "0001", "0002", "0003", "0004", "0005", "0006", "0009", "0010",
];

const WIKEYUN: Product = Product {
    code: "mobile.100",
    first: "wikeyun-main",
    backup: Some("suka-backup"),
    flow: Flow::OneStep,
    callbacks: Callbacks::Taken,
    reversal_and_partial: true,
    refusal_listed: true,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_100_on_wikeyun_fails_over_to_the_backup_only_after_a_definite_failure() {
    let all = [
        NORMAL, "0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010",
    ];
    run_product(WIKEYUN, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_single_100_on_wikeyun_alone_fails_when_its_only_provider_fails() {
    let all = [
        NORMAL, "0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009",
    ];
    let single = Product {
        code: "mobile.single.100",
        backup: None,
        ..WIKEYUN
    };
    run_product(single, &all).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_slow_100_on_ice_is_driven_by_queries_and_fails_over_to_the_backup() {
    // ICE has no callbacks (0005, 0006 are ordinary orders) and no reversal or partial state. Its one error
    // code cannot tell a refusal (0001) from an order recorded first (0010), so neither fails over.
    let product = Product {
        code: "mobile.slow.100",
        first: "ice-main",
        backup: Some("suka-backup"),
        flow: Flow::OneStep,
        callbacks: Callbacks::Never,
        reversal_and_partial: false,
        refusal_listed: false,
    };
    run_product(
        product,
        &[NORMAL, "0001", "0002", "0003", "0004", "0009", "0010"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn game_demo_60_on_suka_xml_ends_every_script_as_designed() {
    run_product(
        one_account("game.demo.60", "suka-main"),
        NO_REVERSAL_OR_PARTIAL,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn electricity_sgcc_100_on_the_gbk_json_suka_account_succeeds() {
    // The 001 family's electricity account is a JSON object built from the account number and the region, so
    // the simulator's scripts (the last four characters of `account`) cannot be reached: the ordinary case only.
    run_product(one_account("electricity.sgcc.100", "suka-main"), &[NORMAL]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_demo_month_on_openapi_rsa_ends_every_script_as_designed() {
    run_product(
        one_account("vip.demo.month", "openapi-main"),
        NO_REVERSAL_OR_PARTIAL,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_sms_demo_charges_after_the_users_sms_and_only_then() {
    // MP: no query exists, so 0006 (no sync) cannot end; 0007 and 0008 are plain successes.
    let product = Product {
        flow: Flow::Mp,
        ..one_account("billing.sms.demo", "sms-mp")
    };
    let scripts = [NORMAL, "0001", "0002", "0003", "0004", "0005", "0009"];
    run_product(product, &scripts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_code_demo_charges_once_the_user_enters_the_code() {
    // PC: the pay answer carries the result, so 0006 (no sync) still ends; a pay that hangs (0003) or answers
    // 500 (0004) is settled by the provider's sync, which names the order by `cpparam`; 0009 cannot be
    // expressed.
    let product = Product {
        flow: Flow::Pc,
        ..one_account("billing.code.demo", "sms-pc")
    };
    let scripts = [NORMAL, "0001", "0002", "0003", "0004", "0005", "0006"];
    run_product(product, &scripts).await;
}
