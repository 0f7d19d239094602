//! [`ProxyError`]: why forwarding a request to one backend failed.

use std::error::Error as StdError;
use std::fmt;

use http::{Method, Request, Response, StatusCode};

use crate::body::{BoxError, ProxyBody};
use crate::response::{cause, error_response};

/// Why forwarding a request to one backend failed.
///
/// The error is opaque: branch on it with the `is_*` methods. It tells
///
/// - what went wrong ([`is_connect`](Self::is_connect), [`is_timeout`](Self::is_timeout),
///   [`is_reset`](Self::is_reset), [`is_protocol`](Self::is_protocol)) and on which
///   [`side`](Self::side);
/// - whether the request may have reached the backend ([`was_sent`](Self::was_sent))
///   and so whether another backend may be tried ([`is_retryable`](Self::is_retryable));
/// - what to answer the client ([`status`](Self::status), [`cause`](Self::cause),
///   [`into_response`](Self::into_response)).
///
/// When the request was not sent, the error holds it, body untouched:
/// [`take_request`](Self::take_request) gives it back so it can be sent to another
/// backend without the body ever being buffered.
pub struct ProxyError {
    inner: Box<Inner>,
}

struct Inner {
    kind: Kind,
    sent: bool,
    idempotent: bool,
    source: Option<BoxError>,
    request: Option<Request<ProxyBody>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// TCP connect failed (refused, unreachable, name resolution).
    Connect,
    /// TCP connect did not finish within the connect timeout.
    ConnectTimeout,
    /// No response head within the request timeout.
    Timeout,
    /// The connection was closed or reset during the exchange.
    Reset,
    /// The backend's response was not valid HTTP/1.1.
    Protocol,
    /// Reading the request body from the client failed.
    RequestBody,
    /// The request cannot be forwarded in the form it has.
    BadRequest,
}

/// Which side of the proxy an error comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Side {
    /// The backend, or the network path to it.
    Upstream,
    /// The client: its request or its request body.
    Downstream,
}

impl ProxyError {
    fn new(kind: Kind, sent: bool) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                sent,
                idempotent: false,
                source: None,
                request: None,
            }),
        }
    }

    pub(crate) fn connect(source: std::io::Error) -> Self {
        Self::new(Kind::Connect, false).with_source(source)
    }

    pub(crate) fn connect_timeout() -> Self {
        Self::new(Kind::ConnectTimeout, false)
    }

    pub(crate) fn handshake(source: hyper::Error) -> Self {
        Self::new(Kind::Connect, false).with_source(source)
    }

    pub(crate) fn timeout(method: &Method) -> Self {
        Self::new(Kind::Timeout, true).with_method(method)
    }

    /// The connection closed before the request was written: nothing was sent.
    pub(crate) fn closed_before_send(source: hyper::Error) -> Self {
        Self::new(Kind::Reset, false).with_source(source)
    }

    /// A future used against its contract (polled after it completed).
    pub(crate) fn misuse(msg: &'static str) -> Self {
        Self::new(Kind::Reset, false).with_source(msg)
    }

    pub(crate) fn bad_request(msg: &'static str) -> Self {
        Self::new(Kind::BadRequest, false).with_source(msg)
    }

    /// Classifies an error of an exchange whose request was handed to the connection.
    pub(crate) fn from_hyper(e: hyper::Error, method: &Method) -> Self {
        let kind = if e.is_user() {
            Kind::RequestBody
        } else if e.is_parse() || e.is_parse_status() {
            Kind::Protocol
        } else if e.is_timeout() {
            Kind::Timeout
        } else {
            Kind::Reset
        };
        Self::new(kind, true).with_method(method).with_source(e)
    }

    fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    fn with_method(mut self, method: &Method) -> Self {
        self.inner.idempotent = is_idempotent(method);
        self
    }

    /// Attaches the unsent request so the caller can retry it elsewhere.
    pub(crate) fn with_request(mut self, req: Request<ProxyBody>) -> Self {
        self.inner.idempotent = is_idempotent(req.method());
        self.inner.request = Some(req);
        self
    }

    /// The backend could not be connected to (including a connect timeout).
    pub fn is_connect(&self) -> bool {
        matches!(self.inner.kind, Kind::Connect | Kind::ConnectTimeout)
    }

    /// A deadline passed: the connect timeout, or the request timeout while
    /// waiting for the response head.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::Timeout | Kind::ConnectTimeout)
    }

    /// The backend closed or reset the connection during the exchange.
    pub fn is_reset(&self) -> bool {
        self.inner.kind == Kind::Reset
    }

    /// The backend answered with something that is not valid HTTP/1.1.
    pub fn is_protocol(&self) -> bool {
        self.inner.kind == Kind::Protocol
    }

    /// Which side caused the failure.
    pub fn side(&self) -> Side {
        match self.inner.kind {
            Kind::RequestBody | Kind::BadRequest => Side::Downstream,
            _ => Side::Upstream,
        }
    }

    /// Whether the request may have reached the backend.
    ///
    /// `false` for connect failures and for connections found closed before the
    /// request was written: the backend cannot have seen the request.
    pub fn was_sent(&self) -> bool {
        self.inner.sent
    }

    /// Whether sending the request again, to another backend, is safe.
    ///
    /// True when the request was not sent, or when it was sent with an idempotent
    /// method (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) and failed by a reset or a
    /// timeout. Errors caused by the client are never retryable. A sent request is
    /// not held by the error: retrying it needs a copy kept by the caller (easy for
    /// requests without a body).
    pub fn is_retryable(&self) -> bool {
        if self.side() == Side::Downstream {
            return false;
        }
        !self.inner.sent
            || (self.inner.idempotent && matches!(self.inner.kind, Kind::Reset | Kind::Timeout))
    }

    /// The `x-smartlb-error` token for this error.
    pub fn cause(&self) -> &'static str {
        match self.inner.kind {
            Kind::Connect | Kind::ConnectTimeout => cause::BACKEND_UNREACHABLE,
            Kind::Timeout => cause::BACKEND_TIMEOUT,
            Kind::Reset => cause::BACKEND_RESET,
            Kind::Protocol => cause::BACKEND_PROTOCOL,
            Kind::RequestBody | Kind::BadRequest => cause::BAD_REQUEST,
        }
    }

    /// The status to answer the client with: 502 for connect failures, resets and
    /// protocol errors, 504 for a response timeout, 400 for errors of the client.
    pub fn status(&self) -> StatusCode {
        match self.inner.kind {
            Kind::Connect | Kind::ConnectTimeout | Kind::Reset | Kind::Protocol => {
                StatusCode::BAD_GATEWAY
            }
            Kind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Kind::RequestBody | Kind::BadRequest => StatusCode::BAD_REQUEST,
        }
    }

    /// The response to send to the client (see [`error_response`]).
    pub fn into_response(self) -> Response<ProxyBody> {
        error_response(self.status(), self.cause())
    }

    /// Whether the error holds the unsent request.
    pub fn has_request(&self) -> bool {
        self.inner.request.is_some()
    }

    /// Takes back the request when it was not sent.
    ///
    /// The request is as the client sent it except that its headers were already
    /// prepared for forwarding (see [`prepare_request`](crate::prepare_request),
    /// which will not apply twice) and it is in HTTP/1.1 origin form; its body
    /// was not read. An upgrade request keeps the client's upgrade handle.
    pub fn take_request(&mut self) -> Option<Request<ProxyBody>> {
        self.inner.request.take()
    }
}

/// Methods RFC 9110 calls idempotent.
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

impl fmt::Debug for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyError")
            .field("kind", &self.inner.kind)
            .field("sent", &self.inner.sent)
            .field("has_request", &self.inner.request.is_some())
            .field("source", &self.inner.source)
            .finish()
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner.kind {
            Kind::Connect => "backend connection failed",
            Kind::ConnectTimeout => "backend connection timed out",
            Kind::Timeout => "backend response timed out",
            Kind::Reset => "backend connection closed during the exchange",
            Kind::Protocol => "backend sent an invalid response",
            Kind::RequestBody => "request body failed",
            Kind::BadRequest => "request cannot be forwarded",
        })
    }
}

impl StdError for ProxyError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|e| &**e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_failure_is_unsent_and_retryable() {
        let e = ProxyError::connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(e.is_connect());
        assert!(!e.is_timeout());
        assert!(!e.was_sent());
        assert!(e.is_retryable());
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(e.cause(), "backend-unreachable");
        assert_eq!(e.side(), Side::Upstream);
        assert!(e.source().is_some());
        assert_eq!(e.to_string(), "backend connection failed");
    }

    #[test]
    fn connect_timeout_is_connect_and_timeout() {
        let e = ProxyError::connect_timeout();
        assert!(e.is_connect() && e.is_timeout());
        assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn timeout_retry_depends_on_method() {
        let get = ProxyError::timeout(&Method::GET);
        assert!(get.was_sent() && get.is_retryable());
        assert_eq!(get.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(get.cause(), "backend-timeout");
        let post = ProxyError::timeout(&Method::POST);
        assert!(!post.is_retryable());
    }

    #[test]
    fn request_is_given_back() {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/x")
            .body(ProxyBody::full("payload"))
            .unwrap();
        let mut e = ProxyError::connect_timeout().with_request(req);
        assert!(e.has_request());
        assert!(e.is_retryable());
        let req = e.take_request().unwrap();
        assert_eq!(req.uri(), "/x");
        assert!(e.take_request().is_none());
    }

    #[test]
    fn bad_request_is_downstream() {
        let e = ProxyError::bad_request("CONNECT is not supported");
        assert_eq!(e.side(), Side::Downstream);
        assert!(!e.is_retryable());
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let resp = e.into_response();
        assert_eq!(resp.headers()["x-smartlb-error"], "bad-request");
    }

    #[test]
    fn idempotent_methods() {
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::PUT,
            Method::DELETE,
            Method::TRACE,
        ] {
            assert!(is_idempotent(&m), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!is_idempotent(&m), "{m}");
        }
    }
}
