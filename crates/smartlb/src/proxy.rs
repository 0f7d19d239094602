//! The whole proxy as one service: routing in front of the upstreams.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use smartlb_admin::{AdminSource, BackendStatus, StatusReport, UpstreamStatus};
use smartlb_config::Config;
use smartlb_proxy::ProxyBody;
use tower_http::request_id::{MakeRequestId, PropagateRequestId, RequestId, SetRequestId};

use crate::cache::Lookup;
use crate::clock;
use crate::error::BuildError;
use crate::router::{RoutePolicy, Router};
use crate::upstream::Upstream;

/// The proxy: routes each request to an upstream, which balances it over its backends.
///
/// A tower `Service<http::Request<B>>` that never fails (errors become the proxy's own
/// responses). Cloning is cheap (one `Arc`). The routing table and the upstreams sit
/// behind one atomic pointer that a reload replaces: a request reads it once.
#[derive(Clone, Debug)]
pub struct Proxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The routes and upstreams, swapped whole by a reload.
    router: crate::router::Routes,
    /// `log.access_log`, changeable by a reload.
    access_log: std::sync::atomic::AtomicBool,
    started: Instant,
    source: crate::reload::Source,
    version: std::sync::Mutex<Option<smartlb_admin::ConfigVersion>>,
    /// What a reload needs beyond the table: the configuration applied last, the served
    /// listeners, the background tasks to wake.
    hooks: crate::reload::Hooks,
}

impl Proxy {
    /// Builds the proxy described by a validated configuration.
    ///
    /// # Errors
    ///
    /// See [`BuildError`]: a backend name that does not resolve, or a discovery kind this
    /// build cannot follow.
    pub fn from_config(config: &Config) -> Result<Self, BuildError> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| Upstream::from_config(u, config.server.request_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        let proxy = Self::from_upstreams(upstreams, &config.routes, config.log.access_log)?;
        proxy.inner.hooks.set_config(config.clone());
        Ok(proxy)
    }

    /// Builds a proxy over upstreams built by hand, routed by `routes` (every request goes
    /// to the first upstream when `routes` is empty).
    ///
    /// # Errors
    ///
    /// A route naming an upstream that is not given.
    pub fn from_upstreams(
        upstreams: Vec<Upstream>,
        routes: &[smartlb_config::RouteConfig],
        access_log: bool,
    ) -> Result<Self, BuildError> {
        let router = Router::new(routes, &upstreams)?;
        Ok(Self {
            inner: Arc::new(Inner {
                router: crate::router::Routes::new(crate::router::Table { router, upstreams }),
                access_log: std::sync::atomic::AtomicBool::new(access_log),
                started: Instant::now(),
                source: crate::reload::Source::new(),
                version: std::sync::Mutex::new(None),
                hooks: crate::reload::Hooks::default(),
            }),
        })
    }

    /// Remembers the file this proxy was started from, for [`Proxy::reload`]. Only the
    /// first call has an effect.
    pub fn set_config_source(&self, path: impl Into<std::path::PathBuf>) {
        let path = path.into();
        self.record_version(&path.display().to_string(), None, true);
        let _ = self.inner.source.set(path);
    }

    /// Records a configuration version applied (`applied`) or refused, for the status API.
    pub fn record_version(&self, source: &str, revision: Option<i64>, applied: bool) {
        let mut version = self
            .inner
            .version
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let v = version.get_or_insert_with(|| smartlb_admin::ConfigVersion {
            source: source.to_string(),
            revision: None,
            applied: 0,
            rejected: 0,
        });
        if applied {
            v.applied += 1;
            if revision.is_some() {
                v.revision = revision;
            }
        } else {
            v.rejected += 1;
        }
    }

    /// The file this proxy reloads from.
    pub fn config_source(&self) -> Option<std::path::PathBuf> {
        self.inner.source.get().cloned()
    }

    /// The upstreams, in configuration order, as they are now (a reload may add, remove
    /// or rebuild upstreams afterwards).
    pub fn upstreams(&self) -> Vec<Upstream> {
        self.inner.router.table().upstreams.clone()
    }

    /// The upstream named `name`, as it is now.
    pub fn upstream(&self, name: &str) -> Option<Upstream> {
        self.inner
            .router
            .table()
            .upstreams
            .iter()
            .find(|u| u.name() == name)
            .cloned()
    }

    /// The live routing table.
    pub(crate) fn routes(&self) -> &crate::router::Routes {
        &self.inner.router
    }

    /// What reloads share.
    pub(crate) fn hooks(&self) -> &crate::reload::Hooks {
        &self.inner.hooks
    }

    /// Turns the access log on or off (`log.access_log`); returns whether it was on.
    pub(crate) fn set_access_log(&self, on: bool) -> bool {
        self.inner
            .access_log
            .swap(on, std::sync::atomic::Ordering::Relaxed)
    }

    /// Handles one request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some((upstream, policy)) = self.inner.router.route_with_policy(&req) else {
            return smartlb_proxy::error_response(StatusCode::NOT_FOUND, "no-route");
        };
        if !self
            .inner
            .access_log
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return match policy {
                None => upstream.forward(req).await,
                Some(policy) => respond(&upstream, &policy, req).await.0,
            };
        }
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_owned();
        let client = req
            .extensions()
            .get::<smartlb_proxy::ClientInfo>()
            .map(|c| c.remote.to_string())
            .unwrap_or_default();
        let request_id = req.headers().get(&X_REQUEST_ID).cloned();
        let (resp, served) = match policy {
            None => upstream.forward_served(req).await,
            Some(policy) => respond(&upstream, &policy, req).await,
        };
        let bytes = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        tracing::info!(
            target: "smartlb::access",
            client,
            %method,
            host,
            path,
            status = resp.status().as_u16(),
            upstream = upstream.name(),
            backend = served.backend().unwrap_or("-"),
            retries = served.retries(),
            bytes,
            duration_ms = started.elapsed().as_secs_f64() * 1e3,
            request_id = request_id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or(""),
        );
        resp
    }

    /// A point-in-time report of every upstream and backend (the status API's document).
    pub fn status(&self) -> StatusReport {
        let now = clock::now();
        StatusReport {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: self.inner.started.elapsed().as_secs_f64(),
            config: self
                .inner
                .version
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
            upstreams: self
                .inner
                .router
                .table()
                .upstreams
                .iter()
                .map(|u| {
                    let set = u.endpoints();
                    UpstreamStatus {
                        name: u.name().to_string(),
                        algorithm: set.algorithm().as_str().to_string(),
                        backends: set
                            .endpoints()
                            .iter()
                            .map(|e| {
                                let stats = e.stats();
                                let recent = u.summary(e.address());
                                BackendStatus {
                                    address: e.address().to_string(),
                                    state: e.state(now).as_str().to_string(),
                                    backup: e.is_backup(),
                                    configured_weight: e.configured_weight(),
                                    effective_weight: e.effective_weight(now),
                                    in_flight: stats.in_flight(),
                                    requests_total: stats.requests_total(),
                                    errors_total: stats.errors_total(),
                                    latency_ewma_ms: e.latency(now).unwrap_or(0.0) / 1e6,
                                    latency_p99_ms: recent
                                        .and_then(|r| r.window.latency_p99_ms)
                                        .unwrap_or(0.0),
                                }
                            })
                            .collect(),
                        anomalies: {
                            let (recent, _) = u.anomalies();
                            let skip = recent.len().saturating_sub(20);
                            recent
                                .iter()
                                .skip(skip)
                                .map(crate::admin::anomaly)
                                .collect()
                        },
                    }
                })
                .collect(),
        }
    }

    /// Whether every upstream has at least one backend that may take requests.
    pub fn ready(&self) -> bool {
        let now = clock::now();
        self.inner.router.table().upstreams.iter().all(|u| {
            u.endpoints()
                .endpoints()
                .iter()
                .any(|e| e.health().is_available(now))
        })
    }
}

/// Answers a request on a route with a rate limit or a cache: refused over the limit,
/// answered from the cache when fresh, else forwarded (and stored when cacheable).
async fn respond<B>(
    upstream: &Upstream,
    policy: &RoutePolicy,
    req: Request<B>,
) -> (Response<ProxyBody>, crate::upstream::Served)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(limit) = &policy.rate_limit
        && let Err(wait) = limit.check(&req)
    {
        return (limit.refuse(wait), crate::upstream::Served::default());
    }
    let Some(cache) = &policy.cache else {
        return upstream.forward_served(req).await;
    };
    match cache.lookup(&req) {
        Lookup::Hit(resp) => (resp, crate::upstream::Served::default()),
        Lookup::Bypass => upstream.forward_served(req).await,
        Lookup::Miss(key) => {
            let (resp, served) = upstream.forward_served(req).await;
            (cache.store(key, resp).await, served)
        }
    }
}

/// The request id header: kept when the client sent one, made otherwise (see
/// [`RequestIds`]), forwarded to the backend and returned to the client.
const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The proxy as the binary serves it: tower-http's request-id layers around [`Proxy`].
/// A client's `x-request-id` is kept; a request without one gets a new id (see
/// [`RequestIds`]); either way the backend receives it, the access log names it and the
/// client gets it back on the response.
pub type ProxyService = SetRequestId<PropagateRequestId<Proxy>, RequestIds>;

impl Proxy {
    /// This proxy wrapped in the request-id layers ([`ProxyService`]): what
    /// [`crate::start`] serves, and what an embedder serves for the same behaviour.
    pub fn service(&self) -> ProxyService {
        SetRequestId::x_request_id(PropagateRequestId::x_request_id(self.clone()), RequestIds)
    }
}

/// Makes request ids: 16 random hex digits (64 bits) from a per-thread generator, with no
/// lock and no system call.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIds;

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = crate::set::with_rng(smartlb_balance::Rng::next_u64);
        let mut buf = [0u8; 16];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte = HEX[((n >> (60 - 4 * i)) & 0xf) as usize];
        }
        http::HeaderValue::from_bytes(&buf).ok().map(RequestId::new)
    }
}

impl AdminSource for Proxy {
    fn status(&self) -> StatusReport {
        Proxy::status(self)
    }

    fn traffic(&self, query: &smartlb_admin::TrafficQuery) -> smartlb_admin::TrafficReport {
        crate::admin::traffic(self, query)
    }

    fn ready(&self) -> bool {
        Proxy::ready(self)
    }

    fn routes(&self) -> smartlb_admin::RoutesReport {
        Proxy::routes_report(self)
    }
}

impl<B> tower_service::Service<Request<B>> for Proxy
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
        let proxy = self.clone();
        Box::pin(async move { Ok(proxy.handle(req).await) })
    }
}
