//! The JSON documents of the admin API and the trait that supplies them.

use serde::{Deserialize, Serialize};

use crate::traffic::{TrafficQuery, TrafficReport};

/// What the admin server asks of the running proxy.
///
/// Implemented by the `smartlb` facade over its live state; called on each admin request,
/// never on the proxy's request path.
pub trait AdminSource: Send + Sync + 'static {
    /// A point-in-time report of every upstream and backend.
    fn status(&self) -> StatusReport;

    /// Whether the proxy is ready for traffic: the configuration is loaded and at least one
    /// backend of every upstream is healthy.
    fn ready(&self) -> bool;

    /// Recent traffic of every upstream for `GET /api/v1/traffic`: per-second series,
    /// forecast and anomalies, each series cut to the newest `query.samples` points.
    ///
    /// The default reports no upstreams, for sources without traffic analysis.
    fn traffic(&self, query: &TrafficQuery) -> TrafficReport {
        let _ = query;
        TrafficReport::default()
    }

    /// The routing table for `GET /api/v1/routes`: each route's match, its split and its
    /// canary's progress.
    ///
    /// The default reports no routes.
    fn routes(&self) -> RoutesReport {
        RoutesReport::default()
    }
}

/// `GET /api/v1/routes`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RoutesReport {
    /// The routes in matching order (the first match wins).
    pub routes: Vec<RouteStatus>,
}

/// One route of [`RoutesReport`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteStatus {
    /// The route's position in the configuration (`PATCH /api/v1/routes/{index}`).
    pub index: usize,
    /// The route's label in metrics: host (or `*`) then path prefix (or `/`).
    pub label: String,
    /// The upstreams requests are split over, with their current weights.
    pub split: Vec<SplitWeight>,
    /// The SLO-gated canary of the route, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStatus>,
}

/// An upstream and its weight in a route's split (also the body items of
/// `PATCH /api/v1/routes/{index}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitWeight {
    /// The upstream's name.
    pub upstream: String,
    /// Its relative weight (a percentage on routes with a canary).
    pub weight: u32,
}

/// Where a route's canary stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CanaryStatus {
    /// The canary upstream.
    pub upstream: String,
    /// Its share now, in percent.
    pub percent: u32,
    /// `advancing`, `promoted` (at 100%), `rolled-back` (at 0% after a broken SLO) or
    /// `manual` (weights set through the API; the canary no longer moves them).
    pub state: String,
    /// Why the last decision was taken (empty before the first).
    pub reason: String,
    /// Evaluations done so far.
    pub evaluations: u64,
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    /// The smartlb version.
    pub version: String,
    /// Seconds since the proxy started.
    pub uptime_seconds: f64,
    /// Which configuration the proxy runs: where it came from and, for an etcd key, the
    /// revision applied last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigVersion>,
    /// Every upstream, in configuration order.
    pub upstreams: Vec<UpstreamStatus>,
}

/// One upstream in a [`StatusReport`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpstreamStatus {
    /// The upstream's name.
    pub name: String,
    /// The selection algorithm, by its configuration name (`p2c-ewma`, ...).
    pub algorithm: String,
    /// Every backend, primaries then backups, in configuration order.
    pub backends: Vec<BackendStatus>,
    /// The traffic anomalies detected recently (the newest 20, oldest first), as in
    /// `GET /api/v1/traffic`.
    #[serde(default)]
    pub anomalies: Vec<crate::traffic::Anomaly>,
}

/// One backend in a [`StatusReport`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendStatus {
    /// `host:port` as configured.
    pub address: String,
    /// `healthy`, `unhealthy`, `ejected`, `draining`, `slow-start` or `backup`.
    pub state: String,
    /// Whether the backend is a backup (used only when no primary is available).
    pub backup: bool,
    /// The weight from the configuration.
    pub configured_weight: u32,
    /// The weight the balancer uses now (configuration × health × slow start).
    pub effective_weight: f64,
    /// Requests outstanding at the backend now.
    pub in_flight: u64,
    /// Requests sent to the backend since start.
    pub requests_total: u64,
    /// Failed requests (connect errors, resets, timeouts, 5xx) since start.
    pub errors_total: u64,
    /// Exponentially weighted mean latency to the response head, in milliseconds.
    pub latency_ewma_ms: f64,
    /// 99th percentile latency over the recent window, in milliseconds.
    pub latency_p99_ms: f64,
}

/// The configuration a proxy runs, in a [`StatusReport`].
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ConfigVersion {
    /// The file path or `etcd://HOST:PORT/KEY` the configuration came from.
    pub source: String,
    /// The etcd revision of the configuration applied last (absent for files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Versions applied since start (the first load included).
    pub applied: u64,
    /// Versions refused because they were invalid.
    pub rejected: u64,
}
