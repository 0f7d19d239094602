//! One backend as the balancer sees it: its service, weight, health and live statistics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use smartlb_balance::algorithms::Adaptive;
use smartlb_balance::{Endpoints, Nanos, PeakEwma, hash_bytes};
use smartlb_health::{BackendHealth, HealthState};
use smartlb_traffic::BackendStats;

/// Default decay of the peak-EWMA latency estimate (as tower and linkerd use), read by
/// `p2c-ewma`; `adaptive` reads a second estimate with `Adaptive::LATENCY_DECAY` (3 s).
pub(crate) const EWMA_DECAY: Duration = Duration::from_secs(10);
/// The largest factor the traffic analysis may put on a configured weight (the weight
/// controller's `max_factor`).
const MAX_ANALYSIS_FACTOR: f64 = 4.0;
/// Cost assumed for an endpoint without latency samples (tower's default).
pub(crate) const EWMA_DEFAULT_NS: f64 = 30_000_000.0;
/// Latency recorded for a connect error, reset or timeout, so that a backend failing fast
/// never looks fast to latency-aware algorithms.
pub(crate) const FAILURE_LATENCY: Duration = Duration::from_secs(1);

/// One endpoint of a balanced set: a service `S` plus everything the balancer reads about it.
///
/// Shared by `Arc` between the request path (which records into it) and the background
/// tasks (health checks, statistics ticks, the admin API).
#[derive(Debug)]
pub struct Endpoint<S> {
    id: u64,
    address: String,
    configured_weight: AtomicU32,
    backup: bool,
    service: S,
    metrics: Option<smartlb_admin::metrics::BackendMetrics>,
    /// The traffic analysis's capacity factor (f64 bits; 1.0 until the analyser decides).
    analysis_factor: AtomicU64,
    stats: Arc<BackendStats>,
    health: Arc<BackendHealth>,
    ewma: PeakEwma,
    /// The faster estimate `adaptive` reads (`Adaptive::LATENCY_DECAY`).
    recent: PeakEwma,
}

impl<S> Endpoint<S> {
    /// A new endpoint named `address` (used in logs, metrics and the status API).
    pub fn new(
        address: impl Into<String>,
        configured_weight: u32,
        backup: bool,
        service: S,
        health: Arc<BackendHealth>,
    ) -> Self {
        let address = address.into();
        Self {
            id: hash_bytes(address.as_bytes()),
            address,
            configured_weight: AtomicU32::new(configured_weight),
            backup,
            service,
            metrics: None,
            analysis_factor: AtomicU64::new(1.0f64.to_bits()),
            stats: Arc::new(BackendStats::new()),
            health,
            ewma: PeakEwma::new(EWMA_DECAY, EWMA_DEFAULT_NS),
            recent: PeakEwma::new(Adaptive::LATENCY_DECAY, EWMA_DEFAULT_NS),
        }
    }

    /// The address (or name) of the endpoint.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A stable identity derived from the address.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Records this endpoint's Prometheus series under `upstream` (the proxy's upstreams
    /// do; embedders choose).
    pub fn with_metrics(mut self, upstream: &str) -> Self {
        self.metrics = Some(smartlb_admin::metrics::BackendMetrics::new(
            upstream,
            &self.address,
        ));
        self
    }

    /// The endpoint's Prometheus series, when it records them.
    pub fn metrics(&self) -> Option<&smartlb_admin::metrics::BackendMetrics> {
        self.metrics.as_ref()
    }

    /// The configured weight.
    pub fn configured_weight(&self) -> u32 {
        self.configured_weight.load(Ordering::Relaxed)
    }

    /// The traffic analysis's factor on this endpoint's weight (1.0 = no change).
    pub fn analysis_factor(&self) -> f64 {
        f64::from_bits(self.analysis_factor.load(Ordering::Relaxed))
    }

    /// Sets the traffic analysis's factor (clamped to `0..=4`, the weight controller's
    /// range; it keeps a probing minimum itself). Factors above 1 matter: the controller
    /// normalises them to a geometric mean of 1, so a backend that loses share is
    /// matched by peers above 1, and cutting those at 1 would hide part of the move.
    pub fn set_analysis_factor(&self, factor: f64) {
        let factor = if factor.is_finite() {
            factor.clamp(0.0, MAX_ANALYSIS_FACTOR)
        } else {
            1.0
        };
        self.analysis_factor
            .store(factor.to_bits(), Ordering::Relaxed);
    }

    /// Changes the configured weight (the admin API's re-weighting); takes effect at the
    /// next pick.
    pub fn set_configured_weight(&self, weight: u32) {
        self.configured_weight.store(weight, Ordering::Relaxed);
    }

    /// Whether this endpoint is a backup.
    pub fn is_backup(&self) -> bool {
        self.backup
    }

    /// The endpoint's service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// Live request statistics.
    pub fn stats(&self) -> &Arc<BackendStats> {
        &self.stats
    }

    /// Health state (active checks, outlier detection, draining, slow start).
    pub fn health(&self) -> &Arc<BackendHealth> {
        &self.health
    }

    /// Peak-EWMA latency in nanoseconds, decayed to `now`.
    pub fn latency(&self, now: Nanos) -> Option<f64> {
        self.ewma.get(now)
    }

    /// The weight the balancer uses at `now`: configured weight × health and slow-start
    /// factor × the traffic analysis's capacity factor.
    pub fn effective_weight(&self, now: Nanos) -> f64 {
        f64::from(self.configured_weight())
            * self.health.weight_factor(now)
            * self.analysis_factor()
    }

    /// The state reported to operators.
    pub fn state(&self, now: Nanos) -> HealthState {
        self.health.state(now)
    }

    /// The same backend over another service (a reload changed how it is reached): the
    /// new endpoint shares this one's health state and statistics and keeps its weights;
    /// its latency estimate starts afresh and it has no metric series until
    /// [`Endpoint::with_metrics`].
    pub(crate) fn with_service<T>(&self, service: T) -> Endpoint<T> {
        Endpoint {
            id: self.id,
            address: self.address.clone(),
            configured_weight: AtomicU32::new(self.configured_weight()),
            backup: self.backup,
            service,
            metrics: None,
            analysis_factor: AtomicU64::new(self.analysis_factor.load(Ordering::Relaxed)),
            stats: self.stats.clone(),
            health: self.health.clone(),
            ewma: PeakEwma::new(EWMA_DECAY, EWMA_DEFAULT_NS),
            recent: PeakEwma::new(Adaptive::LATENCY_DECAY, EWMA_DEFAULT_NS),
        }
    }

    pub(crate) fn observe_latency(&self, latency: Duration, now: Nanos) {
        let ns = latency.as_nanos() as f64;
        self.ewma.observe(ns, now);
        self.recent.observe(ns, now);
    }
}

/// The balancer's view of a slice of endpoints at one instant.
///
/// Eligibility is computed live: an endpoint is eligible when its health says it may take
/// new requests, it belongs to the active tier (primaries, or backups when no primary is
/// available), and it was not already tried for this request.
pub(crate) struct View<'a, S> {
    pub(crate) endpoints: &'a [Arc<Endpoint<S>>],
    pub(crate) now: Nanos,
    pub(crate) use_backups: bool,
    pub(crate) exclude: &'a [u64],
}

impl<'a, S> View<'a, S> {
    pub(crate) fn new(endpoints: &'a [Arc<Endpoint<S>>], now: Nanos, exclude: &'a [u64]) -> Self {
        let use_backups = !endpoints
            .iter()
            .any(|e| !e.backup && e.health.is_available(now));
        Self {
            endpoints,
            now,
            use_backups,
            exclude,
        }
    }
}

impl<S> Endpoints for View<'_, S> {
    #[inline]
    fn len(&self) -> usize {
        self.endpoints.len()
    }

    #[inline]
    fn weight(&self, i: usize) -> f64 {
        self.endpoints[i].effective_weight(self.now)
    }

    #[inline]
    fn is_eligible(&self, i: usize) -> bool {
        let e = &self.endpoints[i];
        e.backup == self.use_backups
            && e.health.is_available(self.now)
            && !self.exclude.contains(&e.id)
    }

    #[inline]
    fn in_flight(&self, i: usize) -> u64 {
        self.endpoints[i].stats.in_flight()
    }

    #[inline]
    fn latency(&self, i: usize, now: Nanos) -> Option<f64> {
        self.endpoints[i].ewma.get(now)
    }

    #[inline]
    fn recent_latency(&self, i: usize, now: Nanos) -> Option<f64> {
        self.endpoints[i].recent.get(now)
    }

    #[inline]
    fn id(&self, i: usize) -> u64 {
        self.endpoints[i].id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smartlb_health::{EjectionBudget, HealthConfig};

    #[test]
    fn adaptive_reads_an_estimate_that_comes_down_faster() {
        let health = Arc::new(BackendHealth::new(
            &HealthConfig::default(),
            Arc::new(EjectionBudget::new(50)),
        ));
        let endpoint = Endpoint::new("127.0.0.1:1", 1, false, (), health);
        let endpoints = [Arc::new(endpoint)];
        let view = View::new(&endpoints, Nanos::ZERO, &[]);
        // 300 ms answers, then it recovers: 1 ms answers every 100 ms for 10 s.
        endpoints[0].observe_latency(Duration::from_millis(300), Nanos::from_secs(1));
        for k in 1..=100u64 {
            endpoints[0]
                .observe_latency(Duration::from_millis(1), Nanos::from_millis(1000 + 100 * k));
        }
        let now = Nanos::from_secs(11);
        let slow = view.latency(0, now).unwrap_or(f64::NAN);
        let fast = view.recent_latency(0, now).unwrap_or(f64::NAN);
        // 10 s decay: about 300 × e^-1 ≈ 110 ms left; 3 s: about 300 × e^-3.3 ≈ 11 ms.
        assert!(slow > 80e6, "{slow}");
        assert!(fast < 20e6, "{fast}");
    }
}
