//! Per-tick samples kept in bounded rings.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use smartlb_balance::Nanos;

use crate::histogram::{Histogram, SparseHistogram};
use crate::stats::{BackendStats, Counters, duration_ms};

/// Upper bound on the samples kept per series, whatever `history / tick`
/// asks for (a million samples: 11.5 days at one per second).
pub const MAX_HISTORY_SAMPLES: usize = 1_000_000;

/// Default number of ticks in the "recent" window behind
/// [`WindowSummary`] (10 s at one tick per second).
pub const DEFAULT_RECENT_TICKS: usize = 10;

/// A first-in first-out buffer of at most `capacity` items: pushing onto a
/// full ring drops the oldest item.
#[derive(Clone, Debug, PartialEq)]
pub struct Ring<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    /// An empty ring holding at most `capacity` items (at least 1).
    pub fn new(capacity: usize) -> Self {
        Ring {
            items: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends `item`, returning the oldest one if it had to make room.
    pub fn push(&mut self, item: T) -> Option<T> {
        let evicted = if self.items.len() >= self.capacity {
            self.items.pop_front()
        } else {
            None
        };
        self.items.push_back(item);
        evicted
    }

    /// Number of items held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The most items the ring holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The items, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter()
    }

    /// The newest `n` items (or all if fewer), oldest first.
    pub fn latest(&self, n: usize) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.iter().skip(self.items.len().saturating_sub(n))
    }

    /// The newest item.
    pub fn last(&self) -> Option<&T> {
        self.items.back()
    }

    /// Removes every item.
    pub fn clear(&mut self) {
        self.items.clear();
    }
}

/// What one tick interval looked like, for one backend or an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// End of the interval, in milliseconds of the caller's time base.
    pub at_ms: u64,
    /// Length of the interval in seconds.
    pub interval_s: f64,
    /// Exchanges finished in the interval.
    pub requests: u64,
    /// Failed exchanges in the interval.
    pub errors: u64,
    /// `requests / interval_s`.
    pub rps: f64,
    /// `errors / interval_s`.
    pub errors_per_sec: f64,
    /// Median latency in the interval (`null` without samples).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in the interval (`null` without samples).
    pub p99_ms: Option<f64>,
    /// Mean latency in the interval (`null` without samples).
    pub mean_ms: Option<f64>,
    /// Requests in flight at the end of the interval.
    pub in_flight: u64,
}

/// Rates and latency over the recent window (the last few ticks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct WindowSummary {
    /// Requests per second over the window.
    pub rps: f64,
    /// Errors per second over the window.
    pub errors_per_sec: f64,
    /// Errors divided by requests over the window (0 without requests).
    pub error_rate: f64,
    /// Median latency over the window (`null` without samples).
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile latency over the window (`null` without samples).
    pub latency_p99_ms: Option<f64>,
}

/// A backend's figures for the status API: all-time counters, the latency
/// EWMA and the recent window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct BackendSummary {
    /// `requests_total`, `errors_total`, `in_flight`, `latency_ewma_ms`.
    #[serde(flatten)]
    pub counters: Counters,
    /// `rps`, `errors_per_sec`, `error_rate`, `latency_p50_ms`, `latency_p99_ms`.
    #[serde(flatten)]
    pub window: WindowSummary,
}

/// A backend's figures and recent samples, for the traffic API.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendTraffic {
    /// The key the backend was added under (its address).
    pub backend: String,
    /// The status figures.
    #[serde(flatten)]
    pub summary: BackendSummary,
    /// The newest samples, oldest first.
    pub series: Vec<Sample>,
}

/// The upstream total: recent window and samples.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TotalTraffic {
    /// Requests in flight over all backends now.
    pub in_flight: u64,
    /// The recent window over all backends.
    #[serde(flatten)]
    pub window: WindowSummary,
    /// The newest samples, oldest first.
    pub series: Vec<Sample>,
}

/// Everything the traffic API shows for one upstream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrafficSnapshot {
    /// When the last tick ran, in milliseconds of the caller's time base.
    pub last_tick_ms: u64,
    /// The upstream as a whole.
    pub total: TotalTraffic,
    /// Each backend, in the order they were added.
    pub backends: Vec<BackendTraffic>,
}

/// A rejected [`SeriesConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesConfigError {
    msg: &'static str,
}

impl fmt::Display for SeriesConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.msg)
    }
}

impl std::error::Error for SeriesConfigError {}

/// How often samples are taken and how many are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesConfig {
    tick: Duration,
    history: Duration,
    recent_ticks: usize,
}

impl SeriesConfig {
    /// Samples every `tick`, keeping `history` worth of them
    /// (`analysis.tick` and `analysis.history`). `tick` must be positive
    /// and `history` at least one tick.
    pub fn new(tick: Duration, history: Duration) -> Result<Self, SeriesConfigError> {
        if tick.is_zero() {
            return Err(SeriesConfigError {
                msg: "tick must be longer than zero",
            });
        }
        if history < tick {
            return Err(SeriesConfigError {
                msg: "history must be at least one tick",
            });
        }
        Ok(SeriesConfig {
            tick,
            history,
            recent_ticks: DEFAULT_RECENT_TICKS,
        })
    }

    /// Sets how many ticks the recent window spans (at least 1).
    pub fn with_recent_ticks(mut self, ticks: usize) -> Self {
        self.recent_ticks = ticks.max(1);
        self
    }

    /// The tick period.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// The history length.
    pub fn history(&self) -> Duration {
        self.history
    }

    /// Ticks in the recent window.
    pub fn recent_ticks(&self) -> usize {
        self.recent_ticks
    }

    /// Samples kept per series: `ceil(history / tick)`, at most
    /// [`MAX_HISTORY_SAMPLES`].
    pub fn capacity(&self) -> usize {
        let n = self.history.as_nanos().div_ceil(self.tick.as_nanos());
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_HISTORY_SAMPLES)
    }
}

/// One tick's delta, kept for the recent window.
#[derive(Clone, Debug)]
struct Recent {
    requests: u64,
    errors: u64,
    elapsed_ns: u64,
    latency: SparseHistogram,
}

#[derive(Debug)]
struct BackendSeries {
    key: String,
    stats: Arc<BackendStats>,
    since: Nanos,
    prev_requests: u64,
    prev_errors: u64,
    prev_latency: Histogram,
    samples: Ring<Sample>,
    recent: Ring<Recent>,
}

/// Turns the cumulative [`BackendStats`] of an upstream's backends into
/// per-tick [`Sample`]s, per backend and for the upstream total, kept for
/// `history`.
///
/// A background task calls [`tick`](UpstreamSeries::tick) every
/// `analysis.tick` with the current time; each call diffs the counters and
/// latency histograms against the previous call. The series never reads a
/// clock. It is a plain `&mut` structure: share it behind a mutex (ticks are
/// once a second; readers are the admin API).
#[derive(Debug)]
pub struct UpstreamSeries {
    config: SeriesConfig,
    last_tick: Nanos,
    backends: Vec<BackendSeries>,
    total: Ring<Sample>,
    total_recent: Ring<Recent>,
    scratch: Histogram,
}

impl UpstreamSeries {
    /// An empty series whose first interval starts at `now`.
    pub fn new(config: SeriesConfig, now: Nanos) -> Self {
        UpstreamSeries {
            config,
            last_tick: now,
            backends: Vec::new(),
            total: Ring::new(config.capacity()),
            total_recent: Ring::new(config.recent_ticks),
            scratch: Histogram::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> SeriesConfig {
        self.config
    }

    /// When the last tick ran (or the series was created).
    pub fn last_tick(&self) -> Nanos {
        self.last_tick
    }

    /// Starts following `stats` under `key` (its address) from `now`:
    /// what it recorded before is not part of any sample. Replaces (and
    /// restarts) a backend already under `key`; returns whether one was.
    pub fn add_backend(
        &mut self,
        key: impl Into<String>,
        stats: Arc<BackendStats>,
        now: Nanos,
    ) -> bool {
        let key = key.into();
        let replaced = self.remove_backend(&key);
        let prev_latency = stats.latency_histogram();
        self.backends.push(BackendSeries {
            key,
            since: now,
            prev_requests: stats.requests_total(),
            prev_errors: stats.errors_total(),
            prev_latency,
            stats,
            samples: Ring::new(self.config.capacity()),
            recent: Ring::new(self.config.recent_ticks),
        });
        replaced
    }

    /// Stops following the backend under `key`; returns whether there was one.
    pub fn remove_backend(&mut self, key: &str) -> bool {
        let before = self.backends.len();
        self.backends.retain(|b| b.key != key);
        self.backends.len() != before
    }

    /// The keys of the followed backends, in the order they were added.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.backends.iter().map(|b| b.key.as_str())
    }

    /// Closes the interval ending at `now`: appends one sample per backend
    /// and one for the total. Returns `false` (and records nothing) if `now`
    /// is not after the previous tick.
    pub fn tick(&mut self, now: Nanos) -> bool {
        if now <= self.last_tick {
            return false;
        }
        let mut total_latency = Histogram::new();
        let (mut total_requests, mut total_errors, mut total_in_flight) = (0u64, 0u64, 0u64);
        for b in &mut self.backends {
            let elapsed_ns = now.saturating_since(b.since);
            b.since = now;
            let requests = b.stats.requests_total();
            let errors = b.stats.errors_total();
            let in_flight = b.stats.in_flight();
            b.stats.latency_histogram_into(&mut self.scratch);
            let delta = self.scratch.delta_since(&b.prev_latency);
            std::mem::swap(&mut b.prev_latency, &mut self.scratch);
            let d_requests = requests.saturating_sub(b.prev_requests);
            let d_errors = errors.saturating_sub(b.prev_errors);
            b.prev_requests = requests;
            b.prev_errors = errors;

            b.samples.push(make_sample(
                now, elapsed_ns, d_requests, d_errors, &delta, in_flight,
            ));
            b.recent.push(Recent {
                requests: d_requests,
                errors: d_errors,
                elapsed_ns,
                latency: delta.to_sparse(),
            });
            total_latency.merge(&delta);
            total_requests = total_requests.saturating_add(d_requests);
            total_errors = total_errors.saturating_add(d_errors);
            total_in_flight = total_in_flight.saturating_add(in_flight);
        }
        let elapsed_ns = now.saturating_since(self.last_tick);
        self.total.push(make_sample(
            now,
            elapsed_ns,
            total_requests,
            total_errors,
            &total_latency,
            total_in_flight,
        ));
        self.total_recent.push(Recent {
            requests: total_requests,
            errors: total_errors,
            elapsed_ns,
            latency: total_latency.to_sparse(),
        });
        self.last_tick = now;
        true
    }

    /// The samples of the backend under `key`, oldest first.
    pub fn backend_samples(&self, key: &str) -> Option<&Ring<Sample>> {
        self.find(key).map(|b| &b.samples)
    }

    /// The upstream-total samples, oldest first.
    pub fn total_samples(&self) -> &Ring<Sample> {
        &self.total
    }

    /// The latency histogram of the recent window of the backend under `key`.
    pub fn recent_latency(&self, key: &str) -> Option<Histogram> {
        self.find(key).map(|b| merge_recent(&b.recent))
    }

    /// The status figures of the backend under `key`.
    pub fn summary(&self, key: &str) -> Option<BackendSummary> {
        self.find(key).map(summarise)
    }

    /// The upstream's recent window over all backends.
    pub fn total_summary(&self) -> WindowSummary {
        window_summary(&self.total_recent)
    }

    /// Everything for the traffic API, with at most `max_samples` of the
    /// newest samples per series.
    pub fn snapshot(&self, max_samples: usize) -> TrafficSnapshot {
        TrafficSnapshot {
            last_tick_ms: self.last_tick.as_u64() / 1_000_000,
            total: TotalTraffic {
                in_flight: self.backends.iter().map(|b| b.stats.in_flight()).sum(),
                window: self.total_summary(),
                series: self.total.latest(max_samples).copied().collect(),
            },
            backends: self
                .backends
                .iter()
                .map(|b| BackendTraffic {
                    backend: b.key.clone(),
                    summary: summarise(b),
                    series: b.samples.latest(max_samples).copied().collect(),
                })
                .collect(),
        }
    }

    fn find(&self, key: &str) -> Option<&BackendSeries> {
        self.backends.iter().find(|b| b.key == key)
    }
}

fn summarise(b: &BackendSeries) -> BackendSummary {
    BackendSummary {
        counters: b.stats.counters(),
        window: window_summary(&b.recent),
    }
}

fn merge_recent(recent: &Ring<Recent>) -> Histogram {
    let mut h = Histogram::new();
    for r in recent.iter() {
        r.latency.add_to(&mut h);
    }
    h
}

fn window_summary(recent: &Ring<Recent>) -> WindowSummary {
    let (mut requests, mut errors, mut elapsed_ns) = (0u64, 0u64, 0u64);
    for r in recent.iter() {
        requests = requests.saturating_add(r.requests);
        errors = errors.saturating_add(r.errors);
        elapsed_ns = elapsed_ns.saturating_add(r.elapsed_ns);
    }
    let latency = merge_recent(recent);
    let secs = elapsed_ns as f64 / 1e9;
    WindowSummary {
        rps: per_sec(requests, secs),
        errors_per_sec: per_sec(errors, secs),
        error_rate: if requests > 0 {
            errors as f64 / requests as f64
        } else {
            0.0
        },
        latency_p50_ms: latency.quantile(0.5).map(duration_ms),
        latency_p99_ms: latency.quantile(0.99).map(duration_ms),
    }
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

fn make_sample(
    now: Nanos,
    elapsed_ns: u64,
    requests: u64,
    errors: u64,
    latency: &Histogram,
    in_flight: u64,
) -> Sample {
    let secs = elapsed_ns as f64 / 1e9;
    Sample {
        at_ms: now.as_u64() / 1_000_000,
        interval_s: secs,
        requests,
        errors,
        rps: per_sec(requests, secs),
        errors_per_sec: per_sec(errors, secs),
        p50_ms: latency.quantile(0.5).map(duration_ms),
        p99_ms: latency.quantile(0.99).map(duration_ms),
        mean_ms: latency.mean().map(duration_ms),
        in_flight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{FailureKind, Outcome};

    const SEC: u64 = 1_000_000_000;

    fn series(history_secs: u64) -> UpstreamSeries {
        let cfg = SeriesConfig::new(Duration::from_secs(1), Duration::from_secs(history_secs))
            .unwrap()
            .with_recent_ticks(3);
        UpstreamSeries::new(cfg, Nanos(100 * SEC))
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.016 + 1e-9
    }

    #[test]
    fn config_validation_and_capacity() {
        assert!(SeriesConfig::new(Duration::ZERO, Duration::from_secs(1)).is_err());
        let e = SeriesConfig::new(Duration::from_secs(2), Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.to_string(), "history must be at least one tick");
        let c = SeriesConfig::new(Duration::from_secs(1), Duration::from_secs(3600)).unwrap();
        assert_eq!(c.capacity(), 3600);
        let c = SeriesConfig::new(Duration::from_millis(300), Duration::from_secs(1)).unwrap();
        assert_eq!(c.capacity(), 4);
        let c = SeriesConfig::new(Duration::from_nanos(1), Duration::from_secs(3600)).unwrap();
        assert_eq!(c.capacity(), MAX_HISTORY_SAMPLES);
        assert_eq!(c.with_recent_ticks(0).recent_ticks(), 1);
    }

    #[test]
    fn ring_is_bounded() {
        let mut r = Ring::new(3);
        assert!(r.is_empty());
        for i in 0..10 {
            let evicted = r.push(i);
            assert_eq!(evicted, if i >= 3 { Some(i - 3) } else { None });
            assert!(r.len() <= 3);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![7, 8, 9]);
        assert_eq!(r.latest(2).copied().collect::<Vec<_>>(), vec![8, 9]);
        assert_eq!(r.latest(99).count(), 3);
        assert_eq!(r.last(), Some(&9));
        assert_eq!(Ring::<u8>::new(0).capacity(), 1);
        r.clear();
        assert!(r.is_empty());
    }

    #[test]
    fn per_second_diffs_with_explicit_times() {
        let mut s = series(5);
        let a = Arc::new(BackendStats::new());
        let b = Arc::new(BackendStats::new());
        // Traffic before the backend is followed is not part of any sample.
        a.record(Outcome::Success, Duration::from_millis(500));
        s.add_backend("a", Arc::clone(&a), Nanos(100 * SEC));
        s.add_backend("b", Arc::clone(&b), Nanos(100 * SEC));

        for _ in 0..10 {
            a.record(Outcome::Success, Duration::from_millis(10));
        }
        a.record(
            Outcome::Failure(FailureKind::ServerError),
            Duration::from_millis(100),
        );
        let _held = b.start();
        assert!(s.tick(Nanos(101 * SEC)));

        let sa = *s.backend_samples("a").unwrap().last().unwrap();
        assert_eq!(sa.at_ms, 101_000);
        assert_eq!(sa.requests, 11);
        assert_eq!(sa.errors, 1);
        assert!(close(sa.rps, 11.0));
        assert!(close(sa.p50_ms.unwrap(), 10.0));
        assert!(close(sa.p99_ms.unwrap(), 100.0));
        assert_eq!(sa.in_flight, 0);
        let sb = *s.backend_samples("b").unwrap().last().unwrap();
        assert_eq!(sb.requests, 0);
        assert_eq!(sb.p99_ms, None);
        assert_eq!(sb.in_flight, 1);
        let t = *s.total_samples().last().unwrap();
        assert_eq!((t.requests, t.errors, t.in_flight), (11, 1, 1));

        // Half a second later: 5 more requests on b => 10 rps.
        for _ in 0..5 {
            b.record(Outcome::Success, Duration::from_millis(40));
        }
        assert!(s.tick(Nanos(101 * SEC + SEC / 2)));
        let sb = *s.backend_samples("b").unwrap().last().unwrap();
        assert_eq!(sb.requests, 5);
        assert!(close(sb.rps, 10.0));
        assert!(close(sb.interval_s, 0.5));
        assert!(close(sb.p50_ms.unwrap(), 40.0));
        let sa = *s.backend_samples("a").unwrap().last().unwrap();
        assert_eq!(sa.requests, 0);

        // Time that does not advance records nothing.
        assert!(!s.tick(Nanos(101 * SEC)));
        assert_eq!(s.total_samples().len(), 2);

        // Window: the three last ticks (1.5 s): a 11 requests, b 5.
        let sum_a = s.summary("a").unwrap();
        assert_eq!(sum_a.counters.requests_total, 12);
        assert!(close(sum_a.window.rps, 11.0 / 1.5));
        assert!(close(sum_a.window.error_rate, 1.0 / 11.0));
        assert!(close(sum_a.window.latency_p99_ms.unwrap(), 100.0));
        let total = s.total_summary();
        assert!(close(total.rps, 16.0 / 1.5));
        assert_eq!(s.recent_latency("b").unwrap().count(), 5);
        assert!(s.summary("zzz").is_none());
    }

    #[test]
    fn history_and_window_are_bounded() {
        let mut s = series(4);
        let a = Arc::new(BackendStats::new());
        s.add_backend("a", Arc::clone(&a), Nanos(100 * SEC));
        for i in 1..=20u64 {
            a.record(Outcome::Success, Duration::from_millis(i));
            assert!(s.tick(Nanos((100 + i) * SEC)));
        }
        let samples = s.backend_samples("a").unwrap();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples.iter().next().unwrap().at_ms, 117_000);
        assert_eq!(s.total_samples().len(), 4);
        // Recent window of 3 ticks: latencies 18, 19, 20 ms.
        let h = s.recent_latency("a").unwrap();
        assert_eq!(h.count(), 3);
        assert!(close(s.summary("a").unwrap().window.rps, 1.0));
    }

    #[test]
    fn add_remove_and_snapshot() {
        let mut s = series(60);
        let a = Arc::new(BackendStats::new());
        assert!(!s.add_backend("a", Arc::clone(&a), Nanos(100 * SEC)));
        assert!(s.add_backend("a", Arc::clone(&a), Nanos(100 * SEC)));
        s.add_backend("b", Arc::new(BackendStats::new()), Nanos(100 * SEC));
        assert_eq!(s.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        for i in 1..=5u64 {
            a.record(Outcome::Success, Duration::from_millis(2));
            s.tick(Nanos((100 + i) * SEC));
        }
        let snap = s.snapshot(2);
        assert_eq!(snap.last_tick_ms, 105_000);
        assert_eq!(snap.total.series.len(), 2);
        assert_eq!(snap.backends.len(), 2);
        assert_eq!(snap.backends[0].series.len(), 2);
        let json = serde_json::to_value(&snap).unwrap();
        let backend = &json["backends"][0];
        assert_eq!(backend["backend"], "a");
        assert_eq!(backend["requests_total"], 5);
        assert_eq!(backend["errors_total"], 0);
        assert_eq!(backend["in_flight"], 0);
        assert!(backend["latency_ewma_ms"].as_f64().unwrap() > 1.9);
        assert!(backend["latency_p99_ms"].as_f64().unwrap() > 1.9);
        assert!(backend["rps"].as_f64().is_some());
        assert!(json["backends"][1]["latency_p99_ms"].is_null());
        assert!(json["total"]["series"][1]["p99_ms"].as_f64().is_some());
        assert!(s.remove_backend("a"));
        assert!(!s.remove_backend("a"));
        assert!(s.backend_samples("a").is_none());
    }
}
