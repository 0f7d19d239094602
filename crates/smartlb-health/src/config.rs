//! Options of the health state machine (plain values; parsing and
//! validation of the configuration file happen elsewhere).

use std::time::Duration;

/// Rise and fall thresholds of active checks (`[upstream.health]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveThresholds {
    /// Consecutive passing checks that bring an unhealthy backend back.
    pub healthy_threshold: u32,
    /// Consecutive failing checks that take a backend out.
    pub unhealthy_threshold: u32,
}

impl Default for ActiveThresholds {
    /// 2 passes to come back, 3 failures to go out.
    fn default() -> Self {
        ActiveThresholds {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

/// Passive outlier detection (`[upstream.outlier]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Consecutive failed exchanges (connect errors, resets, timeouts, 5xx)
    /// that eject a backend.
    pub consecutive_failures: u32,
    /// Length of a first ejection. Each repeat doubles it; each
    /// `base_ejection_time` spent back in service halves the next one again
    /// (down to this base).
    pub base_ejection_time: Duration,
    /// Cap on the length of an ejection.
    pub max_ejection_time: Duration,
    /// The detector never ejects more than this percentage of an upstream's
    /// backends at once.
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    /// 5 failures, 10 s doubling up to 5 min, at most 50 % ejected.
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// Slow start (`[upstream.slow_start]`), as Envoy's: a backend that joins or
/// comes back gets `max(min_factor, (t / duration)^(1 / aggression))` of its
/// weight, `t` being the time since it became available.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowStartConfig {
    /// How long the ramp takes.
    pub duration: Duration,
    /// Shape of the ramp: 1 is linear; above 1 the share rises faster at
    /// first, below 1 slower.
    pub aggression: f64,
    /// The smallest factor during the ramp, so a joining backend still gets
    /// probe traffic.
    pub min_factor: f64,
}

impl SlowStartConfig {
    /// A linear ramp over `duration` starting at 10 %.
    pub fn linear(duration: Duration) -> Self {
        SlowStartConfig {
            duration,
            aggression: 1.0,
            min_factor: DEFAULT_MIN_FACTOR,
        }
    }
}

/// Default [`SlowStartConfig::min_factor`]: 10 %, as Envoy's `min_weight_percent`.
pub const DEFAULT_MIN_FACTOR: f64 = 0.1;

/// Everything [`BackendHealth`](crate::BackendHealth) needs to know; each
/// part is optional.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct HealthConfig {
    /// Active check thresholds; `None` when active checks are off (then
    /// [`record_check`](crate::BackendHealth::record_check) is ignored).
    pub active: Option<ActiveThresholds>,
    /// Passive outlier detection; `None` to disable it.
    pub outlier: Option<OutlierConfig>,
    /// Slow start; `None` to disable it (full share at once).
    pub slow_start: Option<SlowStartConfig>,
}

/// A value of [`HealthConfig`] out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidHealthConfig {
    /// The offending field, as in the configuration file.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: &'static str,
}

fn invalid(field: &'static str, reason: &'static str) -> InvalidHealthConfig {
    InvalidHealthConfig { field, reason }
}

impl HealthConfig {
    /// Checks every value. [`BackendHealth`](crate::BackendHealth) clamps
    /// out-of-range values instead of failing, so call this where the
    /// configuration enters.
    pub fn validate(&self) -> Result<(), InvalidHealthConfig> {
        if let Some(a) = &self.active {
            if a.healthy_threshold == 0 {
                return Err(invalid("health.healthy_threshold", "must be at least 1"));
            }
            if a.unhealthy_threshold == 0 {
                return Err(invalid("health.unhealthy_threshold", "must be at least 1"));
            }
        }
        if let Some(o) = &self.outlier {
            if o.consecutive_failures == 0 {
                return Err(invalid(
                    "outlier.consecutive_failures",
                    "must be at least 1",
                ));
            }
            if o.base_ejection_time.is_zero() {
                return Err(invalid(
                    "outlier.base_ejection_time",
                    "must be longer than zero",
                ));
            }
            if o.max_ejection_time < o.base_ejection_time {
                return Err(invalid(
                    "outlier.max_ejection_time",
                    "must not be shorter than base_ejection_time",
                ));
            }
            if o.max_ejection_percent > 100 {
                return Err(invalid(
                    "outlier.max_ejection_percent",
                    "must be at most 100",
                ));
            }
        }
        if let Some(s) = &self.slow_start {
            if !(s.aggression.is_finite() && s.aggression > 0.0) {
                return Err(invalid(
                    "slow_start.aggression",
                    "must be a positive finite number",
                ));
            }
            if !(s.min_factor > 0.0 && s.min_factor <= 1.0) {
                return Err(invalid("slow_start.min_factor", "must be in (0, 1]"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let ok = HealthConfig {
            active: Some(ActiveThresholds::default()),
            outlier: Some(OutlierConfig::default()),
            slow_start: Some(SlowStartConfig::linear(Duration::from_secs(30))),
        };
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(HealthConfig::default().validate(), Ok(()));

        let mut c = ok;
        c.active = Some(ActiveThresholds {
            healthy_threshold: 0,
            unhealthy_threshold: 1,
        });
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "health.healthy_threshold: must be at least 1"
        );
        let mut c = ok;
        c.outlier = Some(OutlierConfig {
            max_ejection_time: Duration::from_secs(1),
            ..OutlierConfig::default()
        });
        assert_eq!(c.validate().unwrap_err().field, "outlier.max_ejection_time");
        let mut c = ok;
        c.outlier = Some(OutlierConfig {
            max_ejection_percent: 101,
            ..OutlierConfig::default()
        });
        assert!(c.validate().is_err());
        let mut c = ok;
        c.slow_start = Some(SlowStartConfig {
            aggression: f64::NAN,
            ..SlowStartConfig::linear(Duration::from_secs(1))
        });
        assert_eq!(c.validate().unwrap_err().field, "slow_start.aggression");
        let mut c = ok;
        c.slow_start = Some(SlowStartConfig {
            min_factor: 0.0,
            ..SlowStartConfig::linear(Duration::from_secs(1))
        });
        assert!(c.validate().is_err());
    }
}
