//! Reporting transitions: one log line per transition, and events for
//! whoever watches (the demo, tests, an admin stream).

use std::sync::Arc;

use smartlb_balance::Nanos;

use crate::state::Transition;

/// A [`Transition`] of one backend of one upstream, with the time it was
/// seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    /// The upstream's name.
    pub upstream: Arc<str>,
    /// The backend's address as configured.
    pub backend: Arc<str>,
    /// When the transition was seen, on the caller's clock.
    pub at: Nanos,
    /// What changed, and why.
    pub transition: Transition,
}

/// Logs `transition` of `backend` in `upstream`: one `tracing` event with
/// the fields `upstream`, `backend`, `from`, `to` and `reason` and the
/// message `backend health changed`, at `WARN` when the backend stops taking
/// requests and at `INFO` otherwise.
///
/// Every place that obtains a transition from
/// [`BackendHealth`](crate::BackendHealth) calls this exactly once for it,
/// so each transition is logged once, in the same shape, whichever path
/// (live traffic, an active check, the passage of time) caused it.
pub fn log_transition(upstream: &str, backend: &str, transition: &Transition) {
    let from = transition.from.as_str();
    let to = transition.to.as_str();
    let reason = transition.reason.as_str();
    if transition.to.is_available() {
        tracing::info!(
            upstream,
            backend,
            from,
            to,
            reason,
            "backend health changed"
        );
    } else {
        tracing::warn!(
            upstream,
            backend,
            from,
            to,
            reason,
            "backend health changed"
        );
    }
}
