//! The sample merchant client (`examples/merchant_client.py`) against the local stack, as a merchant would
//! run it: with `extra`, a verification code, a timeout on an order that stays processing, and a base URL
//! ending with a slash (the signed path must still be `/v1/...`).

use crate::helpers::*;
use std::process::Command;

fn client(base: &str, args: &[&str]) -> (i32, String, String) {
    let script = crate::common::workspace_root().join("examples/merchant_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(base)
        .args([DEMO.0, DEMO.1])
        .args(args)
        .output()
        .expect("python3 is on PATH");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_sample_client_sends_extra_enters_a_code_gives_up_on_time_and_takes_a_trailing_slash() {
    let h = Harness::start().await;
    let base = format!("{}/", h.stack.base_url());
    let (code, out, err) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            client(
                &base,
                &[
                    "electricity.sgcc.100",
                    "3300123458000",
                    "--extra",
                    "area=江苏",
                    "--extra",
                    "city=南京",
                    "--extra",
                    "phone=13800138000",
                    "--timeout",
                    "30",
                ],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.lines().last().unwrap_or("").contains("\"succeeded\""),
        "{out}"
    );

    let (code, out, err) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            client(
                &base,
                &[
                    "billing.code.demo",
                    "13800138000",
                    "--code",
                    "123456",
                    "--timeout",
                    "30",
                ],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("enter_verification_code"), "{out}");
    assert!(
        out.lines().last().unwrap_or("").contains("\"succeeded\""),
        "{out}"
    );

    // 0009 stays processing: the client gives up after its timeout with status 2.
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        client(&base, &["game.demo.60", "gamer0009", "--timeout", "2"])
    })
    .await
    .unwrap();
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("giving up"), "{err}");
}
