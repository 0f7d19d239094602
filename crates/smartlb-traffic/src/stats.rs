//! Per-backend recording on the request path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::ewma::AtomicEwma;
use crate::histogram::{AtomicHistogram, Histogram};
use crate::outcome::{FailureKind, Outcome};

/// Default smoothing factor of the per-request latency EWMA: each response
/// weighs 5 %, so the estimate follows the last few dozen responses.
pub const DEFAULT_LATENCY_ALPHA: f64 = 0.05;

/// What the request path records about one backend. Share it with
/// `Arc<BackendStats>`; every method takes `&self` and uses relaxed atomics
/// only (no lock, no allocation).
///
/// * `requests_total` counts finished exchanges of every [`Outcome`];
///   `errors_total` the [`Outcome::Failure`]s (also per [`FailureKind`]).
/// * `in_flight` is kept by [`InFlightGuard`]s from [`start`](BackendStats::start).
/// * The latency histogram gets every success and failure (what clients
///   saw); cancelled exchanges are not latency samples.
/// * The latency EWMA follows successes; a failure is blended in only if it
///   is slower than the current estimate, so fast failures never make a
///   backend look fast.
#[derive(Debug)]
pub struct BackendStats {
    requests_total: AtomicU64,
    errors_total: AtomicU64,
    errors_by_kind: [AtomicU64; FailureKind::COUNT],
    in_flight: AtomicU64,
    latency: AtomicHistogram,
    latency_ewma: AtomicEwma,
}

impl BackendStats {
    /// Empty statistics with the default EWMA smoothing.
    pub fn new() -> Self {
        Self::with_latency_alpha(DEFAULT_LATENCY_ALPHA)
    }

    /// Empty statistics whose latency EWMA gives each response weight
    /// `alpha` (clamped into `[1e-6, 1]`).
    pub fn with_latency_alpha(alpha: f64) -> Self {
        BackendStats {
            requests_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            errors_by_kind: std::array::from_fn(|_| AtomicU64::new(0)),
            in_flight: AtomicU64::new(0),
            latency: AtomicHistogram::new(),
            latency_ewma: AtomicEwma::new(alpha),
        }
    }

    /// Marks a request as sent: `in_flight` goes up until the guard is
    /// dropped or [`finish`](InFlightGuard::finish)ed.
    #[inline]
    #[must_use = "dropping the guard at once ends the request"]
    pub fn start(&self) -> InFlightGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard { stats: self }
    }

    /// Like [`start`](BackendStats::start), for a guard that must outlive a
    /// borrow (moved into a response body, a spawned task).
    #[inline]
    #[must_use = "dropping the guard at once ends the request"]
    pub fn start_owned(self: &Arc<Self>) -> OwnedInFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        OwnedInFlightGuard {
            stats: Arc::clone(self),
        }
    }

    /// Records a finished exchange and its latency.
    #[inline]
    pub fn record(&self, outcome: Outcome, latency: Duration) {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        match outcome {
            Outcome::Success => {
                self.latency.record_ns(ns);
                self.latency_ewma.update(ns as f64, false);
            }
            Outcome::Failure(kind) => {
                self.errors_total.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = self.errors_by_kind.get(kind.index()) {
                    c.fetch_add(1, Ordering::Relaxed);
                }
                self.latency.record_ns(ns);
                self.latency_ewma.update(ns as f64, true);
            }
            Outcome::Cancelled => {}
        }
    }

    /// Finished exchanges so far.
    #[inline]
    pub fn requests_total(&self) -> u64 {
        self.requests_total.load(Ordering::Relaxed)
    }

    /// Failed exchanges so far.
    #[inline]
    pub fn errors_total(&self) -> u64 {
        self.errors_total.load(Ordering::Relaxed)
    }

    /// Failed exchanges of one kind so far.
    pub fn errors_of(&self, kind: FailureKind) -> u64 {
        self.errors_by_kind
            .get(kind.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Requests started and not yet finished.
    #[inline]
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The latency EWMA, or `None` before the first sample.
    #[inline]
    pub fn latency_ewma(&self) -> Option<Duration> {
        self.latency_ewma
            .get()
            .map(|ns| Duration::from_nanos(ns.max(0.0) as u64))
    }

    /// The all-time latency histogram (a copy).
    pub fn latency_histogram(&self) -> Histogram {
        self.latency.snapshot()
    }

    /// Copies the all-time latency histogram into `into`, reusing its memory.
    pub fn latency_histogram_into(&self, into: &mut Histogram) {
        self.latency.snapshot_into(into);
    }

    /// The counters as plain values.
    pub fn counters(&self) -> Counters {
        Counters {
            requests_total: self.requests_total(),
            errors_total: self.errors_total(),
            in_flight: self.in_flight(),
            latency_ewma_ms: self.latency_ewma().map(duration_ms),
        }
    }
}

impl Default for BackendStats {
    fn default() -> Self {
        Self::new()
    }
}

/// Plain copies of a backend's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Finished exchanges.
    pub requests_total: u64,
    /// Failed exchanges.
    pub errors_total: u64,
    /// Requests in flight.
    pub in_flight: u64,
    /// Latency EWMA in milliseconds (`null` before the first response).
    pub latency_ewma_ms: Option<f64>,
}

pub(crate) fn duration_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Holds one unit of [`BackendStats::in_flight`] until dropped.
#[derive(Debug)]
pub struct InFlightGuard<'a> {
    stats: &'a BackendStats,
}

impl InFlightGuard<'_> {
    /// Ends the request, recording its outcome and latency.
    #[inline]
    pub fn finish(self, outcome: Outcome, latency: Duration) {
        self.stats.record(outcome, latency);
    }
}

impl Drop for InFlightGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Holds one unit of [`BackendStats::in_flight`] until dropped; owns an
/// `Arc` of the statistics.
#[derive(Debug)]
pub struct OwnedInFlightGuard {
    stats: Arc<BackendStats>,
}

impl OwnedInFlightGuard {
    /// Ends the request, recording its outcome and latency.
    #[inline]
    pub fn finish(self, outcome: Outcome, latency: Duration) {
        self.stats.record(outcome, latency);
    }

    /// The statistics this guard counts against.
    pub fn stats(&self) -> &Arc<BackendStats> {
        &self.stats
    }
}

impl Drop for OwnedInFlightGuard {
    #[inline]
    fn drop(&mut self) {
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_track_in_flight() {
        let stats = Arc::new(BackendStats::new());
        let a = stats.start();
        let b = stats.start_owned();
        assert_eq!(stats.in_flight(), 2);
        a.finish(Outcome::Success, Duration::from_millis(10));
        assert_eq!(stats.in_flight(), 1);
        drop(b);
        assert_eq!(stats.in_flight(), 0);
        assert_eq!(stats.requests_total(), 1);
    }

    #[test]
    fn outcomes_are_counted() {
        let stats = BackendStats::with_latency_alpha(0.5);
        stats.record(Outcome::Success, Duration::from_millis(10));
        // A fast failure does not lower the EWMA.
        stats.record(
            Outcome::Failure(FailureKind::ServerError),
            Duration::from_millis(1),
        );
        assert_eq!(stats.latency_ewma(), Some(Duration::from_millis(10)));
        // A slow one raises it.
        stats.record(
            Outcome::Failure(FailureKind::Timeout),
            Duration::from_millis(30),
        );
        assert_eq!(stats.latency_ewma(), Some(Duration::from_millis(20)));
        stats.record(Outcome::Cancelled, Duration::from_secs(5));
        let c = stats.counters();
        assert_eq!(c.requests_total, 4);
        assert_eq!(c.errors_total, 2);
        assert_eq!(stats.errors_of(FailureKind::Timeout), 1);
        assert_eq!(stats.errors_of(FailureKind::Connect), 0);
        assert_eq!(stats.latency_histogram().count(), 3);
        assert_eq!(c.latency_ewma_ms, Some(20.0));
    }

    #[test]
    fn concurrent_recording_sums_exactly() {
        let stats = Arc::new(BackendStats::new());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let stats = Arc::clone(&stats);
                std::thread::spawn(move || {
                    for i in 0..5_000u64 {
                        let guard = stats.start();
                        let outcome = if i % 10 == t {
                            Outcome::Failure(FailureKind::Reset)
                        } else {
                            Outcome::Success
                        };
                        guard.finish(outcome, Duration::from_micros(100 + i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(stats.requests_total(), 20_000);
        assert_eq!(stats.errors_total(), 2_000);
        assert_eq!(stats.errors_of(FailureKind::Reset), 2_000);
        assert_eq!(stats.in_flight(), 0);
        let h = stats.latency_histogram();
        assert_eq!(h.count(), 20_000);
        let expected_sum: u64 = 4 * (0..5_000u64).map(|i| (100 + i) * 1_000).sum::<u64>();
        assert_eq!(h.sum_ns(), expected_sum);
    }
}
