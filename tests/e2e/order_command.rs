//! `recharge-local order` as a newcomer meets it at the terminal: a failover and an attempt that was unknown
//! before it was resolved are shown as such, the wait outlasts every scripted scenario, the exit status says how
//! the order ended, output piped to a file carries no colour codes, and a bad `--config` names its file.
//! These run on the in-memory store (the command is what is under test, not the store).

use crate::helpers::{DEMO, OPS, SIM_HANG, TIME_SCALE, order_no};
use recharge_local::follow::{self, Ending, Followed, OrderCommand};
use recharge_local::{LocalOptions, LocalStack};
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

async fn memory_stack(time_scale: f64) -> LocalStack {
    LocalStack::start(LocalOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        time_scale,
        sim_hang: SIM_HANG,
        ..LocalOptions::default()
    })
    .await
    .unwrap()
}

async fn order(stack: &LocalStack, product: &str, account: &str) -> (Followed, String) {
    let cmd = OrderCommand {
        base_url: stack.base_url().to_owned(),
        app: DEMO.0.into(),
        secret: DEMO.1.into(),
        ops_app: OPS.0.into(),
        ops_secret: OPS.1.into(),
        product: product.into(),
        account: account.into(),
        extra: Vec::new(),
        merchant_order_no: Some(order_no("cmd")),
        timeout: Some(Duration::from_secs(120)),
    };
    let mut out = Vec::new();
    let followed = follow::run(&cmd, &mut out).await.unwrap();
    (followed, String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn the_order_command_shows_the_failover_and_each_attempt() {
    let stack = memory_stack(TIME_SCALE).await;
    // 0001: the first route refuses at submit, the backup delivers.
    let (followed, out) = order(&stack, "mobile.100", "13800000001").await;
    assert_eq!(followed.ending, Ending::Succeeded, "{out}");
    assert_eq!(followed.attempts.len(), 2, "{out}");
    let (first, second) = (&followed.attempts[0], &followed.attempts[1]);
    assert_ne!(first.provider_account, second.provider_account, "{out}");
    assert!(
        first.states.last().unwrap().starts_with("rejected"),
        "{out}"
    );
    assert!(
        second.states.last().unwrap().starts_with("succeeded"),
        "{out}"
    );
    assert!(
        out.contains(&format!("attempt 1 at {}", first.provider_account)),
        "{out}"
    );
    assert!(
        out.contains(&format!("attempt 2 at {}", second.provider_account)),
        "{out}"
    );
    assert!(out.contains("route: "), "{out}");
    assert!(out.contains("note: failed over 1 time(s)"), "{out}");
    assert!(!out.contains("no definite answer"), "{out}");
    stack.stop().await;
}

#[tokio::test]
async fn an_unknown_then_resolved_order_is_not_shown_as_a_clean_success() {
    let stack = memory_stack(TIME_SCALE).await;
    // 0003: the submit hangs past our timeout though the provider recorded it; a query finds the success.
    let (followed, out) = order(&stack, "mobile.100", "13800000003").await;
    assert_eq!(followed.ending, Ending::Succeeded, "{out}");
    assert_eq!(followed.attempts.len(), 1, "{out}");
    let attempt = &followed.attempts[0];
    assert!(
        attempt.states.last().unwrap().starts_with("succeeded"),
        "{out}"
    );
    // Whether the submit's timeout was recorded first or the sweep's query got there before it, the submit's own
    // answer did not settle the attempt, and the command says so.
    assert!(
        attempt.states.iter().any(|s| s.starts_with("unknown"))
            || attempt.first_move.as_deref() != Some("submit"),
        "{out}"
    );
    assert!(
        out.contains("note: attempt 1 got no definite answer to its submit"),
        "{out}"
    );
    assert!(!out.contains("failed over"), "{out}");
    stack.stop().await;
}

#[tokio::test]
async fn the_order_command_waits_longer_than_the_longest_scripted_scenario() {
    // The default time scale of `recharge-local`: account 0009 stays processing for the simulators' hour / 20.
    let stack = memory_stack(LocalOptions::default().time_scale).await;
    let info: Value = reqwest::get(format!("{}/_local", stack.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["longest_scenario_secs"].as_f64(),
        Some(180.0),
        "{info}"
    );
    assert!(follow::default_wait(&info) > Duration::from_secs(180));
    stack.stop().await;
}

/// Runs the `recharge-local` binary with its output piped (not a terminal), as `cmd > file` would.
async fn binary(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_recharge-local"))
            .args(&args)
            .env("RUST_LOG", "info")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_order_command_exits_non_zero_when_the_order_failed_and_pipes_no_colour_codes() {
    // No stack at --base (port 9 refuses), so the command starts its own; 0001 on the single-route product fails.
    let output = binary(&[
        "--time-scale",
        "100",
        "order",
        "mobile.single.100",
        "13800000001",
        "--base",
        "http://127.0.0.1:9",
        "--timeout-secs",
        "120",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("\"status\":\"failed\""), "{stdout}");
    assert!(stdout.contains("attempt 1 at "), "{stdout}");
    // The stack's own log lines are in the same output (RUST_LOG=info), and none is coloured.
    assert!(stdout.contains(" INFO "), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}

#[tokio::test]
async fn a_config_file_that_cannot_be_read_or_parsed_is_named_in_the_error() {
    let dir = std::env::temp_dir().join(order_no("recharge-local-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.json");
    let output = binary(&["--config", missing.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("--config {}", missing.display())),
        "{stderr}"
    );

    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\"accounts\": [").unwrap();
    let output = binary(&["--config", broken.to_str().unwrap()]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!("--config {}", broken.display())),
        "{stderr}"
    );
    assert!(stderr.contains("not a local configuration"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
