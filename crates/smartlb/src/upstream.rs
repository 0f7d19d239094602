//! An upstream: a named set of backends behind one balancer, with health, statistics and
//! retries. This is the service the proxy's routes point at.
//!
//! # Retries
//!
//! A failed attempt is retried on another backend when the upstream's retry policy covers
//! the failure and its budget has a token left:
//!
//! - a request that never reached a backend (connect failure, or a pooled connection found
//!   closed before the request was written) comes back unsent, body untouched, and is
//!   always safe to send elsewhere, whatever its method;
//! - a request that was sent is retried only when its method is idempotent and it can be
//!   sent again: it has no body, or a body of at most [`REPLAY_BODY_LIMIT`] bytes by its
//!   declared length (`Content-Length`), which is read whole before the first attempt. A
//!   body of unknown length or above the limit streams through and its request is not
//!   retried once sent.
//!
//! Each retry prefers a backend not tried yet; when every eligible primary has been tried,
//! an available backup is the last resort before a tried backend is tried again.
//!
//! # Health events
//!
//! Every health transition of a backend (from live traffic, active checks or the passage
//! of time) is logged once with [`smartlb_health::log_transition`] and published to
//! [`Upstream::subscribe_health`] subscribers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use smartlb_balance::{Algorithm, Nanos, hash_bytes};
use smartlb_config::{HashKey, UpstreamConfig};
use smartlb_health::{
    BackendHealth, CheckConfig, EjectionBudget, FailureKind, HealthEvent, Transition,
};
use smartlb_proxy::{BackendClient, BoxError, ClientInfo, ClientOptions, ProxyBody};
use smartlb_traffic::{BackendSummary, Outcome, SeriesConfig, UpstreamSeries};
use tokio::sync::broadcast;

use crate::clock;
use crate::endpoint::Endpoint;
use crate::error::BuildError;
use crate::retry::{RetryPolicy, is_idempotent};
use crate::set::EndpointSet;

/// The endpoint type of a proxied upstream.
pub type Backend = Endpoint<BackendClient>;

/// The largest request body, by its declared length, that is read whole before the first
/// attempt so that an idempotent request can be sent again after it reached a backend
/// that failed (64 KiB).
pub const REPLAY_BODY_LIMIT: u64 = 64 * 1024;

/// Health events kept for a subscriber that falls behind.
const EVENT_BUFFER: usize = 1024;

/// A named group of backends behind one balancer.
///
/// `Upstream` is a tower `Service<http::Request<B>>` answering `http::Response<ProxyBody>`
/// and never failing: every failure becomes the proxy's own error response (502, 503 or
/// 504 with `x-smartlb-error`). Cloning is cheap (one `Arc`).
#[derive(Clone, Debug)]
pub struct Upstream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    /// The name again, shared by the health events.
    label: Arc<str>,
    events: broadcast::Sender<HealthEvent>,
    /// The membership: shared with the upstream this one was rebuilt from (and into) on
    /// reload, so that membership changes reach whichever object still holds it.
    set: Arc<ArcSwap<EndpointSet<BackendClient>>>,
    retry: Arc<RetryPolicy>,
    hash_key: Option<HashKey>,
    check: Option<CheckConfig>,
    series: Arc<Mutex<UpstreamSeries>>,
    metrics: smartlb_admin::metrics::UpstreamMetrics,
    health_options: smartlb_health::HealthConfig,
    budget: Arc<EjectionBudget>,
    client_options: ClientOptions,
    /// Serialises membership changes (admin API); never taken on the request path.
    membership: Arc<Mutex<()>>,
    /// How often the statistics and the analysis advance (`analysis.tick`).
    tick: std::time::Duration,
    /// Forecasting, anomaly detection and the weight controller (`analysis.enabled`);
    /// run by the statistics tick, never on the request path.
    analysis: Option<Arc<Mutex<Analysis>>>,
    /// The configuration this upstream was built from (reload diffs against it).
    config: UpstreamConfig,
}

/// The analyser of one upstream and what its last tick decided.
#[derive(Debug)]
struct Analysis {
    analyzer: smartlb_traffic::analysis::Analyzer,
    /// Whether decisions change the weights the balancer reads (`enforce` mode with the
    /// `adaptive` algorithm); otherwise they are computed and reported only.
    apply: bool,
    last: Option<smartlb_traffic::analysis::TickReport>,
}

impl Upstream {
    /// Builds an upstream from its validated configuration.
    ///
    /// # Errors
    ///
    /// A backend whose host name cannot be resolved, or an upstream whose backends come
    /// from a discovery kind this build cannot follow.
    pub fn from_config(
        config: &UpstreamConfig,
        server_request_timeout: std::time::Duration,
    ) -> Result<Self, BuildError> {
        let algorithm = checked_algorithm(config)?;
        let health_options = crate::health_options::options(config);
        let budget = Arc::new(EjectionBudget::new(config.outlier.max_ejection_percent));
        let now = clock::now();
        let series_config = SeriesConfig::new(config.analysis.tick, config.analysis.history)
            .map_err(|source| BuildError::Analysis {
                upstream: config.name.clone(),
                reason: source.to_string(),
            })?;
        let mut series = UpstreamSeries::new(series_config, now);
        let client_options =
            client_options(config, server_request_timeout, ClientOptions::default());
        let discovered = smartlb_discovery::initial_backends(config).map_err(|source| {
            BuildError::Discovery {
                upstream: config.name.clone(),
                source,
            }
        })?;
        let mut endpoints = Vec::with_capacity(discovered.len());
        for backend in discovered {
            let client =
                crate::tls::backend_client(&backend.address.to_string(), &client_options, config)
                    .map_err(|source| BuildError::Resolve {
                    upstream: config.name.clone(),
                    address: backend.address.to_string(),
                    source,
                })?;
            let health = Arc::new(
                BackendHealth::new(&health_options, budget.clone()).with_backup(backend.backup),
            );
            let endpoint = Endpoint::new(
                backend.address.to_string(),
                backend.weight,
                backend.backup,
                client,
                health,
            )
            .with_metrics(&config.name);
            series.add_backend(endpoint.address(), endpoint.stats().clone(), now);
            endpoints.push(Arc::new(endpoint));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                name: config.name.clone(),
                label: Arc::from(config.name.as_str()),
                events: broadcast::channel(EVENT_BUFFER).0,
                set: Arc::new(ArcSwap::from_pointee(EndpointSet::new(
                    algorithm, endpoints,
                ))),
                retry: Arc::new(RetryPolicy::new(&config.retry)),
                hash_key: config.hash_key.clone(),
                check: crate::health_options::check_options(config),
                series: Arc::new(Mutex::new(series)),
                metrics: smartlb_admin::metrics::UpstreamMetrics::new(&config.name),
                health_options,
                budget,
                client_options,
                membership: Arc::new(Mutex::new(())),
                tick: config.analysis.tick,
                analysis: config.analysis.enabled.then(|| {
                    Arc::new(Mutex::new(Analysis {
                        analyzer: crate::health_options::analyzer(config),
                        apply: config.analysis.mode == smartlb_config::AnalysisMode::Enforce
                            && algorithm == Algorithm::Adaptive,
                        last: None,
                    }))
                }),
                config: config.clone(),
            }),
        })
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The current endpoints and their selector.
    pub fn endpoints(&self) -> Arc<EndpointSet<BackendClient>> {
        self.inner.set.load_full()
    }

    /// Health transitions of this upstream's backends from now on, as they happen: from
    /// live traffic (outlier ejections), from active checks, and from the passage of time
    /// (an ejection running out, a slow start completing). A subscriber that falls more
    /// than 1024 events behind loses the oldest ones (`RecvError::Lagged`).
    pub fn subscribe_health(&self) -> broadcast::Receiver<HealthEvent> {
        self.inner.events.subscribe()
    }

    /// Starts (`true`) or stops draining the backend at `address`: a draining backend gets
    /// no new requests while those in flight finish; undrained, it comes back through slow
    /// start. The transition is logged and published like any other. Returns whether the
    /// state changed, or `None` when no backend has that address.
    pub fn set_draining(&self, address: &str, draining: bool) -> Option<bool> {
        let set = self.endpoints();
        let endpoint = set.endpoints().iter().find(|e| e.address() == address)?;
        let transition = endpoint.health().set_draining(draining, clock::now());
        let changed = transition.is_some();
        note(&self.inner, endpoint, transition);
        Some(changed)
    }

    /// Publishes a transition already logged elsewhere (by the active checker).
    pub(crate) fn publish(&self, backend: &str, transition: &Transition) {
        publish(&self.inner, backend, transition);
    }

    /// How often the statistics and the analysis advance (`analysis.tick`).
    pub fn tick_interval(&self) -> std::time::Duration {
        self.inner.tick
    }

    /// The active health check options, when `[upstream.health]` is configured.
    pub(crate) fn check_options(&self) -> Option<&CheckConfig> {
        self.inner.check.as_ref()
    }

    /// Advances the per-second statistics to `now` and reports health changes that come
    /// with time alone (an ejection ending, slow start completing).
    pub(crate) fn tick(&self, now: smartlb_balance::Nanos) {
        self.inner
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tick(now);
        self.analyse(now);
        for endpoint in self.endpoints().endpoints() {
            note(&self.inner, endpoint, endpoint.health().poll(now));
            if let Some(metrics) = endpoint.metrics() {
                metrics.set_up(endpoint.health().is_available(now));
                metrics.set_effective_weight(endpoint.effective_weight(now));
                metrics.set_in_flight(endpoint.stats().in_flight());
            }
        }
    }

    /// One analysis tick: forecast, anomalies (logged once and counted), and the weight
    /// controller's decisions (applied when enforced for `adaptive`).
    fn analyse(&self, now: smartlb_balance::Nanos) {
        use smartlb_traffic::analysis::BackendInput;
        let Some(analysis) = &self.inner.analysis else {
            return;
        };
        let set = self.endpoints();
        let (total_rps, samples): (f64, Vec<_>) = {
            let series = self
                .inner
                .series
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let total = series.total_samples().last().map_or(0.0, |s| s.rps);
            let samples = set
                .endpoints()
                .iter()
                .filter_map(|e| {
                    series
                        .backend_samples(e.address())
                        .and_then(|r| r.last().cloned())
                        .map(|s| (e.clone(), s))
                })
                .collect();
            (total, samples)
        };
        let inputs: Vec<BackendInput<'_>> = samples
            .iter()
            .map(|(e, sample)| {
                BackendInput::from_sample(
                    e.address(),
                    sample,
                    f64::from(e.configured_weight()),
                    e.health().is_available(now),
                    e.health().weight_factor(now),
                )
            })
            .collect();
        let mut analysis = analysis.lock().unwrap_or_else(PoisonError::into_inner);
        let report = analysis.analyzer.tick(now, total_rps, &inputs);
        for anomaly in &report.anomalies {
            tracing::warn!(upstream = %self.inner.name, kind = anomaly.kind.as_str(), "traffic anomaly: {anomaly}");
            self.inner.metrics.anomaly(anomaly.kind.as_str());
        }
        if let Some(next) = report.forecast.next_rps {
            self.inner.metrics.forecast_rps(next);
        }
        for decision in &report.weights {
            let Some(endpoint) = set
                .endpoints()
                .iter()
                .find(|e| e.address() == decision.backend)
            else {
                continue;
            };
            let factor = if analysis.apply { decision.factor } else { 1.0 };
            if (endpoint.analysis_factor() - factor).abs() > 0.01 {
                tracing::info!(
                    upstream = %self.inner.name,
                    backend = endpoint.address(),
                    applied = analysis.apply,
                    "{}",
                    decision.explain()
                );
            }
            endpoint.set_analysis_factor(factor);
            if analysis.apply && decision.prewarm > 0 {
                let client = endpoint.service().clone();
                let n = decision.prewarm as usize;
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        let _ = client.prewarm(n).await;
                    });
                }
            }
        }
        analysis.last = Some(report);
    }

    /// The last analysis tick's report: forecast, anomalies of that tick, weight decisions.
    pub fn analysis(&self) -> Option<smartlb_traffic::analysis::TickReport> {
        let analysis = self.inner.analysis.as_ref()?;
        analysis
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last
            .clone()
    }

    /// Recent anomalies (oldest first) and the analysis mode (`enforce`, `shadow` or `off`).
    pub fn anomalies(&self) -> (Vec<smartlb_traffic::analysis::Anomaly>, &'static str) {
        let Some(analysis) = &self.inner.analysis else {
            return (Vec::new(), "off");
        };
        let analysis = analysis.lock().unwrap_or_else(PoisonError::into_inner);
        let mode = if analysis.apply { "enforce" } else { "shadow" };
        (
            analysis
                .analyzer
                .detector()
                .recent()
                .iter()
                .cloned()
                .collect(),
            mode,
        )
    }

    /// The per-second series of every backend and of the whole upstream, at most
    /// `samples` of each.
    pub fn traffic(&self, samples: usize) -> smartlb_traffic::TrafficSnapshot {
        self.inner
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot(samples)
    }

    /// Adds a backend at run time (admin API). It enters through slow start.
    ///
    /// # Errors
    ///
    /// The address is already a backend of this upstream, or it does not resolve.
    pub fn add_backend(
        &self,
        backend: &smartlb_config::BackendConfig,
    ) -> Result<(), MembershipError> {
        let _guard = self
            .inner
            .membership
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let address = backend.address.to_string();
        let current = self.inner.set.load_full();
        if current.endpoints().iter().any(|e| e.address() == address) {
            return Err(MembershipError::Exists(address));
        }
        let client =
            crate::tls::backend_client(&address, &self.inner.client_options, &self.inner.config)
                .map_err(|e| MembershipError::Resolve(address.clone(), e.to_string()))?;
        let now = clock::now();
        let health = Arc::new(
            BackendHealth::joining(&self.inner.health_options, self.inner.budget.clone(), now)
                .with_backup(backend.backup),
        );
        let endpoint = Endpoint::new(
            address.clone(),
            backend.weight,
            backend.backup,
            client,
            health,
        )
        .with_metrics(&self.inner.name);
        self.inner
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add_backend(endpoint.address(), endpoint.stats().clone(), now);
        let mut endpoints = current.endpoints().to_vec();
        endpoints.push(Arc::new(endpoint));
        self.inner
            .set
            .store(Arc::new(EndpointSet::new(current.algorithm(), endpoints)));
        tracing::info!(upstream = %self.inner.name, backend = %address, "backend added");
        Ok(())
    }

    /// Sets a backend's configured weight (admin API); `false` when there is no such
    /// backend.
    pub fn set_weight(&self, address: &str, weight: u32) -> bool {
        let set = self.inner.set.load();
        match set.endpoints().iter().find(|e| e.address() == address) {
            Some(endpoint) => {
                endpoint.set_configured_weight(weight);
                tracing::info!(upstream = %self.inner.name, backend = address, weight, "backend re-weighted");
                true
            }
            None => false,
        }
    }

    /// Drains a backend (no new requests), waits for its in-flight requests to finish (at
    /// most `grace`), then removes it. Returns at once; `false` when there is no such
    /// backend.
    pub fn remove_backend(&self, address: &str, grace: std::time::Duration) -> bool {
        if self.set_draining(address, true).is_none() {
            return false;
        }
        let upstream = self.clone();
        let owned = address.to_owned();
        let drain = async move {
            let address = owned;
            let deadline = tokio::time::Instant::now() + grace;
            loop {
                let busy = upstream
                    .endpoints()
                    .endpoints()
                    .iter()
                    .find(|e| e.address() == address)
                    .is_some_and(|e| e.stats().in_flight() > 0);
                if !busy || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            // Undrained meanwhile (added again): it stays.
            let still_draining = upstream
                .endpoints()
                .endpoints()
                .iter()
                .any(|e| e.address() == address && e.health().is_draining());
            if still_draining {
                upstream.forget(&address);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(drain);
            }
            Err(_) => self.forget(address),
        }
        true
    }

    fn forget(&self, address: &str) {
        let _guard = self
            .inner
            .membership
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.inner.set.load_full();
        let (gone, kept): (Vec<_>, Vec<_>) = current
            .endpoints()
            .iter()
            .cloned()
            .partition(|e| e.address() == address);
        if gone.is_empty() {
            return;
        }
        for endpoint in &gone {
            if let Some(metrics) = endpoint.metrics() {
                metrics.retire();
            }
        }
        self.inner
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove_backend(address);
        self.inner
            .set
            .store(Arc::new(EndpointSet::new(current.algorithm(), kept)));
        tracing::info!(upstream = %self.inner.name, backend = address, "backend removed");
    }

    /// Recent traffic of the backend at `address` (rates and quantiles over the last ticks).
    pub fn summary(&self, address: &str) -> Option<BackendSummary> {
        self.inner
            .series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .summary(address)
    }

    /// Forwards `req` to a backend chosen by the balancer, retrying on another backend
    /// within the retry policy, and answers the backend's response or the proxy's own error.
    pub async fn forward<B>(&self, req: Request<B>) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        forward(&self.inner, req).await.0
    }

    /// Like [`Upstream::forward`], also saying which backend answered and after how many
    /// retries (for the access log).
    pub async fn forward_served<B>(&self, req: Request<B>) -> (Response<ProxyBody>, Served)
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        forward(&self.inner, req).await
    }
}

/// Which backend served a request, and how many times it was retried.
#[derive(Debug, Clone, Default)]
pub struct Served {
    backend: Option<Arc<Backend>>,
    retries: u32,
}

impl Served {
    /// The address of the backend whose answer (or failure) the client got; `None` when no
    /// backend was tried (none available, or the request was refused first).
    pub fn backend(&self) -> Option<&str> {
        self.backend.as_deref().map(Backend::address)
    }

    /// How many times the request was sent again after a failed attempt.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

/// Reload support: rebuilding an upstream with new settings around the same backends.
impl Upstream {
    /// The configuration this upstream was built from (its backends as they were then).
    pub fn config(&self) -> &UpstreamConfig {
        &self.inner.config
    }

    /// Whether `self` and `other` are the same upstream object (not a rebuilt one).
    pub fn ptr_eq(&self, other: &Upstream) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// A new upstream object with the settings of `config` over this one's backends
    /// (the backend list of `config` is not applied here: the caller applies it as a
    /// diff). What it can, it keeps and shares with `self`: the endpoints with their
    /// pools, health state and statistics, the traffic history (unless `analysis.tick` or
    /// `analysis.history` changed), the analyser (unless `[upstream.analysis]` changed),
    /// the retry budget (unless `[upstream.retry]` changed), the ejection budget and the
    /// health event subscribers. Health, outlier and slow-start settings are applied to
    /// each backend's health state in place; a new connect or request timeout gives each
    /// backend a new client (new connections) keeping its health and statistics.
    ///
    /// Requests in flight finish on the old object; the caller swaps the new one in.
    pub(crate) fn reconfigured(
        &self,
        config: &UpstreamConfig,
        server_request_timeout: std::time::Duration,
    ) -> Result<Upstream, BuildError> {
        let old = &self.inner;
        let algorithm = checked_algorithm(config)?;
        let series_changed = config.analysis.tick != old.config.analysis.tick
            || config.analysis.history != old.config.analysis.history;
        let series_config = SeriesConfig::new(config.analysis.tick, config.analysis.history)
            .map_err(|source| BuildError::Analysis {
                upstream: config.name.clone(),
                reason: source.to_string(),
            })?;
        let health_options = crate::health_options::options(config);
        let client_options =
            client_options(config, server_request_timeout, old.client_options.clone());
        let _guard = old
            .membership
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = clock::now();
        let current = old.set.load_full();
        let mut endpoints = current.endpoints().to_vec();
        if health_options != old.health_options {
            for endpoint in &endpoints {
                note(
                    old,
                    endpoint,
                    endpoint.health().reconfigure(&health_options, now),
                );
            }
        }
        let clients_changed = client_options != old.client_options || config.tls != old.config.tls;
        if clients_changed {
            endpoints = endpoints
                .into_iter()
                .map(
                    |e| match crate::tls::backend_client(e.address(), &client_options, config) {
                        Ok(client) => Arc::new(e.with_service(client).with_metrics(&config.name)),
                        Err(_) => e,
                    },
                )
                .collect();
        }
        if series_changed {
            let mut series = UpstreamSeries::new(series_config, now);
            for endpoint in &endpoints {
                series.add_backend(endpoint.address(), endpoint.stats().clone(), now);
            }
            *old.series.lock().unwrap_or_else(PoisonError::into_inner) = series;
        }
        if clients_changed || algorithm != current.algorithm() {
            old.set
                .store(Arc::new(EndpointSet::new(algorithm, endpoints)));
        }
        let apply = config.analysis.mode == smartlb_config::AnalysisMode::Enforce
            && algorithm == Algorithm::Adaptive;
        let analysis = match &old.analysis {
            Some(shared) if !series_changed && config.analysis == old.config.analysis => {
                shared.lock().unwrap_or_else(PoisonError::into_inner).apply = apply;
                Some(shared.clone())
            }
            _ => config.analysis.enabled.then(|| {
                Arc::new(Mutex::new(Analysis {
                    analyzer: crate::health_options::analyzer(config),
                    apply,
                    last: None,
                }))
            }),
        };
        let retry = if config.retry == old.config.retry {
            old.retry.clone()
        } else {
            Arc::new(RetryPolicy::new(&config.retry))
        };
        Ok(Upstream {
            inner: Arc::new(Inner {
                name: config.name.clone(),
                label: old.label.clone(),
                events: old.events.clone(),
                set: old.set.clone(),
                retry,
                hash_key: config.hash_key.clone(),
                check: crate::health_options::check_options(config),
                series: old.series.clone(),
                metrics: smartlb_admin::metrics::UpstreamMetrics::new(&config.name),
                health_options,
                budget: old.budget.clone(),
                client_options,
                membership: old.membership.clone(),
                tick: config.analysis.tick,
                analysis,
                config: config.clone(),
            }),
        })
    }
}

/// The request key for hashing algorithms.
fn request_hash<B>(key: &HashKey, req: &Request<B>) -> Option<u64> {
    match key {
        HashKey::Ip => client_ip_hash(req),
        HashKey::Path => Some(hash_bytes(req.uri().path().as_bytes())),
        HashKey::Header(name) => req
            .headers()
            .get(name.as_str())
            .map(|v| hash_bytes(v.as_bytes())),
        HashKey::Query(name) => req.uri().query().and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
                .find(|(k, _)| k == name)
                .map(|(_, v)| hash_bytes(v.as_bytes()))
        }),
        HashKey::Cookie(name) => req
            .headers()
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| hash_bytes(v.as_bytes())),
    }
}

fn client_ip_hash<B>(req: &Request<B>) -> Option<u64> {
    let info = req.extensions().get::<ClientInfo>()?;
    Some(match info.remote.ip() {
        std::net::IpAddr::V4(ip) => hash_bytes(&ip.octets()),
        std::net::IpAddr::V6(ip) => hash_bytes(&ip.octets()),
    })
}

/// What to do after one attempt.
enum Attempt {
    Done(Response<ProxyBody>),
    Retry(Request<ProxyBody>),
}

/// What it takes to send a request again after it reached a backend: its head as the
/// client sent it and, when it has one, its buffered body.
struct Replay {
    head: Head,
    body: Option<Bytes>,
}

/// A request head as the client sent it, without extensions, and the client's address
/// (the one extension header preparation needs): kept apart, so that the copy taken of
/// every replayable request allocates no extension map.
struct Head {
    parts: http::request::Parts,
    client: Option<ClientInfo>,
}

async fn forward<B>(inner: &Inner, req: Request<B>) -> (Response<ProxyBody>, Served)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let hash = match (&inner.hash_key, inner.set.load().algorithm()) {
        (Some(key), _) => request_hash(key, &req),
        (None, Algorithm::IpHash) => client_ip_hash(&req),
        _ => None,
    };
    // Session persistence: the backend the request's cookie names, while it is available.
    let sticky = inner.config.sticky.as_ref();
    let wanted = sticky.and_then(|s| sticky_cookie(&req, &s.cookie));
    let mut req = req.map(ProxyBody::new);
    inner.retry.deposit();

    // An idempotent request can be sent again after it reached a backend if it has no
    // body (keep a copy of its head, before header preparation, which the copy gets when
    // it is sent) or a small one (read it first). Anything else is retried only when it
    // never left (connect failures).
    let replay = if inner.retry.attempts() > 0
        && is_idempotent(req.method())
        && !smartlb_proxy::is_upgrade_request(&req)
    {
        if req.body().is_end_stream() {
            Some(Replay {
                head: head_of(&req),
                body: None,
            })
        } else if is_small(req.body()) {
            // Boxed so that it does not grow the future of every request.
            match Box::pin(buffer(&mut req)).await {
                Ok(replay) => replay,
                Err(error) => {
                    tracing::debug!(upstream = %inner.name, error, "reading the request body failed");
                    return (
                        smartlb_proxy::error_response(
                            StatusCode::BAD_REQUEST,
                            smartlb_proxy::cause::BAD_REQUEST,
                        ),
                        Served::default(),
                    );
                }
            }
        } else {
            None
        }
    } else {
        None
    };

    let mut tried: [u64; 4] = [0; 4];
    let mut tried_len = 0;
    let mut current = req;
    for attempt in 0..=inner.retry.attempts() {
        let started = Instant::now();
        let now = clock::at(started);
        let set = inner.set.load();
        // Prefer a backend not tried yet, then a backup as the last resort, then any
        // eligible one (a single backend may well accept the second connection).
        let pinned = match wanted {
            Some(token) if attempt == 0 => set.endpoints().iter().find(|e| {
                !e.is_backup()
                    && e.health().is_available(now)
                    && sticky_token(&inner.name, e.address()) == token
            }),
            _ => None,
        };
        let picked = pinned
            .or_else(|| set.pick(now, hash, &tried[..tried_len]))
            .or_else(|| {
                if tried_len > 0 {
                    untried_backup(&set, now, &tried[..tried_len])
                        .or_else(|| set.pick(now, hash, &[]))
                } else {
                    None
                }
            });
        let Some(endpoint) = picked else {
            return (
                smartlb_proxy::error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no-healthy-backend",
                ),
                Served {
                    backend: None,
                    retries: attempt,
                },
            );
        };
        if tried_len < tried.len() {
            tried[tried_len] = endpoint.id();
            tried_len += 1;
        }
        let may_retry = attempt < inner.retry.attempts();
        // Awaited here rather than in `try_once`: one async layer less moving the request.
        let guard = endpoint.stats().start();
        let result = endpoint.service().send(current).await;
        // The outcome is recorded by `try_once`, once it is classified.
        drop(guard);
        match try_once(inner, endpoint, result, started, may_retry, replay.as_ref()) {
            Attempt::Done(mut resp) => {
                if let Some(sticky) = sticky {
                    let token = sticky_token(&inner.name, endpoint.address());
                    if wanted != Some(token) {
                        set_sticky_cookie(&mut resp, sticky, token);
                    }
                }
                let served = Served {
                    backend: Some(endpoint.clone()),
                    retries: attempt,
                };
                return (resp, served);
            }
            Attempt::Retry(next) => {
                inner.metrics.retry();
                current = next;
            }
        }
    }
    // Unreachable in practice: the last attempt never asks for a retry.
    (
        smartlb_proxy::error_response(StatusCode::BAD_GATEWAY, "retries-exhausted"),
        Served::default(),
    )
}

/// The upstream's algorithm, once its TLS settings are known to load.
fn checked_algorithm(config: &UpstreamConfig) -> Result<Algorithm, BuildError> {
    crate::tls::check_upstream(config)?;
    config
        .algorithm
        .as_str()
        .parse()
        .map_err(|_| BuildError::Algorithm {
            upstream: config.name.clone(),
            algorithm: config.algorithm.as_str().to_string(),
        })
}

/// `base` with the upstream's connect timeout, protocol and the server's request timeout.
fn client_options(
    config: &UpstreamConfig,
    request_timeout: std::time::Duration,
    base: ClientOptions,
) -> ClientOptions {
    ClientOptions {
        connect_timeout: config.connect_timeout,
        request_timeout,
        http2: config.protocol == smartlb_config::UpstreamProtocol::H2,
        ..base
    }
}

/// gRPC status codes that say the backend failed (not the caller): UNKNOWN (2),
/// DEADLINE_EXCEEDED (4), RESOURCE_EXHAUSTED (8), INTERNAL (13), UNAVAILABLE (14) and
/// DATA_LOSS (15).
const GRPC_BACKEND_FAILURES: [&[u8]; 6] = [b"2", b"4", b"8", b"13", b"14", b"15"];

/// Whether `resp` is a gRPC error the backend is to blame for, given in the response head
/// (a Trailers-Only response, which is how servers answer a call that fails before any
/// message). Such answers count as failures for statistics and outlier detection, like a
/// 5xx; statuses in trailers after a streamed body are not seen here.
fn grpc_failure<B>(resp: &Response<B>) -> bool {
    resp.headers()
        .get("grpc-status")
        .is_some_and(|code| GRPC_BACKEND_FAILURES.contains(&code.as_bytes()))
}

/// The opaque name of a backend in sticky cookies: a hash of the upstream's name and the
/// backend's configured address (the same in every smartlb instance, and not the address).
fn sticky_token(upstream: &str, address: &str) -> u64 {
    let mut key = Vec::with_capacity(upstream.len() + address.len() + 1);
    key.extend_from_slice(upstream.as_bytes());
    key.push(b'\n');
    key.extend_from_slice(address.as_bytes());
    hash_bytes(&key)
}

/// The backend token of the request's sticky cookie `name`, when it has a well-formed one.
fn sticky_cookie<B>(req: &Request<B>, name: &str) -> Option<u64> {
    req.headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| u64::from_str_radix(v.trim(), 16).ok())
}

/// Adds the cookie that holds the client to the backend named by `token`.
fn set_sticky_cookie(
    resp: &mut Response<ProxyBody>,
    sticky: &smartlb_config::StickyConfig,
    token: u64,
) {
    let cookie = format!(
        "{}={token:016x}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        sticky.cookie,
        sticky.ttl.as_secs().max(1)
    );
    if let Ok(value) = http::HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(http::header::SET_COOKIE, value);
    }
}

/// An available backup not tried yet for this request, the least loaded one: where a
/// request goes when every eligible primary failed it.
fn untried_backup<'a>(
    set: &'a EndpointSet<BackendClient>,
    now: Nanos,
    tried: &[u64],
) -> Option<&'a Arc<Backend>> {
    set.endpoints()
        .iter()
        .filter(|e| e.is_backup() && e.health().is_available(now) && !tried.contains(&e.id()))
        .min_by_key(|e| e.stats().in_flight())
}

/// Whether a body declares a length of at most [`REPLAY_BODY_LIMIT`].
fn is_small(body: &ProxyBody) -> bool {
    body.size_hint()
        .upper()
        .is_some_and(|n| n <= REPLAY_BODY_LIMIT)
}

/// Reads the request's body into memory so the request can be replayed. When the body
/// turns out not to be replayable (it carries trailers, or is longer than it declared),
/// what was read is put back in front of the rest and `None` is returned.
async fn buffer(req: &mut Request<ProxyBody>) -> Result<Option<Replay>, BoxError> {
    let mut body = std::mem::take(req.body_mut());
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let mut len: u64 = 0;
    let (data, trailers) = loop {
        let Some(frame) = body.frame().await else {
            let data = join(first, more);
            *req.body_mut() = ProxyBody::full(data.clone());
            return Ok(Some(Replay {
                head: head_of(req),
                body: Some(data),
            }));
        };
        match frame?.into_data() {
            Ok(chunk) => {
                len += chunk.len() as u64;
                match &first {
                    None => first = Some(chunk),
                    Some(_) => more.extend_from_slice(&chunk),
                }
                if len > REPLAY_BODY_LIMIT {
                    break (join(first, more), None);
                }
            }
            Err(frame) => break (join(first, more), frame.into_trailers().ok()),
        }
    };
    *req.body_mut() = ProxyBody::new(Prefixed {
        data: Some(data).filter(|d| !d.is_empty()),
        trailers,
        rest: body,
    });
    Ok(None)
}

/// The chunks read: the first one as it is, any further ones copied after it.
fn join(first: Option<Bytes>, more: BytesMut) -> Bytes {
    match first {
        None => Bytes::new(),
        Some(first) if more.is_empty() => first,
        Some(first) => {
            let mut all = BytesMut::with_capacity(first.len() + more.len());
            all.extend_from_slice(&first);
            all.extend_from_slice(&more);
            all.freeze()
        }
    }
}

/// A body whose beginning was already read: that data, then the rest, then trailers read
/// before the end.
struct Prefixed {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: ProxyBody,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match ready!(Pin::new(&mut this.rest).poll_frame(cx)) {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let read = self.data.as_ref().map_or(0, |d| d.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(read));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(read));
        }
        hint
    }
}

/// Records the result of one attempt on `endpoint` and says what to do next.
fn try_once(
    inner: &Inner,
    endpoint: &Arc<Backend>,
    result: Result<Response<ProxyBody>, smartlb_proxy::ProxyError>,
    started: Instant,
    may_retry: bool,
    replay: Option<&Replay>,
) -> Attempt {
    let finished = Instant::now();
    let latency = finished.saturating_duration_since(started);
    let done = clock::at(finished);
    if let Some(metrics) = endpoint.metrics() {
        let code = match &result {
            Ok(resp) => resp.status().as_u16(),
            Err(error) => error.status().as_u16(),
        };
        metrics.record_request(code, latency.as_secs_f64());
    }
    match result {
        Ok(resp) => {
            let status = resp.status();
            if status.is_server_error() || grpc_failure(&resp) {
                endpoint
                    .stats()
                    .record(Outcome::Failure(FailureKind::ServerError), latency);
                // `p2c-ewma` is the naive reference (as tower's peak-EWMA): it times every
                // response, so a backend answering fast 5xx looks fast. `adaptive` counts a
                // failure as slow, so fast failures never attract traffic.
                if inner.set.load().algorithm() == Algorithm::Adaptive {
                    endpoint.observe_latency(latency.max(crate::endpoint::FAILURE_LATENCY), done);
                } else {
                    endpoint.observe_latency(latency, done);
                }
                note(
                    inner,
                    endpoint,
                    endpoint
                        .health()
                        .record_failure(FailureKind::ServerError, done),
                );
                if let Some(replay) = replay
                    && may_retry
                    && inner.retry.retries_status(status)
                    && inner.retry.withdraw()
                {
                    return Attempt::Retry(rebuild(replay));
                }
            } else {
                endpoint.stats().record(Outcome::Success, latency);
                endpoint.observe_latency(latency, done);
                endpoint.health().record_success();
            }
            Attempt::Done(resp)
        }
        Err(mut error) => {
            let kind = if error.is_connect() {
                FailureKind::Connect
            } else if error.is_timeout() {
                FailureKind::Timeout
            } else {
                FailureKind::Reset
            };
            endpoint.stats().record(Outcome::from(kind), latency);
            // A failure must not look fast to latency-aware algorithms.
            endpoint.observe_latency(latency.max(crate::endpoint::FAILURE_LATENCY), done);
            note(
                inner,
                endpoint,
                endpoint.health().record_failure(kind, done),
            );
            if may_retry {
                if !error.was_sent() {
                    if inner.retry.retries_connect_failure()
                        && inner.retry.withdraw()
                        && let Some(req) = error.take_request()
                    {
                        return Attempt::Retry(req);
                    }
                } else if let Some(replay) = replay
                    && inner
                        .retry
                        .retries_error(error.is_reset(), error.is_timeout())
                    && inner.retry.withdraw()
                {
                    return Attempt::Retry(rebuild(replay));
                }
            }
            tracing::debug!(upstream = %inner.name, backend = endpoint.address(), %error, "request failed");
            Attempt::Done(error.into_response())
        }
    }
}

/// Logs a transition the request path or the statistics tick obtained, once, and
/// publishes it.
fn note(inner: &Inner, endpoint: &Backend, transition: Option<Transition>) {
    if let Some(t) = transition {
        if t.to == smartlb_health::HealthState::Ejected
            && let Some(metrics) = endpoint.metrics()
        {
            metrics.ejection();
        }
        smartlb_health::log_transition(&inner.name, endpoint.address(), &t);
        publish(inner, endpoint.address(), &t);
    }
}

fn publish(inner: &Inner, backend: &str, transition: &Transition) {
    if inner.events.receiver_count() == 0 {
        return;
    }
    // No subscriber left is not an error.
    let _ = inner.events.send(HealthEvent {
        upstream: Arc::clone(&inner.label),
        backend: Arc::from(backend),
        at: clock::now(),
        transition: transition.clone(),
    });
}

/// A copy of the request's head as the client sent it, with the client's address.
fn head_of<B>(req: &Request<B>) -> Head {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    Head {
        parts: head.into_parts().0,
        client: req.extensions().get::<ClientInfo>().copied(),
    }
}

/// The request again, from its head and buffered body.
fn rebuild(replay: &Replay) -> Request<ProxyBody> {
    let body = match &replay.body {
        Some(data) => ProxyBody::full(data.clone()),
        None => ProxyBody::empty(),
    };
    let mut req = Request::from_parts(replay.head.parts.clone(), body);
    if let Some(client) = replay.head.client {
        req.extensions_mut().insert(client);
    }
    req
}

impl<B> tower_service::Service<Request<B>> for Upstream
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move { Ok(forward(&inner, req).await.0) })
    }
}

/// Builds an [`Upstream`] in code, for embedders without a configuration file.
///
/// Every setting not given keeps the configuration file's default (algorithm `adaptive`,
/// outlier detection, two retries within a 20% budget, 30 s slow start, no active checks).
///
/// ```
/// use smartlb::Upstream;
/// use smartlb::config::Algorithm;
///
/// let upstream = Upstream::builder("api")
///     .algorithm(Algorithm::RoundRobin)
///     .backend("127.0.0.1:8081".parse().unwrap(), 1)
///     .backend("127.0.0.1:8082".parse().unwrap(), 3)
///     .build()
///     .unwrap();
/// assert_eq!(upstream.endpoints().endpoints().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct UpstreamBuilder {
    config: UpstreamConfig,
    request_timeout: std::time::Duration,
}

impl Upstream {
    /// Starts building an upstream named `name`.
    pub fn builder(name: impl Into<String>) -> UpstreamBuilder {
        UpstreamBuilder {
            config: UpstreamConfig::new(name, Vec::new()),
            request_timeout: std::time::Duration::from_secs(30),
        }
    }
}

impl UpstreamBuilder {
    /// The selection algorithm.
    pub fn algorithm(mut self, algorithm: smartlb_config::Algorithm) -> Self {
        self.config.algorithm = algorithm;
        self
    }

    /// Adds a backend with a weight (1 to 1000).
    pub fn backend(mut self, address: SocketAddr, weight: u32) -> Self {
        let mut backend = smartlb_config::BackendConfig::new(smartlb_config::BackendAddress::new(
            smartlb_config::Scheme::Http,
            address.ip().to_string(),
            address.port(),
        ));
        backend.weight = weight;
        self.config.backends.push(backend);
        self
    }

    /// How long a backend may take to answer with a response head (default 30 s).
    pub fn request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Starts from a whole upstream configuration (as parsed from a file).
    pub fn config(mut self, config: UpstreamConfig) -> Self {
        self.config = config;
        self
    }

    /// Builds the upstream.
    ///
    /// # Errors
    ///
    /// No backend, a weight outside 1..=1000, or an error of [`Upstream::from_config`].
    pub fn build(self) -> Result<Upstream, BuildError> {
        let name = self.config.name.clone();
        if self.config.backends.is_empty() {
            return Err(BuildError::Invalid {
                upstream: name,
                reason: "no backend".into(),
            });
        }
        let range =
            smartlb_config::BackendConfig::MIN_WEIGHT..=smartlb_config::BackendConfig::MAX_WEIGHT;
        if let Some(bad) = self
            .config
            .backends
            .iter()
            .find(|b| !range.contains(&b.weight))
        {
            return Err(BuildError::Invalid {
                upstream: name,
                reason: format!(
                    "backend {} has weight {}, outside 1..=1000",
                    bad.address, bad.weight
                ),
            });
        }
        Upstream::from_config(&self.config, self.request_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that yields `chunks` then, optionally, trailers, declaring `declared` bytes.
    struct Scripted {
        chunks: std::collections::VecDeque<Bytes>,
        trailers: Option<HeaderMap>,
        declared: u64,
    }

    impl Body for Scripted {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            let this = self.get_mut();
            if let Some(chunk) = this.chunks.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))))
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.declared)
        }
    }

    fn request(chunks: &[&[u8]], trailers: bool, declared: u64) -> Request<ProxyBody> {
        let mut map = HeaderMap::new();
        map.insert("x-check", http::HeaderValue::from_static("1"));
        let body = Scripted {
            chunks: chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect(),
            trailers: trailers.then_some(map),
            declared,
        };
        Request::put("/x")
            .header("x-kept", "yes")
            .body(ProxyBody::new(body))
            .expect("request")
    }

    async fn frames(body: ProxyBody) -> (Vec<u8>, Option<HeaderMap>) {
        let collected = body.collect().await.expect("body");
        let trailers = collected.trailers().cloned();
        (collected.to_bytes().to_vec(), trailers)
    }

    #[tokio::test]
    async fn a_small_body_is_kept_for_replay() {
        let mut req = request(&[b"hello ", b"world"], false, 11);
        assert!(is_small(req.body()));
        let replay = buffer(&mut req).await.expect("read").expect("replayable");
        assert_eq!(replay.body.as_deref(), Some(&b"hello world"[..]));
        assert_eq!(replay.head.parts.headers["x-kept"], "yes");
        // The first attempt sends the same bytes; so does every replay.
        assert_eq!(frames(req.into_body()).await.0, b"hello world");
        for _ in 0..2 {
            let again = rebuild(&replay);
            assert_eq!(again.method(), http::Method::PUT);
            assert_eq!(frames(again.into_body()).await.0, b"hello world");
        }
        // One chunk is kept without a copy.
        let mut req = request(&[b"one"], false, 3);
        let replay = buffer(&mut req).await.expect("read").expect("replayable");
        assert_eq!(replay.body.as_deref(), Some(&b"one"[..]));
    }

    #[tokio::test]
    async fn bodies_that_cannot_be_replayed_are_passed_on_whole() {
        // Trailers cannot be replayed from a plain buffer.
        let mut req = request(&[b"data"], true, 4);
        assert!(buffer(&mut req).await.expect("read").is_none());
        let (data, trailers) = frames(req.into_body()).await;
        assert_eq!(data, b"data");
        assert_eq!(trailers.expect("trailers")["x-check"], "1");

        // A body longer than it declared: what was read goes first, then the rest.
        let big = vec![b'z'; 70 * 1024];
        let mut req = request(&[b"head ", &big, b" tail"], false, 10);
        assert!(is_small(req.body()));
        assert!(buffer(&mut req).await.expect("read").is_none());
        let (data, _) = frames(req.into_body()).await;
        assert_eq!(data.len(), 5 + big.len() + 5);
        assert!(data.starts_with(b"head z") && data.ends_with(b"z tail"));

        // Declared above the limit, or not declared: not read at all.
        assert!(!is_small(&ProxyBody::new(Scripted {
            chunks: Default::default(),
            trailers: None,
            declared: REPLAY_BODY_LIMIT + 1,
        })));
    }

    #[test]
    fn prefixed_size_hint_adds_what_was_read() {
        let body = Prefixed {
            data: Some(Bytes::from_static(b"abc")),
            trailers: None,
            rest: ProxyBody::full("defg"),
        };
        assert_eq!(body.size_hint().exact(), Some(7));
        assert!(!body.is_end_stream());
        let done = Prefixed {
            data: None,
            trailers: None,
            rest: ProxyBody::empty(),
        };
        assert!(done.is_end_stream());
    }
}

/// Why a run-time membership change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The backend is already in the upstream.
    #[error("backend `{0}` is already in the upstream")]
    Exists(String),
    /// The backend's address does not resolve.
    #[error("backend `{0}` does not resolve: {1}")]
    Resolve(String, String),
}
