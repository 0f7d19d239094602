//! The upstream side: one backend's forwarding service with its own pool of
//! keep-alive HTTP/1.1 connections.

mod connect;
mod deadline;
mod h2;
pub(crate) mod pool;
mod send;
mod service;
mod upgrade;

pub use service::ResponseFuture;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::headers::prepare_response;
use connect::{Conn, Target, connect_http1};
use deadline::{Deadlines, Watched};
use futures_util::FutureExt as _;
use http::header::HeaderValue;
use http::{Method, Request, Response};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use pool::{Pool, PoolReturn};

/// How long a pooled connection may take to become ready for its next request.
const READY_WAIT: Duration = Duration::from_millis(50);

/// Settings of one backend's client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// The longest a TCP connect may take (SPEC `connect_timeout`). Zero: no limit.
    pub connect_timeout: Duration,
    /// The longest to wait for the response head once the request was handed to a
    /// connection; past it the exchange fails with a timeout (`504
    /// backend-timeout`). It is kept in ticks of an eighth of its length, so the
    /// exchange fails between 1 and 1.125 times it after the hand-over. Zero: no
    /// limit.
    pub request_timeout: Duration,
    /// The most idle keep-alive connections kept for reuse; 0 disables reuse.
    pub max_idle: usize,
    /// How long an idle connection is kept before it is closed; zero disables
    /// reuse.
    pub idle_timeout: Duration,
    /// TLS to the backend (`https://`); `None`: plain TCP.
    pub tls: Option<crate::tls::ClientTls>,
    /// Speak HTTP/2 to the backend over one multiplexed connection (prior knowledge
    /// without TLS, ALPN `h2` with it) instead of pooled HTTP/1.1 connections.
    pub http2: bool,
}

impl Default for ClientOptions {
    /// 1 s connect timeout (SPEC default), 30 s request timeout (the server's
    /// default), 128 idle connections, 30 s idle timeout.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            max_idle: 128,
            idle_timeout: Duration::from_secs(30),
            tls: None,
            http2: false,
        }
    }
}

/// A backend address that is not `ip:port` or `host:port`.
#[derive(Debug, thiserror::Error)]
#[error("invalid backend address {input:?}: expected ip:port or host:port")]
pub struct AddrError {
    input: String,
}

/// One backend's forwarding service.
///
/// It sends each request over one of its own keep-alive HTTP/1.1 connections:
/// the most recently used idle one, or a new one (opened with the connect timeout
/// and `TCP_NODELAY`). A connection goes back to the pool only when its response
/// body was read to the end; the pool holds at most `max_idle` of them, each for
/// at most `idle_timeout`. A connection found closed before the request was
/// written is skipped and the request sent on another, so a backend closing idle
/// connections never fails a request.
///
/// Before sending, the request is prepared once ([`prepare_request`](crate::prepare_request))
/// and put in HTTP/1.1 origin form. The response's hop-by-hop headers are removed
/// and a `Via` entry added. Upgrade requests (WebSocket) go over a dedicated
/// connection; on `101 Switching Protocols` the two upgraded connections are
/// joined by a spawned task.
///
/// Cloning is cheap: clones share the pool.
///
/// As a [`Service`](tower_service::Service) it accepts any request body (a
/// [`ProxyBody`] or hyper [`Incoming`] without boxing) and fails with
/// [`ProxyError`]; its future is boxed. The inherent [`send`](Self::send) avoids
/// that allocation.
#[derive(Clone)]
pub struct BackendClient {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    /// `Host` for requests that arrive without one (HTTP/1.0 clients).
    host: HeaderValue,
    opts: ClientOptions,
    pool: Arc<Pool>,
    open: Arc<AtomicUsize>,
    reaper_started: AtomicBool,
    /// The request timeout's deadlines; `None` without a request timeout.
    deadlines: Option<Arc<Deadlines>>,
    sweeper_started: AtomicBool,
    /// The HTTP/2 connection (`opts.http2`).
    h2: h2::H2,
}

/// The outcome of handing a request to one connection.
enum Exchange {
    Done(Response<Incoming>),
    /// The connection closed before taking the request: it comes back unsent.
    NotSent(Request<ProxyBody>, hyper::Error),
    Failed(ProxyError),
}

impl BackendClient {
    /// A client for the backend at `addr`.
    pub fn new(addr: SocketAddr, opts: ClientOptions) -> Self {
        Self::with_target(Target::Addr(addr), opts)
    }

    /// A client for `ip:port` or `host:port`; a host name is resolved at each
    /// connect.
    ///
    /// # Errors
    ///
    /// [`AddrError`] when `authority` has no port or an empty host.
    pub fn from_authority(authority: &str, opts: ClientOptions) -> Result<Self, AddrError> {
        if let Ok(addr) = authority.parse::<SocketAddr>() {
            return Ok(Self::new(addr, opts));
        }
        let valid = match authority.rsplit_once(':') {
            Some((host, port)) => {
                !host.is_empty()
                    && port.parse::<u16>().is_ok()
                    && !host.contains(['/', ' ', '@', '?', '#'])
            }
            None => false,
        };
        if !valid {
            return Err(AddrError {
                input: authority.to_owned(),
            });
        }
        Ok(Self::with_target(Target::Name(Arc::from(authority)), opts))
    }

    fn with_target(target: Target, opts: ClientOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                host: HeaderValue::from_str(&target.to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("localhost")),
                pool: Arc::new(Pool::new(opts.max_idle, opts.idle_timeout)),
                deadlines: Deadlines::new(opts.request_timeout).map(Arc::new),
                sweeper_started: AtomicBool::new(false),
                target,
                opts,
                open: Arc::new(AtomicUsize::new(0)),
                reaper_started: AtomicBool::new(false),
                h2: h2::H2::default(),
            }),
        }
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.opts
    }

    /// Idle connections ready for reuse.
    pub fn idle_connections(&self) -> usize {
        self.inner.pool.len()
    }

    /// Open HTTP connections to the backend: idle, busy, and upgrade connections
    /// until their upgrade (a tunnel is no longer counted).
    pub fn open_connections(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Opens up to `n` connections and keeps them idle, ready for a surge, within
    /// the `max_idle` cap. Returns how many were opened.
    ///
    /// # Errors
    ///
    /// The first connect error when none of the connections could be opened.
    pub async fn prewarm(&self, n: usize) -> Result<usize, ProxyError> {
        let n = n.min(self.inner.pool.room());
        let attempts = (0..n).map(|_| self.inner.connect());
        let results = futures_util::future::join_all(attempts).await;
        let mut opened = 0;
        let mut first_err = None;
        for res in results {
            match res {
                Ok(conn) => {
                    self.inner.pool.push(conn);
                    opened += 1;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if opened == 0 => Err(e),
            _ => Ok(opened),
        }
    }

    /// Sends `req` to the backend and returns its response, body streaming.
    ///
    /// Like an `async fn`, the returned future does nothing until it is polled.
    ///
    /// # Errors
    ///
    /// A [`ProxyError`] saying what failed; when the request was not sent it holds
    /// the request ([`ProxyError::take_request`]).
    pub fn send(
        &self,
        req: Request<ProxyBody>,
    ) -> impl Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send + '_ {
        if self.inner.opts.http2 {
            futures_util::future::Either::Right(Box::pin(self.inner.send_h2(req)))
        } else {
            futures_util::future::Either::Left(send::SendFuture::new(
                &self.inner,
                req,
                SendRequest::try_send_request,
            ))
        }
    }

    /// [`send`](Self::send), with a failure turned into the proxy's error response
    /// ([`ProxyError::into_response`]).
    pub fn forward(
        &self,
        req: Request<ProxyBody>,
    ) -> impl Future<Output = Response<ProxyBody>> + Send + '_ {
        let target = &self.inner.target;
        self.send(req).map(move |res| match res {
            Ok(resp) => resp,
            Err(e) => {
                tracing::debug!(backend = %target, error = %e, "forwarding failed");
                e.into_response()
            }
        })
    }
}

/// What an exchange on one connection came to, from hyper's answer (`None`: the
/// request timeout expired first).
fn outcome(res: Option<send::HyperResult>, method: &Method) -> Exchange {
    match res {
        None => Exchange::Failed(ProxyError::timeout(method)),
        Some(Ok(resp)) => Exchange::Done(resp),
        Some(Err(mut e)) => match e.take_message() {
            Some(req) => Exchange::NotSent(req, e.into_error()),
            None => Exchange::Failed(ProxyError::from_hyper(e.into_error(), method)),
        },
    }
}

impl Inner {
    async fn connect(&self) -> Result<Conn, ProxyError> {
        let conn = connect_http1(
            &self.target,
            self.opts.connect_timeout,
            self.opts.tls.as_ref(),
            &self.open,
            false,
            self.deadlines.as_deref(),
        )
        .await?;
        self.start_sweeper();
        self.start_reaper();
        Ok(conn)
    }

    /// Starts the request timeout's sweeper, once.
    fn start_sweeper(&self) {
        if let Some(deadlines) = &self.deadlines
            && !self.sweeper_started.swap(true, Ordering::Relaxed)
        {
            tokio::spawn(deadline::sweep(
                Arc::downgrade(deadlines),
                deadlines.every(),
            ));
        }
    }

    /// Starts the pool's reaper, once.
    fn start_reaper(&self) {
        if self.opts.max_idle == 0 || self.opts.idle_timeout.is_zero() {
            return;
        }
        if !self.reaper_started.swap(true, Ordering::Relaxed) {
            tokio::spawn(pool::reap(
                Arc::downgrade(&self.pool),
                self.pool.tick_interval(),
            ));
        }
    }

    /// Waits (briefly) for a pooled connection to accept a new request: one that
    /// just finished its previous exchange may need its task to run first. One
    /// still busy after [`READY_WAIT`] (say, still sending the body of a request
    /// the backend answered early) is given up: it closes once that is done.
    async fn wait_ready(&self, conn: &mut Conn) -> bool {
        matches!(
            tokio::time::timeout(READY_WAIT, conn.tx.ready()).await,
            Ok(Ok(()))
        )
    }

    /// Hands `req` to `conn` and waits for the response head, within the request
    /// timeout.
    async fn exchange(&self, conn: &mut Conn, req: Request<ProxyBody>) -> Exchange {
        let method: Method = req.method().clone();
        let res = match &self.deadlines {
            None => Some(conn.tx.try_send_request(req).await),
            Some(deadlines) => {
                conn.watch.begin(deadlines.now());
                let sent = conn.tx.try_send_request(req);
                match Watched::new(sent, &conn.watch).await {
                    Some(res) if conn.watch.end() => Some(res),
                    _ => None,
                }
            }
        };
        outcome(res, &method)
    }

    /// Sends a request when the most recent idle connection (`first`, if any) is
    /// not ready to take it at once, or closed before taking it: the idle
    /// connections, most recent first, then a new one.
    async fn send_slow(
        &self,
        first: Option<Conn>,
        req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let mut req = req;
        let mut next = first;
        // Each pop takes one out of the bounded pool, so this loop ends.
        for _ in 0..=self.opts.max_idle {
            let Some(mut conn) = next.take().or_else(|| self.pool.pop()) else {
                break;
            };
            if !conn.tx.is_ready() && !self.wait_ready(&mut conn).await {
                continue;
            }
            match self.exchange(&mut conn, req).await {
                Exchange::Done(resp) => return Ok(self.finish(resp, conn)),
                Exchange::NotSent(unsent, _) => req = unsent,
                Exchange::Failed(e) => return Err(e),
            }
        }
        let mut conn = match self.connect().await {
            Ok(conn) => conn,
            Err(e) => return Err(e.with_request(req)),
        };
        match self.exchange(&mut conn, req).await {
            Exchange::Done(resp) => Ok(self.finish(resp, conn)),
            Exchange::NotSent(unsent, e) => {
                Err(ProxyError::closed_before_send(e).with_request(unsent))
            }
            Exchange::Failed(e) => Err(e),
        }
    }

    /// Cleans the response and arranges for the connection to go back to the
    /// pool once the body is read.
    fn finish(&self, resp: Response<Incoming>, conn: Conn) -> Response<ProxyBody> {
        let mut resp = resp;
        let stripped = prepare_response(&mut resp);
        let reusable = !stripped.close && resp.version() == http::Version::HTTP_11;
        let (parts, body) = resp.into_parts();
        let body = if !reusable {
            ProxyBody::upstream(body, None)
        } else if body.is_end_stream() {
            self.pool.push(conn);
            ProxyBody::from(body)
        } else {
            ProxyBody::upstream(body, Some(PoolReturn::new(conn, self.pool.clone())))
        };
        Response::from_parts(parts, body)
    }
}

impl fmt::Debug for BackendClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendClient")
            .field("target", &format_args!("{}", self.inner.target))
            .field("idle", &self.idle_connections())
            .field("open", &self.open_connections())
            .finish()
    }
}
