//! The fault campaign, small and with a fixed seed: 2,000 orders through the local stack with every simulator
//! in chaos mode and random crashes, checked against the simulators' ledgers; and 300 orders of the same
//! campaign on DynamoDB Local when `AWS_ENDPOINT_URL_DYNAMODB` names it (`./scripts/test` starts it).

use recharge_bench::faults::{FaultOptions, run};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_orders_under_chaos_keep_every_invariant() {
    let mut opts = FaultOptions::new(2_000, 20_261_122);
    opts.settle_timeout = Duration::from_secs(90);
    // A loaded CI machine may stall the sweep for a while: wait longer before calling what is left stuck.
    opts.settle_stable = Duration::from_secs(20);
    let report = run(opts).await.expect("the campaign runs");
    report.print();
    assert!(report.passed(), "{:#?}", report.violations);
    assert!(report.settled, "every order settled");
    // The campaign must actually have met its faults.
    for fault in [
        "refuse",
        "hang",
        "http_500",
        "lost_callback",
        "duplicate_callback",
        "late_failure",
        "unknown_answer",
        "inband_error",
        "script 0005",
        "crash after Submitting write",
        "create handler aborted",
        "duplicate create (racing)",
    ] {
        assert!(
            report.by_fault.get(fault).is_some_and(|(n, _)| *n > 0),
            "no order met {fault}: {:?}",
            report.by_fault.keys().collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_orders_on_dynamodb_local_keep_every_invariant() {
    let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL_DYNAMODB") else {
        eprintln!(
            "AWS_ENDPOINT_URL_DYNAMODB is not set: run ./scripts/test for the DynamoDB Local section"
        );
        return;
    };
    let mut opts = FaultOptions::new(300, 20_261_201).on_dynamodb(endpoint);
    opts.concurrency = 16;
    opts.settle_timeout = Duration::from_secs(90);
    opts.settle_stable = Duration::from_secs(20);
    let report = run(opts)
        .await
        .expect("the campaign runs on DynamoDB Local");
    report.print();
    assert_eq!(report.store, "dynamodb");
    assert!(report.passed(), "{:#?}", report.violations);
    assert!(report.settled, "every order settled");
    for fault in [
        "crash after Submitting write",
        "create handler aborted",
        "duplicate create (racing)",
    ] {
        assert!(
            report.by_fault.get(fault).is_some_and(|(n, _)| *n > 0),
            "no order met {fault}: {:?}",
            report.by_fault.keys().collect::<Vec<_>>()
        );
    }
}
