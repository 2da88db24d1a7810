//! `recharge-ops recon run|show|export|resolve` (docs/reconciliation.md §6, §7): the daily reconciliation's
//! reports through the ops API (`POST /ops/recon/run`, `GET /ops/recon`), printed for people, or exported as
//! JSON or CSV; an operator's settlement of one mismatch (`POST /ops/recon/mismatches/settle`).

use crate::{CliError, OpsClient, Output, elements, enc, s, table};
use clap::{Subcommand, ValueEnum};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum ReconCommand {
    /// Reconcile a day now (default: yesterday, every provider account) and print the reports.
    Run {
        #[arg(long)]
        account: Option<String>,
        /// YYYY-MM-DD in the gateway's day boundary (Beijing time by default).
        #[arg(long)]
        date: Option<String>,
        /// Re-query the whole day again (by default an unfinished re-query continues where it stopped).
        #[arg(long)]
        restart: bool,
    },
    /// The stored reports of a day, with their mismatches.
    Show {
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        date: Option<String>,
    },
    /// The stored reports of a day as JSON, or their mismatches as CSV (one line each).
    Export {
        #[arg(long, value_enum, default_value = "json")]
        format: ExportFormat,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        date: Option<String>,
    },
    /// Settle one mismatch of a day's report (after settling the money): it stops counting as open.
    Resolve {
        #[arg(long)]
        account: String,
        #[arg(long)]
        date: String,
        /// The mismatch's key, as `recon show` prints it (e.g. `late_reversal:<attempt id>`).
        #[arg(long)]
        key: String,
        /// Who settles it.
        #[arg(long)]
        operator: String,
        /// What was done.
        #[arg(long)]
        note: String,
        /// What it rests on (a provider ticket, a statement line).
        #[arg(long)]
        evidence: String,
    },
}

fn query(account: &Option<String>, date: &Option<String>) -> String {
    let mut q = Vec::new();
    if let Some(a) = account {
        q.push(format!("account={}", enc(a)));
    }
    if let Some(d) = date {
        q.push(format!("date={}", enc(d)));
    }
    q.join("&")
}

fn yuan(v: &Value) -> String {
    match v.as_i64() {
        Some(fen) => {
            let sign = if fen < 0 { "-" } else { "" };
            let abs = fen.unsigned_abs();
            format!("{sign}{}.{:02}", abs / 100, abs % 100)
        }
        None => "-".into(),
    }
}

/// One report for people: totals per status, the price and balance checks, the re-query, every mismatch.
pub fn report_text(r: &Value) -> String {
    let mut out = Vec::new();
    let mismatches = elements(&r["mismatches"]);
    let alarming = mismatches
        .iter()
        .filter(|m| m["kind"] != "balance_top_up" && m["settlement"].is_null())
        .count();
    let settled = mismatches
        .iter()
        .filter(|m| !m["settlement"].is_null())
        .count();
    let mut verdict = if alarming == 0 {
        "clean".to_owned()
    } else {
        format!("{alarming} MISMATCH(ES)")
    };
    if settled > 0 {
        verdict.push_str(&format!(" ({settled} settled)"));
    }
    out.push(format!(
        "{} {} (UTC{:+}h): {verdict}",
        s(&r["account"]),
        s(&r["date"]),
        r["utc_offset_minutes"].as_i64().unwrap_or(0) / 60
    ));
    let totals: Vec<Vec<String>> = elements(&r["totals"])
        .iter()
        .map(|t| {
            vec![
                s(&t["status"]),
                s(&t["orders"]),
                yuan(&t["face_fen"]),
                yuan(&t["cost_fen"]),
            ]
        })
        .collect();
    if totals.is_empty() {
        out.push("  no orders".into());
    } else {
        out.push(table(
            &["STATUS", "ORDERS", "FACE YUAN", "COST YUAN"],
            &totals,
        ));
    }
    let p = &r["prices"];
    out.push(format!(
        "prices: {} reported, {} differ from the route cost (reported {} yuan, route {} yuan)",
        s(&p["reported"]),
        s(&p["mismatched"]),
        yuan(&p["reported_cost_fen"]),
        yuan(&p["route_cost_fen"])
    ));
    let b = &r["balance"];
    if b["judged"] == true {
        out.push(format!(
            "balance: {} -> {} yuan over {} snapshots; drops {}, top-ups {}, delivered {}, unexplained {}",
            yuan(&b["opening_fen"]),
            yuan(&b["closing_fen"]),
            s(&b["snapshots"]),
            yuan(&b["drops_fen"]),
            yuan(&b["top_ups_fen"]),
            yuan(&b["delivered_cost_fen"]),
            yuan(&b["unexplained_fen"])
        ));
    } else {
        out.push(format!(
            "balance: not judged ({} snapshots)",
            s(&b["snapshots"])
        ));
    }
    let q = &r["requery"];
    if q["supported"] == true {
        let remaining = q["remaining"].as_u64().unwrap_or(0);
        out.push(format!(
            "re-query: {} final attempts, {} queried, {} diverged, {} inconclusive, {}",
            s(&q["eligible"]),
            s(&q["queried"]),
            s(&q["diverged"]),
            s(&q["inconclusive"]),
            if remaining == 0 {
                "done".to_owned()
            } else {
                format!("{remaining} REMAINING (a later pass continues)")
            }
        ));
    } else {
        out.push("re-query: the protocol has no query".into());
    }
    if !mismatches.is_empty() {
        let rows: Vec<Vec<String>> = mismatches
            .iter()
            .map(|m| {
                let state = if m["settlement"].is_null() {
                    "open".to_owned()
                } else {
                    format!("settled by {}", s(&m["settlement"]["operator"]))
                };
                vec![
                    s(&m["kind"]),
                    s(&m["order_id"]),
                    s(&m["ours"]),
                    s(&m["theirs"]),
                    yuan(&m["amount_fen"]),
                    state,
                    mismatch_key(m),
                ]
            })
            .collect();
        out.push(table(
            &[
                "MISMATCH", "ORDER", "OURS", "THEIRS", "YUAN", "STATE", "KEY",
            ],
            &rows,
        ));
    }
    out.join("\n")
}

/// A mismatch's key, as the API gives it (`recon resolve --key`).
fn mismatch_key(m: &Value) -> String {
    m["key"].as_str().unwrap_or_default().to_owned()
}

fn reports_text(v: &Value) -> String {
    let reports = elements(&v["reports"]);
    if reports.is_empty() {
        return format!("no reconciliation report for {}", s(&v["date"]));
    }
    reports
        .iter()
        .map(report_text)
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn field(v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// Every mismatch of the reports as CSV, one line each.
pub fn mismatches_csv(v: &Value) -> String {
    let mut out = String::from(
        "account,date,kind,alarm,order_id,attempt_id,ours,theirs,amount_fen,evidence,key,settled_by,settled_note\r\n",
    );
    for r in elements(&v["reports"]) {
        for m in elements(&r["mismatches"]) {
            let alarm = m["kind"] != "balance_top_up" && m["settlement"].is_null();
            let cells = [
                field(&r["account"]),
                field(&r["date"]),
                field(&m["kind"]),
                alarm.to_string(),
                field(&m["order_id"]),
                field(&m["attempt_id"]),
                field(&m["ours"]),
                field(&m["theirs"]),
                field(&m["amount_fen"]),
                field(&m["evidence"]),
                field(&Value::String(mismatch_key(m))),
                field(&m["settlement"]["operator"]),
                field(&m["settlement"]["note"]),
            ];
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
    }
    out
}

pub async fn run(client: &OpsClient, command: &ReconCommand) -> Result<Output, CliError> {
    match command {
        ReconCommand::Run {
            account,
            date,
            restart,
        } => {
            let mut body = serde_json::Map::new();
            if *restart {
                body.insert("restart".into(), json!(true));
            }
            if let Some(a) = account {
                body.insert("account".into(), json!(a));
            }
            if let Some(d) = date {
                body.insert("date".into(), json!(d));
            }
            let v = client
                .send(
                    "POST",
                    "/ops/recon/run",
                    Value::Object(body).to_string().as_bytes(),
                )
                .await?;
            Ok(Output {
                text: reports_text(&v),
                json: v,
            })
        }
        ReconCommand::Show { account, date } => {
            let q = query(account, date);
            let v = client.send("GET", &format!("/ops/recon?{q}"), b"").await?;
            Ok(Output {
                text: reports_text(&v),
                json: v,
            })
        }
        ReconCommand::Export {
            format,
            account,
            date,
        } => {
            let q = query(account, date);
            let v = client.send("GET", &format!("/ops/recon?{q}"), b"").await?;
            let text = match format {
                ExportFormat::Json => serde_json::to_string_pretty(&v).unwrap_or_default(),
                ExportFormat::Csv => mismatches_csv(&v),
            };
            Ok(Output { text, json: v })
        }
        ReconCommand::Resolve {
            account,
            date,
            key,
            operator,
            note,
            evidence,
        } => {
            let body = json!({"account": account, "date": date, "key": key, "operator": operator,
                              "note": note, "evidence": evidence});
            let v = client
                .send_json("POST", "/ops/recon/mismatches/settle", &body)
                .await?;
            let m = &v["mismatch"];
            let text = format!(
                "settled {} of {} on {} ({}) by {}: {}",
                s(&m["key"]),
                s(&m["account"]),
                s(&m["date"]),
                s(&m["kind"]),
                s(&m["settlement"]["operator"]),
                s(&m["settlement"]["note"])
            );
            Ok(Output { text, json: v })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_commas_or_quotes_are_quoted() {
        let v = json!({"reports": [{"account": "a", "date": "2025-11-13", "mismatches": [
            {"kind": "price_mismatch", "key": "price_mismatch:O1-1", "order_id": "O1", "attempt_id": "O1-1", "ours": "route cost 9850 fen",
             "theirs": "reported \"9950\", high", "amount_fen": 100, "evidence": "x"},
            {"kind": "balance_top_up", "key": "balance_top_up:", "order_id": null, "attempt_id": null, "ours": "o", "theirs": "t",
             "amount_fen": 5000, "evidence": "e",
             "settlement": {"operator": "li", "note": "refunded, ticket 7"}}]}]});
        let csv = mismatches_csv(&v);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines[1],
            "a,2025-11-13,price_mismatch,true,O1,O1-1,route cost 9850 fen,\"reported \"\"9950\"\", high\",100,x,price_mismatch:O1-1,,"
        );
        assert_eq!(
            lines[2],
            "a,2025-11-13,balance_top_up,false,,,o,t,5000,e,balance_top_up:,li,\"refunded, ticket 7\""
        );
    }

    #[test]
    fn a_clean_report_says_so_and_a_mismatch_is_listed() {
        let clean = json!({"account": "a", "date": "2025-11-13", "utc_offset_minutes": 480, "totals": [],
                           "prices": {}, "balance": {"judged": false, "snapshots": 1},
                           "requery": {"supported": false}, "mismatches": []});
        assert!(report_text(&clean).starts_with("a 2025-11-13 (UTC+8h): clean"));
        let mut dirty = clean.clone();
        dirty["mismatches"] = json!([{"kind": "late_reversal", "key": "late_reversal:O9", "order_id": "O9", "ours": "succeeded",
                                      "theirs": "reversed", "amount_fen": 10000}]);
        let text = report_text(&dirty);
        assert!(text.contains("1 MISMATCH(ES)"), "{text}");
        assert!(text.contains("late_reversal  O9"), "{text}");
        assert!(text.contains("100.00"), "{text}");
        assert!(
            text.contains(" open ") && text.contains("late_reversal:O9"),
            "{text}"
        );
        dirty["mismatches"][0]["settlement"] = json!({"operator": "li", "note": "n"});
        let text = report_text(&dirty);
        assert!(text.contains("clean (1 settled)"), "{text}");
        assert!(text.contains("settled by li"), "{text}");
    }
}
