//! One downstream connection: the service adaptor and the task driving it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use http::header::{CONNECTION, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tower_service::Service;

use super::io::{ConnShared, CountingIo};
use super::timer::HeadTimer;
use super::{ClientInfo, ServerState};
use crate::body::ProxyBody;
use crate::headers::request_head_size;
use crate::response::{cause, error_response};

/// Settings every connection task reads.
pub(crate) struct ConnConfig {
    pub(crate) builder: auto::Builder<TokioExecutor>,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_header_bytes: usize,
    /// A fixed instant for [`HeadTimer`]'s clock.
    pub(crate) epoch: std::time::Instant,
}

/// Adapts the caller's tower service to hyper: counts request heads, enforces
/// `max_header_bytes`, and inserts the [`ClientInfo`].
struct ConnService<S> {
    inner: S,
    info: ClientInfo,
    shared: Arc<ConnShared>,
    max_header_bytes: usize,
}

impl<S> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible> + Clone,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ConnFuture<S>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.shared.on_head();
        if request_head_size(&req) > self.max_header_bytes {
            let mut response = error_response(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                cause::REQUEST_HEADER_TOO_LARGE,
            );
            // A client sending such heads is not worth keeping (HTTP/2 drops this
            // header itself).
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return ConnFuture::Ready {
                response: Some(response),
            };
        }
        req.extensions_mut().insert(self.info);
        let mut svc = self.inner.clone();
        // The tower contract wants `poll_ready` before `call`. A service ready at
        // once (the usual case) is called right away, so the future hyper keeps is
        // the service's own, moved once; otherwise it is polled again with the
        // connection task's context.
        match svc.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => ConnFuture::Call { fut: svc.call(req) },
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => ConnFuture::Waiting {
                svc,
                req: Some(req),
            },
        }
    }
}

pin_project! {
    #[project = ConnFutureProj]
    enum ConnFuture<S>
    where
        S: Service<Request<Incoming>>,
    {
        Ready { response: Option<Response<ProxyBody>> },
        Waiting { svc: S, req: Option<Request<Incoming>> },
        Call { #[pin] fut: S::Future },
    }
}

impl<S> Future for ConnFuture<S>
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>,
{
    type Output = Result<Response<ProxyBody>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                ConnFutureProj::Ready { response } => {
                    return Poll::Ready(Ok(response.take().unwrap_or_else(
                        // Polled after completion: answer something sane rather than panic.
                        || error_response(StatusCode::INTERNAL_SERVER_ERROR, "proxy-error"),
                    )));
                }
                ConnFutureProj::Waiting { svc, req } => {
                    if let Err(never) = ready!(svc.poll_ready(cx)) {
                        match never {}
                    }
                    let Some(req) = req.take() else {
                        self.set(ConnFuture::Ready { response: None });
                        continue;
                    };
                    let fut = svc.call(req);
                    self.set(ConnFuture::Call { fut });
                }
                ConnFutureProj::Call { fut } => return fut.poll(cx),
            }
        }
    }
}

/// What the connection's watchdog timer is waiting for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// The first request head must arrive within `header_read_timeout`.
    FirstHead,
    /// Close the connection gracefully after `idle_timeout` without any I/O.
    Idle,
    /// Nothing left to watch.
    Off,
}

/// Drives one accepted connection until it closes, the server aborts it, or its
/// timers close it.
pub(crate) async fn run_connection<S, I>(
    stream: I,
    info: ClientInfo,
    service: S,
    cfg: Arc<ConnConfig>,
    mut state: watch::Receiver<ServerState>,
    permit: OwnedSemaphorePermit,
) where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _permit = permit;
    let remote = info.remote;
    let shared = Arc::new(ConnShared::default());
    let mut builder = cfg.builder.clone();
    if !cfg.header_read_timeout.is_zero() {
        builder
            .http1()
            .timer(HeadTimer::new(
                shared.clone(),
                cfg.header_read_timeout,
                cfg.epoch,
            ))
            .header_read_timeout(cfg.header_read_timeout);
    }
    let svc = ConnService {
        inner: service,
        info,
        shared: shared.clone(),
        max_header_bytes: cfg.max_header_bytes,
    };
    let io = TokioIo::new(CountingIo::new(stream, shared.clone()));
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);

    let idle_tick = (cfg.idle_timeout / 4).max(Duration::from_millis(1));
    let (mut watch, first) = if !cfg.header_read_timeout.is_zero() {
        (Watch::FirstHead, cfg.header_read_timeout)
    } else if !cfg.idle_timeout.is_zero() {
        (Watch::Idle, idle_tick)
    } else {
        (Watch::Off, Duration::ZERO)
    };
    let timer = tokio::time::sleep(first);
    tokio::pin!(timer);
    let mut last_activity = shared.activity();
    let mut quiet_since = Instant::now();
    let mut closing = false;

    // A connection accepted just as shutdown began must see it too.
    if *state.borrow_and_update() != ServerState::Running {
        closing = true;
        conn.as_mut().graceful_shutdown();
    }

    // The watchdog futures (server state, timer) are polled with their own waker,
    // and only after it fired: the task wakes several times per request for the
    // connection's I/O, and polling them on each of those wake-ups would cost a
    // lock and a timer check every time.
    let side = Arc::new(SideWake::default());
    let side_waker = Waker::from(side.clone());
    loop {
        let event = {
            let changed = state.changed();
            tokio::pin!(changed);
            // A new state future needs its first poll to register.
            side.pending.store(true, Ordering::Relaxed);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(res) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Event::Done(res));
                }
                side.task.register(cx.waker());
                if !side.pending.swap(false, Ordering::AcqRel) {
                    return Poll::Pending;
                }
                let mut side_cx = Context::from_waker(&side_waker);
                if let Poll::Ready(res) = changed.as_mut().poll(&mut side_cx) {
                    return Poll::Ready(Event::State(res.is_ok()));
                }
                if watch != Watch::Off && timer.as_mut().poll(&mut side_cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                Poll::Pending
            })
            .await
        };
        match event {
            Event::Done(res) => {
                if let Err(e) = res {
                    tracing::debug!(%remote, error = %e, "downstream connection ended with an error");
                }
                return;
            }
            Event::State(false) => {
                // The server is gone.
                return;
            }
            Event::State(true) => match *state.borrow_and_update() {
                ServerState::Running => {}
                ServerState::Draining => {
                    if !closing {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
                ServerState::Abort => return,
            },
            Event::Timer => {
                let now = Instant::now();
                match watch {
                    Watch::FirstHead => {
                        if shared.heads() == 0 {
                            tracing::debug!(%remote, "no request head within header_read_timeout; closing");
                            return;
                        }
                        watch = if cfg.idle_timeout.is_zero() {
                            Watch::Off
                        } else {
                            Watch::Idle
                        };
                        last_activity = shared.activity();
                        quiet_since = now;
                    }
                    Watch::Idle => {
                        let activity = shared.activity();
                        if activity != last_activity {
                            last_activity = activity;
                            quiet_since = now;
                        } else if now.duration_since(quiet_since) >= cfg.idle_timeout {
                            tracing::trace!(%remote, "idle timeout; closing gracefully");
                            watch = Watch::Off;
                            if !closing {
                                closing = true;
                                conn.as_mut().graceful_shutdown();
                            }
                        }
                    }
                    Watch::Off => {}
                }
                if watch != Watch::Off {
                    timer.as_mut().reset(now + idle_tick);
                }
            }
        }
    }
}

/// What woke the connection's loop.
enum Event<R> {
    /// The connection ended.
    Done(R),
    /// The server's state changed (`false`: the server is gone).
    State(bool),
    /// The watchdog timer fired.
    Timer,
}

/// The waker of a connection's watchdog futures: notes that they need a poll and
/// wakes the connection task.
#[derive(Default)]
struct SideWake {
    task: AtomicWaker,
    pending: AtomicBool,
}

impl Wake for SideWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.pending.store(true, Ordering::Release);
        self.task.wake();
    }
}
