//! Prometheus metrics: the recorder, the metric catalogue and cheap recording helpers.
//!
//! [`install`] puts a `metrics-exporter-prometheus` recorder in place as the process-wide
//! `metrics` recorder and describes every metric below; the admin server renders it at
//! `GET /metrics` ([`AdminServer::new`] picks the installed recorder up by itself;
//! [`AdminServer::with_metrics`] takes any other handle). Nothing else listens: there is
//! no separate exporter port.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `smartlb_requests_total` | counter | `upstream`, `backend`, `code` |
//! | `smartlb_request_duration_seconds` | histogram | `upstream`, `backend` |
//! | `smartlb_backend_up` | gauge (1 or 0) | `upstream`, `backend` |
//! | `smartlb_backend_effective_weight` | gauge | `upstream`, `backend` |
//! | `smartlb_backend_in_flight` | gauge | `upstream`, `backend` |
//! | `smartlb_health_checks_total` | counter | `upstream`, `backend`, `result` |
//! | `smartlb_ejections_total` | counter | `upstream`, `backend` |
//! | `smartlb_retries_total` | counter | `upstream` |
//! | `smartlb_traffic_forecast_rps` | gauge | `upstream` |
//! | `smartlb_traffic_anomalies_total` | counter | `upstream`, `kind` |
//! | `smartlb_config_reloads_total` | counter | `result` |
//!
//! Label values are bounded by construction: `upstream` and `backend` are configured names
//! and addresses (never a request path or a client address); `code` is the exact
//! three-digit status code sent to the client (`"200"`, `"503"`), or `"other"` outside
//! 100..=599; `result` and `kind` are `'static` names chosen by the code, not by traffic.
//! Series of a removed backend stay (at their last value, gauges zeroed by
//! [`BackendMetrics::retire`]) until the process restarts.
//!
//! On the request path, use the cached handles of [`BackendMetrics`] and
//! [`UpstreamMetrics`] (built once per backend / upstream, after [`install`]): recording is
//! then a few atomic operations. The free functions ([`record_request`], ...) look the
//! series up on every call and suit rare events and tests.
//!
//! [`AdminServer::new`]: crate::AdminServer::new
//! [`AdminServer::with_metrics`]: crate::AdminServer::with_metrics

use std::sync::{Mutex, OnceLock, PoisonError};

use metrics::{
    Counter, Gauge, Histogram, SharedString, Unit, counter, describe_counter, describe_gauge,
    describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// `smartlb_requests_total`.
pub const REQUESTS_TOTAL: &str = "smartlb_requests_total";
/// `smartlb_request_duration_seconds`.
pub const REQUEST_DURATION_SECONDS: &str = "smartlb_request_duration_seconds";
/// `smartlb_backend_up`.
pub const BACKEND_UP: &str = "smartlb_backend_up";
/// `smartlb_backend_effective_weight`.
pub const BACKEND_EFFECTIVE_WEIGHT: &str = "smartlb_backend_effective_weight";
/// `smartlb_backend_in_flight`.
pub const BACKEND_IN_FLIGHT: &str = "smartlb_backend_in_flight";
/// `smartlb_health_checks_total`.
pub const HEALTH_CHECKS_TOTAL: &str = "smartlb_health_checks_total";
/// `smartlb_ejections_total`.
pub const EJECTIONS_TOTAL: &str = "smartlb_ejections_total";
/// `smartlb_retries_total`.
pub const RETRIES_TOTAL: &str = "smartlb_retries_total";
/// `smartlb_traffic_forecast_rps`.
pub const TRAFFIC_FORECAST_RPS: &str = "smartlb_traffic_forecast_rps";
/// `smartlb_traffic_anomalies_total`.
pub const TRAFFIC_ANOMALIES_TOTAL: &str = "smartlb_traffic_anomalies_total";
/// `smartlb_config_reloads_total`.
pub const CONFIG_RELOADS_TOTAL: &str = "smartlb_config_reloads_total";
/// Requests refused with `429` by a route's rate limit, by route.
pub const RATE_LIMITED_TOTAL: &str = "smartlb_rate_limited_total";
/// Lookups in a route's response cache, by route and result (`hit`, `miss`, `bypass`).
pub const CACHE_REQUESTS_TOTAL: &str = "smartlb_cache_requests_total";
/// Bytes of response bodies held by a route's response cache.
pub const CACHE_BYTES: &str = "smartlb_cache_bytes";

/// Upper bounds (seconds) of the `smartlb_request_duration_seconds` buckets: from half a
/// millisecond (a loopback backend) to 30 s (the default request timeout).
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
    30.0,
];

/// Why [`install`] failed.
#[derive(Debug, thiserror::Error)]
#[error("the Prometheus recorder could not be installed")]
pub struct InstallError(#[source] BuildError);

static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// A [`PrometheusBuilder`] set up the smartlb way (latency buckets), for embedders that
/// build and install their own recorder. Call [`describe`] once it is installed.
pub fn builder() -> PrometheusBuilder {
    // Setting buckets only fails on an empty list; LATENCY_BUCKETS is not empty.
    match PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Full(REQUEST_DURATION_SECONDS.into()),
        &LATENCY_BUCKETS,
    ) {
        Ok(builder) => builder,
        Err(_) => PrometheusBuilder::new(),
    }
}

/// Installs the Prometheus recorder as the process-wide `metrics` recorder, describes
/// every smartlb metric, and returns the handle that renders the exposition.
///
/// Calling it again returns the same handle. Install before creating [`BackendMetrics`]
/// or [`UpstreamMetrics`]: handles made earlier record into the no-op recorder.
///
/// The histograms of the recorder grow between renders; whoever holds the handle must
/// call [`PrometheusHandle::run_upkeep`] every few seconds. [`AdminServer`] does that
/// while it serves.
///
/// # Errors
///
/// Another `metrics` recorder is already installed in this process.
///
/// [`AdminServer`]: crate::AdminServer
pub fn install() -> Result<PrometheusHandle, InstallError> {
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = builder().install_recorder().map_err(InstallError)?;
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// The handle of the recorder [`install`] put in place, if it has been called.
pub fn installed() -> Option<PrometheusHandle> {
    INSTALLED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Describes every smartlb metric to the current recorder (help text and unit).
///
/// [`install`] does this; call it yourself only with a recorder of your own.
/// `promtool check metrics` fails on a metric without help text.
pub fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Requests answered through a backend, by upstream, backend and response status code."
    );
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Time from sending a request to a backend to receiving its response head."
    );
    describe_gauge!(
        BACKEND_UP,
        "Whether the backend may take new requests (1) or not (0: unhealthy, ejected, draining or removed)."
    );
    describe_gauge!(
        BACKEND_EFFECTIVE_WEIGHT,
        "The weight the balancer uses for the backend now (configuration x health x slow start x analysis)."
    );
    describe_gauge!(
        BACKEND_IN_FLIGHT,
        Unit::Count,
        "Requests outstanding at the backend."
    );
    describe_counter!(
        HEALTH_CHECKS_TOTAL,
        Unit::Count,
        "Active health checks, by upstream, backend and result (success, failure, timeout)."
    );
    describe_counter!(
        EJECTIONS_TOTAL,
        Unit::Count,
        "Backends ejected by passive outlier detection."
    );
    describe_counter!(
        RETRIES_TOTAL,
        Unit::Count,
        "Requests retried on another backend."
    );
    describe_gauge!(
        TRAFFIC_FORECAST_RPS,
        "Forecast request rate of the upstream for the next analysis tick, in requests per second."
    );
    describe_counter!(
        TRAFFIC_ANOMALIES_TOTAL,
        Unit::Count,
        "Traffic anomalies detected, by upstream and kind."
    );
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        Unit::Count,
        "Configuration reloads, by result (success, failure)."
    );
    describe_counter!(
        RATE_LIMITED_TOTAL,
        Unit::Count,
        "Requests refused with 429 by a route's rate limit, by route."
    );
    describe_counter!(
        CACHE_REQUESTS_TOTAL,
        Unit::Count,
        "Response cache lookups, by route and result (hit, miss, bypass)."
    );
    describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "Bytes of response bodies held by a route's response cache."
    );
}

/// The `code` label value for a status code.
fn code_label(code: u16) -> SharedString {
    if (100..=599).contains(&code) {
        SharedString::from(code.to_string())
    } else {
        SharedString::const_str("other")
    }
}

/// What one active health check found, for `smartlb_health_checks_total{result}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// The backend answered as expected.
    Success,
    /// The backend answered with an unexpected status, or the connection failed.
    Failure,
    /// The backend did not answer within the check timeout.
    Timeout,
}

impl CheckResult {
    /// The label value: `success`, `failure` or `timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Success => "success",
            CheckResult::Failure => "failure",
            CheckResult::Timeout => "timeout",
        }
    }
}

/// How a configuration reload ended, for `smartlb_config_reloads_total{result}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new configuration was valid and took effect.
    Success,
    /// The new configuration was rejected; the old one keeps serving.
    Failure,
}

impl ReloadResult {
    /// The label value: `success` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Success => "success",
            ReloadResult::Failure => "failure",
        }
    }
}

/// Slots in a backend's status-code counter cache; codes past this many distinct ones fall
/// back to a registry look-up per request.
const CODE_SLOTS: usize = 32;

/// The metric handles of one backend, looked up once and then recorded into with atomic
/// operations only.
///
/// Build it when the backend joins (after [`install`]); keep it beside the backend's
/// other per-backend state.
#[derive(Debug)]
pub struct BackendMetrics {
    upstream: SharedString,
    backend: SharedString,
    duration: Histogram,
    up: Gauge,
    weight: Gauge,
    in_flight: Gauge,
    ejections: Counter,
    checks: [Counter; 3],
    codes: [OnceLock<(u16, Counter)>; CODE_SLOTS],
}

impl BackendMetrics {
    /// Registers (or finds) the series of backend `backend` of upstream `upstream`.
    pub fn new(upstream: &str, backend: &str) -> Self {
        let upstream = SharedString::from(upstream.to_owned());
        let backend = SharedString::from(backend.to_owned());
        let labels = [("upstream", upstream.clone()), ("backend", backend.clone())];
        let check = |result: CheckResult| {
            counter!(
                HEALTH_CHECKS_TOTAL,
                "upstream" => upstream.clone(),
                "backend" => backend.clone(),
                "result" => result.as_str()
            )
        };
        BackendMetrics {
            duration: histogram!(REQUEST_DURATION_SECONDS, &labels),
            up: gauge!(BACKEND_UP, &labels),
            weight: gauge!(BACKEND_EFFECTIVE_WEIGHT, &labels),
            in_flight: gauge!(BACKEND_IN_FLIGHT, &labels),
            ejections: counter!(EJECTIONS_TOTAL, &labels),
            checks: [
                check(CheckResult::Success),
                check(CheckResult::Failure),
                check(CheckResult::Timeout),
            ],
            codes: std::array::from_fn(|_| OnceLock::new()),
            upstream,
            backend,
        }
    }

    fn code_counter(&self, code: u16) -> Counter {
        counter!(
            REQUESTS_TOTAL,
            "upstream" => self.upstream.clone(),
            "backend" => self.backend.clone(),
            "code" => code_label(code)
        )
    }

    /// Counts one request answered with `code` and records its latency in seconds.
    pub fn record_request(&self, code: u16, seconds: f64) {
        let code = if (100..=599).contains(&code) { code } else { 0 };
        self.duration.record(seconds);
        let start = usize::from(code) % CODE_SLOTS;
        for i in 0..CODE_SLOTS {
            let slot = &self.codes[(start + i) % CODE_SLOTS];
            let (held, counter) = slot.get_or_init(|| (code, self.code_counter(code)));
            if *held == code {
                counter.increment(1);
                return;
            }
        }
        // More distinct codes than slots: rare, so the registry look-up is acceptable.
        self.code_counter(code).increment(1);
    }

    /// Sets `smartlb_backend_up` to 1 (may take new requests) or 0.
    pub fn set_up(&self, up: bool) {
        self.up.set(if up { 1.0 } else { 0.0 });
    }

    /// Sets `smartlb_backend_effective_weight`.
    pub fn set_effective_weight(&self, weight: f64) {
        self.weight.set(weight);
    }

    /// Sets `smartlb_backend_in_flight`.
    pub fn set_in_flight(&self, in_flight: u64) {
        self.in_flight.set(in_flight as f64);
    }

    /// Counts one ejection by outlier detection.
    pub fn ejection(&self) {
        self.ejections.increment(1);
    }

    /// Counts one active health check.
    pub fn health_check(&self, result: CheckResult) {
        let i = match result {
            CheckResult::Success => 0,
            CheckResult::Failure => 1,
            CheckResult::Timeout => 2,
        };
        self.checks[i].increment(1);
    }

    /// Marks the backend removed: up, weight and in-flight drop to 0. Its series stay
    /// exported at those values.
    pub fn retire(&self) {
        self.up.set(0.0);
        self.weight.set(0.0);
        self.in_flight.set(0.0);
    }
}

/// The metric handles of one upstream (retries and forecast).
#[derive(Debug)]
pub struct UpstreamMetrics {
    upstream: SharedString,
    retries: Counter,
    forecast: Gauge,
}

impl UpstreamMetrics {
    /// Registers (or finds) the series of upstream `upstream`.
    pub fn new(upstream: &str) -> Self {
        let upstream = SharedString::from(upstream.to_owned());
        UpstreamMetrics {
            retries: counter!(RETRIES_TOTAL, "upstream" => upstream.clone()),
            forecast: gauge!(TRAFFIC_FORECAST_RPS, "upstream" => upstream.clone()),
            upstream,
        }
    }

    /// Counts one retry.
    pub fn retry(&self) {
        self.retries.increment(1);
    }

    /// Sets the forecast request rate (requests per second).
    pub fn forecast_rps(&self, rps: f64) {
        self.forecast.set(rps);
    }

    /// Counts one anomaly of `kind` (a fixed name such as `rate-spike`).
    pub fn anomaly(&self, kind: &'static str) {
        counter!(TRAFFIC_ANOMALIES_TOTAL, "upstream" => self.upstream.clone(), "kind" => kind)
            .increment(1);
    }
}

/// Counts one request of `upstream`/`backend` answered with `code`, taking `seconds`.
/// Looks the series up on each call; prefer [`BackendMetrics::record_request`] on the
/// request path.
pub fn record_request(upstream: &str, backend: &str, code: u16, seconds: f64) {
    let upstream = SharedString::from(upstream.to_owned());
    let backend = SharedString::from(backend.to_owned());
    histogram!(
        REQUEST_DURATION_SECONDS,
        "upstream" => upstream.clone(),
        "backend" => backend.clone()
    )
    .record(seconds);
    counter!(
        REQUESTS_TOTAL,
        "upstream" => upstream,
        "backend" => backend,
        "code" => code_label(code)
    )
    .increment(1);
}

/// Sets `smartlb_backend_up{upstream,backend}` to 1 or 0.
pub fn set_backend_up(upstream: &str, backend: &str, up: bool) {
    gauge!(BACKEND_UP, "upstream" => upstream.to_owned(), "backend" => backend.to_owned())
        .set(if up { 1.0 } else { 0.0 });
}

/// Sets `smartlb_backend_effective_weight{upstream,backend}`.
pub fn set_effective_weight(upstream: &str, backend: &str, weight: f64) {
    gauge!(
        BACKEND_EFFECTIVE_WEIGHT,
        "upstream" => upstream.to_owned(),
        "backend" => backend.to_owned()
    )
    .set(weight);
}

/// Sets `smartlb_backend_in_flight{upstream,backend}`.
pub fn set_in_flight(upstream: &str, backend: &str, in_flight: u64) {
    gauge!(BACKEND_IN_FLIGHT, "upstream" => upstream.to_owned(), "backend" => backend.to_owned())
        .set(in_flight as f64);
}

/// Counts one active health check of `upstream`/`backend`.
pub fn health_check(upstream: &str, backend: &str, result: CheckResult) {
    counter!(
        HEALTH_CHECKS_TOTAL,
        "upstream" => upstream.to_owned(),
        "backend" => backend.to_owned(),
        "result" => result.as_str()
    )
    .increment(1);
}

/// Counts one ejection of `upstream`/`backend` by outlier detection.
pub fn ejection(upstream: &str, backend: &str) {
    counter!(EJECTIONS_TOTAL, "upstream" => upstream.to_owned(), "backend" => backend.to_owned())
        .increment(1);
}

/// Counts one retry in `upstream`.
pub fn retry(upstream: &str) {
    counter!(RETRIES_TOTAL, "upstream" => upstream.to_owned()).increment(1);
}

/// Sets `smartlb_traffic_forecast_rps{upstream}`.
pub fn forecast_rps(upstream: &str, rps: f64) {
    gauge!(TRAFFIC_FORECAST_RPS, "upstream" => upstream.to_owned()).set(rps);
}

/// Counts one anomaly of `kind` (a fixed name such as `rate-spike`) in `upstream`.
pub fn anomaly(upstream: &str, kind: &'static str) {
    counter!(TRAFFIC_ANOMALIES_TOTAL, "upstream" => upstream.to_owned(), "kind" => kind)
        .increment(1);
}

/// Counts one request refused by the rate limit of `route` (a route's label, such as
/// `api.example.com/api`).
pub fn rate_limited(route: &str) {
    counter!(RATE_LIMITED_TOTAL, "route" => route.to_owned()).increment(1);
}

/// What a response-cache lookup found, for `smartlb_cache_requests_total{result}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    /// Answered from the cache.
    Hit,
    /// Not in the cache (or stale): forwarded, and stored when cacheable.
    Miss,
    /// Not a cacheable request (method, `no-store`, `Authorization`...): forwarded.
    Bypass,
}

impl CacheResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
            CacheResult::Bypass => "bypass",
        }
    }
}

/// Counts one response-cache lookup on `route`.
pub fn cache_request(route: &str, result: CacheResult) {
    counter!(CACHE_REQUESTS_TOTAL, "route" => route.to_owned(), "result" => result.as_str())
        .increment(1);
}

/// Sets `smartlb_cache_bytes{route}`.
pub fn cache_bytes(route: &str, bytes: u64) {
    gauge!(CACHE_BYTES, "route" => route.to_owned()).set(bytes as f64);
}

/// Counts one configuration reload.
pub fn config_reload(result: ReloadResult) {
    counter!(CONFIG_RELOADS_TOTAL, "result" => result.as_str()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_with(record: impl FnOnce()) -> String {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            record();
        });
        handle.render()
    }

    #[test]
    fn cached_handles_count_per_code() {
        let text = render_with(|| {
            let b = BackendMetrics::new("web", "10.0.0.1:80");
            for _ in 0..3 {
                b.record_request(200, 0.002);
            }
            b.record_request(503, 0.5);
            b.record_request(42, 0.1);
            b.set_up(true);
            b.set_effective_weight(2.5);
            b.set_in_flight(4);
            b.ejection();
            b.health_check(CheckResult::Timeout);
        });
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(
            has(r#"smartlb_requests_total{upstream="web",backend="10.0.0.1:80",code="200"} 3"#),
            "{text}"
        );
        assert!(has(
            r#"smartlb_requests_total{upstream="web",backend="10.0.0.1:80",code="503"} 1"#
        ));
        assert!(has(
            r#"smartlb_requests_total{upstream="web",backend="10.0.0.1:80",code="other"} 1"#
        ));
        assert!(has(
            r#"smartlb_request_duration_seconds_count{upstream="web",backend="10.0.0.1:80"} 5"#
        ));
        assert!(has(
            r#"smartlb_request_duration_seconds_bucket{upstream="web",backend="10.0.0.1:80",le="0.0025"} 3"#
        ));
        assert!(has(
            r#"smartlb_backend_effective_weight{upstream="web",backend="10.0.0.1:80"} 2.5"#
        ));
        assert!(has(
            r#"smartlb_health_checks_total{upstream="web",backend="10.0.0.1:80",result="timeout"} 1"#
        ));
        assert!(text.contains("# HELP smartlb_requests_total "));
        assert!(text.contains("# TYPE smartlb_request_duration_seconds histogram"));
    }

    #[test]
    fn many_distinct_codes_overflow_the_cache() {
        let text = render_with(|| {
            let b = BackendMetrics::new("web", "a:1");
            for code in 200..(200 + CODE_SLOTS as u16 + 8) {
                b.record_request(code, 0.001);
                b.record_request(code, 0.001);
            }
        });
        let count = text
            .lines()
            .filter(|l| l.starts_with("smartlb_requests_total{") && l.ends_with(" 2"))
            .count();
        assert_eq!(count, CODE_SLOTS + 8, "{text}");
    }

    #[test]
    fn install_refuses_a_foreign_recorder() {
        // No other test of this binary installs a global recorder.
        metrics::set_global_recorder(metrics::NoopRecorder).unwrap();
        let error = install().unwrap_err();
        assert!(error.to_string().contains("could not be installed"));
        assert!(installed().is_none());
    }

    #[test]
    fn free_functions_record() {
        let text = render_with(|| {
            record_request("web", "a:1", 404, 0.01);
            retry("web");
            forecast_rps("web", 12.5);
            anomaly("web", "rate-spike");
            config_reload(ReloadResult::Failure);
            set_backend_up("web", "a:1", false);
            let u = UpstreamMetrics::new("api");
            u.retry();
            u.forecast_rps(3.0);
            u.anomaly("latency");
        });
        for line in [
            r#"smartlb_requests_total{upstream="web",backend="a:1",code="404"} 1"#,
            r#"smartlb_retries_total{upstream="web"} 1"#,
            r#"smartlb_retries_total{upstream="api"} 1"#,
            r#"smartlb_traffic_forecast_rps{upstream="web"} 12.5"#,
            r#"smartlb_traffic_anomalies_total{upstream="web",kind="rate-spike"} 1"#,
            r#"smartlb_traffic_anomalies_total{upstream="api",kind="latency"} 1"#,
            r#"smartlb_config_reloads_total{result="failure"} 1"#,
            r#"smartlb_backend_up{upstream="web",backend="a:1"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
