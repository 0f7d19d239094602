//! Active HTTP health checks, one background task per backend.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::uri::PathAndQuery;
use http::{Method, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use smartlb_balance::{FastRng, Nanos, Rng};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::backend::BackendHealth;
use crate::state::Transition;

/// The `User-Agent` of health check requests.
pub const USER_AGENT_VALUE: &str = "smartlb-health";

/// A source of the current time for the checker (the state machine itself
/// takes time as an argument). Closures `Fn() -> Nanos` are clocks.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Nanos;
}

impl<F: Fn() -> Nanos + Send + Sync + 'static> Clock for F {
    fn now(&self) -> Nanos {
        self()
    }
}

/// A monotonic clock reading nanoseconds since the Unix epoch: the wall
/// clock at creation plus the tokio monotonic time elapsed since (so it
/// never goes back, and it follows tokio's paused time in tests).
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
    base: Nanos,
}

impl TokioClock {
    /// A clock starting at the current wall-clock time.
    pub fn new() -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        TokioClock {
            origin: tokio::time::Instant::now(),
            base: Nanos::from_duration(wall),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Nanos {
        self.base + self.origin.elapsed()
    }
}

/// An inclusive range of HTTP status codes that pass a check
/// (`expect_status = "200-399"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// Lowest passing status.
    pub lo: u16,
    /// Highest passing status.
    pub hi: u16,
}

impl StatusRange {
    /// `lo..=hi`; both in 100..=599 and `lo <= hi`.
    pub fn new(lo: u16, hi: u16) -> Result<Self, ParseStatusRangeError> {
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) {
            return Err(ParseStatusRangeError::OutOfRange);
        }
        if lo > hi {
            return Err(ParseStatusRangeError::Reversed);
        }
        Ok(StatusRange { lo, hi })
    }

    /// Whether `status` is in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.lo..=self.hi).contains(&status)
    }
}

impl Default for StatusRange {
    /// 200-399.
    fn default() -> Self {
        StatusRange { lo: 200, hi: 399 }
    }
}

/// A malformed [`StatusRange`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseStatusRangeError {
    /// Not `NNN` or `NNN-NNN`.
    #[error("expected a status code or a range such as \"200-399\"")]
    Syntax,
    /// A code outside 100-599.
    #[error("status codes must be between 100 and 599")]
    OutOfRange,
    /// `lo > hi`.
    #[error("the range's first code is above its last")]
    Reversed,
}

impl FromStr for StatusRange {
    type Err = ParseStatusRangeError;

    /// Parses `"200"` or `"200-399"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| ParseStatusRangeError::Syntax)
        };
        match s.split_once('-') {
            Some((lo, hi)) => StatusRange::new(parse(lo)?, parse(hi)?),
            None => {
                let code = parse(s)?;
                StatusRange::new(code, code)
            }
        }
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// How to check (`[upstream.health]`, without the thresholds, which belong
/// to [`HealthConfig`](crate::HealthConfig)).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckConfig {
    /// Path (and query) requested, e.g. `/health`.
    pub path: String,
    /// Time between the starts of two checks, before jitter.
    pub interval: Duration,
    /// Time allowed for connecting and receiving the response head.
    pub timeout: Duration,
    /// Statuses that pass.
    pub expect_status: StatusRange,
    /// Relative jitter of the interval: each wait is `interval * (1 ± jitter)`,
    /// drawn uniformly. 0.1 by default; at most 0.5.
    pub jitter: f64,
    /// `Some(service)`: a gRPC health check (`grpc.health.v1.Health/Check` for
    /// `service`, `""` for the whole server) over HTTP/2 instead of `GET path`; it
    /// passes when the answer is `SERVING`.
    pub grpc: Option<String>,
}

impl Default for CheckConfig {
    /// `GET /health` every 2 s ± 10 %, 1 s timeout, 200-399 pass.
    fn default() -> Self {
        CheckConfig {
            path: "/health".to_owned(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            expect_status: StatusRange::default(),
            jitter: 0.1,
            grpc: None,
        }
    }
}

/// Why a checker could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The path is not a valid origin-form request target.
    #[error("invalid health check path {path:?}: must start with '/'")]
    InvalidPath {
        /// The rejected path.
        path: String,
    },
    /// A zero interval would check in a busy loop.
    #[error("health check interval must be longer than zero")]
    ZeroInterval,
    /// A zero timeout fails every check.
    #[error("health check timeout must be longer than zero")]
    ZeroTimeout,
    /// Jitter outside `[0, 0.5]`.
    #[error("health check jitter must be between 0 and 0.5")]
    InvalidJitter,
    /// [`HealthChecker::spawn`] was called outside a tokio runtime.
    #[error("health checks need a running tokio runtime")]
    NoRuntime,
}

impl CheckConfig {
    /// Checks the values; [`HealthChecker::new`] calls it.
    pub fn validate(&self) -> Result<(), CheckError> {
        parse_path(&self.path)?;
        if self.interval.is_zero() {
            return Err(CheckError::ZeroInterval);
        }
        if self.timeout.is_zero() {
            return Err(CheckError::ZeroTimeout);
        }
        if !(0.0..=0.5).contains(&self.jitter) {
            return Err(CheckError::InvalidJitter);
        }
        Ok(())
    }
}

fn parse_path(path: &str) -> Result<PathAndQuery, CheckError> {
    let invalid = || CheckError::InvalidPath {
        path: path.to_owned(),
    };
    if !path.starts_with('/') {
        return Err(invalid());
    }
    PathAndQuery::from_str(path).map_err(|_| invalid())
}

/// The backend to check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckTarget {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The backend's name in logs and the `Host` header to send (an `https://` prefix,
    /// as in a configured TLS backend's address, is not sent).
    pub host: String,
    /// TLS for `https://` backends; `None`: plain TCP.
    pub tls: Option<smartlb_proxy::tls::ClientTls>,
    /// Check over HTTP/2 (prior knowledge, or ALPN `h2` over TLS) instead of HTTP/1.1.
    pub http2: bool,
}

impl CheckTarget {
    /// A target whose `Host` header is its address.
    pub fn new(addr: SocketAddr) -> Self {
        CheckTarget {
            addr,
            host: addr.to_string(),
            tls: None,
            http2: false,
        }
    }

    /// Checks over TLS with `tls`.
    pub fn with_tls(mut self, tls: smartlb_proxy::tls::ClientTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the `Host` header.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }
}

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    /// The backend answered with an expected status.
    Passed {
        /// The status received.
        status: u16,
    },
    /// The backend answered with a status outside `expect_status`.
    UnexpectedStatus {
        /// The status received.
        status: u16,
    },
    /// No response head within `timeout`.
    Timeout,
    /// The connection could not be established.
    Connect(String),
    /// The connection broke or the response was not valid HTTP.
    Broken(String),
    /// A gRPC health check answered, but not `SERVING`.
    NotServing(String),
}

impl CheckOutcome {
    /// Whether the check passed.
    pub fn is_pass(&self) -> bool {
        matches!(self, CheckOutcome::Passed { .. })
    }

    /// A short label for metrics (`smartlb_health_checks_total{result}`):
    /// `pass`, `status`, `timeout`, `connect`, `broken`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CheckOutcome::Passed { .. } => "pass",
            CheckOutcome::NotServing(_) => "not-serving",
            CheckOutcome::UnexpectedStatus { .. } => "status",
            CheckOutcome::Timeout => "timeout",
            CheckOutcome::Connect(_) => "connect",
            CheckOutcome::Broken(_) => "broken",
        }
    }
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckOutcome::NotServing(why) => write!(f, "gRPC health: {why}"),
            CheckOutcome::Passed { status } => write!(f, "passed ({status})"),
            CheckOutcome::UnexpectedStatus { status } => write!(f, "unexpected status {status}"),
            CheckOutcome::Timeout => f.write_str("timed out"),
            CheckOutcome::Connect(e) => write!(f, "connect failed: {e}"),
            CheckOutcome::Broken(e) => write!(f, "exchange failed: {e}"),
        }
    }
}

/// Hooks the checker calls; both have no-op defaults. Use them for metrics
/// and events. (The checker already logs transitions with
/// [`log_transition`](crate::log_transition); an observer should not log them
/// again.)
pub trait CheckObserver: Send + Sync + 'static {
    /// After every check.
    fn on_check(&self, target: &CheckTarget, outcome: &CheckOutcome) {
        let _ = (target, outcome);
    }

    /// After every health transition the checker caused or polled.
    fn on_transition(&self, target: &CheckTarget, transition: &Transition) {
        let _ = (target, transition);
    }
}

/// An observer that does nothing.
impl CheckObserver for () {}

/// Runs one check: a fresh TCP connection, `GET path` over HTTP/1.1 with
/// `Host`, `User-Agent: smartlb-health` and `Connection: close`; the check
/// passes if the response head arrives within `timeout` with a status in
/// `expect_status`. The body is not read.
pub async fn check_once(target: &CheckTarget, config: &CheckConfig) -> CheckOutcome {
    let path = match parse_path(&config.path) {
        Ok(p) => p,
        Err(e) => return CheckOutcome::Broken(e.to_string()),
    };
    if let Some(service) = &config.grpc {
        return match tokio::time::timeout(config.timeout, grpc_check(target, service)).await {
            Err(_) => CheckOutcome::Timeout,
            Ok(outcome) => outcome,
        };
    }
    match tokio::time::timeout(config.timeout, exchange(target, path)).await {
        Err(_) => CheckOutcome::Timeout,
        Ok(Err(outcome)) => outcome,
        Ok(Ok(status)) if config.expect_status.contains(status) => CheckOutcome::Passed { status },
        Ok(Ok(status)) => CheckOutcome::UnexpectedStatus { status },
    }
}

/// A `grpc.health.v1.Health/Check` call for `service` over HTTP/2.
async fn grpc_check(target: &CheckTarget, service: &str) -> CheckOutcome {
    let stream = match TcpStream::connect(target.addr).await {
        Ok(stream) => stream,
        Err(e) => return CheckOutcome::Connect(e.to_string()),
    };
    let _ = stream.set_nodelay(true);
    let answer = match &target.tls {
        None => grpc_exchange(stream, target, service).await,
        Some(tls) => match tls
            .connector()
            .connect(tls.server_name().clone(), stream)
            .await
        {
            Ok(stream) => grpc_exchange(stream, target, service).await,
            Err(e) => Err(CheckOutcome::Connect(format!("TLS: {e}"))),
        },
    };
    match answer {
        Ok(1) => CheckOutcome::Passed { status: 200 },
        Ok(status) => CheckOutcome::NotServing(grpc_serving_status(status).to_owned()),
        Err(outcome) => outcome,
    }
}

fn grpc_serving_status(status: u64) -> &'static str {
    match status {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "an unknown serving status",
    }
}

/// The gRPC message of a `HealthCheckRequest { service }`: the 5-byte frame prefix and
/// the protobuf encoding (field 1, a string).
fn grpc_request(service: &str) -> Bytes {
    let mut message = Vec::with_capacity(service.len() + 6);
    if !service.is_empty() {
        message.push(0x0a);
        let mut len = service.len();
        while len >= 0x80 {
            message.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        message.push(len as u8);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    Bytes::from(frame)
}

/// The serving status (field 1, a varint) of a `HealthCheckResponse` frame.
fn grpc_response_status(body: &[u8]) -> Option<u64> {
    let (&compressed, rest) = body.split_first()?;
    if compressed != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let mut message = rest.get(4..4 + len)?;
    let mut status = 0;
    while let Some((&tag, after)) = message.split_first() {
        // Every field of this message is a varint or is skipped as one.
        let mut value = 0u64;
        let mut shift = 0;
        let mut used = 0;
        for &byte in after {
            used += 1;
            value |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 || shift > 63 {
                break;
            }
        }
        if tag & 0x07 != 0 {
            return None;
        }
        if tag >> 3 == 1 {
            status = value;
        }
        message = after.get(used..)?;
    }
    Some(status)
}

async fn grpc_exchange<I>(
    stream: I,
    target: &CheckTarget,
    service: &str,
) -> Result<u64, CheckOutcome>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt as _;
    let host = target
        .host
        .strip_prefix("https://")
        .unwrap_or(target.host.as_str());
    let scheme = if target.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{scheme}://{host}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header(USER_AGENT, USER_AGENT_VALUE)
        .body(http_body_util::Full::new(grpc_request(service)))
        .map_err(|e| CheckOutcome::Broken(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .map_err(|e| CheckOutcome::Broken(e.to_string()))?;
    let exchange = async {
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| CheckOutcome::Broken(e.to_string()))?;
        if resp.status() != http::StatusCode::OK {
            return Err(CheckOutcome::Broken(format!(
                "HTTP status {}",
                resp.status()
            )));
        }
        let head_status = resp.headers().get("grpc-status").cloned();
        let collected = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CheckOutcome::Broken(e.to_string()))?;
        let grpc_status = head_status.or_else(|| {
            collected
                .trailers()
                .and_then(|t| t.get("grpc-status").cloned())
        });
        match grpc_status.as_ref().map(http::HeaderValue::as_bytes) {
            Some(b"0") => {}
            Some(code) => {
                return Err(CheckOutcome::NotServing(format!(
                    "grpc-status {}",
                    String::from_utf8_lossy(code)
                )));
            }
            None => return Err(CheckOutcome::Broken("no grpc-status".into())),
        }
        grpc_response_status(&collected.to_bytes())
            .ok_or_else(|| CheckOutcome::Broken("not a HealthCheckResponse".into()))
    };
    drive(conn, exchange).await
}

/// Runs `exchange` while driving its connection `conn` here rather than in a spawned
/// task, so that the check's timeout drops everything together. A connection that ends
/// cleanly first (with `Connection: close` it may end as soon as the response head is
/// in) leaves the exchange to finish; one that fails is a broken check.
async fn drive<C, E, T>(conn: C, exchange: E) -> Result<T, CheckOutcome>
where
    C: Future<Output = Result<(), hyper::Error>>,
    E: Future<Output = Result<T, CheckOutcome>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut exchange = std::pin::pin!(exchange);
    tokio::select! {
        biased;
        answer = &mut exchange => answer,
        closed = &mut conn => match closed {
            Ok(()) => exchange.await,
            Err(e) => Err(CheckOutcome::Broken(e.to_string())),
        },
    }
}

async fn exchange(target: &CheckTarget, path: PathAndQuery) -> Result<u16, CheckOutcome> {
    let stream = TcpStream::connect(target.addr)
        .await
        .map_err(|e| CheckOutcome::Connect(e.to_string()))?;
    // Best effort: a check is one small request.
    let _ = stream.set_nodelay(true);
    match &target.tls {
        None => exchange_over(stream, target, path).await,
        Some(tls) => {
            let stream = tls
                .connector()
                .connect(tls.server_name().clone(), stream)
                .await
                .map_err(|e| CheckOutcome::Connect(format!("TLS: {e}")))?;
            exchange_over(stream, target, path).await
        }
    }
}

async fn exchange_over<I>(
    stream: I,
    target: &CheckTarget,
    path: PathAndQuery,
) -> Result<u16, CheckOutcome>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let host = target
        .host
        .strip_prefix("https://")
        .unwrap_or(target.host.as_str());
    if target.http2 {
        return exchange_h2(stream, target, host, path).await;
    }
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, host)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| CheckOutcome::Broken(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| CheckOutcome::Broken(e.to_string()))?;
    drive(conn, async move {
        sender
            .send_request(request)
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| CheckOutcome::Broken(e.to_string()))
    })
    .await
}

/// One check over HTTP/2: `:authority` is the backend's host.
async fn exchange_h2<I>(
    stream: I,
    target: &CheckTarget,
    host: &str,
    path: PathAndQuery,
) -> Result<u16, CheckOutcome>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let scheme = if target.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let request = Request::builder()
        .method(Method::GET)
        .uri(format!("{scheme}://{host}{path}"))
        .header(USER_AGENT, USER_AGENT_VALUE)
        .body(Empty::<Bytes>::new())
        .map_err(|e| CheckOutcome::Broken(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .map_err(|e| CheckOutcome::Broken(e.to_string()))?;
    drive(conn, async move {
        sender
            .send_request(request)
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| CheckOutcome::Broken(e.to_string()))
    })
    .await
}

/// Starts and configures active checks for the backends of one upstream.
///
/// Each [`spawn`](HealthChecker::spawn) starts a tokio task for one backend
/// that checks it every `interval` (± jitter, from a seeded generator; the
/// first check comes after a random fraction of the jitter so that
/// backends added together are not checked in lockstep), feeds
/// [`BackendHealth::record_check`], polls time-driven transitions, logs each
/// transition once (with [`log_transition`](crate::log_transition), naming
/// the upstream given to [`with_upstream`](HealthChecker::with_upstream) and
/// the backend by its [`CheckTarget::host`]) and tells the [`CheckObserver`].
/// The checks use their own connections, never the proxy's pool, and never
/// block the request path. The task stops when its [`CheckHandle`] is dropped
/// or stopped.
pub struct HealthChecker {
    config: Arc<CheckConfig>,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn CheckObserver>,
    upstream: Arc<str>,
    rng: Mutex<FastRng>,
}

impl fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HealthChecker {
    /// A checker with a validated `config`, the [`TokioClock`], no observer
    /// and a randomly seeded jitter source.
    pub fn new(config: CheckConfig) -> Result<Self, CheckError> {
        config.validate()?;
        Ok(HealthChecker {
            config: Arc::new(config),
            clock: Arc::new(TokioClock::new()),
            observer: Arc::new(()),
            upstream: Arc::from(""),
            rng: Mutex::new(FastRng::from_entropy()),
        })
    }

    /// Names the upstream in the checker's log lines.
    pub fn with_upstream(mut self, upstream: impl Into<Arc<str>>) -> Self {
        self.upstream = upstream.into();
        self
    }

    /// Uses `clock` for the times passed to the state machine (use the same
    /// time base as the rest of the proxy).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Uses `clock`, already shared.
    pub fn with_shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reports checks and transitions to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn CheckObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// Seeds the jitter generator (each spawned task forks its own).
    pub fn with_seed(self, seed: u64) -> Self {
        *self.rng.lock().unwrap_or_else(PoisonError::into_inner) = FastRng::seed(seed);
        self
    }

    /// The check configuration.
    pub fn config(&self) -> &CheckConfig {
        &self.config
    }

    /// Starts checking `target`, feeding `health`, on the current tokio
    /// runtime.
    pub fn spawn(
        &self,
        target: CheckTarget,
        health: Arc<BackendHealth>,
    ) -> Result<CheckHandle, CheckError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| CheckError::NoRuntime)?;
        let rng = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fork();
        let task = CheckTask {
            target,
            health,
            config: Arc::clone(&self.config),
            clock: Arc::clone(&self.clock),
            observer: Arc::clone(&self.observer),
            upstream: Arc::clone(&self.upstream),
            rng,
        };
        Ok(CheckHandle {
            task: runtime.spawn(task.run()),
        })
    }
}

/// Owns a running check task; dropping it (or [`stop`](CheckHandle::stop))
/// ends the task, even in the middle of a check.
#[derive(Debug)]
pub struct CheckHandle {
    task: JoinHandle<()>,
}

impl CheckHandle {
    /// Stops the checks.
    pub fn stop(self) {
        drop(self);
    }

    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for CheckHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct CheckTask {
    target: CheckTarget,
    health: Arc<BackendHealth>,
    config: Arc<CheckConfig>,
    clock: Arc<dyn Clock>,
    observer: Arc<dyn CheckObserver>,
    upstream: Arc<str>,
    rng: FastRng,
}

impl CheckTask {
    async fn run(mut self) {
        let interval = self.config.interval;
        let first = interval.mul_f64(self.config.jitter * self.rng.next_f64());
        let mut next = tokio::time::Instant::now() + first;
        loop {
            tokio::time::sleep_until(next).await;
            let started = tokio::time::Instant::now();
            if let Some(t) = self.health.poll(self.clock.now()) {
                self.report(&t);
            }
            let outcome = check_once(&self.target, &self.config).await;
            tracing::trace!(backend = %self.target.addr, outcome = %outcome, "health check");
            self.observer.on_check(&self.target, &outcome);
            if let Some(t) = self
                .health
                .record_check(outcome.is_pass(), self.clock.now())
            {
                self.report(&t);
            }
            let spread = 1.0 + self.config.jitter * (2.0 * self.rng.next_f64() - 1.0);
            next = started + interval.mul_f64(spread);
        }
    }

    fn report(&self, t: &Transition) {
        crate::log_transition(&self.upstream, &self.target.host, t);
        self.observer.on_transition(&self.target, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!("200-399".parse(), Ok(StatusRange { lo: 200, hi: 399 }));
        assert_eq!(" 204 ".parse(), Ok(StatusRange { lo: 204, hi: 204 }));
        assert_eq!(
            "399-200".parse::<StatusRange>(),
            Err(ParseStatusRangeError::Reversed)
        );
        assert_eq!(
            "200-999".parse::<StatusRange>(),
            Err(ParseStatusRangeError::OutOfRange)
        );
        assert_eq!(
            "ok".parse::<StatusRange>(),
            Err(ParseStatusRangeError::Syntax)
        );
        let r = StatusRange::default();
        assert!(r.contains(200) && r.contains(399) && !r.contains(400) && !r.contains(199));
        assert_eq!(r.to_string(), "200-399");
        assert_eq!(StatusRange::new(204, 204).unwrap().to_string(), "204");
    }

    #[test]
    fn config_validation() {
        assert!(CheckConfig::default().validate().is_ok());
        let bad = |f: fn(&mut CheckConfig)| {
            let mut c = CheckConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert_eq!(
            bad(|c| c.path = "health".into()),
            "invalid health check path \"health\": must start with '/'"
        );
        assert!(bad(|c| c.path = "/a b".into()).contains("invalid health check path"));
        assert!(bad(|c| c.interval = Duration::ZERO).contains("interval"));
        assert!(bad(|c| c.timeout = Duration::ZERO).contains("timeout"));
        assert!(bad(|c| c.jitter = 0.9).contains("jitter"));
        assert!(bad(|c| c.jitter = f64::NAN).contains("jitter"));
        assert!(
            HealthChecker::new(CheckConfig {
                interval: Duration::ZERO,
                ..CheckConfig::default()
            })
            .is_err()
        );
    }

    #[test]
    fn spawn_needs_a_runtime() {
        let checker = HealthChecker::new(CheckConfig::default()).unwrap();
        let health = Arc::new(BackendHealth::new(
            &crate::HealthConfig::default(),
            Arc::new(crate::EjectionBudget::new(50)),
        ));
        let target = CheckTarget::new(SocketAddr::from(([127, 0, 0, 1], 9)));
        assert!(matches!(
            checker.spawn(target, health),
            Err(CheckError::NoRuntime)
        ));
    }

    #[test]
    fn clocks() {
        let fixed = || Nanos(42);
        assert_eq!(Clock::now(&fixed), Nanos(42));
        let c = TokioClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!(a > Nanos::from_secs(1_600_000_000));
    }

    #[test]
    fn outcome_labels() {
        assert!(CheckOutcome::Passed { status: 200 }.is_pass());
        assert_eq!(CheckOutcome::Timeout.as_str(), "timeout");
        assert_eq!(
            CheckOutcome::UnexpectedStatus { status: 500 }.to_string(),
            "unexpected status 500"
        );
        assert_eq!(CheckOutcome::Connect("refused".into()).as_str(), "connect");
    }
}
