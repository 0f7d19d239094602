//! Controllable loopback HTTP backends.
//!
//! A [`DemoBackend`] is a real HTTP/1.1 and h2c server bound to a local address. Its
//! behaviour is changed while it runs through a cheap, cloneable [`DemoBackendHandle`]:
//! latency, injected errors, a failing health endpoint, a black hole (connections are
//! accepted, requests are read, nothing is answered), and a crash that closes the
//! listener and resets every open connection the way a killed process would, followed
//! by a recovery on the same port.
//!
//! Every answer carries an `x-backend: NAME` header. The paths it knows:
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /health` | `200 ok`, or `503 failing` while [`DemoBackendHandle::set_health_failing`] is on |
//! | `POST /echo` | `200` streaming the request body back |
//! | anything else | `200` with a short text body naming the backend |
//!
//! All requests wait for the configured [`Latency`] first; every request except
//! `/health` is answered `500` or `503` with the configured error probability.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::error::DemoError;
use crate::rng::{SharedRng, fresh_seed};

/// The response header that names the backend which answered.
pub const BACKEND_HEADER: &str = "x-backend";

/// How many times [`DemoBackendHandle::recover`] tries to bind while the port is still
/// held by the listener that was just closed.
const RECOVER_BIND_ATTEMPTS: u32 = 200;
/// The pause between two of those attempts.
const RECOVER_BIND_PAUSE: Duration = Duration::from_millis(10);
/// The pause after a failed `accept` (for example when out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// The listen backlog of the backend's socket.
const LISTEN_BACKLOG: u32 = 1024;

/// The body type of every response the backend sends.
type ResponseBody = BoxBody<Bytes, hyper::Error>;

/// A latency model: every request waits `base` plus a uniform draw from `[0, jitter]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// The latency every request gets at least.
    pub base: Duration,
    /// The width of the uniform random extra added to `base`.
    pub jitter: Duration,
}

impl Latency {
    /// No added latency at all.
    pub const ZERO: Latency = Latency {
        base: Duration::ZERO,
        jitter: Duration::ZERO,
    };

    /// `base` plus a uniform extra in `[0, jitter]`.
    pub const fn new(base: Duration, jitter: Duration) -> Self {
        Self { base, jitter }
    }

    /// Exactly `base`, without jitter.
    pub const fn fixed(base: Duration) -> Self {
        Self {
            base,
            jitter: Duration::ZERO,
        }
    }

    /// `base` and `jitter` given in whole milliseconds.
    pub const fn from_millis(base_ms: u64, jitter_ms: u64) -> Self {
        Self {
            base: Duration::from_millis(base_ms),
            jitter: Duration::from_millis(jitter_ms),
        }
    }

    /// The latency for one request, given a uniform draw `u` in `[0, 1)`.
    pub fn sample(&self, u: f64) -> Duration {
        let u = if u.is_finite() {
            u.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.base.saturating_add(self.jitter.mul_f64(u))
    }

    /// The point a fraction `t` (clamped to `[0, 1]`) of the way from `self` to `to`.
    pub fn lerp(&self, to: &Latency, t: f64) -> Latency {
        let t = if t.is_finite() {
            t.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mix = |a: Duration, b: Duration| {
            let (a, b) = (a.as_secs_f64(), b.as_secs_f64());
            Duration::from_secs_f64((a + (b - a) * t).max(0.0))
        };
        Latency {
            base: mix(self.base, to.base),
            jitter: mix(self.jitter, to.jitter),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", fmt_ms(self.base))?;
        if !self.jitter.is_zero() {
            write!(f, " (+0..{} ms)", fmt_ms(self.jitter))?;
        }
        Ok(())
    }
}

/// Milliseconds with at most one decimal, without a trailing `.0`.
fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if (ms - ms.round()).abs() < 0.05 {
        format!("{}", ms.round() as u64)
    } else {
        format!("{ms:.1}")
    }
}

/// How a [`DemoBackend`] starts.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoBackendOptions {
    /// Where to listen; port 0 picks a free port. Defaults to `127.0.0.1:0`.
    pub addr: SocketAddr,
    /// The initial latency model.
    pub latency: Latency,
    /// The initial probability, in `[0, 1]`, that a request is answered 500 or 503.
    pub error_rate: f64,
    /// A seed for the jitter and error draws, to make a run repeatable; `None` picks one.
    pub seed: Option<u64>,
}

impl Default for DemoBackendOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            latency: Latency::ZERO,
            error_rate: 0.0,
            seed: None,
        }
    }
}

impl DemoBackendOptions {
    /// These options with the given latency model.
    pub fn with_latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// These options with the given error probability.
    pub fn with_error_rate(mut self, error_rate: f64) -> Self {
        self.error_rate = error_rate;
        self
    }

    /// These options listening on `addr`.
    pub fn with_addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }
}

/// A point-in-time copy of a backend's counters and switches.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendStats {
    /// Requests answered, `/health` excluded (injected errors included).
    pub requests: u64,
    /// `/health` requests answered.
    pub health_checks: u64,
    /// Requests answered with an injected 500 or 503.
    pub errors_injected: u64,
    /// Connections accepted since the backend first started.
    pub connections: u64,
    /// Requests being handled right now.
    pub in_flight: u64,
    /// How many times the backend crashed.
    pub crashes: u64,
    /// Whether the backend is listening.
    pub running: bool,
    /// Whether the black hole is on.
    pub blackholed: bool,
    /// Whether `/health` answers 503.
    pub health_failing: bool,
    /// The current latency model.
    pub latency: Latency,
    /// The current error probability.
    pub error_rate: f64,
}

/// A running demo backend. Dropping it stops it like [`DemoBackendHandle::crash`].
///
/// It dereferences to its [`DemoBackendHandle`], so every control is available on it
/// directly; [`DemoBackend::handle`] gives a cloneable copy for other tasks.
pub struct DemoBackend {
    handle: DemoBackendHandle,
}

impl DemoBackend {
    /// Binds `options.addr` and starts serving as backend `name`.
    ///
    /// Must be called inside a Tokio runtime. Fails with
    /// [`io::ErrorKind::InvalidInput`] for an empty name or one unfit for an HTTP
    /// header, or an error rate outside `[0, 1]`, and with the socket error if the
    /// address cannot be bound.
    pub async fn start(name: impl Into<String>, options: DemoBackendOptions) -> io::Result<Self> {
        let name = name.into();
        let header = backend_header_value(&name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        check_error_rate(options.error_rate)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = bind(options.addr)?;
        let addr = listener.local_addr()?;
        let (blackhole, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            body: Bytes::from(format!("hello from {name}\n")),
            name,
            header,
            addr,
            latency_base_ns: AtomicU64::new(duration_to_nanos(options.latency.base)),
            latency_jitter_ns: AtomicU64::new(duration_to_nanos(options.latency.jitter)),
            error_rate_bits: AtomicU64::new(options.error_rate.to_bits()),
            health_failing: AtomicBool::new(false),
            blackhole,
            rng: SharedRng::new(options.seed.unwrap_or_else(fresh_seed)),
            requests: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            errors_injected: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            crashes: AtomicU64::new(0),
            running: Mutex::new(None),
        });
        let handle = DemoBackendHandle { shared };
        handle.serve(listener);
        tracing::debug!(backend = %handle.name(), %addr, "demo backend started");
        Ok(Self { handle })
    }

    /// The address the backend listens on (the same after a crash and recovery).
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    /// A cloneable handle that controls this backend.
    pub fn handle(&self) -> DemoBackendHandle {
        self.handle.clone()
    }

    /// Stops the backend now: the listener closes and open connections are reset.
    pub fn shutdown(self) {
        // Drop does the work.
    }
}

impl std::ops::Deref for DemoBackend {
    type Target = DemoBackendHandle;

    fn deref(&self) -> &DemoBackendHandle {
        &self.handle
    }
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        self.handle.crash();
    }
}

impl fmt::Debug for DemoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoBackend")
            .field("name", &self.handle.name())
            .field("addr", &self.handle.addr())
            .finish()
    }
}

/// A cheap, cloneable controller of one [`DemoBackend`].
///
/// Every setter takes effect for the next request (latency, errors, health) or at once
/// (crash, black hole).
#[derive(Clone)]
pub struct DemoBackendHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for DemoBackendHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoBackendHandle")
            .field("name", &self.name())
            .field("addr", &self.addr())
            .field("state", &self.condition())
            .finish()
    }
}

impl DemoBackendHandle {
    /// The backend's name, as sent in the `x-backend` header.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address the backend listens on.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The current latency model.
    pub fn latency(&self) -> Latency {
        Latency {
            base: Duration::from_nanos(self.shared.latency_base_ns.load(Ordering::Relaxed)),
            jitter: Duration::from_nanos(self.shared.latency_jitter_ns.load(Ordering::Relaxed)),
        }
    }

    /// Sets the latency model for the requests that arrive from now on.
    pub fn set_latency(&self, latency: Latency) {
        self.shared
            .latency_base_ns
            .store(duration_to_nanos(latency.base), Ordering::Relaxed);
        self.shared
            .latency_jitter_ns
            .store(duration_to_nanos(latency.jitter), Ordering::Relaxed);
    }

    /// The current probability that a request is answered 500 or 503.
    pub fn error_rate(&self) -> f64 {
        f64::from_bits(self.shared.error_rate_bits.load(Ordering::Relaxed))
    }

    /// Sets the probability, in `[0, 1]`, that a request (other than `/health`) is
    /// answered 500 or 503. Anything else is rejected and changes nothing.
    pub fn set_error_rate(&self, error_rate: f64) -> Result<(), DemoError> {
        check_error_rate(error_rate)?;
        self.shared
            .error_rate_bits
            .store(error_rate.to_bits(), Ordering::Relaxed);
        Ok(())
    }

    /// Whether `/health` answers 503.
    pub fn is_health_failing(&self) -> bool {
        self.shared.health_failing.load(Ordering::Relaxed)
    }

    /// Makes `GET /health` answer 503 (`true`) or 200 (`false`); other paths keep
    /// being served as usual.
    pub fn set_health_failing(&self, failing: bool) {
        self.shared.health_failing.store(failing, Ordering::Relaxed);
    }

    /// Whether the black hole is on.
    pub fn is_blackholed(&self) -> bool {
        *self.shared.blackhole.borrow()
    }

    /// Turns the black hole on or off. While it is on, connections are accepted and
    /// requests are read but none is answered; requests held that way are answered
    /// once it is turned off (like a network partition that heals).
    pub fn blackhole(&self, on: bool) {
        self.shared.blackhole.send_replace(on);
    }

    /// Whether the backend is listening (it has not crashed, or has recovered).
    pub fn is_running(&self) -> bool {
        self.shared.lock_running().is_some()
    }

    /// Kills the backend like a killed process: the listener is closed, so new
    /// connections are refused, and every open connection is reset, so requests in
    /// flight fail. Returns `false` if it was not running.
    pub fn crash(&self) -> bool {
        let Some(running) = self.shared.lock_running().take() else {
            return false;
        };
        self.shared.crashes.fetch_add(1, Ordering::Relaxed);
        running.stop();
        tracing::debug!(backend = %self.name(), "demo backend crashed");
        true
    }

    /// Listens again on the same address after a [`crash`](Self::crash). Does nothing
    /// if the backend is running.
    ///
    /// The closed listener can hold the port for a moment after `crash` returns, so
    /// this retries a bounded number of times (about two seconds in all) before it
    /// gives up with the bind error. A backend recovered through a handle after its
    /// [`DemoBackend`] was dropped keeps serving until [`crash`](Self::crash) is called.
    pub async fn recover(&self) -> io::Result<()> {
        let mut attempt = 0;
        let listener = loop {
            if self.is_running() {
                return Ok(());
            }
            attempt += 1;
            match bind(self.addr()) {
                Ok(listener) => break listener,
                Err(e)
                    if e.kind() == io::ErrorKind::AddrInUse && attempt < RECOVER_BIND_ATTEMPTS =>
                {
                    tokio::time::sleep(RECOVER_BIND_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.serve(listener);
        tracing::debug!(backend = %self.name(), "demo backend recovered");
        Ok(())
    }

    /// Requests answered so far, `/health` excluded.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Connections accepted so far, over all crashes and recoveries.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// `/health` requests answered so far.
    pub fn health_checks(&self) -> u64 {
        self.shared.health_checks.load(Ordering::Relaxed)
    }

    /// Requests answered with an injected 500 or 503 so far.
    pub fn errors_injected(&self) -> u64 {
        self.shared.errors_injected.load(Ordering::Relaxed)
    }

    /// Requests being handled right now (including ones held by the black hole).
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// A short word for the backend's condition: `down`, `blackhole`,
    /// `health-failing`, `erroring` or `up`.
    pub fn condition(&self) -> &'static str {
        if !self.is_running() {
            "down"
        } else if self.is_blackholed() {
            "blackhole"
        } else if self.is_health_failing() {
            "health-failing"
        } else if self.error_rate() > 0.0 {
            "erroring"
        } else {
            "up"
        }
    }

    /// A copy of all counters and switches.
    pub fn stats(&self) -> BackendStats {
        BackendStats {
            requests: self.requests(),
            health_checks: self.health_checks(),
            errors_injected: self.errors_injected(),
            connections: self.connections(),
            in_flight: self.in_flight(),
            crashes: self.shared.crashes.load(Ordering::Relaxed),
            running: self.is_running(),
            blackholed: self.is_blackholed(),
            health_failing: self.is_health_failing(),
            latency: self.latency(),
            error_rate: self.error_rate(),
        }
    }

    /// Starts the accept loop on `listener` and records it as the running instance.
    fn serve(&self, listener: TcpListener) {
        let listener = Arc::new(ListenerSlot(Mutex::new(Some(listener))));
        let conns = Arc::new(ConnRegistry::default());
        let (stopped, _) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(
            self.shared.clone(),
            listener.clone(),
            conns.clone(),
            stopped.subscribe(),
        ));
        let previous = self.shared.lock_running().replace(Running {
            listener,
            accept: accept.abort_handle(),
            conns,
            stopped,
        });
        if let Some(previous) = previous {
            // Only reachable if two recoveries raced; keep the newest listener.
            previous.stop();
        }
    }
}

/// State shared by the handle, the accept loop and every connection.
struct Shared {
    name: String,
    header: HeaderValue,
    body: Bytes,
    addr: SocketAddr,
    latency_base_ns: AtomicU64,
    latency_jitter_ns: AtomicU64,
    error_rate_bits: AtomicU64,
    health_failing: AtomicBool,
    blackhole: watch::Sender<bool>,
    rng: SharedRng,
    requests: AtomicU64,
    health_checks: AtomicU64,
    errors_injected: AtomicU64,
    connections: AtomicU64,
    in_flight: AtomicU64,
    crashes: AtomicU64,
    running: Mutex<Option<Running>>,
}

impl Shared {
    fn lock_running(&self) -> MutexGuard<'_, Option<Running>> {
        // A poisoned lock only means another thread panicked while holding it; the
        // Option inside is still consistent.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One listening instance of a backend, between a start or recovery and a crash.
struct Running {
    listener: Arc<ListenerSlot>,
    accept: AbortHandle,
    conns: Arc<ConnRegistry>,
    /// Set to `true` on crash; every request of this instance stops waiting.
    stopped: watch::Sender<bool>,
}

impl Running {
    /// Closes the listener at once (so connecting is refused as soon as this
    /// returns), ends the accept loop, stops every request and resets every connection.
    fn stop(self) {
        self.listener.close();
        self.accept.abort();
        self.stopped.send_replace(true);
        self.conns.kill_all();
    }
}

/// The listening socket, shared with the accept loop so that a crash can close it
/// synchronously instead of waiting for the aborted loop to drop it.
struct ListenerSlot(Mutex<Option<TcpListener>>);

impl ListenerSlot {
    fn lock(&self) -> MutexGuard<'_, Option<TcpListener>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the socket.
    fn close(&self) {
        let listener = self.lock().take();
        drop(listener);
    }

    /// The next connection, or `None` once the socket is closed.
    async fn accept(&self) -> Option<io::Result<(TcpStream, SocketAddr)>> {
        std::future::poll_fn(|cx| match self.lock().as_ref() {
            Some(listener) => listener.poll_accept(cx).map(Some),
            None => Poll::Ready(None),
        })
        .await
    }
}

/// The open connections of one running instance, so that a crash can reset them.
#[derive(Default)]
struct ConnRegistry {
    inner: Mutex<ConnMap>,
}

#[derive(Default)]
struct ConnMap {
    next_id: u64,
    closed: bool,
    conns: HashMap<u64, ConnEntry>,
}

struct ConnEntry {
    task: AbortHandle,
    /// A second descriptor of the connection's socket, to set an abortive close on it.
    socket: Option<std::net::TcpStream>,
}

impl ConnRegistry {
    fn lock(&self) -> MutexGuard<'_, ConnMap> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns the task serving `stream` and records it; resets the stream at once if
    /// the instance has already crashed.
    fn spawn(
        self: &Arc<Self>,
        stream: TcpStream,
        shared: Arc<Shared>,
        stopped: watch::Receiver<bool>,
    ) {
        let socket = duplicate(&stream);
        let mut map = self.lock();
        if map.closed {
            drop(map);
            reset_on_close(socket);
            return;
        }
        let id = map.next_id;
        map.next_id += 1;
        let guard = ConnGuard {
            registry: self.clone(),
            id,
        };
        let task = tokio::spawn(async move {
            let _guard = guard;
            serve_connection(stream, shared, stopped).await;
        });
        map.conns.insert(
            id,
            ConnEntry {
                task: task.abort_handle(),
                socket,
            },
        );
    }

    /// Resets every open connection and refuses to record new ones.
    fn kill_all(&self) {
        let entries: Vec<ConnEntry> = {
            let mut map = self.lock();
            map.closed = true;
            map.conns.drain().map(|(_, entry)| entry).collect()
        };
        for entry in entries {
            reset_on_close(entry.socket);
            entry.task.abort();
        }
    }
}

/// Removes a connection from its registry when its task ends or is aborted.
struct ConnGuard {
    registry: Arc<ConnRegistry>,
    id: u64,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.registry.lock().conns.remove(&self.id);
    }
}

/// A second descriptor of the same socket, kept to reset the connection on a crash.
#[cfg(unix)]
fn duplicate(stream: &TcpStream) -> Option<std::net::TcpStream> {
    use std::os::fd::AsFd;
    match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => Some(std::net::TcpStream::from(fd)),
        Err(e) => {
            tracing::debug!(error = %e, "could not duplicate a connection descriptor");
            None
        }
    }
}

/// Without descriptors to duplicate, a crash closes connections normally.
#[cfg(not(unix))]
fn duplicate(_stream: &TcpStream) -> Option<std::net::TcpStream> {
    None
}

/// Sets a zero linger on the socket, so that its last close sends a reset, and closes
/// this descriptor of it.
fn reset_on_close(socket: Option<std::net::TcpStream>) {
    if let Some(socket) = socket {
        let socket = TcpSocket::from_std_stream(socket);
        if let Err(e) = socket.set_zero_linger() {
            tracing::debug!(error = %e, "could not set an abortive close");
        }
    }
}

/// Binds a listening socket on `addr` with `SO_REUSEADDR`, so that a recovery can take
/// the same port back while old connections linger in `TIME_WAIT`.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections until a crash closes the listener (and aborts the task).
async fn accept_loop(
    shared: Arc<Shared>,
    listener: Arc<ListenerSlot>,
    conns: Arc<ConnRegistry>,
    stopped: watch::Receiver<bool>,
) {
    loop {
        let Some(accepted) = listener.accept().await else {
            return;
        };
        match accepted {
            Ok((stream, _peer)) => {
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
                shared.connections.fetch_add(1, Ordering::Relaxed);
                conns.spawn(stream, shared.clone(), stopped.clone());
            }
            Err(e) => {
                tracing::debug!(backend = %shared.name, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

/// Serves HTTP/1.1 or h2c (prior knowledge) on one connection.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, stopped: watch::Receiver<bool>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder.http2().timer(TokioTimer::new());
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let mut stopped = stopped.clone();
        async move {
            tokio::select! {
                response = handle(&shared, req) => Ok(response),
                _ = stopped.wait_for(|s| *s) => Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "backend crashed",
                )),
            }
        }
    });
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::trace!(error = %e, "demo backend connection ended with an error");
    }
}

/// Counts a request as in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers one request according to the backend's current behaviour.
async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<ResponseBody> {
    let _in_flight = InFlight::new(&shared.in_flight);
    let mut blackhole = shared.blackhole.subscribe();
    // The sender lives in `shared`, so this only ends when the black hole is off.
    let _ = blackhole.wait_for(|on| !*on).await;

    let latency = Latency {
        base: Duration::from_nanos(shared.latency_base_ns.load(Ordering::Relaxed)),
        jitter: Duration::from_nanos(shared.latency_jitter_ns.load(Ordering::Relaxed)),
    }
    .sample(shared.rng.next_f64());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let mut response = if req.uri().path() == "/health" {
        shared.health_checks.fetch_add(1, Ordering::Relaxed);
        if shared.health_failing.load(Ordering::Relaxed) {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from_static(b"failing\n"),
            )
        } else {
            text(StatusCode::OK, Bytes::from_static(b"ok\n"))
        }
    } else {
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let error_rate = f64::from_bits(shared.error_rate_bits.load(Ordering::Relaxed));
        if error_rate > 0.0 && shared.rng.next_f64() < error_rate {
            shared.errors_injected.fetch_add(1, Ordering::Relaxed);
            let status = if shared.rng.next_u64() & 1 == 0 {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(
                status,
                Bytes::from(format!("{} injected error\n", shared.name)),
            )
        } else if req.method() == Method::POST && req.uri().path() == "/echo" {
            let content_type = req.headers().get(CONTENT_TYPE).cloned();
            let mut response = Response::new(req.into_body().boxed());
            if let Some(content_type) = content_type {
                response.headers_mut().insert(CONTENT_TYPE, content_type);
            }
            response
        } else {
            text(StatusCode::OK, shared.body.clone())
        }
    };
    response
        .headers_mut()
        .insert(BACKEND_HEADER, shared.header.clone());
    response
}

/// A plain-text response.
fn text(status: StatusCode, body: Bytes) -> Response<ResponseBody> {
    let mut response = Response::new(
        Full::new(body)
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Checks that `name` is non-empty visible ASCII, so it can be sent as a header value
/// and reads well in a table.
pub(crate) fn check_name(name: &str) -> Result<(), DemoError> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(DemoError::InvalidBackendName(name.to_owned()))
    }
}

/// The `x-backend` header value for `name`, once checked.
fn backend_header_value(name: &str) -> Result<HeaderValue, DemoError> {
    check_name(name)?;
    HeaderValue::from_str(name).map_err(|_| DemoError::InvalidBackendName(name.to_owned()))
}

/// Checks that an error rate is a probability.
pub(crate) fn check_error_rate(error_rate: f64) -> Result<(), DemoError> {
    if (0.0..=1.0).contains(&error_rate) {
        Ok(())
    } else {
        Err(DemoError::InvalidErrorRate(error_rate))
    }
}

/// A duration in nanoseconds, saturating at about 584 years.
fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_sample_stays_in_range() {
        let l = Latency::from_millis(10, 4);
        assert_eq!(l.sample(0.0), Duration::from_millis(10));
        assert_eq!(l.sample(0.5), Duration::from_millis(12));
        assert_eq!(l.sample(f64::NAN), Duration::from_millis(10));
        assert_eq!(l.sample(7.0), Duration::from_millis(14));
    }

    #[test]
    fn latency_lerp_moves_linearly() {
        let a = Latency::from_millis(5, 2);
        let b = Latency::from_millis(305, 22);
        assert_eq!(a.lerp(&b, 0.0), a);
        assert_eq!(a.lerp(&b, 1.0), b);
        let mid = a.lerp(&b, 0.5);
        assert_eq!(mid.base.as_millis(), 155);
        assert_eq!(mid.jitter.as_millis(), 12);
    }

    #[test]
    fn latency_displays_in_ms() {
        assert_eq!(Latency::from_millis(5, 0).to_string(), "5 ms");
        assert_eq!(Latency::from_millis(15, 5).to_string(), "15 ms (+0..5 ms)");
        assert_eq!(
            Latency::fixed(Duration::from_micros(2500)).to_string(),
            "2.5 ms"
        );
    }

    #[test]
    fn names_and_rates_are_checked() {
        assert!(backend_header_value("fast").is_ok());
        assert!(backend_header_value("").is_err());
        assert!(backend_header_value("a b").is_err());
        assert!(backend_header_value("naïve").is_err());
        assert!(check_error_rate(0.0).is_ok());
        assert!(check_error_rate(1.0).is_ok());
        assert!(check_error_rate(-0.1).is_err());
        assert!(check_error_rate(f64::NAN).is_err());
    }
}
