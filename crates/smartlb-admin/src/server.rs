//! The admin HTTP server: routing, request bodies and answers.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use crate::auth::{self, Denied};
use crate::control::{AdminControl, AdminError, BackendUpdate, NewBackend};
use crate::status::{AdminSource, UpstreamStatus};
use crate::traffic::TrafficQuery;

/// The largest request body a mutating call accepts.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// How often the Prometheus recorder's histograms are folded while serving.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// The dashboard page, one self-contained file.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Why an [`AdminServer`] refuses to serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// The listener is reachable from other hosts and no token protects mutating calls.
    #[error(
        "the admin API would listen on non-loopback address {0} without a token; set a token or listen on a loopback address"
    )]
    PublicWithoutToken(SocketAddr),
    /// The token is empty (or only whitespace).
    #[error("the admin token is empty")]
    EmptyToken,
}

/// The admin server and what it answers with.
///
/// ```
/// # use std::sync::Arc;
/// # use smartlb_admin::{AdminServer, AdminSource, StatusReport};
/// # struct Idle;
/// # impl AdminSource for Idle {
/// #     fn status(&self) -> StatusReport {
/// #         StatusReport { version: "0".into(), uptime_seconds: 0.0, config: None, upstreams: vec![] }
/// #     }
/// #     fn ready(&self) -> bool { true }
/// # }
/// let server = AdminServer::new(Arc::new(Idle)).with_token(Some("s3cret".into()));
/// assert!(server.check_listen("0.0.0.0:9901".parse()?).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AdminServer {
    source: Arc<dyn AdminSource>,
    control: Option<Arc<dyn AdminControl>>,
    token: Option<String>,
    metrics: Option<PrometheusHandle>,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("control", &self.control.is_some())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// A read-only admin server over `source`: no token, no control, and `/metrics` from
    /// the recorder of [`metrics::install`](crate::metrics::install) if it was installed.
    pub fn new(source: Arc<dyn AdminSource>) -> Self {
        AdminServer {
            source,
            control: None,
            token: None,
            metrics: crate::metrics::installed(),
        }
    }

    /// Enables the mutating calls; without control they answer `501`.
    pub fn with_control(mut self, control: Arc<dyn AdminControl>) -> Self {
        self.control = Some(control);
        self
    }

    /// Requires `Authorization: Bearer TOKEN` on every mutating call (`admin.token`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// Serves `GET /metrics` from `handle` (replacing the installed recorder's).
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Checks that the server may listen on `address`: a non-loopback address needs a
    /// token, and a token must not be empty.
    ///
    /// # Errors
    ///
    /// The [`SetupError`] that forbids it.
    pub fn check_listen(&self, address: SocketAddr) -> Result<(), SetupError> {
        match &self.token {
            Some(token) if token.trim().is_empty() => Err(SetupError::EmptyToken),
            Some(_) => Ok(()),
            None if address.ip().is_loopback() => Ok(()),
            None => Err(SetupError::PublicWithoutToken(address)),
        }
    }

    /// Serves the admin API on `listener` until `shutdown` resolves.
    ///
    /// Each connection is served on its own task; when `shutdown` resolves the server
    /// stops accepting and returns (connections still open finish on their tasks). While
    /// it runs it also performs the Prometheus recorder's upkeep every few seconds.
    ///
    /// # Errors
    ///
    /// [`check_listen`](Self::check_listen) refusing the listener's address (an error of
    /// kind `InvalidInput` wrapping the [`SetupError`]), or an error of the listening
    /// socket itself.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let address = listener.local_addr()?;
        self.check_listen(address)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let upkeep = self.metrics.clone();
        let state = Arc::new(self);
        let mut upkeep_timer = tokio::time::interval(UPKEEP_PERIOD);
        upkeep_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                _ = upkeep_timer.tick(), if upkeep.is_some() => {
                    if let Some(handle) = &upkeep {
                        handle.run_upkeep();
                    }
                    continue;
                }
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) if is_transient(&error) => {
                        tracing::warn!(%error, "admin accept failed");
                        // Back off a little so a full descriptor table does not spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    Err(error) => return Err(error),
                },
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, req).await) }
                });
                if let Err(error) = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, "admin connection ended with an error");
                }
            });
        }
    }
}

/// Serves the read-only admin API on `listener` until `shutdown` resolves: the same as
/// `AdminServer::new(source).serve(listener, shutdown)`.
///
/// # Errors
///
/// As [`AdminServer::serve`]: a non-loopback listener (there is no token), or an error of
/// the listening socket itself.
pub async fn serve(
    listener: TcpListener,
    source: Arc<dyn AdminSource>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    AdminServer::new(source).serve(listener, shutdown).await
}

fn is_transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || error.raw_os_error() == Some(24) // EMFILE: too many open files; retry later
}

/// An admin endpoint, with its path parameters decoded.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Dashboard,
    Healthz,
    Readyz,
    Metrics,
    Status,
    Traffic,
    Reload,
    Backends { upstream: String },
    Backend { upstream: String, address: String },
    Routes,
    SplitOf { index: usize },
}

impl Route {
    fn allowed(&self) -> &'static [Method] {
        const READ: &[Method] = &[Method::GET, Method::HEAD];
        const POST: &[Method] = &[Method::POST];
        const CHANGE: &[Method] = &[Method::PATCH, Method::DELETE];
        const PATCH: &[Method] = &[Method::PATCH];
        match self {
            Route::Reload | Route::Backends { .. } => POST,
            Route::Backend { .. } => CHANGE,
            Route::SplitOf { .. } => PATCH,
            _ => READ,
        }
    }

    fn allow_header(&self) -> &'static str {
        match self {
            Route::Reload | Route::Backends { .. } => "POST",
            Route::Backend { .. } => "PATCH, DELETE",
            Route::SplitOf { .. } => "PATCH",
            _ => "GET, HEAD",
        }
    }
}

/// Finds the route of `path`: `None` for no endpoint, `Some(Err)` for a path parameter
/// that does not decode.
fn route(path: &str) -> Option<Result<Route, String>> {
    let fixed = match path {
        "/" => Route::Dashboard,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        "/api/v1/status" => Route::Status,
        "/api/v1/traffic" => Route::Traffic,
        "/api/v1/reload" => Route::Reload,
        "/api/v1/routes" => Route::Routes,
        _ => {
            if let Some(index) = path.strip_prefix("/api/v1/routes/") {
                return Some(
                    index
                        .parse::<usize>()
                        .map(|index| Route::SplitOf { index })
                        .map_err(|_| format!("route index `{index}` is not a whole number")),
                );
            }
            let rest = path.strip_prefix("/api/v1/upstreams/")?;
            let parts: Vec<&str> = rest.split('/').collect();
            let decoded = |s: &str| {
                percent_decode(s)
                    .ok_or_else(|| format!("path segment `{s}` is not valid percent-encoded UTF-8"))
            };
            return match parts.as_slice() {
                [upstream, "backends"] if !upstream.is_empty() => {
                    Some(decoded(upstream).map(|upstream| Route::Backends { upstream }))
                }
                [upstream, "backends", address] if !upstream.is_empty() && !address.is_empty() => {
                    Some(decoded(upstream).and_then(|upstream| {
                        decoded(address).map(|address| Route::Backend { upstream, address })
                    }))
                }
                _ => None,
            };
        }
    };
    Some(Ok(fixed))
}

/// Decodes `%XX` escapes; `None` for a malformed escape or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn handle(state: &AdminServer, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let route = match route(req.uri().path()) {
        None => return json_error(StatusCode::NOT_FOUND, "no such admin endpoint"),
        Some(Err(message)) => return json_error(StatusCode::BAD_REQUEST, &message),
        Some(Ok(route)) => route,
    };
    if !route.allowed().contains(req.method()) {
        let mut resp = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        resp.headers_mut().insert(
            header::ALLOW,
            HeaderValue::from_static(route.allow_header()),
        );
        return resp;
    }
    match route {
        Route::Dashboard => dashboard(),
        Route::Healthz => text(StatusCode::OK, "ok\n"),
        Route::Readyz => {
            if state.source.ready() {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        Route::Metrics => match &state.metrics {
            Some(handle) => {
                let mut resp = Response::new(Full::new(Bytes::from(handle.render())));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            None => json_error(
                StatusCode::NOT_FOUND,
                "metrics are not enabled: no Prometheus recorder is installed",
            ),
        },
        Route::Status => json_ok(StatusCode::OK, &state.source.status(), true),
        Route::Routes => json_ok(StatusCode::OK, &state.source.routes(), true),
        Route::Traffic => match traffic_query(req.uri().query()) {
            Ok(query) => json_ok(StatusCode::OK, &state.source.traffic(&query), false),
            Err(message) => json_error(StatusCode::BAD_REQUEST, &message),
        },
        route @ (Route::Reload
        | Route::Backends { .. }
        | Route::Backend { .. }
        | Route::SplitOf { .. }) => {
            let method = req.method().clone();
            let path = req.uri().path().to_owned();
            let resp = mutate(state, route, req).await;
            tracing::info!(%method, %path, status = resp.status().as_u16(), "admin change request");
            resp
        }
    }
}

/// Parses `?samples=N` (other parameters are ignored).
fn traffic_query(query: Option<&str>) -> Result<TrafficQuery, String> {
    let mut out = TrafficQuery::default();
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "samples" {
            out.samples = value
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=TrafficQuery::MAX_SAMPLES).contains(n))
                .ok_or_else(|| {
                    format!(
                        "`samples` must be a whole number from 1 to {}, not `{value}`",
                        TrafficQuery::MAX_SAMPLES
                    )
                })?;
        }
    }
    Ok(out)
}

async fn mutate(
    state: &AdminServer,
    route: Route,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    match auth::check(state.token.as_deref(), req.headers(), req.uri()) {
        Ok(()) => {}
        Err(Denied::MissingToken) => {
            let mut resp = json_error(
                StatusCode::UNAUTHORIZED,
                "this call needs an `Authorization: Bearer TOKEN` header",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"smartlb-admin\""),
            );
            return resp;
        }
        Err(Denied::WrongToken) => {
            return json_error(StatusCode::FORBIDDEN, "the bearer token is not valid");
        }
        Err(Denied::CrossOrigin) => {
            return json_error(
                StatusCode::FORBIDDEN,
                "cross-origin requests may not change the proxy",
            );
        }
    }
    let Some(control) = state.control.clone() else {
        return json_error(
            StatusCode::NOT_IMPLEMENTED,
            "this proxy does not offer changes through the admin API",
        );
    };
    let method = req.method().clone();
    match route {
        Route::Reload => match control.reload().await {
            Ok(report) => json_ok(StatusCode::OK, &report, true),
            Err(error) => admin_error(&error),
        },
        Route::Backends { upstream } => {
            let backend: NewBackend = match read_json(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if backend.address.trim().is_empty() {
                return json_error(StatusCode::BAD_REQUEST, "`address` must not be empty");
            }
            if backend.weight == 0 {
                return json_error(StatusCode::BAD_REQUEST, "`weight` must be at least 1");
            }
            let location = format!(
                "/api/v1/upstreams/{}/backends/{}",
                percent_encode(&upstream),
                percent_encode(&backend.address)
            );
            match control.add_backend(upstream, backend).await {
                Ok(status) => {
                    let mut resp = json_ok(StatusCode::CREATED, &status, true);
                    if let Ok(value) = HeaderValue::from_str(&location) {
                        resp.headers_mut().insert(header::LOCATION, value);
                    }
                    resp
                }
                Err(error) => admin_error(&error),
            }
        }
        Route::Backend { upstream, address } if method == Method::PATCH => {
            let update: BackendUpdate = match read_json(req).await {
                Ok(u) => u,
                Err(resp) => return resp,
            };
            if update.weight.is_none() && update.drain.is_none() {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "nothing to change: give `weight`, `drain` or both",
                );
            }
            if update.weight == Some(0) {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "`weight` must be at least 1; use `\"drain\": true` to stop traffic",
                );
            }
            match control.update_backend(upstream, address, update).await {
                Ok(status) => json_ok(StatusCode::OK, &status, true),
                Err(error) => admin_error(&error),
            }
        }
        Route::SplitOf { index } => {
            let update: crate::SplitUpdate = match read_json(req).await {
                Ok(u) => u,
                Err(resp) => return resp,
            };
            if update.split.is_empty() {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "`split` must name at least one upstream",
                );
            }
            match control.set_split(index, update.split).await {
                Ok(status) => json_ok(StatusCode::OK, &status, true),
                Err(error) => admin_error(&error),
            }
        }
        Route::Backend { upstream, address } => {
            match control.remove_backend(upstream, address.clone()).await {
                Ok(status) => {
                    let code = if still_listed(&status, &address) {
                        StatusCode::ACCEPTED
                    } else {
                        StatusCode::OK
                    };
                    json_ok(code, &status, true)
                }
                Err(error) => admin_error(&error),
            }
        }
        _ => json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

fn still_listed(status: &UpstreamStatus, address: &str) -> bool {
    status.backends.iter().any(|b| b.address == address)
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`]; unknown keys are refused by the
/// target type.
async fn read_json<T: DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Response<Full<Bytes>>> {
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return Err(if error.is::<http_body_util::LengthLimitError>() {
                json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                json_error(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                )
            });
        }
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(json_error(
            StatusCode::BAD_REQUEST,
            "expected a JSON object body",
        ));
    }
    // An object first: derived structs would also accept a JSON array.
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|error| {
            json_error(
                StatusCode::BAD_REQUEST,
                &format!("invalid JSON body: {error}"),
            )
        })?;
    T::deserialize(serde_json::Value::Object(object)).map_err(|error| {
        json_error(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON body: {error}"),
        )
    })
}

/// Encodes everything outside the unreserved set and `:` of RFC 3986 (for `Location`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn dashboard() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(DASHBOARD_HTML.as_bytes())));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Nothing but the page itself and same-origin API calls.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json_ok<T: Serialize>(status: StatusCode, value: &T, pretty: bool) -> Response<Full<Bytes>> {
    let encoded = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    match encoded {
        Ok(body) => json(status, body),
        Err(error) => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the answer could not be encoded: {error}"),
        ),
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn admin_error(error: &AdminError) -> Response<Full<Bytes>> {
    json_error(error.status(), &error.to_string())
}

fn json_error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message, "status": status.as_u16() });
    json(status, body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/"), Some(Ok(Route::Dashboard)));
        assert_eq!(route("/nope"), None);
        assert_eq!(route("/api/v1/routes"), Some(Ok(Route::Routes)));
        assert_eq!(
            route("/api/v1/routes/3"),
            Some(Ok(Route::SplitOf { index: 3 }))
        );
        assert!(matches!(route("/api/v1/routes/-1"), Some(Err(_))));
        assert_eq!(route("/api/v1/upstreams/web"), None);
        assert_eq!(route("/api/v1/upstreams//backends"), None);
        assert_eq!(route("/api/v1/upstreams/web/backends/"), None);
        assert_eq!(route("/api/v1/upstreams/web/backends/a/b"), None);
        assert_eq!(
            route("/api/v1/upstreams/web/backends"),
            Some(Ok(Route::Backends {
                upstream: "web".into()
            }))
        );
        assert_eq!(
            route("/api/v1/upstreams/web/backends/%5B::1%5D:80"),
            Some(Ok(Route::Backend {
                upstream: "web".into(),
                address: "[::1]:80".into()
            }))
        );
        assert!(matches!(
            route("/api/v1/upstreams/web/backends/%zz"),
            Some(Err(_))
        ));
        assert!(matches!(
            route("/api/v1/upstreams/%ff/backends"),
            Some(Err(_))
        ));
    }

    #[test]
    fn percent_coding_round_trips() {
        for s in ["10.0.0.1:80", "[::1]:8080", "web canary/1", "ünï"] {
            assert_eq!(percent_decode(&percent_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn traffic_queries() {
        assert_eq!(traffic_query(None), Ok(TrafficQuery::default()));
        assert_eq!(
            traffic_query(Some("samples=60&_=123")),
            Ok(TrafficQuery { samples: 60 })
        );
        assert!(traffic_query(Some("samples=0")).is_err());
        assert!(traffic_query(Some("samples=x")).is_err());
        assert!(traffic_query(Some("samples=100000")).is_err());
    }

    #[test]
    fn listen_checks() {
        struct Idle;
        impl AdminSource for Idle {
            fn status(&self) -> crate::StatusReport {
                crate::StatusReport {
                    version: String::new(),
                    uptime_seconds: 0.0,
                    config: None,
                    upstreams: vec![],
                }
            }
            fn ready(&self) -> bool {
                true
            }
        }
        let open = AdminServer::new(Arc::new(Idle));
        let public: SocketAddr = "0.0.0.0:9901".parse().unwrap();
        assert_eq!(open.check_listen("127.0.0.1:9901".parse().unwrap()), Ok(()));
        assert_eq!(open.check_listen("[::1]:9901".parse().unwrap()), Ok(()));
        assert_eq!(
            open.check_listen(public),
            Err(SetupError::PublicWithoutToken(public))
        );
        let closed = open.clone().with_token(Some("t".into()));
        assert_eq!(closed.check_listen(public), Ok(()));
        let empty = open.with_token(Some(" ".into()));
        assert_eq!(
            empty.check_listen("127.0.0.1:1".parse().unwrap()),
            Err(SetupError::EmptyToken)
        );
    }
}
