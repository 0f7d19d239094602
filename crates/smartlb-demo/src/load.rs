//! An open-loop HTTP load generator.
//!
//! [`LoadGenerator`] sends `GET` requests to one address at a fixed target rate,
//! whatever the answers' latency (open loop), with at most
//! [`LoadOptions::concurrency`] requests outstanding. A send that falls due while
//! every slot is busy is skipped and counted as `dropped` instead of queued, so a slow
//! target does not slow the schedule down. Latency is measured from the time a request
//! was *scheduled*, not from when it got a connection, which avoids the "coordinated
//! omission" that closed-loop tools suffer (Gil Tene, "How NOT to measure latency").
//! The timer wakes within about a millisecond of a scheduled time; that lag is part
//! of the reported latency.
//!
//! Connections are HTTP/1.1 with keep-alive, each owned by one request at a time and
//! returned to a small idle pool after a complete exchange.
//!
//! Each response is recorded with its status, its latency and the backend named in
//! its `x-backend` header. [`LoadGenerator::take_interval`] returns what happened since
//! its previous call (the caller calls it once per second for a live view) and
//! [`LoadGenerator::totals`] what happened since the start.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HOST, HeaderValue, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backend::BACKEND_HEADER;
use crate::error::DemoError;
use crate::histogram::LatencyHistogram;

/// Extra time [`LoadGenerator::stop`] allows beyond the request timeout.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// How a [`LoadGenerator`] sends.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    /// Requests per second to send (default 200).
    pub rate: f64,
    /// Most requests outstanding at once (default 64).
    pub concurrency: usize,
    /// Time limit of one whole exchange, connecting included (default 5 s).
    pub timeout: Duration,
    /// The request path, with an optional query (default `/`).
    pub path: String,
    /// The `Host` header to send; `None` sends the target address.
    pub host: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            rate: 200.0,
            concurrency: 64,
            timeout: Duration::from_secs(5),
            path: "/".to_owned(),
            host: None,
        }
    }
}

impl LoadOptions {
    /// These options with the given rate in requests per second.
    pub fn with_rate(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }

    /// These options with the given concurrency limit.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// These options with the given per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks every field, as [`LoadGenerator::start`] does.
    pub fn validate(&self) -> Result<(), DemoError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(DemoError::InvalidRate(self.rate));
        }
        if self.concurrency == 0 {
            return Err(DemoError::InvalidConcurrency);
        }
        if self.timeout.is_zero() {
            return Err(DemoError::ZeroDuration {
                what: "request timeout",
            });
        }
        parse_path(&self.path)?;
        if let Some(host) = &self.host {
            HeaderValue::from_str(host).map_err(|_| DemoError::InvalidHost(host.clone()))?;
        }
        Ok(())
    }
}

/// What one backend answered during a snapshot's window, as seen by the load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendLoad {
    /// Responses that named this backend.
    pub requests: u64,
    /// Of those, responses with a 5xx status.
    pub errors: u64,
    /// Median latency of those responses.
    pub p50: Option<Duration>,
    /// 99th percentile latency of those responses.
    pub p99: Option<Duration>,
}

/// What the load generator saw during a window of time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadSnapshot {
    /// How long the window lasted.
    pub window: Duration,
    /// The configured rate, requests per second.
    pub target_rate: f64,
    /// Exchanges that ended in the window: `successes + errors`.
    pub requests: u64,
    /// Responses with a status below 500.
    pub successes: u64,
    /// 5xx responses plus exchanges that failed without a response.
    pub errors: u64,
    /// Responses with a 5xx status.
    pub status_5xx: u64,
    /// Exchanges that could not connect.
    pub connect_errors: u64,
    /// Exchanges broken after connecting (reset, early close, protocol error).
    pub transport_errors: u64,
    /// Exchanges that ran past the timeout.
    pub timeouts: u64,
    /// Sends skipped because every concurrency slot was busy.
    pub dropped: u64,
    /// Median latency of all responses, measured from the scheduled send time.
    pub p50: Option<Duration>,
    /// 99th percentile latency of all responses.
    pub p99: Option<Duration>,
    /// Responses per backend, keyed by the `x-backend` header.
    pub by_backend: BTreeMap<String, BackendLoad>,
    /// Responses that carried no `x-backend` header (for example the proxy's own 503).
    pub unattributed: u64,
}

impl LoadSnapshot {
    /// Exchanges per second over the window (0 for an empty window).
    pub fn rate(&self) -> f64 {
        per_second(self.requests, self.window)
    }

    /// The fraction of exchanges that were errors (0 when there were none).
    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The fraction of attributed responses that came from `backend`.
    pub fn share(&self, backend: &str) -> f64 {
        let total: u64 = self.by_backend.values().map(|b| b.requests).sum();
        match self.by_backend.get(backend) {
            Some(b) if total > 0 => b.requests as f64 / total as f64,
            _ => 0.0,
        }
    }
}

/// `count` events over `window`, per second.
pub(crate) fn per_second(count: u64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// A running open-loop load generator. Dropping it stops it without waiting.
#[derive(Debug)]
pub struct LoadGenerator {
    target: SocketAddr,
    recorder: Arc<Recorder>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl LoadGenerator {
    /// Starts sending to `target` as `options` say.
    ///
    /// Fails on invalid options, or when called outside a Tokio runtime.
    pub fn start(target: SocketAddr, options: LoadOptions) -> Result<Self, DemoError> {
        options.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| DemoError::NoRuntime)?;
        let host = match &options.host {
            Some(host) => HeaderValue::from_str(host),
            None => HeaderValue::from_str(&target.to_string()),
        }
        .map_err(|_| DemoError::InvalidHost(options.host.clone().unwrap_or_default()))?;
        let path = parse_path(&options.path)?;
        let recorder = Arc::new(Recorder::new(options.rate));
        let (stop, stop_rx) = watch::channel(false);
        let client = Arc::new(Client {
            target,
            host,
            path,
            timeout: options.timeout,
            idle: Mutex::new(Vec::new()),
        });
        let task = runtime.spawn(dispatch(
            client,
            options.rate,
            options.concurrency,
            recorder.clone(),
            stop_rx,
        ));
        Ok(Self {
            target,
            recorder,
            stop,
            task,
        })
    }

    /// The address the load is sent to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// What happened since the previous call (or the start), and starts a new window.
    pub fn take_interval(&self) -> LoadSnapshot {
        self.recorder.take_interval()
    }

    /// What happened since the start.
    pub fn totals(&self) -> LoadSnapshot {
        self.recorder.totals()
    }

    /// Stops sending, waits for the requests in flight (at most the request timeout
    /// plus a second), and returns the totals.
    pub async fn stop(mut self) -> LoadSnapshot {
        self.stop.send_replace(true);
        if let Err(e) = (&mut self.task).await {
            tracing::debug!(error = %e, "load dispatcher ended abnormally");
        }
        self.recorder.totals()
    }
}

impl Drop for LoadGenerator {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.task.abort();
    }
}

/// Sends requests on schedule until told to stop, then waits for those in flight.
async fn dispatch(
    client: Arc<Client>,
    rate: f64,
    concurrency: usize,
    recorder: Arc<Recorder>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    let schedule = |index: u64| start + Duration::from_secs_f64(index as f64 / rate);
    // Request `i` is due at `i / rate`; `sent` counts those already sent or dropped.
    let mut sent: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(schedule(sent)) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let due = (start.elapsed().as_secs_f64() * rate).floor() as u64 + 1;
        while sent < due {
            let scheduled = schedule(sent);
            sent += 1;
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(one_request(
                        client.clone(),
                        recorder.clone(),
                        scheduled,
                        permit,
                    ));
                }
                Err(_) => recorder.record_dropped(),
            }
        }
    }
    // Every request gives its slot back within its timeout.
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(client.timeout + STOP_GRACE, slots.acquire_many(all)).await;
    client.lock_idle().clear();
}

/// How one exchange ended.
enum Outcome {
    Response {
        status: StatusCode,
        backend: Option<String>,
    },
    ConnectError,
    TransportError,
    Timeout,
}

/// Runs one exchange within the timeout and records it.
async fn one_request(
    client: Arc<Client>,
    recorder: Arc<Recorder>,
    scheduled: Instant,
    _permit: OwnedSemaphorePermit,
) {
    let outcome = match tokio::time::timeout(client.timeout, client.exchange()).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Timeout,
    };
    recorder.record(outcome, scheduled.elapsed());
}

/// The target and a pool of idle keep-alive connections to it.
struct Client {
    target: SocketAddr,
    host: HeaderValue,
    path: Uri,
    timeout: Duration,
    idle: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
}

impl Client {
    fn lock_idle(&self) -> MutexGuard<'_, Vec<SendRequest<Empty<Bytes>>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends one request and reads the whole response.
    async fn exchange(&self) -> Outcome {
        let mut sender = match self.checkout().await {
            Ok(sender) => sender,
            Err(outcome) => return outcome,
        };
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = self.path.clone();
        request.headers_mut().insert(HOST, self.host.clone());
        request
            .headers_mut()
            .insert(USER_AGENT, HeaderValue::from_static("smartlb-demo-load"));
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::trace!(error = %e, "load request failed");
                return Outcome::TransportError;
            }
        };
        let status = response.status();
        let backend = response
            .headers()
            .get(BACKEND_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Err(e) = response.into_body().collect().await {
            tracing::trace!(error = %e, "load response body failed");
            return Outcome::TransportError;
        }
        if !sender.is_closed() {
            self.lock_idle().push(sender);
        }
        Outcome::Response { status, backend }
    }

    /// An idle connection that is ready, or a new one.
    async fn checkout(&self) -> Result<SendRequest<Empty<Bytes>>, Outcome> {
        loop {
            let candidate = self.lock_idle().pop();
            let Some(mut sender) = candidate else { break };
            if sender.is_closed() {
                continue;
            }
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = TcpStream::connect(self.target).await.map_err(|e| {
            tracing::trace!(error = %e, "load connect failed");
            Outcome::ConnectError
        })?;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::trace!(error = %e, "could not set TCP_NODELAY");
        }
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| {
            tracing::trace!(error = %e, "load handshake failed");
            Outcome::TransportError
        })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::trace!(error = %e, "load connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Checks and parses an origin-form request path.
fn parse_path(path: &str) -> Result<Uri, DemoError> {
    if !path.starts_with('/') {
        return Err(DemoError::InvalidPath(path.to_owned()));
    }
    let uri: Uri = path
        .parse()
        .map_err(|_| DemoError::InvalidPath(path.to_owned()))?;
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(DemoError::InvalidPath(path.to_owned()));
    }
    Ok(uri)
}

/// Counts for one window of time.
#[derive(Debug)]
struct Window {
    started: Instant,
    successes: u64,
    status_5xx: u64,
    connect_errors: u64,
    transport_errors: u64,
    timeouts: u64,
    dropped: u64,
    unattributed: u64,
    latency: LatencyHistogram,
    by_backend: HashMap<String, BackendWindow>,
}

#[derive(Debug, Default)]
struct BackendWindow {
    errors: u64,
    latency: LatencyHistogram,
}

impl Window {
    fn new(started: Instant) -> Self {
        Self {
            started,
            successes: 0,
            status_5xx: 0,
            connect_errors: 0,
            transport_errors: 0,
            timeouts: 0,
            dropped: 0,
            unattributed: 0,
            latency: LatencyHistogram::default(),
            by_backend: HashMap::new(),
        }
    }

    fn record(&mut self, outcome: &Outcome, latency: Duration) {
        match outcome {
            Outcome::Response { status, backend } => {
                let is_error = status.is_server_error();
                if is_error {
                    self.status_5xx += 1;
                } else {
                    self.successes += 1;
                }
                self.latency.record(latency);
                match backend {
                    Some(name) => {
                        let entry = match self.by_backend.get_mut(name.as_str()) {
                            Some(entry) => entry,
                            None => self.by_backend.entry(name.clone()).or_default(),
                        };
                        entry.latency.record(latency);
                        if is_error {
                            entry.errors += 1;
                        }
                    }
                    None => self.unattributed += 1,
                }
            }
            Outcome::ConnectError => self.connect_errors += 1,
            Outcome::TransportError => self.transport_errors += 1,
            Outcome::Timeout => self.timeouts += 1,
        }
    }

    fn snapshot(&self, now: Instant, target_rate: f64) -> LoadSnapshot {
        let errors = self.status_5xx + self.connect_errors + self.transport_errors + self.timeouts;
        LoadSnapshot {
            window: now.saturating_duration_since(self.started),
            target_rate,
            requests: self.successes + errors,
            successes: self.successes,
            errors,
            status_5xx: self.status_5xx,
            connect_errors: self.connect_errors,
            transport_errors: self.transport_errors,
            timeouts: self.timeouts,
            dropped: self.dropped,
            p50: self.latency.quantile(0.50),
            p99: self.latency.quantile(0.99),
            by_backend: self
                .by_backend
                .iter()
                .map(|(name, b)| {
                    (
                        name.clone(),
                        BackendLoad {
                            requests: b.latency.count(),
                            errors: b.errors,
                            p50: b.latency.quantile(0.50),
                            p99: b.latency.quantile(0.99),
                        },
                    )
                })
                .collect(),
            unattributed: self.unattributed,
        }
    }
}

/// The interval window and the running totals, behind one lock (a few hundred
/// updates per second).
#[derive(Debug)]
struct Recorder {
    target_rate: f64,
    windows: Mutex<(Window, Window)>,
}

impl Recorder {
    fn new(target_rate: f64) -> Self {
        let now = Instant::now();
        Self {
            target_rate,
            windows: Mutex::new((Window::new(now), Window::new(now))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (Window, Window)> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, outcome: Outcome, latency: Duration) {
        let mut windows = self.lock();
        windows.0.record(&outcome, latency);
        windows.1.record(&outcome, latency);
    }

    fn record_dropped(&self) {
        let mut windows = self.lock();
        windows.0.dropped += 1;
        windows.1.dropped += 1;
    }

    fn take_interval(&self) -> LoadSnapshot {
        let now = Instant::now();
        let mut windows = self.lock();
        let snapshot = windows.0.snapshot(now, self.target_rate);
        windows.0 = Window::new(now);
        snapshot
    }

    fn totals(&self) -> LoadSnapshot {
        self.lock().1.snapshot(Instant::now(), self.target_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_validated() {
        assert!(LoadOptions::default().validate().is_ok());
        assert!(matches!(
            LoadOptions::default().with_rate(0.0).validate(),
            Err(DemoError::InvalidRate(_))
        ));
        assert!(matches!(
            LoadOptions::default().with_rate(f64::INFINITY).validate(),
            Err(DemoError::InvalidRate(_))
        ));
        assert!(matches!(
            LoadOptions::default().with_concurrency(0).validate(),
            Err(DemoError::InvalidConcurrency)
        ));
        let bad_path = LoadOptions {
            path: "http://x/".to_owned(),
            ..LoadOptions::default()
        };
        assert!(matches!(
            bad_path.validate(),
            Err(DemoError::InvalidPath(_))
        ));
        let bad_host = LoadOptions {
            host: Some("a\nb".to_owned()),
            ..LoadOptions::default()
        };
        assert!(matches!(
            bad_host.validate(),
            Err(DemoError::InvalidHost(_))
        ));
    }

    #[test]
    fn start_outside_runtime_is_an_error() {
        let result = LoadGenerator::start(
            SocketAddr::from(([127, 0, 0, 1], 9)),
            LoadOptions::default(),
        );
        assert!(matches!(result, Err(DemoError::NoRuntime)));
    }

    #[tokio::test(start_paused = true)]
    async fn windows_count_by_outcome_and_backend() {
        let recorder = Recorder::new(100.0);
        let ok = |name: &str| Outcome::Response {
            status: StatusCode::OK,
            backend: Some(name.to_owned()),
        };
        recorder.record(ok("a"), Duration::from_millis(5));
        recorder.record(ok("a"), Duration::from_millis(5));
        recorder.record(ok("b"), Duration::from_millis(50));
        recorder.record(
            Outcome::Response {
                status: StatusCode::SERVICE_UNAVAILABLE,
                backend: None,
            },
            Duration::from_millis(1),
        );
        recorder.record(Outcome::ConnectError, Duration::ZERO);
        recorder.record(Outcome::Timeout, Duration::ZERO);
        recorder.record_dropped();
        tokio::time::advance(Duration::from_secs(1)).await;

        let snap = recorder.take_interval();
        assert_eq!(snap.requests, 6);
        assert_eq!(snap.successes, 3);
        assert_eq!(snap.errors, 3);
        assert_eq!(snap.status_5xx, 1);
        assert_eq!(snap.connect_errors, 1);
        assert_eq!(snap.timeouts, 1);
        assert_eq!(snap.dropped, 1);
        assert_eq!(snap.unattributed, 1);
        assert_eq!(snap.by_backend["a"].requests, 2);
        assert_eq!(snap.by_backend["b"].requests, 1);
        assert!((snap.share("a") - 2.0 / 3.0).abs() < 1e-9);
        assert!((snap.rate() - 6.0).abs() < 1e-9);
        assert!((snap.error_ratio() - 0.5).abs() < 1e-9);

        // The interval restarts; the totals keep counting.
        assert_eq!(recorder.take_interval().requests, 0);
        assert_eq!(recorder.totals().requests, 6);
    }
}
