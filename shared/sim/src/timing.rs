//! Durations that shape order lifecycles and callback retries, and the time scale that divides them. Both the
//! engine and the callback sender depend on this module (and neither on the other's internals).

use std::time::Duration;

/// Durations that shape order lifecycles.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Divides every protocol duration (settle time, long processing, callback retry delays).
    pub time_scale: f64,
    /// How long an ordinary order takes to finish, before scaling.
    pub settle: Duration,
    /// How long script 0009 and late failures stay processing, before scaling.
    pub long_processing: Duration,
    /// How long a hanging submit holds its response. Not scaled: it must outlast the caller's real timeout.
    pub hang: Duration,
}

impl Timing {
    /// `d` divided by the time scale.
    pub fn scaled(&self, d: Duration) -> Duration {
        if self.time_scale.is_finite() && self.time_scale > 0.0 {
            d.div_f64(self.time_scale)
        } else {
            d
        }
    }
}
