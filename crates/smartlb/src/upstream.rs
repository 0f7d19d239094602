//! An upstream: a named set of backends behind one balancer, with health, statistics and
//! retries. This is the service the proxy's routes point at.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use smartlb_balance::{Algorithm, hash_bytes};
use smartlb_config::{HashKey, UpstreamConfig};
use smartlb_health::{BackendHealth, CheckConfig, EjectionBudget, FailureKind, Transition};
use smartlb_proxy::{BackendClient, ClientInfo, ClientOptions, ProxyBody};
use smartlb_traffic::{BackendSummary, Outcome, SeriesConfig, UpstreamSeries};

use crate::clock;
use crate::endpoint::Endpoint;
use crate::error::BuildError;
use crate::retry::{RetryPolicy, is_idempotent};
use crate::set::EndpointSet;

/// The endpoint type of a proxied upstream.
pub type Backend = Endpoint<BackendClient>;

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
    set: ArcSwap<EndpointSet<BackendClient>>,
    retry: RetryPolicy,
    hash_key: Option<HashKey>,
    check: Option<CheckConfig>,
    series: Mutex<UpstreamSeries>,
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
        let algorithm: Algorithm =
            config
                .algorithm
                .as_str()
                .parse()
                .map_err(|_| BuildError::Algorithm {
                    upstream: config.name.clone(),
                    algorithm: config.algorithm.as_str().to_string(),
                })?;
        let health_options = crate::health_options::options(config);
        let budget = Arc::new(EjectionBudget::new(config.outlier.max_ejection_percent));
        let now = clock::now();
        let series_config = SeriesConfig::new(config.analysis.tick, config.analysis.history)
            .map_err(|source| BuildError::Analysis {
                upstream: config.name.clone(),
                reason: source.to_string(),
            })?;
        let mut series = UpstreamSeries::new(series_config, now);
        let client_options = ClientOptions {
            connect_timeout: config.connect_timeout,
            request_timeout: server_request_timeout,
            ..ClientOptions::default()
        };
        let discovered = smartlb_discovery::initial_backends(config).map_err(|source| {
            BuildError::Discovery {
                upstream: config.name.clone(),
                source,
            }
        })?;
        let mut endpoints = Vec::with_capacity(discovered.len());
        for backend in discovered {
            let addr =
                resolve(&backend.address.to_string()).map_err(|source| BuildError::Resolve {
                    upstream: config.name.clone(),
                    address: backend.address.to_string(),
                    source,
                })?;
            let client = BackendClient::new(addr, client_options.clone());
            let health = Arc::new(
                BackendHealth::new(&health_options, budget.clone()).with_backup(backend.backup),
            );
            let endpoint = Endpoint::new(
                backend.address.to_string(),
                backend.weight,
                backend.backup,
                client,
                health,
            );
            series.add_backend(endpoint.address(), endpoint.stats().clone(), now);
            endpoints.push(Arc::new(endpoint));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                name: config.name.clone(),
                set: ArcSwap::from_pointee(EndpointSet::new(algorithm, endpoints)),
                retry: RetryPolicy::new(&config.retry),
                hash_key: config.hash_key.clone(),
                check: crate::health_options::check_options(config),
                series: Mutex::new(series),
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
        for endpoint in self.endpoints().endpoints() {
            note(&self.inner, endpoint, endpoint.health().poll(now));
        }
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
        forward(&self.inner, req).await
    }
}

fn resolve(address: &str) -> std::io::Result<SocketAddr> {
    if let Ok(addr) = address.parse() {
        return Ok(addr);
    }
    std::net::ToSocketAddrs::to_socket_addrs(address)?
        .next()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name resolved to no address",
            )
        })
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

async fn forward<B>(inner: &Inner, req: Request<B>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let hash = match (&inner.hash_key, inner.set.load().algorithm()) {
        (Some(key), _) => request_hash(key, &req),
        (None, Algorithm::IpHash) => client_ip_hash(&req),
        _ => None,
    };
    let req = req.map(ProxyBody::new);
    inner.retry.deposit();

    // A bodiless idempotent request can be sent again after it reached a backend: keep a
    // copy of its head (before header preparation, which the copy gets when it is sent).
    // Anything else is retried only when it never left (connect failures).
    let replay = (inner.retry.attempts() > 0
        && is_idempotent(req.method())
        && req.body().is_end_stream()
        && !smartlb_proxy::is_upgrade_request(&req))
    .then(|| head_of(&req));

    let mut tried: [u64; 4] = [0; 4];
    let mut tried_len = 0;
    let mut current = req;
    for attempt in 0..=inner.retry.attempts() {
        let started = Instant::now();
        let now = clock::at(started);
        let set = inner.set.load();
        // Prefer a backend not tried yet; fall back to any eligible one (a single backend
        // may well accept the second connection).
        let picked = set.pick(now, hash, &tried[..tried_len]).or_else(|| {
            if tried_len > 0 {
                set.pick(now, hash, &[])
            } else {
                None
            }
        });
        let Some(endpoint) = picked else {
            return smartlb_proxy::error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "no-healthy-backend",
            );
        };
        if tried_len < tried.len() {
            tried[tried_len] = endpoint.id();
            tried_len += 1;
        }
        let may_retry = attempt < inner.retry.attempts();
        match try_once(
            inner,
            endpoint,
            current,
            started,
            may_retry,
            replay.as_ref(),
        )
        .await
        {
            Attempt::Done(resp) => return resp,
            Attempt::Retry(next) => current = next,
        }
    }
    // Unreachable in practice: the last attempt never asks for a retry.
    smartlb_proxy::error_response(StatusCode::BAD_GATEWAY, "retries-exhausted")
}

async fn try_once(
    inner: &Inner,
    endpoint: &Arc<Backend>,
    req: Request<ProxyBody>,
    started: Instant,
    may_retry: bool,
    replay: Option<&http::request::Parts>,
) -> Attempt {
    let guard = endpoint.stats().start();
    let result = endpoint.service().send(req).await;
    let finished = Instant::now();
    let latency = finished.saturating_duration_since(started);
    let done = clock::at(finished);
    // The outcome is recorded below, once it is classified.
    drop(guard);
    match result {
        Ok(resp) => {
            let status = resp.status();
            if status.is_server_error() {
                endpoint
                    .stats()
                    .record(Outcome::Failure(FailureKind::ServerError), latency);
                note(
                    inner,
                    endpoint,
                    endpoint
                        .health()
                        .record_failure(FailureKind::ServerError, done),
                );
                if let Some(parts) = replay
                    && may_retry
                    && inner.retry.retries_status(status)
                    && inner.retry.withdraw()
                {
                    return Attempt::Retry(rebuild(parts));
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
                } else if let Some(parts) = replay
                    && inner
                        .retry
                        .retries_error(error.is_reset(), error.is_timeout())
                    && inner.retry.withdraw()
                {
                    return Attempt::Retry(rebuild(parts));
                }
            }
            tracing::debug!(upstream = %inner.name, backend = endpoint.address(), %error, "request failed");
            Attempt::Done(error.into_response())
        }
    }
}

fn note(inner: &Inner, endpoint: &Backend, transition: Option<Transition>) {
    if let Some(t) = transition {
        tracing::warn!(upstream = %inner.name, backend = endpoint.address(), "{t}");
    }
}

/// A copy of the request's head as the client sent it, with the client's address (the
/// one extension header preparation needs).
fn head_of<B>(req: &Request<B>) -> http::request::Parts {
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    if let Some(info) = req.extensions().get::<ClientInfo>() {
        head.extensions_mut().insert(*info);
    }
    head.into_parts().0
}

/// The bodiless request again, from its head.
fn rebuild(parts: &http::request::Parts) -> Request<ProxyBody> {
    Request::from_parts(parts.clone(), ProxyBody::empty())
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
        Box::pin(async move { Ok(forward(&inner, req).await) })
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
