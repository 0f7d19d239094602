//! Anomaly detection: request-rate spikes and drops outside the forecast
//! band, and backends whose latency or error rate departs from their own
//! history or from their peers.

use std::fmt;

use serde::Serialize;
use smartlb_balance::Nanos;

use crate::ewma::Ewma;
use crate::series::Ring;

/// What kind of departure an [`Anomaly`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyKind {
    /// The upstream's request rate is above the forecast band.
    RateSpike,
    /// The upstream's request rate is below the forecast band.
    RateDrop,
    /// A backend's latency departs from its own history or from its peers.
    Latency,
    /// A backend's error rate departs from its own history or from its peers.
    ErrorRate,
}

impl AnomalyKind {
    /// Number of kinds.
    pub const COUNT: usize = 4;

    /// All kinds, in [`index`](AnomalyKind::index) order.
    pub const ALL: [AnomalyKind; AnomalyKind::COUNT] = [
        AnomalyKind::RateSpike,
        AnomalyKind::RateDrop,
        AnomalyKind::Latency,
        AnomalyKind::ErrorRate,
    ];

    /// A stable name, usable as a metrics label: `rate-spike`, `rate-drop`,
    /// `latency`, `error-rate`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::RateSpike => "rate-spike",
            AnomalyKind::RateDrop => "rate-drop",
            AnomalyKind::Latency => "latency",
            AnomalyKind::ErrorRate => "error-rate",
        }
    }

    /// A dense index in `0..COUNT`.
    pub const fn index(self) -> usize {
        match self {
            AnomalyKind::RateSpike => 0,
            AnomalyKind::RateDrop => 1,
            AnomalyKind::Latency => 2,
            AnomalyKind::ErrorRate => 3,
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an anomalous value was compared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reference {
    /// The request-rate forecast and its error band.
    Forecast,
    /// The backend's own recent history.
    OwnHistory,
    /// The median of the other backends of the upstream.
    Peers,
}

impl Reference {
    /// `forecast`, `own history` or `peers`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reference::Forecast => "forecast",
            Reference::OwnHistory => "own history",
            Reference::Peers => "peers",
        }
    }
}

/// One detected anomaly, reported once when it starts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    /// When it was detected, in milliseconds of the caller's time base.
    pub at_ms: u64,
    /// What departed.
    pub kind: AnomalyKind,
    /// The backend concerned (`None` for the upstream's request rate).
    pub backend: Option<String>,
    /// What the value was compared with.
    pub reference: Reference,
    /// The value seen (requests/s, latency in ms, or error rate).
    pub observed: f64,
    /// The value expected from the reference.
    pub expected: f64,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, unit) = match self.kind {
            AnomalyKind::RateSpike => ("request rate spike", " req/s"),
            AnomalyKind::RateDrop => ("request rate drop", " req/s"),
            AnomalyKind::Latency => ("latency departs", " ms"),
            AnomalyKind::ErrorRate => ("error rate departs", ""),
        };
        match &self.backend {
            Some(b) => write!(f, "backend {b}: {what}")?,
            None => f.write_str(what)?,
        }
        write!(
            f,
            ": {:.3}{unit} against {:.3}{unit} expected from {}",
            self.observed,
            self.expected,
            self.reference.as_str()
        )
    }
}

/// Thresholds of the [`AnomalyDetector`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AnomalyConfig {
    /// Ticks of history needed before anything is judged.
    pub warmup_ticks: u32,
    /// A rate outside `forecast ± rate_sigmas × RMSE` is anomalous...
    pub rate_sigmas: f64,
    /// ...and only if it also differs from the forecast by this share of it
    /// (0.25 = 25 %)...
    pub rate_min_change: f64,
    /// ...and by at least this many requests per second.
    pub rate_min_rps: f64,
    /// A backend's latency this many times its own usual or its peers'
    /// median is anomalous (if also `latency_sigmas` above its usual).
    pub latency_ratio: f64,
    /// Standard deviations above its usual latency needed as well, so that
    /// a naturally noisy backend is not flagged.
    pub latency_sigmas: f64,
    /// Error-rate increase over the backend's usual or its peers' median
    /// that is anomalous (0.05 = 5 percentage points).
    pub error_rate_delta: f64,
    /// Requests a backend must have finished in a tick to be judged.
    pub min_requests: u64,
    /// Anomalous ticks in a row before an anomaly is reported.
    pub confirm_ticks: u32,
    /// Normal ticks in a row before an anomaly is over (and may be
    /// reported again).
    pub clear_ticks: u32,
    /// Half-life, in ticks, of a backend's usual latency and error rate.
    pub history_half_life: f64,
    /// Anomalies kept for [`AnomalyDetector::recent`].
    pub keep_recent: usize,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            warmup_ticks: 30,
            rate_sigmas: 4.0,
            rate_min_change: 0.25,
            rate_min_rps: 5.0,
            latency_ratio: 2.0,
            latency_sigmas: 4.0,
            error_rate_delta: 0.05,
            min_requests: 20,
            confirm_ticks: 2,
            clear_ticks: 10,
            history_half_life: 300.0,
            keep_recent: 100,
        }
    }
}

/// What the detector is told about one backend for one tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackendObservation<'a> {
    /// The backend's key (its address).
    pub key: &'a str,
    /// Exchanges finished in the tick.
    pub requests: u64,
    /// Failed exchanges in the tick.
    pub errors: u64,
    /// Typical latency of the tick in ms (median or mean), if any.
    pub latency_ms: Option<f64>,
}

/// Open/closed state of one (subject, kind) with hysteresis: an anomaly
/// opens after `confirm` bad ticks in a row and closes after `clear` good
/// ones; it is reported once, when it opens.
#[derive(Clone, Copy, Debug, Default)]
struct Latch {
    open: bool,
    bad: u32,
    good: u32,
}

impl Latch {
    /// Feeds one tick; returns true when the anomaly opens now.
    fn step(&mut self, anomalous: bool, confirm: u32, clear: u32) -> bool {
        if anomalous {
            self.good = 0;
            self.bad = self.bad.saturating_add(1);
            if !self.open && self.bad >= confirm.max(1) {
                self.open = true;
                return true;
            }
        } else {
            self.bad = 0;
            self.good = self.good.saturating_add(1);
            if self.open && self.good >= clear.max(1) {
                self.open = false;
            }
        }
        false
    }

    /// Whether the subject is anomalous or about to be (its history should
    /// not learn from these ticks).
    fn suspect(&self) -> bool {
        self.open || self.bad > 0
    }
}

#[derive(Clone, Debug)]
struct BackendTrack {
    key: String,
    ticks: u32,
    latency: Ewma,
    errors: Ewma,
    latency_latch: Latch,
    error_latch: Latch,
    seen: bool,
}

/// Finds anomalies in per-tick figures: the upstream's request rate against
/// its forecast band, and each backend's latency and error rate against its
/// own history and against its peers (the "gray failure" of a backend that
/// still answers health checks but serves worse than the others).
///
/// Each anomaly goes through a latch with hysteresis: it is reported once
/// when it has lasted `confirm_ticks`, stays open while it lasts and closes
/// after `clear_ticks` normal ticks; only then can it be reported again.
/// While a backend is suspect its history does not learn from it, so a
/// lasting fault does not become its new normal. Counts per kind are kept
/// for metrics ([`counts`](AnomalyDetector::counts)) and the latest
/// anomalies for the traffic API ([`recent`](AnomalyDetector::recent)).
///
/// Time is an input: the detector never reads a clock.
///
/// ```
/// use smartlb_traffic::analysis::{AnomalyConfig, AnomalyDetector, AnomalyKind};
/// use smartlb_traffic::Nanos;
/// let mut d = AnomalyDetector::new(AnomalyConfig::default());
/// let mut found = Vec::new();
/// for t in 0..100u64 {
///     let actual = if t >= 60 { 500.0 } else { 100.0 };
///     found.extend(d.observe_rate(Nanos::from_secs(t), actual, Some((100.0, 5.0))));
/// }
/// assert_eq!(found.len(), 1);
/// assert_eq!(found[0].kind, AnomalyKind::RateSpike);
/// assert_eq!(d.count(AnomalyKind::RateSpike), 1);
/// ```
#[derive(Clone, Debug)]
pub struct AnomalyDetector {
    cfg: AnomalyConfig,
    rate_ticks: u32,
    spike: Latch,
    drop: Latch,
    backends: Vec<BackendTrack>,
    counts: [u64; AnomalyKind::COUNT],
    recent: Ring<Anomaly>,
}

impl AnomalyDetector {
    /// A detector with the given thresholds.
    pub fn new(cfg: AnomalyConfig) -> Self {
        AnomalyDetector {
            cfg,
            rate_ticks: 0,
            spike: Latch::default(),
            drop: Latch::default(),
            backends: Vec::new(),
            counts: [0; AnomalyKind::COUNT],
            recent: Ring::new(cfg.keep_recent),
        }
    }

    /// The thresholds.
    pub fn config(&self) -> &AnomalyConfig {
        &self.cfg
    }

    /// Judges one tick's request rate against `forecast = (expected, rmse)`
    /// (the one-step forecast made before the tick, and its recent error).
    /// Returns the anomaly if one starts now.
    pub fn observe_rate(
        &mut self,
        now: Nanos,
        actual: f64,
        forecast: Option<(f64, f64)>,
    ) -> Option<Anomaly> {
        self.rate_ticks = self.rate_ticks.saturating_add(1);
        let (expected, rmse) = forecast?;
        if !actual.is_finite() || !expected.is_finite() || self.rate_ticks <= self.cfg.warmup_ticks
        {
            return None;
        }
        let width = (self.cfg.rate_sigmas * rmse.max(0.0))
            .max(self.cfg.rate_min_change * expected.abs())
            .max(self.cfg.rate_min_rps);
        let (confirm, clear) = (self.cfg.confirm_ticks, self.cfg.clear_ticks);
        let spike = self.spike.step(actual > expected + width, confirm, clear);
        let drop = self.drop.step(actual < expected - width, confirm, clear);
        let kind = if spike {
            AnomalyKind::RateSpike
        } else if drop {
            AnomalyKind::RateDrop
        } else {
            return None;
        };
        Some(self.report(Anomaly {
            at_ms: now.as_u64() / 1_000_000,
            kind,
            backend: None,
            reference: Reference::Forecast,
            observed: actual,
            expected,
        }))
    }

    /// Whether the request rate is in an open spike or drop anomaly.
    pub fn rate_anomalous(&self) -> bool {
        self.spike.open || self.drop.open
    }

    /// Judges one tick of every backend. Backends not seen before are
    /// followed from now; backends missing from `observations` are
    /// forgotten. Returns the anomalies that start now.
    pub fn observe_backends(
        &mut self,
        now: Nanos,
        observations: &[BackendObservation<'_>],
    ) -> Vec<Anomaly> {
        self.backends.iter_mut().for_each(|b| b.seen = false);
        for o in observations {
            if !self.backends.iter().any(|b| b.key == o.key) {
                self.backends.push(BackendTrack {
                    key: o.key.to_string(),
                    ticks: 0,
                    latency: Ewma::with_half_life(self.cfg.history_half_life),
                    errors: Ewma::with_half_life(self.cfg.history_half_life),
                    latency_latch: Latch::default(),
                    error_latch: Latch::default(),
                    seen: false,
                });
            }
        }
        // Peer medians over the backends with enough traffic this tick.
        let judged = |o: &&BackendObservation<'_>| o.requests >= self.cfg.min_requests;
        let mut latencies: Vec<(usize, f64)> = Vec::new();
        let mut error_rates: Vec<(usize, f64)> = Vec::new();
        for (k, o) in observations.iter().enumerate().filter(|(_, o)| judged(o)) {
            if let Some(l) = o.latency_ms.filter(|l| l.is_finite()) {
                latencies.push((k, l));
            }
            error_rates.push((k, o.errors as f64 / o.requests as f64));
        }
        let mut found = Vec::new();
        for (k, o) in observations.iter().enumerate() {
            let Some(pos) = self.backends.iter().position(|b| b.key == o.key) else {
                continue;
            };
            let cfg = self.cfg;
            let enough = o.requests >= cfg.min_requests;
            let peer_latency = median_excluding(&latencies, k);
            let peer_errors = median_excluding(&error_rates, k);
            let track = &mut self.backends[pos];
            track.seen = true;
            if !enough {
                continue;
            }
            track.ticks = track.ticks.saturating_add(1);
            let warm = track.ticks > cfg.warmup_ticks;
            let error_rate = o.errors as f64 / o.requests as f64;

            // Latency: against its own history, then against its peers.
            let mut latency_hit = None;
            if let Some(l) = o.latency_ms.filter(|l| l.is_finite()) {
                let usual = track.latency.mean();
                let above_noise = track
                    .latency
                    .z_score(l)
                    .is_none_or(|z| z > cfg.latency_sigmas);
                if warm && !track.latency.is_empty() && above_noise && l > cfg.latency_ratio * usual
                {
                    latency_hit = Some((Reference::OwnHistory, usual));
                } else if let Some(peers) = peer_latency
                    && warm
                    && l > cfg.latency_ratio * peers
                {
                    latency_hit = Some((Reference::Peers, peers));
                }
                if !track.latency_latch.suspect() && latency_hit.is_none() {
                    track.latency.update(l);
                }
            }
            let opens =
                track
                    .latency_latch
                    .step(latency_hit.is_some(), cfg.confirm_ticks, cfg.clear_ticks);
            if let (true, Some((reference, expected)), Some(l)) = (opens, latency_hit, o.latency_ms)
            {
                found.push(Anomaly {
                    at_ms: now.as_u64() / 1_000_000,
                    kind: AnomalyKind::Latency,
                    backend: Some(o.key.to_string()),
                    reference,
                    observed: l,
                    expected,
                });
            }

            // Error rate: against its own history and its peers.
            let usual = track.errors.mean();
            let mut error_hit = None;
            if warm && o.errors >= 3 {
                if error_rate > usual + cfg.error_rate_delta {
                    error_hit = Some((Reference::OwnHistory, usual));
                } else if let Some(peers) = peer_errors
                    && error_rate > peers + cfg.error_rate_delta
                {
                    error_hit = Some((Reference::Peers, peers));
                }
            }
            if !track.error_latch.suspect() && error_hit.is_none() {
                track.errors.update(error_rate);
            }
            let opens =
                track
                    .error_latch
                    .step(error_hit.is_some(), cfg.confirm_ticks, cfg.clear_ticks);
            if let (true, Some((reference, expected))) = (opens, error_hit) {
                found.push(Anomaly {
                    at_ms: now.as_u64() / 1_000_000,
                    kind: AnomalyKind::ErrorRate,
                    backend: Some(o.key.to_string()),
                    reference,
                    observed: error_rate,
                    expected,
                });
            }
        }
        self.backends.retain(|b| b.seen);
        found.into_iter().map(|a| self.report(a)).collect()
    }

    fn report(&mut self, a: Anomaly) -> Anomaly {
        if let Some(c) = self.counts.get_mut(a.kind.index()) {
            *c = c.saturating_add(1);
        }
        self.recent.push(a.clone());
        a
    }

    /// Anomalies of `kind` reported so far.
    pub fn count(&self, kind: AnomalyKind) -> u64 {
        self.counts.get(kind.index()).copied().unwrap_or(0)
    }

    /// Every kind with its count, for metrics.
    pub fn counts(&self) -> [(AnomalyKind, u64); AnomalyKind::COUNT] {
        AnomalyKind::ALL.map(|k| (k, self.count(k)))
    }

    /// The latest anomalies reported, oldest first.
    pub fn recent(&self) -> &Ring<Anomaly> {
        &self.recent
    }

    /// The anomalies open now, as `(backend, kind)` (`None`: the upstream).
    pub fn active(&self) -> Vec<(Option<&str>, AnomalyKind)> {
        let mut out = Vec::new();
        if self.spike.open {
            out.push((None, AnomalyKind::RateSpike));
        }
        if self.drop.open {
            out.push((None, AnomalyKind::RateDrop));
        }
        for b in &self.backends {
            if b.latency_latch.open {
                out.push((Some(b.key.as_str()), AnomalyKind::Latency));
            }
            if b.error_latch.open {
                out.push((Some(b.key.as_str()), AnomalyKind::ErrorRate));
            }
        }
        out
    }
}

/// The median of the values whose index is not `skip`, if there are at
/// least two of them.
fn median_excluding(values: &[(usize, f64)], skip: usize) -> Option<f64> {
    let mut v: Vec<f64> = values
        .iter()
        .filter(|(k, _)| *k != skip)
        .map(|(_, x)| *x)
        .collect();
    if v.len() < 2 {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(key: &str, requests: u64, errors: u64, latency_ms: f64) -> BackendObservation<'_> {
        BackendObservation {
            key,
            requests,
            errors,
            latency_ms: Some(latency_ms),
        }
    }

    fn wobble(t: u64, k: u64) -> f64 {
        // Deterministic ±5% jitter.
        1.0 + 0.05 * (((t * 7 + k * 13) % 11) as f64 / 5.0 - 1.0)
    }

    #[test]
    fn a_latency_step_is_reported_once() {
        let mut d = AnomalyDetector::new(AnomalyConfig::default());
        let mut found = Vec::new();
        for t in 0..300u64 {
            let slow = if t >= 120 { 5.0 } else { 1.0 };
            let o = [
                obs("a", 100, 0, 10.0 * wobble(t, 0)),
                obs("b", 100, 0, 10.0 * wobble(t, 1)),
                obs("c", 100, 0, 10.0 * slow * wobble(t, 2)),
            ];
            found.extend(d.observe_backends(Nanos::from_secs(t), &o));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        let a = &found[0];
        assert_eq!(a.kind, AnomalyKind::Latency);
        assert_eq!(a.backend.as_deref(), Some("c"));
        assert_eq!(a.reference, Reference::OwnHistory);
        assert_eq!(a.at_ms, 121_000);
        assert!(a.to_string().contains("backend c: latency departs"), "{a}");
        assert_eq!(d.count(AnomalyKind::Latency), 1);
        assert_eq!(d.active(), vec![(Some("c"), AnomalyKind::Latency)]);
        assert_eq!(d.recent().len(), 1);
    }

    #[test]
    fn a_backend_slower_than_its_peers_from_the_start_is_a_peer_anomaly() {
        let mut d = AnomalyDetector::new(AnomalyConfig {
            warmup_ticks: 5,
            ..AnomalyConfig::default()
        });
        let mut found = Vec::new();
        for t in 0..60u64 {
            let o = [
                obs("a", 100, 0, 10.0 * wobble(t, 0)),
                obs("b", 100, 0, 10.0 * wobble(t, 1)),
                obs("c", 100, 0, 50.0 * wobble(t, 2)),
            ];
            found.extend(d.observe_backends(Nanos::from_secs(t), &o));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].reference, Reference::Peers);
    }

    #[test]
    fn an_error_burst_is_reported_once_and_can_recur() {
        let mut d = AnomalyDetector::new(AnomalyConfig::default());
        let mut found = Vec::new();
        for t in 0..200u64 {
            let errors = if (80..90).contains(&t) || (150..160).contains(&t) {
                40
            } else {
                0
            };
            let o = [
                obs("a", 100, errors, 10.0),
                obs("b", 100, 0, 10.0),
                obs("c", 100, 0, 10.0),
            ];
            found.extend(d.observe_backends(Nanos::from_secs(t), &o));
        }
        let kinds: Vec<_> = found.iter().map(|a| (a.kind, a.at_ms)).collect();
        assert_eq!(
            kinds,
            vec![
                (AnomalyKind::ErrorRate, 81_000),
                (AnomalyKind::ErrorRate, 151_000)
            ]
        );
        assert_eq!(d.count(AnomalyKind::ErrorRate), 2);
    }

    #[test]
    fn rate_spike_and_drop_are_reported_once_each() {
        let mut d = AnomalyDetector::new(AnomalyConfig::default());
        let mut found = Vec::new();
        for t in 0..300u64 {
            let actual = match t {
                100..=119 => 400.0,
                200..=219 => 20.0,
                _ => 100.0 * wobble(t, 0),
            };
            found.extend(d.observe_rate(Nanos::from_secs(t), actual, Some((100.0, 3.0))));
        }
        let kinds: Vec<_> = found.iter().map(|a| (a.kind, a.at_ms)).collect();
        assert_eq!(
            kinds,
            vec![
                (AnomalyKind::RateSpike, 101_000),
                (AnomalyKind::RateDrop, 201_000)
            ]
        );
        assert!(!d.rate_anomalous());
        assert_eq!(d.counts().map(|(_, c)| c), [1, 1, 0, 0], "{:?}", d.counts());
        assert!(d.observe_rate(Nanos(0), 1.0, None).is_none());
    }

    #[test]
    fn quiet_backends_are_not_judged_and_missing_ones_are_forgotten() {
        let mut d = AnomalyDetector::new(AnomalyConfig {
            warmup_ticks: 0,
            ..AnomalyConfig::default()
        });
        for t in 0..50u64 {
            let o = [obs("a", 5, 5, 1000.0), obs("b", 100, 0, 1.0)];
            assert!(d.observe_backends(Nanos::from_secs(t), &o).is_empty());
        }
        d.observe_backends(Nanos::from_secs(50), &[obs("b", 100, 0, 1.0)]);
        assert_eq!(d.backends.len(), 1);
        assert_eq!(
            median_excluding(&[(0, 1.0), (1, 3.0), (2, 2.0)], 9),
            Some(2.0)
        );
        assert_eq!(median_excluding(&[(0, 1.0), (1, 3.0)], 0), None);
    }
}
