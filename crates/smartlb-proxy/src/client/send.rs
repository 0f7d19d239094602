//! The future of [`BackendClient::send`](super::BackendClient::send).
//!
//! Written out by hand so that the common case (a ready pooled connection) keeps
//! the request in one place and the future small: an `async fn` keeps a copy of
//! every by-value argument for its whole life, and every layer of them is moved
//! whole from one future into the next. Everything else (a connection that is not
//! ready yet, a new connection, a connection that closed before taking the
//! request, upgrades) goes through boxed `async fn`s.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::SendRequest;
use pin_project_lite::pin_project;

use super::connect::Conn;
use super::{Inner, upgrade};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::headers::{self, is_upgrade_request, to_upstream_form};
use crate::server::ClientInfo;

/// What [`SendRequest::try_send_request`] answers.
pub(super) type HyperResult = Result<Response<Incoming>, TrySendError<Request<ProxyBody>>>;

type Slow<'a> = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send + 'a>>;

pin_project! {
    /// Sends one request; see [`BackendClient::send`](super::BackendClient::send).
    ///
    /// `F` is the future of [`SendRequest::try_send_request`], which has no name;
    /// `M` makes it (it is that method).
    pub(super) struct SendFuture<'a, F, M> {
        inner: &'a Inner,
        make: M,
        #[pin]
        state: State<'a, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<'a, F> {
        /// Not polled yet.
        Start { req: Option<Request<ProxyBody>> },
        /// Handed to a pooled connection; waiting for the response head.
        Sent {
            #[pin]
            fut: F,
            conn: Option<Conn>,
            method: Method,
        },
        /// Any other case.
        Slow { fut: Slow<'a> },
        Done,
    }
}

impl<'a, F, M> SendFuture<'a, F, M>
where
    F: Future<Output = HyperResult>,
    M: FnMut(&mut SendRequest<ProxyBody>, Request<ProxyBody>) -> F,
{
    pub(super) fn new(inner: &'a Inner, req: Request<ProxyBody>, make: M) -> Self {
        Self {
            inner,
            make,
            state: State::Start { req: Some(req) },
        }
    }
}

impl<'a, F, M> Future for SendFuture<'a, F, M>
where
    F: Future<Output = HyperResult>,
    M: FnMut(&mut SendRequest<ProxyBody>, Request<ProxyBody>) -> F,
{
    type Output = Result<Response<ProxyBody>, ProxyError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let inner: &'a Inner = this.inner;
        loop {
            match this.state.as_mut().project() {
                StateProj::Start { req: slot } => {
                    let Some(req) = slot.as_mut() else {
                        this.state.set(State::Done);
                        continue;
                    };
                    let upgrade = match prepare(inner, req) {
                        Ok(upgrade) => upgrade,
                        Err(e) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Err(e));
                        }
                    };
                    let popped = if upgrade { None } else { inner.pool.pop() };
                    let Some(req) = slot.take() else {
                        continue;
                    };
                    match popped {
                        Some(mut conn) if conn.tx.is_ready() => {
                            let method = req.method().clone();
                            if let Some(deadlines) = &inner.deadlines {
                                conn.watch.begin(deadlines.now());
                            }
                            let fut = (this.make)(&mut conn.tx, req);
                            this.state.set(State::Sent {
                                fut,
                                conn: Some(conn),
                                method,
                            });
                        }
                        first => {
                            let fut: Slow<'a> = if upgrade {
                                Box::pin(upgrade::send_upgrade(inner, req))
                            } else {
                                Box::pin(inner.send_slow(first, req))
                            };
                            this.state.set(State::Slow { fut });
                        }
                    }
                }
                StateProj::Sent { fut, conn, method } => {
                    let watch = match (&inner.deadlines, conn.as_ref()) {
                        (Some(_), Some(conn)) => Some(&*conn.watch),
                        _ => None,
                    };
                    let res = match fut.poll(cx) {
                        Poll::Ready(res) => res,
                        Poll::Pending => {
                            if watch.is_some_and(|w| w.poll_timed_out(cx)) {
                                let e = ProxyError::timeout(method);
                                this.state.set(State::Done);
                                return Poll::Ready(Err(e));
                            }
                            return Poll::Pending;
                        }
                    };
                    if watch.is_some_and(|w| !w.end()) {
                        // The sweeper timed the exchange out just before it ended.
                        let e = ProxyError::timeout(method);
                        this.state.set(State::Done);
                        return Poll::Ready(Err(e));
                    }
                    match res {
                        Ok(resp) => {
                            let out = match conn.take() {
                                Some(conn) => Ok(inner.finish(resp, conn)),
                                None => Err(ProxyError::misuse("exchange without a connection")),
                            };
                            this.state.set(State::Done);
                            return Poll::Ready(out);
                        }
                        Err(mut e) => match e.take_message() {
                            Some(req) => {
                                // The connection closed before taking the request:
                                // the others, or a new one.
                                let fut: Slow<'a> = Box::pin(inner.send_slow(None, req));
                                this.state.set(State::Slow { fut });
                            }
                            None => {
                                let e = ProxyError::from_hyper(e.into_error(), method);
                                this.state.set(State::Done);
                                return Poll::Ready(Err(e));
                            }
                        },
                    }
                }
                StateProj::Slow { fut } => {
                    let out = ready!(fut.as_mut().poll(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(out);
                }
                StateProj::Done => {
                    return Poll::Ready(Err(ProxyError::misuse("polled after completion")));
                }
            }
        }
    }
}

/// Prepares the request's headers for the backend (once) and puts it in the form
/// an HTTP/1.1 backend expects.
/// Returns whether the request is an upgrade.
fn prepare(inner: &Inner, req: &mut Request<ProxyBody>) -> Result<bool, ProxyError> {
    let client = req.extensions().get::<ClientInfo>().copied();
    // A request handed back by a failed attempt was prepared already.
    let upgrade = match headers::prepare(req, client.as_ref()) {
        Some(upgrade) => upgrade,
        None => is_upgrade_request(req),
    };
    to_upstream_form(req, &inner.host).map_err(ProxyError::bad_request)?;
    Ok(upgrade)
}
