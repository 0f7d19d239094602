//! The `GET /api/v1/traffic` document.
//!
//! Times are milliseconds in one time base shared by the whole report: every `at_ms` is
//! comparable with the report's `now_ms`. Milliseconds since the Unix epoch are the
//! natural choice; the dashboard only ever uses differences (`now_ms - at_ms`), so any
//! monotonic base works.
//!
//! ```json
//! {
//!   "now_ms": 1700000060000,
//!   "upstreams": [{
//!     "name": "web",
//!     "tick_ms": 1000,
//!     "analysis": "enforce",
//!     "total": [{"at_ms": 1700000059000, "interval_s": 1.0, "requests": 120, "errors": 1,
//!                "rps": 120.0, "errors_per_sec": 1.0, "p50_ms": 2.1, "p99_ms": 9.8,
//!                "mean_ms": 2.6, "in_flight": 3}],
//!     "backends": [{"address": "10.0.0.1:80", "series": [ ... ],
//!                   "weight": {"configured": 2, "computed": 1.7, "applied": 1.7,
//!                              "reason": "p99 above peers"}}],
//!     "forecast": {"at_ms": 1700000061000, "rps": 118.0, "lower": 104.0, "upper": 132.0},
//!     "forecast_series": [{"at_ms": 1700000059000, "rps": 115.0, "lower": 101.0, "upper": 129.0}],
//!     "anomalies": [{"at_ms": 1700000042000, "kind": "rate-spike", "backend": null,
//!                    "message": "rate 310/s against 120/s expected",
//!                    "value": 310.0, "expected": 120.0}]
//!   }]
//! }
//! ```

use serde::{Deserialize, Serialize};

/// What `GET /api/v1/traffic` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficQuery {
    /// Keep at most this many of the newest points per series (`?samples=N`).
    pub samples: usize,
}

impl TrafficQuery {
    /// Points per series when the request does not say.
    pub const DEFAULT_SAMPLES: usize = 300;
    /// The most points per series a request may ask for.
    pub const MAX_SAMPLES: usize = 3600;
}

impl Default for TrafficQuery {
    fn default() -> Self {
        TrafficQuery {
            samples: Self::DEFAULT_SAMPLES,
        }
    }
}

/// `GET /api/v1/traffic`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TrafficReport {
    /// The present, in the report's time base (milliseconds).
    pub now_ms: u64,
    /// Every upstream, in configuration order.
    pub upstreams: Vec<UpstreamTraffic>,
}

/// One upstream in a [`TrafficReport`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct UpstreamTraffic {
    /// The upstream's name.
    pub name: String,
    /// The sampling period (`analysis.tick`) in milliseconds.
    pub tick_ms: u64,
    /// `enforce` (weights applied), `shadow` (computed, not applied) or `off`.
    pub analysis: String,
    /// The upstream as a whole, one sample per tick, oldest first.
    pub total: Vec<TrafficSample>,
    /// Each backend, primaries then backups, in configuration order.
    pub backends: Vec<BackendTraffic>,
    /// The forecast for the next tick, once the forecaster has enough history.
    pub forecast: Option<ForecastPoint>,
    /// Past one-tick-ahead forecasts, each for the tick ending at its `at_ms`, oldest
    /// first: set against `total[].rps` they show how good the forecast is.
    pub forecast_series: Vec<ForecastPoint>,
    /// Recent anomalies, oldest first.
    pub anomalies: Vec<Anomaly>,
}

/// One backend in an [`UpstreamTraffic`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BackendTraffic {
    /// `host:port` as configured.
    pub address: String,
    /// One sample per tick, oldest first.
    pub series: Vec<TrafficSample>,
    /// Why the backend's weight is what it is (absent without analysis).
    pub weight: Option<WeightDecision>,
}

/// What one tick interval looked like, for a backend or an upstream.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct TrafficSample {
    /// End of the interval.
    pub at_ms: u64,
    /// Length of the interval in seconds.
    pub interval_s: f64,
    /// Exchanges finished in the interval.
    pub requests: u64,
    /// Failed exchanges in the interval (connect errors, resets, timeouts, 5xx).
    pub errors: u64,
    /// Requests per second.
    pub rps: f64,
    /// Errors per second.
    pub errors_per_sec: f64,
    /// Median latency in milliseconds (`null` without requests).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds (`null` without requests).
    pub p99_ms: Option<f64>,
    /// Mean latency in milliseconds (`null` without requests).
    pub mean_ms: Option<f64>,
    /// Requests in flight at the end of the interval.
    pub in_flight: u64,
}

/// A forecast request rate with its band (forecast ± about two standard deviations of
/// the forecast error).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ForecastPoint {
    /// The end of the tick the forecast is for.
    pub at_ms: u64,
    /// Forecast requests per second.
    pub rps: f64,
    /// Lower edge of the band.
    pub lower: f64,
    /// Upper edge of the band.
    pub upper: f64,
}

/// A detected traffic anomaly.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Anomaly {
    /// When it was detected.
    pub at_ms: u64,
    /// What kind: `rate-spike`, `rate-drop`, `latency`, `error-rate` (a fixed set of
    /// names, also the `kind` label of `smartlb_traffic_anomalies_total`).
    pub kind: String,
    /// The backend concerned, or `null` for the upstream as a whole.
    pub backend: Option<String>,
    /// A sentence for operators.
    pub message: String,
    /// The observed value, where one applies.
    pub value: Option<f64>,
    /// The value expected from history or peers, where one applies.
    pub expected: Option<f64>,
}

/// How the analyser set a backend's weight.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WeightDecision {
    /// The weight from the configuration (or the admin API).
    pub configured: u32,
    /// The weight the analyser computed this tick.
    pub computed: f64,
    /// The weight in use: `computed` in `enforce` mode, the configured weight adjusted
    /// for health and slow start only in `shadow` mode.
    pub applied: f64,
    /// Why, in a few words (`p99 2.4x peers`, `slow start 40%`, `steady`).
    pub reason: String,
}
