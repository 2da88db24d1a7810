//! The figures table: one row per figure with its goal and verdict, printed by sections, and the latency rows
//! that the in-process and the Lambda runs share. Every other module of the bench writes rows; this one
//! depends on none of them.

use crate::util::percentile;
use std::time::Duration;

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub section: &'static str,
    pub figure: String,
    pub measured: String,
    pub goal: String,
    pub verdict: String,
}

pub(crate) fn row(
    section: &'static str,
    figure: &str,
    measured: String,
    goal: &str,
    verdict: &str,
) -> Row {
    Row {
        section,
        figure: figure.to_owned(),
        measured,
        goal: goal.to_owned(),
        verdict: verdict.to_owned(),
    }
}

pub fn print_table(rows: &[Row]) {
    // Each column is as wide as its widest cell, and at least as wide as its heading.
    let width = |cell: fn(&Row) -> &str, heading: usize| {
        rows.iter()
            .map(|r| cell(r).chars().count())
            .max()
            .unwrap_or(10)
            .max(heading)
    };
    let w1 = width(|r| r.figure.as_str(), 6);
    let w2 = width(|r| r.measured.as_str(), 8);
    let w3 = width(|r| r.goal.as_str(), 4);
    let mut section = "";
    println!(
        "{:<w1$} | {:<w2$} | {:<w3$} | verdict",
        "figure", "measured", "goal"
    );
    println!("{}", "-".repeat(w1 + w2 + w3 + 18));
    for r in rows {
        if r.section != section {
            section = r.section;
            println!("[{section}]");
        }
        println!(
            "{:<w1$} | {:<w2$} | {:<w3$} | {}",
            r.figure, r.measured, r.goal, r.verdict
        );
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 50.0), percentile(&v, 99.0))
}

/// One row per route (POST /v1/orders, the wikeyun callback, GET /v1/orders/{no}, in that order): the measured
/// latencies (ms) beside the bare store calls the route needs, and the ratio of the medians.
pub(crate) fn latency_rows(
    section: &'static str,
    samples: usize,
    floor: &Floor,
    [post, callback, get]: [Vec<f64>; 3],
) -> Vec<Row> {
    [
        (
            "POST /v1/orders (incl. the provider call to the simulator)",
            post,
            floor.post,
            "create + record",
        ),
        (
            "provider callback (wikeyun, final)",
            callback,
            floor.callback,
            "get + record",
        ),
        ("GET /v1/orders/{no}", get, floor.get, "get"),
    ]
    .into_iter()
    .map(|(name, took, (f50, f99), floor_name)| {
        let (h50, h99) = stats(took);
        row(
            section,
            &format!("{name}, n={samples}"),
            format!(
                "p50 {h50:.2} ms, p99 {h99:.2} ms | store calls alone ({floor_name}): p50 {f50:.2} ms, p99 {f99:.2} ms | ratio p50 {:.2}x",
                h50 / f50
            ),
            "",
            "",
        )
    })
    .collect()
}

/// p50 and p99 (ms) of the bare store calls each route needs, on the same DynamoDB Local.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub post: (f64, f64),
    pub callback: (f64, f64),
    pub get: (f64, f64),
}
