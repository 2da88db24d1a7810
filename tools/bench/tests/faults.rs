//! The fault campaign, small and with a fixed seed: 2,000 orders through the local stack with every simulator
//! in chaos mode and random crashes, checked against the simulators' ledgers.

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
