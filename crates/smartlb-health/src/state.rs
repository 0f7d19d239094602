//! Health states and transitions.

use std::fmt;

/// The health state of a backend as the status API reports it.
///
/// When several conditions hold at once, the first in this order wins:
/// draining, ejected, unhealthy, slow start, backup, healthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// In service at full share.
    Healthy,
    /// Taken out by failing `unhealthy_threshold` active checks in a row, or
    /// held out after an ejection until active checks pass; back after
    /// `healthy_threshold` passes.
    Unhealthy,
    /// Taken out by the passive outlier detector until its ejection time is up.
    Ejected,
    /// Set to drain by an operator: no new requests, in-flight ones finish.
    Draining,
    /// In service, ramping its share up after joining or recovering.
    SlowStart,
    /// A healthy backup: receives traffic only when no primary is available.
    Backup,
}

impl HealthState {
    /// The name used by the status API and logs: `healthy`, `unhealthy`,
    /// `ejected`, `draining`, `slow-start`, `backup`.
    pub const fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Ejected => "ejected",
            HealthState::Draining => "draining",
            HealthState::SlowStart => "slow-start",
            HealthState::Backup => "backup",
        }
    }

    /// Whether a backend in this state may receive new requests (a backup
    /// only when its tier is selected; see [`Tier`](crate::Tier)).
    pub const fn is_available(self) -> bool {
        matches!(
            self,
            HealthState::Healthy | HealthState::SlowStart | HealthState::Backup
        )
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of a backend's [`HealthState`], returned by the call that caused
/// it (or by [`BackendHealth::poll`](crate::BackendHealth::poll) for changes
/// that come with time) exactly once, so the caller can log it once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state before.
    pub from: HealthState,
    /// The state after.
    pub to: HealthState,
    /// Why, in words for an operator.
    pub reason: String,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}: {}", self.from, self.to, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_display() {
        let all = [
            (HealthState::Healthy, "healthy", true),
            (HealthState::Unhealthy, "unhealthy", false),
            (HealthState::Ejected, "ejected", false),
            (HealthState::Draining, "draining", false),
            (HealthState::SlowStart, "slow-start", true),
            (HealthState::Backup, "backup", true),
        ];
        for (s, name, avail) in all {
            assert_eq!(s.as_str(), name);
            assert_eq!(s.to_string(), name);
            assert_eq!(s.is_available(), avail);
        }
        let t = Transition {
            from: HealthState::Healthy,
            to: HealthState::Ejected,
            reason: "5 consecutive failures".into(),
        };
        assert_eq!(t.to_string(), "healthy -> ejected: 5 consecutive failures");
    }
}
