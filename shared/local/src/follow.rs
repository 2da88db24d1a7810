//! `recharge-local order PRODUCT ACCOUNT`: places one order as the demo merchant and follows it to the end,
//! playing the end user where carrier billing needs one (sending the SMS, entering the code).
//!
//! A failover or an attempt that was `unknown` before it was resolved must not look like a clean success, so
//! besides the merchant's view the command reads the operators' view of the order (signed as the local stack's
//! admin app) and prints the route taken and every change of every attempt. The exit status says how it ended
//! ([`Ending::exit_code`]).

use crate::client::{SigningClient, is_final};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// What the order command needs.
#[derive(Debug, Clone)]
pub struct OrderCommand {
    pub base_url: String,
    pub app: String,
    pub secret: String,
    /// The admin app whose signature reads the operators' view (attempts, provider answers).
    pub ops_app: String,
    pub ops_secret: String,
    pub product: String,
    pub account: String,
    pub extra: Vec<(String, String)>,
    pub merchant_order_no: Option<String>,
    /// How long to follow the order; `None`: long enough for every scripted scenario of the stack
    /// ([`default_wait`]).
    pub timeout: Option<Duration>,
}

/// One provider attempt as the command saw it: its account and every state it was seen in, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptSeen {
    pub no: u64,
    pub provider_account: String,
    pub states: Vec<String>,
    /// What moved the attempt out of `submitting` (`submit`, `callback`, `query`, `call deadline passed`, ...):
    /// anything but the submit's own answer means the submit got no definite answer.
    pub first_move: Option<String>,
}

/// How the followed order ended.
#[derive(Debug, Clone)]
pub struct Followed {
    /// The last merchant view of the order.
    pub view: Value,
    /// Every attempt, in order (empty when the operators' view could not be read).
    pub attempts: Vec<AttemptSeen>,
    pub ending: Ending,
}

/// The end of the command, which decides its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// `succeeded`.
    Succeeded,
    /// Another final status: `failed`, `partially_succeeded` or `reversed`.
    NotSucceeded,
    /// Still open when the wait ended; the sweep keeps following it.
    StillOpen,
}

impl Ending {
    /// 0 for a success, 1 for any other final status, 2 for an order still open when the wait ended.
    pub fn exit_code(self) -> u8 {
        match self {
            Ending::Succeeded => 0,
            Ending::NotSucceeded => 1,
            Ending::StillOpen => 2,
        }
    }
}

/// How long the command follows an order by default on a stack described by `info` (`GET /_local`): the
/// longest scripted scenario (account `0009`, the simulators' long processing at the stack's time scale) plus a
/// minute for queries and callbacks; five minutes when the stack does not say.
pub fn default_wait(info: &Value) -> Duration {
    info["longest_scenario_secs"]
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s) + Duration::from_secs(60))
        .unwrap_or(Duration::from_secs(300))
}

/// Runs the order command, writing each step to `out`.
pub async fn run(cmd: &OrderCommand, out: &mut dyn Write) -> anyhow::Result<Followed> {
    let client = SigningClient::new(&cmd.base_url, &cmd.app, &cmd.secret);
    let ops = SigningClient::new(&cmd.base_url, &cmd.ops_app, &cmd.ops_secret);
    let http = reqwest::Client::builder().no_proxy().build()?;
    let info: Value = http
        .get(format!("{}/_local", cmd.base_url))
        .send()
        .await?
        .json()
        .await?;
    let timeout = cmd.timeout.unwrap_or_else(|| default_wait(&info));
    let no = cmd.merchant_order_no.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        format!("demo-{ms}")
    });
    let mut extra: serde_json::Map<String, Value> = cmd
        .extra
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    demo_extras(&cmd.product, &cmd.account, &mut extra);
    let body = json!({"merchant_order_no": no, "product_code": cmd.product, "account": cmd.account, "extra": extra});
    writeln!(out, "POST /v1/orders {body}")?;
    let created = client.create_order(&body).await?;
    writeln!(out, "-> {} {}", created.status, created.body)?;
    if created.status >= 300 {
        anyhow::bail!("the order was not accepted");
    }
    let order_id = created.body["order_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let started = Instant::now();
    let mut acted = false;
    let mut last_sequence = 0;
    let mut attempts = Attempts::default();
    loop {
        let reply = client.get_order(&no).await?;
        let view = reply.body;
        let status = view["status"].as_str().unwrap_or("?").to_owned();
        let sequence = view["sequence"].as_u64().unwrap_or(0);
        if sequence != last_sequence {
            writeln!(
                out,
                "   {status} (sequence {sequence}) {}",
                view["next_action"]
            )?;
            last_sequence = sequence;
        }
        attempts.refresh(&ops, &order_id, out).await?;
        if is_final(&status) {
            // One more look: the attempt that ended the order may have changed since the last read.
            attempts.refresh(&ops, &order_id, out).await?;
            writeln!(out, "final: {view}")?;
            attempts.summary(out)?;
            let ending = if status == "succeeded" {
                Ending::Succeeded
            } else {
                Ending::NotSucceeded
            };
            return Ok(Followed {
                view,
                attempts: attempts.seen(),
                ending,
            });
        }
        if status == "action_required" && !acted {
            acted = true;
            act_as_user(&client, &http, &info, &no, &view, out).await?;
        }
        if started.elapsed() > timeout {
            writeln!(
                out,
                "still {status} after {} s; it stays open and the sweep keeps following it",
                timeout.as_secs()
            )?;
            attempts.summary(out)?;
            return Ok(Followed {
                view,
                attempts: attempts.seen(),
                ending: Ending::StillOpen,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The attempts seen so far, from the operators' view: each attempt's account, and its history from the
/// order's audit trail (every transition is an audit entry, so none is missed between two polls).
#[derive(Debug, Default)]
struct Attempts {
    by_no: BTreeMap<u64, AttemptSeen>,
    /// The newest audit entry already shown.
    shown_version: u64,
    /// Set once the operators' view could not be read (an outside stack without the admin app): said once.
    unavailable: bool,
}

impl Attempts {
    async fn refresh(
        &mut self,
        ops: &SigningClient,
        order_id: &str,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        if self.unavailable || order_id.is_empty() {
            return Ok(());
        }
        let reply = ops
            .send("GET", &format!("/ops/orders/{order_id}"), b"")
            .await?;
        if reply.status != 200 {
            self.unavailable = true;
            writeln!(
                out,
                "   (attempts not shown: the operators' view answered {}; pass --ops-app and --ops-secret)",
                reply.status
            )?;
            return Ok(());
        }
        let order = &reply.body["order"];
        let mut accounts = BTreeMap::new();
        let mut current = BTreeMap::new();
        for a in order["attempts"].as_array().into_iter().flatten() {
            let no = a["attempt"].as_u64().unwrap_or(0);
            accounts.insert(no, a["provider_account"].as_str().unwrap_or("?").to_owned());
            current.insert(no, a["state"].clone());
        }
        let mut audit: Vec<&Value> = order["audit"].as_array().into_iter().flatten().collect();
        audit.sort_by_key(|e| e["version"].as_u64().unwrap_or(0));
        for entry in audit {
            let version = entry["version"].as_u64().unwrap_or(0);
            if version <= self.shown_version {
                continue;
            }
            self.shown_version = version;
            let summary = entry["summary"].as_str().unwrap_or_default();
            let Some((no, change)) = attempt_change(summary) else {
                continue;
            };
            let account = accounts.get(&no).cloned().unwrap_or_else(|| "?".to_owned());
            let seen = self.by_no.entry(no).or_insert_with(|| AttemptSeen {
                no,
                provider_account: account.clone(),
                states: vec!["submitting".to_owned()],
                first_move: None,
            });
            match change {
                Change::Opened => {}
                Change::To { state, by } => {
                    seen.first_move.get_or_insert(by);
                    seen.states.push(state);
                }
            }
            writeln!(
                out,
                "   attempt {no} at {account}: {}",
                summary_text(summary)
            )?;
        }
        // The last state of each attempt with the provider's code and message, where it has one.
        for (no, state) in current {
            if let Some(seen) = self.by_no.get_mut(&no)
                && let Some(last) = seen.states.last_mut()
                && state["state"].as_str() == Some(last.split(' ').next().unwrap_or_default())
            {
                *last = describe(&state);
            }
        }
        Ok(())
    }

    fn seen(&self) -> Vec<AttemptSeen> {
        self.by_no.values().cloned().collect()
    }

    /// The route taken, one attempt per step, with every state it passed through; and a word when the order did
    /// not go straight through.
    fn summary(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.by_no.is_empty() {
            return Ok(());
        }
        let route: Vec<String> = self
            .by_no
            .values()
            .map(|a| format!("{} ({})", a.provider_account, a.states.join(" → ")))
            .collect();
        writeln!(out, "route: {}", route.join(" ⇒ "))?;
        if self.by_no.len() > 1 {
            writeln!(
                out,
                "note: failed over {} time(s): the first route did not deliver",
                self.by_no.len() - 1
            )?;
        }
        for a in self.by_no.values() {
            let unknown = a.states.iter().any(|s| s.starts_with("unknown"));
            let answered = a.first_move.as_deref().is_none_or(|by| by == "submit");
            if unknown || !answered {
                writeln!(
                    out,
                    "note: attempt {} got no definite answer to its submit (a timeout, an error or a code no table \
                     lists): it was unknown until a query, a callback or an operator settled it",
                    a.no
                )?;
            }
        }
        Ok(())
    }
}

/// An attempt's state as one short phrase: its name and, where there is one, the provider's code and message.
fn describe(state: &Value) -> String {
    let name = state["state"].as_str().unwrap_or("?");
    match state.get("reason") {
        Some(r) if !r.is_null() => {
            let code = r["code"].as_str().unwrap_or_default();
            let message = r["message"].as_str().unwrap_or_default();
            format!("{name} ({code} {message})").replace(" )", ")")
        }
        _ => name.to_owned(),
    }
}

/// What an audit entry says about an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    /// The attempt was opened (at creation, or on a failover).
    Opened,
    /// The attempt moved to `state`, by what the summary names (`submit`, `query`, `callback`, ...).
    To { state: String, by: String },
}

/// The attempt an audit summary is about and what happened to it; `None` for entries about something else
/// (notifications, "still processing" polls, kept unverified results).
fn attempt_change(summary: &str) -> Option<(u64, Change)> {
    if let Some(rest) = summary.strip_prefix("created; attempt ") {
        let no = rest.split(' ').next()?.parse().ok()?;
        return Some((no, Change::Opened));
    }
    let rest = summary.strip_prefix("attempt ")?;
    let (no, what) = rest.split_once(": ")?;
    let no = no.parse().ok()?;
    if what.starts_with("opened on ") {
        return Some((no, Change::Opened));
    }
    let (_, to) = what.split_once(" -> ")?;
    let (state, by) = to.split_once(" (").unwrap_or((to, ")"));
    Some((
        no,
        Change::To {
            state: state.to_owned(),
            by: by.strip_suffix(')').unwrap_or(by).to_owned(),
        },
    ))
}

/// An audit summary without its `attempt N: ` / `created; ` prefix.
fn summary_text(summary: &str) -> &str {
    if summary.starts_with("created; ") {
        return "submitting";
    }
    summary.split_once(": ").map_or(summary, |(_, rest)| rest)
}

/// Fills in the extras the demo products need, unless given.
fn demo_extras(product: &str, account: &str, extra: &mut serde_json::Map<String, Value>) {
    let mut default = |k: &str, v: String| {
        extra.entry(k.to_owned()).or_insert(json!(v));
    };
    if product.starts_with("electricity.") {
        default("area", "江苏".into());
        default("city", "南京".into());
        default("phone", "13800138000".into());
    }
    if product.starts_with("billing.sms") {
        // The simulator's scripts read the last four digits of the IMSI: derive it from the phone number.
        let digits: String = account.chars().filter(char::is_ascii_digit).collect();
        default("imsi", format!("4600{digits}"));
        default("imei", "860000000000001".into());
        default("iccid", "89860000000000000001".into());
    }
}

async fn act_as_user(
    client: &SigningClient,
    http: &reqwest::Client,
    info: &Value,
    no: &str,
    view: &Value,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match view["next_action"]["type"].as_str() {
        Some("enter_verification_code") => {
            let code = info["demo"]["verification_code"]
                .as_str()
                .unwrap_or("123456");
            writeln!(out, "   the user enters the code {code}")?;
            let r = client.verify(no, code).await?;
            writeln!(out, "-> {} {}", r.status, r.body)?;
        }
        Some("send_sms") => {
            // Play the user's phone: tell the simulator the MO SMS arrived.
            let order_id = view["order_id"].as_str().unwrap_or_default();
            for account in info["accounts"].as_array().into_iter().flatten() {
                let Some(sim) = account["simulator"].as_str() else {
                    continue;
                };
                if account["protocol"] != "sms-billing" {
                    continue;
                }
                let ledger: Value = http
                    .get(format!("{sim}/_sim/orders"))
                    .send()
                    .await?
                    .json()
                    .await?;
                for o in ledger.as_array().into_iter().flatten() {
                    if o["caller_order_id"]
                        .as_str()
                        .is_some_and(|c| c.starts_with(order_id))
                    {
                        let provider_id = o["provider_order_id"].as_str().unwrap_or_default();
                        writeln!(
                            out,
                            "   the user sends the SMS ({} -> {})",
                            view["next_action"]["messages"], provider_id
                        )?;
                        http.post(format!("{sim}/_sim/mo/{provider_id}"))
                            .send()
                            .await?;
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_status_is_zero_only_for_a_success() {
        assert_eq!(Ending::Succeeded.exit_code(), 0);
        assert_eq!(Ending::NotSucceeded.exit_code(), 1);
        assert_eq!(Ending::StillOpen.exit_code(), 2);
    }

    #[test]
    fn the_default_wait_is_the_longest_scenario_plus_a_minute() {
        assert_eq!(
            default_wait(&json!({"longest_scenario_secs": 180.0})),
            Duration::from_secs(240)
        );
        assert_eq!(default_wait(&json!({})), Duration::from_secs(300));
    }

    #[test]
    fn audit_summaries_give_each_attempts_history() {
        assert_eq!(
            attempt_change("created; attempt 1 submitting on wikeyun-main"),
            Some((1, Change::Opened))
        );
        assert_eq!(
            attempt_change("attempt 1: submitting -> unknown (call deadline passed)"),
            Some((
                1,
                Change::To {
                    state: "unknown".into(),
                    by: "call deadline passed".into()
                }
            ))
        );
        assert_eq!(
            attempt_change("attempt 2: unknown -> succeeded (query)"),
            Some((
                2,
                Change::To {
                    state: "succeeded".into(),
                    by: "query".into()
                }
            ))
        );
        assert_eq!(
            attempt_change("attempt 2: opened on suka-backup (failover)"),
            Some((2, Change::Opened))
        );
        assert_eq!(
            attempt_change("attempt 1: still accepted (query, 3 polls)"),
            None
        );
        assert_eq!(attempt_change("notification of sequence 3 delivered"), None);
    }

    #[test]
    fn an_attempt_state_is_described_with_the_providers_code() {
        assert_eq!(
            describe(
                &json!({"state": "unknown", "reason": {"code": "timeout", "message": "no answer"}})
            ),
            "unknown (timeout no answer)"
        );
        assert_eq!(describe(&json!({"state": "succeeded"})), "succeeded");
    }
}
