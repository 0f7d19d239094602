//! Health of backends for smartlb: active checks, passive outlier
//! detection, draining, backups and slow start, combined into one state per
//! backend.
//!
//! A load balancer must stop sending requests to a backend that cannot
//! serve them, and must bring it back carefully once it can. Two signals
//! tell it so:
//!
//! * **Active checks** ([`HealthChecker`]): a background task per backend
//!   requests `GET /health` on its own connection every `interval` (with
//!   jitter). `unhealthy_threshold` failures in a row take the backend out,
//!   `healthy_threshold` passes in a row bring it back (the rise/fall
//!   counters of HAProxy's `inter`/`rise`/`fall`).
//! * **Passive outlier detection** ([`BackendHealth::record_failure`]): the
//!   proxy reports how each real exchange ended. `consecutive_failures`
//!   connect errors, resets, timeouts or 5xx without a success in between
//!   eject the backend for `base_ejection_time`, doubled on each repeat up to
//!   `max_ejection_time`, the multiplier decaying again while the backend
//!   stays in service. This follows Envoy's outlier detection
//!   (`consecutive_5xx`, `base_ejection_time`, `max_ejection_time`,
//!   `max_ejection_percent`; see Envoy's "Outlier detection" architecture
//!   overview). As in Envoy, an [`EjectionBudget`] shared by an upstream's
//!   backends caps the share that may be ejected at once, so a fault that
//!   hits every backend does not empty the upstream. Without active checks an
//!   ejected backend returns when its time is up; with them (once they
//!   report), it returns through them: once its time is up *and*
//!   `healthy_threshold` checks in a row have passed since it was ejected
//!   (HAProxy's `observe` with `on-error mark-down` works this way). When the
//!   checks themselves saw it go down and come back, as with a crash and a
//!   restart, that recovery ends the ejection at once.
//!
//! A backend that returns, or joins, ramps up its share over
//! `slow_start.duration` like Envoy's slow start mode: its weight factor is
//! `max(min_factor, (t / duration)^(1 / aggression))`, never below 10 % by
//! default so that it still sees probe traffic. Backups ([`Tier`]) serve only
//! while no primary is available.
//!
//! [`BackendHealth`] is the state machine: hot-path calls are atomics only,
//! every call takes the current time as [`Nanos`] (time is an input, so the
//! simulator and tests drive it), and each change of [`HealthState`] is
//! returned once as a [`Transition`] for the caller to log
//! ([`log_transition`] gives every caller the same log line) or to publish as
//! a [`HealthEvent`]. Transitions chain: each one starts from the state the
//! previous one ended in.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use smartlb_health::{
//!     ActiveThresholds, BackendHealth, EjectionBudget, FailureKind, HealthConfig, HealthState,
//!     Nanos, OutlierConfig, SlowStartConfig, Tier,
//! };
//!
//! let config = HealthConfig {
//!     active: Some(ActiveThresholds { healthy_threshold: 2, unhealthy_threshold: 3 }),
//!     outlier: Some(OutlierConfig { consecutive_failures: 3, ..OutlierConfig::default() }),
//!     slow_start: Some(SlowStartConfig::linear(Duration::from_secs(30))),
//! };
//! config.validate()?;
//! let budget = Arc::new(EjectionBudget::new(50));
//! let a = BackendHealth::new(&config, Arc::clone(&budget));
//! let b = BackendHealth::new(&config, Arc::clone(&budget));
//! let spare = BackendHealth::new(&config, Arc::clone(&budget)).with_backup(true);
//!
//! // Its active checks run: one passed.
//! let t0 = Nanos::from_secs(1_000);
//! a.record_check(true, t0);
//!
//! // Three failed exchanges in a row eject `a` for 10 s, then until its
//! // checks pass.
//! a.record_failure(FailureKind::Connect, t0);
//! a.record_failure(FailureKind::Timeout, t0);
//! let transition = a.record_failure(FailureKind::ServerError, t0).ok_or("no ejection")?;
//! assert_eq!(
//!     transition.to_string(),
//!     "healthy -> ejected: 3 consecutive failures (last: 5xx); ejected for 10s, then until health checks pass"
//! );
//!
//! // `b` still serves, so the backup does not.
//! let tier = Tier::select([a.view(t0), b.view(t0), spare.view(t0)]);
//! assert_eq!(tier, Tier::Primary);
//! assert!(tier.admits(b.view(t0)) && !tier.admits(spare.view(t0)));
//!
//! // Its health checks pass twice during the ejection: after 10 s `a` is
//! // back, ramping up: 50 % of its weight 15 s later.
//! a.record_check(true, t0 + Duration::from_secs(2));
//! a.record_check(true, t0 + Duration::from_secs(4));
//! let back = t0 + Duration::from_secs(10);
//! assert_eq!(a.state(back), HealthState::SlowStart);
//! assert_eq!(a.weight_factor(back + Duration::from_secs(15)), 0.5);
//! assert_eq!(a.poll(back).map(|t| t.to), Some(HealthState::SlowStart));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Active checks run on tokio:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use smartlb_health::*;
//! # async fn example(health: Arc<BackendHealth>) -> Result<(), CheckError> {
//! let checker = HealthChecker::new(CheckConfig::default())?;
//! let target = CheckTarget::new(std::net::SocketAddr::from(([127, 0, 0, 1], 8081)));
//! let handle = checker.spawn(target, health)?;
//! // ... checks run until the handle is dropped.
//! drop(handle);
//! # Ok(()) }
//! ```

mod backend;
mod budget;
mod checker;
mod config;
mod event;
mod state;

pub use backend::BackendHealth;
pub use budget::{BackendView, EjectionBudget, Tier};
pub use checker::{
    CheckConfig, CheckError, CheckHandle, CheckObserver, CheckOutcome, CheckTarget, Clock,
    HealthChecker, ParseStatusRangeError, StatusRange, TokioClock, USER_AGENT_VALUE, check_once,
};
pub use config::{
    ActiveThresholds, DEFAULT_MIN_FACTOR, HealthConfig, InvalidHealthConfig, OutlierConfig,
    SlowStartConfig,
};
pub use event::{HealthEvent, log_transition};
pub use smartlb_balance::Nanos;
pub use smartlb_traffic::{FailureKind, Outcome};
pub use state::{HealthState, Transition};
