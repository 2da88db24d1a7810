//! What happens to an order: the scripted accounts of docs/simulators.md §5 (chosen by the last four characters of the
//! account) and the seeded chaos mode. Both produce a [`Plan`]; the protocol modules and the lifecycle task in
//! [`crate::engine`] carry it out as far as their protocol can express it.

use serde::{Deserialize, Serialize};

/// How an accepted order ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Delivered.
    Succeed,
    /// Failed and refunded.
    Fail,
    /// Delivered, then reversed (wikeyun 10; elsewhere it stays delivered).
    SucceedThenReverse,
    /// Half of the face value arrives (wikeyun 11; elsewhere a full success).
    Partial,
}

/// Which callbacks an order produces once it is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackPlan {
    /// One delivery of the final result, retried until acknowledged.
    Once,
    /// None at all: only a query shows the result.
    Never,
    /// The final result delivered twice (each retried until acknowledged).
    Twice,
    /// The final result delivered three times, then a stale "processing" callback.
    ThreeThenStale,
}

/// The full plan for one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Short label kept in the ledger (`normal`, `0004`, `chaos:refuse`, ...).
    pub label: String,
    /// Refuse at submit with the protocol's definite refusal; nothing is recorded.
    pub refuse: bool,
    /// Record the order, then hold the submit response past the caller's timeout.
    pub hang: bool,
    /// Record the order, then answer HTTP 500.
    pub http_500: bool,
    /// Record the order, then answer the protocol's "unknown result" (suka-xml `9999`; protocols without such
    /// a code answer HTTP 500).
    pub unknown_answer: bool,
    /// Record the order, then answer a well-formed envelope carrying an error code the protocol does not
    /// document as a refusal (wikeyun `2001 系统繁忙`, ice `1 失败`, openapi-rsa `status 500 系统繁忙`; suka-xml
    /// answers its `9999`; sms-billing ignores it). The order still ends as `outcome` says.
    pub inband_error: bool,
    /// How it ends.
    pub outcome: Outcome,
    /// Stay processing for the long-processing duration before ending.
    pub slow: bool,
    /// Callback behaviour.
    pub callbacks: CallbackPlan,
}

impl Plan {
    /// The plan of an ordinary account: accepted, succeeds shortly, one callback.
    pub fn normal() -> Plan {
        Plan {
            label: "normal".into(),
            refuse: false,
            hang: false,
            http_500: false,
            unknown_answer: false,
            inband_error: false,
            outcome: Outcome::Succeed,
            slow: false,
            callbacks: CallbackPlan::Once,
        }
    }

    /// The plan scripted for `account` (docs/simulators.md §5), or `None` when its last four characters are no script.
    pub fn scripted(account: &str) -> Option<Plan> {
        let tail: String = {
            let chars: Vec<char> = account.trim().chars().collect();
            chars[chars.len().saturating_sub(4)..].iter().collect()
        };
        let mut p = Plan {
            label: tail.clone(),
            ..Plan::normal()
        };
        match tail.as_str() {
            "0001" => p.refuse = true,
            "0002" => p.outcome = Outcome::Fail,
            "0003" => p.hang = true,
            "0004" => {
                p.http_500 = true;
                p.outcome = Outcome::Fail;
            }
            "0005" => p.callbacks = CallbackPlan::ThreeThenStale,
            "0006" => p.callbacks = CallbackPlan::Never,
            "0007" => p.outcome = Outcome::SucceedThenReverse,
            "0008" => p.outcome = Outcome::Partial,
            "0009" => p.slow = true,
            "0010" => p.inband_error = true,
            // Charged (and reported) above the agreed price: see `ledger::OVERCHARGE_FEN`.
            "0011" => {}
            _ => return None,
        }
        Some(p)
    }
}

/// Seeded chaos: each rate is the probability (0.0–1.0) that an order gets the fault.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ChaosConfig {
    /// The seed. The same seed and the same caller order ids give the same faults, whatever the arrival order.
    pub seed: u64,
    /// Refused at submit.
    pub refuse: f64,
    /// Submit hangs past the caller's timeout (the order is recorded).
    pub hang: f64,
    /// Submit answers HTTP 500 after recording the order.
    pub http_500: f64,
    /// The callback is never sent.
    pub lost_callback: f64,
    /// The final callback is delivered twice.
    pub duplicate_callback: f64,
    /// Stays processing for the long-processing duration, then fails.
    pub late_failure: f64,
    /// Submit answers the protocol's "unknown result" after recording the order (suka-xml `9999`).
    pub unknown_answer: f64,
    /// Submit answers an undocumented in-band error code after recording the order (see
    /// [`Plan::inband_error`]); the order still ends as planned.
    pub inband_error: f64,
}

impl ChaosConfig {
    /// The chaos plan for the order with this caller id.
    pub fn plan(&self, caller_order_id: &str) -> Plan {
        let mut rng = SplitMix64::new(self.seed ^ fnv1a(caller_order_id.as_bytes()));
        let mut p = Plan::normal();
        let mut faults = Vec::new();
        // Draw every rate every time, in a fixed order, so one rate's value never shifts another's draws.
        // Later-added rates take later draws, so adding one never changes the faults an existing seed gives.
        let draws: [f64; 8] = std::array::from_fn(|_| rng.unit());
        if draws[0] < self.refuse {
            p.refuse = true;
            faults.push("refuse");
        }
        if draws[1] < self.hang {
            p.hang = true;
            faults.push("hang");
        }
        if draws[2] < self.http_500 {
            p.http_500 = true;
            faults.push("http_500");
        }
        if draws[3] < self.lost_callback {
            p.callbacks = CallbackPlan::Never;
            faults.push("lost_callback");
        } else if draws[4] < self.duplicate_callback {
            p.callbacks = CallbackPlan::Twice;
            faults.push("duplicate_callback");
        }
        if draws[5] < self.late_failure {
            p.slow = true;
            p.outcome = Outcome::Fail;
            faults.push("late_failure");
        }
        if draws[6] < self.unknown_answer {
            p.unknown_answer = true;
            faults.push("unknown_answer");
        }
        if draws[7] < self.inband_error {
            p.inband_error = true;
            faults.push("inband_error");
        }
        p.label = if faults.is_empty() {
            "chaos:none".into()
        } else {
            format!("chaos:{}", faults.join("+"))
        };
        p
    }
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// SplitMix64: tiny, seedable, good enough to pick faults.
#[derive(Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n) (0 when n is 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Chooses the plan for an order: a scripted account wins (when scripts are on), then chaos, then normal.
pub fn choose(
    account: &str,
    caller_order_id: &str,
    scripts: bool,
    chaos: Option<&ChaosConfig>,
) -> Plan {
    if scripts && let Some(p) = Plan::scripted(account) {
        return p;
    }
    match chaos {
        Some(c) => c.plan(caller_order_id),
        None => Plan::normal(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_chosen_by_the_last_four_characters() {
        assert!(Plan::scripted("13800000001").unwrap().refuse);
        assert_eq!(Plan::scripted("w0002").unwrap().outcome, Outcome::Fail);
        assert_eq!(
            Plan::scripted("13800000006").unwrap().callbacks,
            CallbackPlan::Never
        );
        assert!(Plan::scripted("13800138000").is_none());
        assert!(Plan::scripted("01").is_none());
    }

    #[test]
    fn no_scripts_makes_a_scripted_account_normal() {
        assert_eq!(choose("13800000001", "o1", false, None), Plan::normal());
        assert!(choose("13800000001", "o1", true, None).refuse);
    }

    #[test]
    fn chaos_is_deterministic_for_a_seed_and_varies_with_it() {
        let c = ChaosConfig {
            seed: 7,
            refuse: 0.3,
            hang: 0.3,
            lost_callback: 0.3,
            ..ChaosConfig::default()
        };
        let a: Vec<Plan> = (0..50).map(|i| c.plan(&format!("o{i}"))).collect();
        let b: Vec<Plan> = (0..50)
            .rev()
            .map(|i| c.plan(&format!("o{i}")))
            .rev()
            .collect();
        assert_eq!(a, b);
        let refused = a.iter().filter(|p| p.refuse).count();
        assert!(
            (5..=25).contains(&refused),
            "refused {refused} of 50 at rate 0.3"
        );
        let other = ChaosConfig {
            seed: 8,
            ..c.clone()
        };
        let c2: Vec<Plan> = (0..50).map(|i| other.plan(&format!("o{i}"))).collect();
        assert_ne!(a, c2);
    }

    #[test]
    fn chaos_at_rate_zero_changes_nothing_and_at_rate_one_always_fires() {
        let none = ChaosConfig {
            seed: 1,
            ..ChaosConfig::default()
        };
        assert!(!none.plan("x").refuse);
        let all = ChaosConfig {
            seed: 1,
            refuse: 1.0,
            late_failure: 1.0,
            ..ChaosConfig::default()
        };
        let p = all.plan("x");
        assert!(p.refuse && p.slow && p.outcome == Outcome::Fail);
    }

    #[test]
    fn account_0010_records_then_answers_an_inband_error_and_still_succeeds() {
        let p = Plan::scripted("13800000010").unwrap();
        assert!(p.inband_error);
        assert_eq!(p.label, "0010");
        assert_eq!(p.outcome, Outcome::Succeed);
        assert_eq!(p.callbacks, CallbackPlan::Once);
        assert!(!p.refuse && !p.hang && !p.http_500 && !p.unknown_answer && !p.slow);
        assert!(!Plan::normal().inband_error);
        assert!(!choose("13800000010", "o1", false, None).inband_error);
    }

    #[test]
    fn the_inband_error_rate_is_deterministic_per_seed_and_order_id() {
        let c = ChaosConfig {
            seed: 11,
            inband_error: 0.3,
            ..ChaosConfig::default()
        };
        let ids: Vec<String> = (0..200).map(|i| format!("A{i}")).collect();
        let hit = |c: &ChaosConfig, ids: &[String]| -> Vec<bool> {
            ids.iter().map(|id| c.plan(id).inband_error).collect()
        };
        let forward = hit(&c, &ids);
        // Each order's draw depends on its own id only: the reverse arrival order gives the same choices.
        let mut backward = hit(&c, &ids.iter().rev().cloned().collect::<Vec<_>>());
        backward.reverse();
        assert_eq!(forward, backward);
        assert_eq!(hit(&c, &ids), forward, "a replay with the same seed");
        let n = forward.iter().filter(|h| **h).count();
        assert!((30..=90).contains(&n), "{n} of 200 at rate 0.3");
        let other = ChaosConfig {
            seed: 12,
            ..c.clone()
        };
        assert_ne!(hit(&other, &ids), forward, "another seed, other choices");
        for (id, h) in ids.iter().zip(&forward) {
            let p = c.plan(id);
            assert_eq!(p.label == "chaos:inband_error", *h, "{id}: {}", p.label);
            assert_eq!(p.outcome, Outcome::Succeed, "the outcome still applies");
        }
        let all = ChaosConfig {
            inband_error: 1.0,
            ..c.clone()
        };
        assert!(hit(&all, &ids).iter().all(|h| *h));
        let none = ChaosConfig {
            inband_error: 0.0,
            ..c.clone()
        };
        assert!(hit(&none, &ids).iter().all(|h| !*h));
    }

    #[test]
    fn adding_the_inband_error_rate_leaves_the_other_faults_of_a_seed_unchanged() {
        let before = ChaosConfig {
            seed: 20_261_122,
            refuse: 0.05,
            hang: 0.02,
            http_500: 0.03,
            lost_callback: 0.10,
            duplicate_callback: 0.10,
            late_failure: 0.03,
            unknown_answer: 0.03,
            inband_error: 0.0,
        };
        let after = ChaosConfig {
            inband_error: 0.5,
            ..before.clone()
        };
        let mut changed = 0;
        for i in 0..500 {
            let id = format!("F{i}");
            let (a, mut b) = (before.plan(&id), after.plan(&id));
            if b.inband_error {
                changed += 1;
                b.inband_error = false;
                b.label = a.label.clone();
            }
            assert_eq!(a, b, "{id}");
        }
        assert!(changed > 0);
    }
}
