//! The per-backend health state machine.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use smartlb_balance::Nanos;
use smartlb_traffic::{FailureKind, Outcome};

use crate::budget::{BackendView, EjectionBudget};
use crate::config::{ActiveThresholds, HealthConfig, OutlierConfig};
use crate::state::{HealthState, Transition};

/// Largest exponent of the ejection doubling (2^20 base ejections is far
/// beyond any sensible `max_ejection_time`).
const MAX_LEVEL: u32 = 20;

/// The health of one backend: active check results, passive outlier
/// detection, draining, backup role and slow start, combined into one
/// [`HealthState`] and one weight factor.
///
/// Thread-safe and shared as `Arc<BackendHealth>`. What the request path
/// calls ([`record_success`](BackendHealth::record_success), and
/// [`record_failure`](BackendHealth::record_failure) below the threshold,
/// [`is_available`](BackendHealth::is_available),
/// [`weight_factor`](BackendHealth::weight_factor),
/// [`state`](BackendHealth::state)) touches atomics only; the rare
/// transitions take a small mutex.
///
/// Every method that depends on time takes `now`; the state is a function of
/// the recorded events and `now`, so an ejection ends, and a slow start
/// completes, without anyone calling in. Transitions caused by an event are
/// returned by that call; transitions that only come with time are returned
/// by [`poll`](BackendHealth::poll), which a background task calls
/// periodically (the active checker does before every check).
///
/// # Rules
///
/// * **Active checks** ([`record_check`](BackendHealth::record_check)):
///   `unhealthy_threshold` failures in a row make the backend unhealthy;
///   `healthy_threshold` passes in a row bring it back, in slow start.
/// * **Outlier detection** ([`record_failure`](BackendHealth::record_failure)):
///   `consecutive_failures` failures (connect, reset, timeout, 5xx; not 429)
///   without a success in between eject the backend for
///   `base_ejection_time * 2^k`, capped at `max_ejection_time`, where `k`
///   counts recent ejections: it goes up by one with each ejection and down
///   by one for each `base_ejection_time` spent back in service (as Envoy's
///   ejection multiplier decays). Failures of requests that finish while the
///   backend is ejected are ignored. An ejection that would exceed the
///   upstream's [`EjectionBudget`] is not made (counted in
///   [`ejections_suppressed`](BackendHealth::ejections_suppressed)), and the
///   count starts over, so the next attempt needs `consecutive_failures`
///   more failures.
/// * **End of an ejection**: without active checks (or before any check
///   result was recorded), the backend returns by itself, in slow start, when
///   its time is up. With active checks, it returns through them: when its
///   time is up it also needs
///   `healthy_threshold` passing checks in a row counted from the start of
///   the ejection (they usually come during the ejection, so a backend whose
///   checks kept passing returns right on time); until then it is
///   [`Unhealthy`](HealthState::Unhealthy), still counted against the
///   [`EjectionBudget`], and failures of requests still in flight are
///   ignored. Passing checks alone do not end an ejection early (the checks
///   may pass while real traffic fails), with one exception: when the checks
///   themselves had taken the backend out (before or during the ejection)
///   and then saw it pass `healthy_threshold` times (a crash and a restart),
///   the ejection ends with that recovery.
/// * **Draining** ([`set_draining`](BackendHealth::set_draining)): no new
///   requests until undrained; undraining starts a slow start.
/// * **Slow start**: after joining ([`BackendHealth::joining`]) or coming back
///   from unhealthy, ejected or draining, the weight factor ramps from
///   `min_factor` to 1 over `slow_start.duration`.
/// * **Start-up**: a backend built with [`BackendHealth::new`] starts healthy
///   at full share (active checks take it out within `unhealthy_threshold`
///   intervals if it is down, and passive detection sooner).
#[derive(Debug)]
pub struct BackendHealth {
    id: u64,
    budget: Arc<EjectionBudget>,

    consecutive_failures: AtomicU32,
    /// 0 when outlier detection is off.
    failure_threshold: AtomicU32,
    /// Nanos; 0 = not ejected.
    ejected_until: AtomicU64,
    active_down: AtomicBool,
    /// Ejected while active checks are on: held out after the ejection time
    /// until `healthy_threshold` checks pass.
    awaiting_checks: AtomicBool,
    draining: AtomicBool,
    backup: AtomicBool,
    /// Slow start is measured from here (Nanos); 0 = no slow start pending
    /// (times are stored as at least 1, see [`ramp_mark`]).
    ramp_from: AtomicU64,
    /// 0 when slow start is off.
    slow_start_ns: AtomicU64,
    /// `1 / aggression`, as f64 bits.
    slow_start_exponent: AtomicU64,
    /// `min_factor`, as f64 bits.
    slow_start_min: AtomicU64,

    ejections_total: AtomicU64,
    ejections_suppressed: AtomicU64,
    checks_passed: AtomicU64,
    checks_failed: AtomicU64,

    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    active: Option<ActiveThresholds>,
    outlier: Option<OutlierConfig>,
    passes: u32,
    fails: u32,
    /// Exponent of the next ejection before decay.
    level: u32,
    /// When the last ejection ended (Nanos): decay is counted from here.
    level_since: u64,
    /// The state last returned in a transition (or at creation).
    observed: HealthState,
}

impl BackendHealth {
    /// A backend present from the start: healthy, full share.
    pub fn new(config: &HealthConfig, budget: Arc<EjectionBudget>) -> Self {
        Self::build(config, budget, None)
    }

    /// A backend added while running: available at once, in slow start from
    /// `now`.
    pub fn joining(config: &HealthConfig, budget: Arc<EjectionBudget>, now: Nanos) -> Self {
        Self::build(config, budget, Some(now))
    }

    fn build(config: &HealthConfig, budget: Arc<EjectionBudget>, joined: Option<Nanos>) -> Self {
        let id = budget.join();
        let h = BackendHealth {
            id,
            budget,
            consecutive_failures: AtomicU32::new(0),
            failure_threshold: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            active_down: AtomicBool::new(false),
            awaiting_checks: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            backup: AtomicBool::new(false),
            ramp_from: AtomicU64::new(joined.map_or(0, |t| ramp_mark(t.0))),
            slow_start_ns: AtomicU64::new(0),
            slow_start_exponent: AtomicU64::new(1f64.to_bits()),
            slow_start_min: AtomicU64::new(1f64.to_bits()),
            ejections_total: AtomicU64::new(0),
            ejections_suppressed: AtomicU64::new(0),
            checks_passed: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                active: None,
                outlier: None,
                passes: 0,
                fails: 0,
                level: 0,
                level_since: 0,
                observed: HealthState::Healthy,
            }),
        };
        let now = joined.unwrap_or(Nanos::ZERO);
        let mut inner = h.lock();
        h.apply_config(&mut inner, config);
        inner.observed = h.state(now);
        drop(inner);
        h
    }

    /// Builder-style [`set_backup`](BackendHealth::set_backup) for a new backend.
    pub fn with_backup(self, backup: bool) -> Self {
        self.backup.store(backup, Ordering::Relaxed);
        // The state at creation: the join time for a joining backend (its
        // ramp start), any time for one present from the start.
        let observed = self.state(Nanos(self.ramp_from.load(Ordering::Relaxed)));
        self.lock().observed = observed;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a new configuration (on reload), keeping the state: counts,
    /// current ejection, draining. Turning active checks off brings an
    /// unhealthy backend back; turning outlier detection off lets a current
    /// ejection run out. Out-of-range values are clamped.
    pub fn reconfigure(&self, config: &HealthConfig, now: Nanos) -> Option<Transition> {
        let mut inner = self.lock();
        let before = self.state(now);
        self.apply_config(&mut inner, config);
        self.finish(&mut inner, before, now, || {
            "configuration changed".to_owned()
        })
    }

    fn apply_config(&self, inner: &mut Inner, config: &HealthConfig) {
        inner.active = config.active.map(|a| ActiveThresholds {
            healthy_threshold: a.healthy_threshold.max(1),
            unhealthy_threshold: a.unhealthy_threshold.max(1),
        });
        if inner.active.is_none() {
            self.active_down.store(false, Ordering::Relaxed);
            self.release_awaiting(self.ejected_until.load(Ordering::Relaxed));
            inner.passes = 0;
            inner.fails = 0;
        }
        inner.outlier = config.outlier.map(|o| {
            let base = o.base_ejection_time.max(Duration::from_millis(1));
            OutlierConfig {
                consecutive_failures: o.consecutive_failures.max(1),
                base_ejection_time: base,
                max_ejection_time: o.max_ejection_time.max(base),
                max_ejection_percent: o.max_ejection_percent.min(100),
            }
        });
        match &inner.outlier {
            Some(o) => {
                self.failure_threshold
                    .store(o.consecutive_failures, Ordering::Relaxed);
                self.budget.set_max_ejection_percent(o.max_ejection_percent);
            }
            None => {
                self.failure_threshold.store(0, Ordering::Relaxed);
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
        }
        match &config.slow_start {
            Some(s) => {
                let aggression = if s.aggression.is_finite() && s.aggression > 0.0 {
                    s.aggression
                } else {
                    1.0
                };
                let min = if s.min_factor.is_nan() {
                    crate::config::DEFAULT_MIN_FACTOR
                } else {
                    s.min_factor.clamp(0.0, 1.0)
                };
                self.slow_start_ns
                    .store(duration_ns(s.duration), Ordering::Relaxed);
                self.slow_start_exponent
                    .store((1.0 / aggression).to_bits(), Ordering::Relaxed);
                self.slow_start_min.store(min.to_bits(), Ordering::Relaxed);
            }
            None => self.slow_start_ns.store(0, Ordering::Relaxed),
        }
    }

    // ----- request path -------------------------------------------------

    /// The state at `now`.
    #[inline]
    pub fn state(&self, now: Nanos) -> HealthState {
        if self.draining.load(Ordering::Relaxed) {
            HealthState::Draining
        } else if now.0 < self.ejected_until.load(Ordering::Relaxed) {
            HealthState::Ejected
        } else if self.active_down.load(Ordering::Relaxed)
            || self.awaiting_checks.load(Ordering::Relaxed)
        {
            HealthState::Unhealthy
        } else if self.in_slow_start(now) {
            HealthState::SlowStart
        } else if self.backup.load(Ordering::Relaxed) {
            HealthState::Backup
        } else {
            HealthState::Healthy
        }
    }

    #[inline]
    fn in_slow_start(&self, now: Nanos) -> bool {
        let d = self.slow_start_ns.load(Ordering::Relaxed);
        let from = self.ramp_from.load(Ordering::Relaxed);
        d > 0 && from != 0 && now.0 < from.saturating_add(d)
    }

    /// Whether the backend may receive new requests at `now` (not draining,
    /// ejected or unhealthy). A backup may, but only gets them when its
    /// [`Tier`](crate::Tier) is selected.
    #[inline]
    pub fn is_available(&self, now: Nanos) -> bool {
        !self.draining.load(Ordering::Relaxed)
            && now.0 >= self.ejected_until.load(Ordering::Relaxed)
            && !self.active_down.load(Ordering::Relaxed)
            && !self.awaiting_checks.load(Ordering::Relaxed)
    }

    /// What tier selection needs: backup role and availability at `now`.
    #[inline]
    pub fn view(&self, now: Nanos) -> BackendView {
        BackendView {
            backup: self.backup.load(Ordering::Relaxed),
            available: self.is_available(now),
        }
    }

    /// The share of its weight the backend should get at `now`: 0 when not
    /// available, the slow-start ramp value while ramping, else 1.
    #[inline]
    pub fn weight_factor(&self, now: Nanos) -> f64 {
        if !self.is_available(now) {
            return 0.0;
        }
        let d = self.slow_start_ns.load(Ordering::Relaxed);
        let from = self.ramp_from.load(Ordering::Relaxed);
        if d == 0 || from == 0 {
            return 1.0;
        }
        let elapsed = now.saturating_since(Nanos(from));
        if elapsed >= d {
            return 1.0;
        }
        let exponent = f64::from_bits(self.slow_start_exponent.load(Ordering::Relaxed));
        let min = f64::from_bits(self.slow_start_min.load(Ordering::Relaxed));
        let t = elapsed as f64 / d as f64;
        let f = if exponent == 1.0 { t } else { t.powf(exponent) };
        f.max(min).min(1.0)
    }

    /// Records a successful exchange: resets the consecutive failure count.
    #[inline]
    pub fn record_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failed exchange. Returns the transition if this failure
    /// ejected the backend. Below the threshold this is one atomic increment.
    #[inline]
    pub fn record_failure(&self, kind: FailureKind, now: Nanos) -> Option<Transition> {
        if !kind.is_outlier_failure() {
            return None;
        }
        let threshold = self.failure_threshold.load(Ordering::Relaxed);
        if threshold == 0 || now.0 < self.ejected_until.load(Ordering::Relaxed) {
            return None;
        }
        let n = self
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n < threshold {
            return None;
        }
        self.try_eject(kind, n, now)
    }

    /// Records an exchange by its [`Outcome`] (cancelled ones are ignored).
    #[inline]
    pub fn record(&self, outcome: Outcome, now: Nanos) -> Option<Transition> {
        match outcome {
            Outcome::Success => {
                self.record_success();
                None
            }
            Outcome::Failure(kind) => self.record_failure(kind, now),
            Outcome::Cancelled => None,
        }
    }

    #[cold]
    fn try_eject(&self, kind: FailureKind, failures: u32, now: Nanos) -> Option<Transition> {
        let mut inner = self.lock();
        let outlier = inner.outlier?;
        if now.0 < self.ejected_until.load(Ordering::Relaxed) {
            // Another thread ejected it meanwhile.
            return None;
        }
        if self.awaiting_checks.load(Ordering::Relaxed) {
            // Out until the checks pass: these are requests still in flight.
            self.consecutive_failures.store(0, Ordering::Relaxed);
            return None;
        }
        let before = self.state(now);
        let level = decayed_level(&inner, &outlier, now);
        let duration = ejection_time(&outlier, level);
        let until = now + duration;
        // With active checks running (they have reported), the backend is held (and
        // counted) until they pass. Configured but never run (an embedder without the
        // background tasks), they cannot bring it back: its time alone does.
        let checked = self.checks_passed.load(Ordering::Relaxed)
            + self.checks_failed.load(Ordering::Relaxed)
            > 0;
        let through_checks = inner.active.is_some() && checked;
        let booked = if through_checks {
            Nanos(u64::MAX)
        } else {
            until
        };
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if let Err(refused) = self.budget.try_eject(self.id, booked, now) {
            self.ejections_suppressed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                ejected = refused.ejected,
                backends = refused.members,
                "outlier ejection held back by max_ejection_percent"
            );
            return None;
        }
        self.ejected_until.store(until.0, Ordering::Relaxed);
        self.ramp_from
            .fetch_max(ramp_mark(until.0), Ordering::Relaxed);
        if through_checks {
            inner.passes = 0;
            self.awaiting_checks.store(true, Ordering::Relaxed);
        }
        inner.level = (level + 1).min(max_level(&outlier));
        inner.level_since = until.0;
        self.ejections_total.fetch_add(1, Ordering::Relaxed);
        self.finish(&mut inner, before, now, || {
            let then = if through_checks {
                ", then until health checks pass"
            } else {
                ""
            };
            format!(
                "{failures} consecutive failures (last: {kind}); ejected for {}{then}",
                fmt_duration(duration)
            )
        })
    }

    // ----- background -----------------------------------------------------

    /// Records the result of an active health check. Returns the transition
    /// if the backend went unhealthy or came back. Ignored (`None`) when the
    /// configuration has no active checks.
    pub fn record_check(&self, pass: bool, now: Nanos) -> Option<Transition> {
        if pass {
            self.checks_passed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.checks_failed.fetch_add(1, Ordering::Relaxed);
        }
        let mut inner = self.lock();
        let thresholds = inner.active?;
        let before = self.state(now);
        let down = self.active_down.load(Ordering::Relaxed);
        let mut reason = String::new();
        if pass {
            inner.passes = inner.passes.saturating_add(1);
            inner.fails = 0;
            if inner.passes >= thresholds.healthy_threshold {
                let ejected_until = self.ejected_until.load(Ordering::Relaxed);
                if down {
                    self.active_down.store(false, Ordering::Relaxed);
                    reason = format!("{} consecutive passing health checks", inner.passes);
                    if now.0 < ejected_until {
                        // The checks saw the backend go down and come back (a
                        // restart): the traffic failures that ejected it are
                        // stale, so the recovery ends the ejection too.
                        self.ejected_until.store(now.0, Ordering::Relaxed);
                        inner.level_since = now.0;
                        self.release_awaiting(now.0);
                        self.budget.release(self.id, now);
                        self.ramp_from.store(ramp_mark(now.0), Ordering::Relaxed);
                        reason.push_str("; ejection ended early");
                    }
                }
                if self.awaiting_checks.load(Ordering::Relaxed) {
                    self.release_awaiting(ejected_until);
                    if reason.is_empty() {
                        reason = format!("{} consecutive passing health checks", inner.passes);
                    }
                }
                if !reason.is_empty() {
                    let back_at = now.0.max(self.ejected_until.load(Ordering::Relaxed));
                    self.ramp_from
                        .fetch_max(ramp_mark(back_at), Ordering::Relaxed);
                }
            }
        } else {
            inner.fails = inner.fails.saturating_add(1);
            inner.passes = 0;
            if !down && inner.fails >= thresholds.unhealthy_threshold {
                self.active_down.store(true, Ordering::Relaxed);
                reason = format!("{} consecutive failing health checks", inner.fails);
            }
        }
        self.finish(&mut inner, before, now, || reason)
    }

    /// Ends the wait for passing checks after an ejection, if there is one: the
    /// backend stops counting against the budget at `back_at`.
    fn release_awaiting(&self, back_at: u64) {
        if self.awaiting_checks.swap(false, Ordering::Relaxed) {
            self.budget.release(self.id, Nanos(back_at));
        }
    }

    /// Reports a transition that came with time alone (an ejection ran out,
    /// a slow start completed) since the state was last reported. Call it
    /// periodically; each transition is returned once.
    pub fn poll(&self, now: Nanos) -> Option<Transition> {
        let mut inner = self.lock();
        let from = inner.observed;
        let to = self.state(now);
        if from == to {
            return None;
        }
        inner.observed = to;
        Some(Transition {
            from,
            to,
            reason: time_reason(from, to, &inner, self.is_check_failing()),
        })
    }

    /// Starts (`true`) or stops draining. Stopping starts a slow start.
    pub fn set_draining(&self, draining: bool, now: Nanos) -> Option<Transition> {
        let mut inner = self.lock();
        let before = self.state(now);
        if self.draining.swap(draining, Ordering::Relaxed) == draining {
            return None;
        }
        if !draining {
            self.ramp_from
                .fetch_max(ramp_mark(now.0), Ordering::Relaxed);
        }
        self.finish(&mut inner, before, now, || {
            if draining {
                "drain requested"
            } else {
                "drain cancelled"
            }
            .to_owned()
        })
    }

    /// Makes the backend a backup (used only when no primary is available)
    /// or a primary.
    pub fn set_backup(&self, backup: bool, now: Nanos) -> Option<Transition> {
        let mut inner = self.lock();
        let before = self.state(now);
        self.backup.store(backup, Ordering::Relaxed);
        self.finish(&mut inner, before, now, || {
            if backup {
                "made a backup"
            } else {
                "made a primary"
            }
            .to_owned()
        })
    }

    /// Common tail of every event: a transition if the event changed the
    /// state. When it did not, a change that came with time and was not
    /// reported yet is left for [`poll`](BackendHealth::poll). When it did and
    /// such a change is pending too, the transition starts from the state last
    /// reported and its reason tells both steps, so that the reported
    /// transitions always chain (each `from` is the previous `to`).
    fn finish(
        &self,
        inner: &mut Inner,
        before: HealthState,
        now: Nanos,
        reason: impl FnOnce() -> String,
    ) -> Option<Transition> {
        let after = self.state(now);
        if before == after {
            return None;
        }
        let from = inner.observed;
        let reason = if from == before {
            reason()
        } else {
            format!(
                "{}, then {}",
                time_reason(from, before, inner, self.is_check_failing()),
                reason()
            )
        };
        inner.observed = after;
        Some(Transition {
            from,
            to: after,
            reason,
        })
    }

    // ----- introspection --------------------------------------------------

    /// Whether the backend is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Whether the backend is a backup.
    pub fn is_backup(&self) -> bool {
        self.backup.load(Ordering::Relaxed)
    }

    /// Whether active checks currently hold the backend out.
    pub fn is_check_failing(&self) -> bool {
        self.active_down.load(Ordering::Relaxed)
    }

    /// Whether the backend, ejected while active checks are on, waits for
    /// `healthy_threshold` passing checks before it returns.
    pub fn is_awaiting_checks(&self) -> bool {
        self.awaiting_checks.load(Ordering::Relaxed)
    }

    /// When the current ejection ends, if the backend is ejected at `now`.
    pub fn ejected_until(&self, now: Nanos) -> Option<Nanos> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        (now.0 < until).then_some(Nanos(until))
    }

    /// Failures counted towards the next ejection.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// Ejections made (`smartlb_ejections_total`).
    pub fn ejections_total(&self) -> u64 {
        self.ejections_total.load(Ordering::Relaxed)
    }

    /// Ejections held back by `max_ejection_percent`.
    pub fn ejections_suppressed(&self) -> u64 {
        self.ejections_suppressed.load(Ordering::Relaxed)
    }

    /// Active checks that passed.
    pub fn checks_passed(&self) -> u64 {
        self.checks_passed.load(Ordering::Relaxed)
    }

    /// Active checks that failed.
    pub fn checks_failed(&self) -> u64 {
        self.checks_failed.load(Ordering::Relaxed)
    }

    /// The budget this backend counts against.
    pub fn budget(&self) -> &Arc<EjectionBudget> {
        &self.budget
    }
}

impl Drop for BackendHealth {
    fn drop(&mut self) {
        self.budget.leave(self.id);
    }
}

/// A slow-start reference time as stored: 0 is reserved for "none".
fn ramp_mark(t: u64) -> u64 {
    t.max(1)
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The ejection exponent after decay: one step down per base ejection time
/// spent in service since the last ejection ended.
fn decayed_level(inner: &Inner, outlier: &OutlierConfig, now: Nanos) -> u32 {
    let in_service = now.saturating_since(Nanos(inner.level_since));
    let steps = in_service / duration_ns(outlier.base_ejection_time).max(1);
    inner
        .level
        .saturating_sub(u32::try_from(steps).unwrap_or(u32::MAX))
}

/// `base * 2^level`, capped at the maximum.
fn ejection_time(outlier: &OutlierConfig, level: u32) -> Duration {
    let factor = 1u32 << level.min(MAX_LEVEL);
    outlier
        .base_ejection_time
        .saturating_mul(factor)
        .min(outlier.max_ejection_time)
}

/// The smallest exponent whose ejection time reaches the cap: the level
/// stops growing there, so decay from the cap takes a bounded time.
fn max_level(outlier: &OutlierConfig) -> u32 {
    (0..MAX_LEVEL)
        .find(|l| ejection_time(outlier, *l) >= outlier.max_ejection_time)
        .unwrap_or(MAX_LEVEL)
}

/// Why the state went from `from` to `to` with time alone; `checks_failing`
/// tells whether active checks hold the backend out.
fn time_reason(from: HealthState, to: HealthState, inner: &Inner, checks_failing: bool) -> String {
    match (from, to) {
        (HealthState::Ejected, HealthState::Unhealthy) => match inner.active {
            Some(a) if !checks_failing => format!(
                "ejection time is up; back after {} passing health checks",
                a.healthy_threshold
            ),
            _ => "ejection time is up; health checks are failing".to_owned(),
        },
        (HealthState::Ejected, _) => "ejection time is up".to_owned(),
        (HealthState::SlowStart, _) => "slow start complete".to_owned(),
        _ => "state changed".to_owned(),
    }
}

fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests;
