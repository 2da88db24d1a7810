//! Daily reconciliation (对账, see docs/reconciliation.md): the report type one run produces per provider account
//! and day, its mismatches, and the day a report covers. The engine is `recharge_api::usecases::recon`; reports are
//! stored through `BalanceStore` (`put_recon`, `recon`).

use crate::ids::{OrderId, ProviderAccountId};
use crate::money::Fen;
use crate::order::PublicStatus;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Beijing time, the default day boundary (UTC+8).
pub const BEIJING_OFFSET_MINUTES: i32 = 8 * 60;

/// One reconciliation day: a calendar date in a fixed UTC offset, and the half-open interval of instants it
/// covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconDay {
    year: i32,
    month: u32,
    day: u32,
    offset_minutes: i32,
}

/// A date that is not `YYYY-MM-DD`, or an offset outside ±14 h.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid reconciliation day {0:?}: YYYY-MM-DD, offset within ±14 hours")]
pub struct DayError(pub String);

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of `days_from_civil`).
fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        i32::try_from(y).unwrap_or(i32::MAX),
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

impl ReconDay {
    /// Parses `YYYY-MM-DD` in the given offset from UTC (minutes east).
    pub fn parse(date: &str, offset_minutes: i32) -> Result<ReconDay, DayError> {
        let bad = || DayError(date.to_owned());
        let b = date.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' || offset_minutes.abs() > 14 * 60 {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<u32, DayError> {
            let s = date.get(r).ok_or_else(bad)?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let year = i32::try_from(year).map_err(|_| bad())?;
        if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
            return Err(bad());
        }
        // A day past the month's end would come back as another date.
        let back = civil_from_days(days_from_civil(year, month, day));
        if back != (year, month, day) {
            return Err(bad());
        }
        Ok(ReconDay {
            year,
            month,
            day,
            offset_minutes,
        })
    }

    /// The day that holds instant `at`, in the given offset.
    pub fn containing(at: Timestamp, offset_minutes: i32) -> ReconDay {
        let local = at.millis() + i64::from(offset_minutes) * 60_000;
        let (year, month, day) = civil_from_days(local.div_euclid(86_400_000));
        ReconDay {
            year,
            month,
            day,
            offset_minutes,
        }
    }

    /// The day before this one.
    pub fn previous(self) -> ReconDay {
        ReconDay::containing(
            Timestamp::from_millis(self.start().millis() - 1),
            self.offset_minutes,
        )
    }

    /// The first instant of the day.
    pub fn start(self) -> Timestamp {
        let days = days_from_civil(self.year, self.month, self.day);
        Timestamp::from_millis(days * 86_400_000 - i64::from(self.offset_minutes) * 60_000)
    }

    /// The first instant after the day.
    pub fn end(self) -> Timestamp {
        Timestamp::from_millis(self.start().millis() + 86_400_000)
    }

    pub fn offset_minutes(self) -> i32 {
        self.offset_minutes
    }

    /// `YYYY-MM-DD`.
    pub fn date(self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Orders and amounts of one final (or still open) public status on the day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusTotal {
    pub status: String,
    pub orders: u64,
    /// Sum of the orders' face values.
    pub face_fen: i64,
    /// Sum of the route costs of the orders' attempts on this account that delivered.
    pub cost_fen: i64,
}

/// The provider-reported prices against the route costs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceCheck {
    /// Attempts on this account with a reported cost.
    pub reported: u64,
    /// Of those, how many differ from the route's cost.
    pub mismatched: u64,
    pub reported_cost_fen: i64,
    pub route_cost_fen: i64,
}

/// The balance movement against the cost of what was delivered (the balance history, snapshot by snapshot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceCheck {
    /// Snapshots in the day (and the last one before it, as the opening balance).
    pub snapshots: u64,
    pub opening_fen: Option<i64>,
    pub closing_fen: Option<i64>,
    /// Sum of the rises between consecutive snapshots beyond the refunds we expected in them: top-ups.
    pub top_ups_fen: i64,
    /// Sum of the drops between consecutive snapshots.
    pub drops_fen: i64,
    /// What the account's delivered attempts cost (reported cost where the provider gave one, else the route's),
    /// corrected by the re-query's divergences (a late reversal delivered nothing).
    pub delivered_cost_fen: i64,
    /// `top-ups - delivered cost - (closing - opening)` when positive: money gone with no order of ours to
    /// show for it.
    pub unexplained_fen: i64,
    /// The history was too thin to judge (fewer than two snapshots, or the account has no balance API).
    pub judged: bool,
}

/// Where a day's re-query got to: the last attempt asked, in (order id, attempt number) order. A later pass
/// continues after it (docs/reconciliation.md §3).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequeryCursor {
    pub order_id: OrderId,
    pub attempt: u32,
}

/// The re-query of the day's final orders, over every pass of the day (a pass continues where the last one
/// stopped, docs/reconciliation.md §3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequeryCheck {
    /// The protocol can be queried.
    pub supported: bool,
    /// Final attempts of the day on this account (as of the latest pass).
    pub eligible: u64,
    /// Attempts asked, over every pass of the day.
    pub queried: u64,
    /// Final attempts not asked by the latest pass (its budget ran out, or the protocol has no query).
    pub skipped: u64,
    /// Final attempts after the cursor, still to be asked by a later pass (0 once the day is done, and on a
    /// protocol without a query, which no pass will ever ask).
    #[serde(default)]
    pub remaining: u64,
    /// Final attempts the cursor passed while they were still open (the sweep was following them): never
    /// re-queried by this day's passes.
    #[serde(default)]
    pub passed_open: u64,
    /// Answers that said nothing (Unknown): neither agreement nor divergence.
    pub inconclusive: u64,
    pub diverged: u64,
    /// The last attempt asked; `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<RequeryCursor>,
    /// Passes that asked something.
    #[serde(default)]
    pub passes: u32,
}

/// What kind of difference a mismatch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// The provider reported a cost other than the route's.
    PriceMismatch,
    /// We recorded a failure, the provider's query says it succeeded (delivered: money we keep owing nobody).
    TheirSuccessOurFailure,
    /// We recorded a success, the provider's query says it failed or does not have the order.
    TheirFailureOurSuccess,
    /// We recorded a success, the provider's query says it was reversed (返销) after it was final.
    LateReversal,
    /// The provider's query says only part of the value arrived, or another part than we recorded.
    PartialDelivery,
    /// The balance fell more than what was delivered: orders we do not know about, or charges.
    UnexplainedBalanceDrop,
    /// The balance rose: a top-up. Shown for the operator, never alarmed.
    BalanceTopUp,
}

impl MismatchKind {
    pub const ALL: [MismatchKind; 7] = [
        MismatchKind::PriceMismatch,
        MismatchKind::TheirSuccessOurFailure,
        MismatchKind::TheirFailureOurSuccess,
        MismatchKind::LateReversal,
        MismatchKind::PartialDelivery,
        MismatchKind::UnexplainedBalanceDrop,
        MismatchKind::BalanceTopUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::PriceMismatch => "price_mismatch",
            MismatchKind::TheirSuccessOurFailure => "their_success_our_failure",
            MismatchKind::TheirFailureOurSuccess => "their_failure_our_success",
            MismatchKind::LateReversal => "late_reversal",
            MismatchKind::PartialDelivery => "partial_delivery",
            MismatchKind::UnexplainedBalanceDrop => "unexplained_balance_drop",
            MismatchKind::BalanceTopUp => "balance_top_up",
        }
    }

    pub fn parse(s: &str) -> Option<MismatchKind> {
        MismatchKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the re-query finds it (the other kinds come from the day's records, recomputed by every pass).
    pub fn from_requery(self) -> bool {
        match self {
            MismatchKind::TheirSuccessOurFailure
            | MismatchKind::TheirFailureOurSuccess
            | MismatchKind::LateReversal
            | MismatchKind::PartialDelivery => true,
            MismatchKind::PriceMismatch
            | MismatchKind::UnexplainedBalanceDrop
            | MismatchKind::BalanceTopUp => false,
        }
    }

    /// Whether it raises the alarm (a top-up is information, everything else is money that does not add up).
    pub fn alarms(self) -> bool {
        match self {
            MismatchKind::BalanceTopUp => false,
            MismatchKind::PriceMismatch
            | MismatchKind::TheirSuccessOurFailure
            | MismatchKind::TheirFailureOurSuccess
            | MismatchKind::LateReversal
            | MismatchKind::PartialDelivery
            | MismatchKind::UnexplainedBalanceDrop => true,
        }
    }
}

/// One difference, order by order where there is an order, with the evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub kind: MismatchKind,
    /// The order, if the difference is about one (balance findings are about the account).
    pub order_id: Option<OrderId>,
    /// The attempt on this account, `<order id>-<n>` as the provider knows it.
    pub attempt_id: Option<String>,
    /// What we recorded (an attempt state, a route cost, a balance movement).
    pub ours: String,
    /// What the provider says.
    pub theirs: String,
    /// The money at stake, in fen, where known.
    pub amount_fen: Option<i64>,
    /// The raw material: the re-query's answer, the reported amounts, the snapshots. Masked; never a secret.
    pub evidence: String,
    /// An operator's settlement of this mismatch (docs/reconciliation.md §7), kept apart from the run's
    /// records so a rerun keeps it; `None` while it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Settlement>,
}

/// How an operator settled a mismatch: who, when, why, on what evidence. Written once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The mismatch's key (`Mismatch::key`).
    pub key: String,
    /// The operator's name, as they gave it.
    pub operator: String,
    /// The authenticated principal that made the call.
    pub principal: String,
    pub note: String,
    pub evidence: String,
    pub at: Timestamp,
}

impl Mismatch {
    /// What identifies the mismatch across reruns of its day: the kind and the attempt (or order) for an
    /// order's mismatch; the kind and the snapshot pair for a top-up; the kind alone for the day's unexplained
    /// drop (one per account and day). At most 200 characters.
    pub fn key(&self) -> String {
        let of = match (&self.attempt_id, &self.order_id) {
            (Some(a), _) => a.clone(),
            (None, Some(o)) => o.to_string(),
            (None, None) => match self.kind {
                MismatchKind::BalanceTopUp => self
                    .evidence
                    .split(|c: char| !c.is_ascii_digit())
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>()
                    .join("."),
                _ => "account".to_owned(),
            },
        };
        let key = format!("{}:{of}", self.kind.as_str());
        key.chars().take(200).collect()
    }

    /// Not settled by an operator yet.
    pub fn is_open(&self) -> bool {
        self.settlement.is_none()
    }
}

/// One run's report of one provider account and day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconReport {
    pub account: ProviderAccountId,
    /// `YYYY-MM-DD` in the day's offset.
    pub date: String,
    pub utc_offset_minutes: i32,
    /// The instants covered: orders created in `[from, to)`.
    pub from: Timestamp,
    pub to: Timestamp,
    pub generated_at: Timestamp,
    /// Orders and amounts per public status (final ones, and those still open).
    pub totals: Vec<StatusTotal>,
    pub prices: PriceCheck,
    pub balance: BalanceCheck,
    pub requery: RequeryCheck,
    pub mismatches: Vec<Mismatch>,
}

impl ReconReport {
    /// Open mismatches that raise the alarm (all but top-ups, and not settled by an operator): the
    /// `ReconMismatches` figure.
    pub fn alarming(&self) -> usize {
        self.mismatches
            .iter()
            .filter(|m| m.kind.alarms() && m.is_open())
            .count()
    }

    /// The orders of `status` in the totals.
    pub fn total(&self, status: PublicStatus) -> Option<&StatusTotal> {
        self.totals.iter().find(|t| t.status == status.as_str())
    }

    /// The empty report a run starts from.
    pub fn empty(account: ProviderAccountId, day: ReconDay, now: Timestamp) -> ReconReport {
        ReconReport {
            account,
            date: day.date(),
            utc_offset_minutes: day.offset_minutes(),
            from: day.start(),
            to: day.end(),
            generated_at: now,
            totals: Vec::new(),
            prices: PriceCheck::default(),
            balance: BalanceCheck::default(),
            requery: RequeryCheck::default(),
            mismatches: Vec::new(),
        }
    }
}

/// Sum of money in fen, saturating (a report must never panic on a corrupt figure).
pub fn add(total: &mut i64, amount: Fen) {
    *total = total.saturating_add(amount.get());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mismatch(kind: MismatchKind, attempt: Option<&str>, evidence: &str) -> Mismatch {
        Mismatch {
            kind,
            order_id: None,
            attempt_id: attempt.map(str::to_owned),
            ours: String::new(),
            theirs: String::new(),
            amount_fen: None,
            evidence: evidence.to_owned(),
            settlement: None,
        }
    }

    #[test]
    fn a_settled_mismatch_no_longer_alarms_and_keys_are_stable_and_distinct() {
        let day = ReconDay::parse("2024-03-01", 480).unwrap();
        let mut r = ReconReport::empty(
            ProviderAccountId::parse("acct-a").unwrap(),
            day,
            Timestamp::from_millis(0),
        );
        r.mismatches = vec![
            mismatch(MismatchKind::LateReversal, Some("o1-1"), "x"),
            mismatch(MismatchKind::PriceMismatch, Some("o1-1"), "y"),
            mismatch(
                MismatchKind::BalanceTopUp,
                None,
                "500 fen at 10 ms, 900 fen at 20 ms",
            ),
            mismatch(
                MismatchKind::BalanceTopUp,
                None,
                "900 fen at 20 ms, 950 fen at 30 ms",
            ),
            mismatch(MismatchKind::UnexplainedBalanceDrop, None, "a"),
        ];
        assert_eq!(r.alarming(), 3);
        let keys: std::collections::BTreeSet<String> =
            r.mismatches.iter().map(Mismatch::key).collect();
        assert_eq!(keys.len(), 5, "{keys:?}");
        assert_eq!(r.mismatches[0].key(), "late_reversal:o1-1");
        // The same finding on a rerun, with other evidence, keeps its key.
        assert_eq!(
            mismatch(MismatchKind::UnexplainedBalanceDrop, None, "b").key(),
            r.mismatches[4].key()
        );
        r.mismatches[0].settlement = Some(Settlement {
            key: r.mismatches[0].key(),
            operator: "li".into(),
            principal: "ops".into(),
            note: "refunded".into(),
            evidence: "ticket 1".into(),
            at: Timestamp::from_millis(1),
        });
        assert_eq!(r.alarming(), 2);
    }

    #[test]
    fn a_beijing_day_starts_at_sixteen_hundred_utc_the_day_before() {
        let day = ReconDay::parse("2024-03-01", BEIJING_OFFSET_MINUTES).unwrap();
        // python3: datetime(2024,2,29,16,tzinfo=timezone.utc).timestamp()
        assert_eq!(day.start().millis(), 1_709_222_400_000);
        assert_eq!(day.end().millis() - day.start().millis(), 86_400_000);
        assert_eq!(day.previous().date(), "2024-02-29");
        assert_eq!(ReconDay::containing(day.start(), 480).date(), "2024-03-01");
        assert_eq!(
            ReconDay::containing(Timestamp::from_millis(day.start().millis() - 1), 480).date(),
            "2024-02-29"
        );
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "24-01-01",
            "2024-1-01",
            "2024-01-0a",
        ] {
            assert!(ReconDay::parse(bad, 480).is_err(), "{bad}");
        }
        assert!(ReconDay::parse("2024-02-29", 15 * 60).is_err());
        assert!(ReconDay::parse("2024-02-29", -15 * 60).is_err());
        assert_eq!(
            ReconDay::parse("2024-02-29", 0).unwrap().date(),
            "2024-02-29"
        );
    }

    #[test]
    fn only_a_top_up_does_not_alarm() {
        for k in MismatchKind::ALL {
            assert_eq!(k.alarms(), k != MismatchKind::BalanceTopUp);
            assert_eq!(MismatchKind::parse(k.as_str()), Some(k));
        }
    }
}
