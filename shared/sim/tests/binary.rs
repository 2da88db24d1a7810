//! The `recharge-sim` binary: every protocol starts from its example credentials file, prints its base URL
//! on stdout when ready, and serves the ledger there.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and returns the first stdout line (its base URL), waiting at most 20 s.
fn start(protocol: &str, extra: &[&str]) -> (Killed, String) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let creds = format!(
        "{}/examples/credentials/{protocol}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_recharge-sim"))
        .current_dir(root)
        .args([
            "--protocol",
            protocol,
            "--listen",
            "127.0.0.1:0",
            "--credentials",
            &creds,
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = Killed(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("base URL within 20 s");
    (guard, line.trim().to_owned())
}

#[tokio::test]
async fn every_protocol_starts_from_the_binary_and_prints_a_loopback_base_url() {
    for protocol in [
        "suka-xml",
        "wikeyun",
        "ice-microservice",
        "openapi-rsa",
        "sms-billing",
    ] {
        let (_child, url) = start(protocol, &["--time-scale", "60", "--no-scripts"]);
        assert!(url.starts_with("http://127.0.0.1:"), "{protocol}: {url}");
        let orders: serde_json::Value = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{url}/_sim/orders"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(orders, serde_json::json!([]), "{protocol}");
    }
}

#[tokio::test]
async fn chaos_flags_are_accepted_and_an_unknown_protocol_is_an_error() {
    let (_child, url) = start(
        "suka-xml",
        &[
            "--chaos-seed",
            "7",
            "--chaos-refuse",
            "0.5",
            "--chaos-lost-callback",
            "0.1",
            "--chaos-inband-error",
            "0.2",
        ],
    );
    assert!(url.starts_with("http://127.0.0.1:"));
    let status = Command::new(env!("CARGO_BIN_EXE_recharge-sim"))
        .args(["--protocol", "nope", "--credentials", "/dev/null"])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
}
