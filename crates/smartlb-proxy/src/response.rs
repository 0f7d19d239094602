//! Responses produced by the proxy itself.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::body::ProxyBody;

/// The header naming why the proxy produced a response itself.
pub const X_SMARTLB_ERROR: HeaderName = HeaderName::from_static("x-smartlb-error");

/// The `x-smartlb-error` tokens this crate produces.
pub mod cause {
    /// The backend could not be connected to (refused, unreachable, connect timeout).
    pub const BACKEND_UNREACHABLE: &str = "backend-unreachable";
    /// The backend closed or reset the connection during the exchange.
    pub const BACKEND_RESET: &str = "backend-reset";
    /// The backend did not send a response head within the request timeout.
    pub const BACKEND_TIMEOUT: &str = "backend-timeout";
    /// The backend sent something that is not valid HTTP/1.1.
    pub const BACKEND_PROTOCOL: &str = "backend-protocol";
    /// No backend is available to serve the request.
    pub const NO_HEALTHY_BACKEND: &str = "no-healthy-backend";
    /// The request cannot be forwarded as it is (or its body failed while streaming).
    pub const BAD_REQUEST: &str = "bad-request";
    /// The request head is larger than the configured `max_header_bytes`.
    pub const REQUEST_HEADER_TOO_LARGE: &str = "request-header-too-large";
    /// The client exceeded a rate limit.
    pub const RATE_LIMITED: &str = "rate-limited";
}

/// Builds one of the proxy's own responses.
///
/// The response carries `x-smartlb-error: <cause>`, a short `text/plain` body
/// (`"502 Bad Gateway: backend-unreachable"`), `cache-control: no-store`, and for
/// 503 and 429 also `Retry-After: 1`.
///
/// `cause` should be a lowercase token such as the constants in [`cause`]; a value
/// that is not a valid header value is replaced by `proxy-error`.
pub fn error_response(status: StatusCode, cause: &'static str) -> Response<ProxyBody> {
    let cause = if is_header_safe(cause) {
        cause
    } else {
        "proxy-error"
    };
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = format!("{} {reason}: {cause}\n", status.as_u16());
    let mut resp = Response::new(ProxyBody::full(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // `cause` was checked above, so `from_static` cannot panic.
    headers.insert(X_SMARTLB_ERROR, HeaderValue::from_static(cause));
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// The same test `HeaderValue::from_static` applies, done first so it cannot panic.
fn is_header_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (32..127).contains(&b) || b == b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn error_response_names_its_cause() {
        let resp = error_response(StatusCode::BAD_GATEWAY, cause::BACKEND_UNREACHABLE);
        assert_eq!(resp.status(), 502);
        assert_eq!(resp.headers()[X_SMARTLB_ERROR], "backend-unreachable");
        assert!(resp.headers().get(RETRY_AFTER).is_none());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"502 Bad Gateway: backend-unreachable\n");
    }

    #[test]
    fn unavailable_has_retry_after() {
        let resp = error_response(StatusCode::SERVICE_UNAVAILABLE, cause::NO_HEALTHY_BACKEND);
        assert_eq!(resp.headers()[RETRY_AFTER], "1");
        assert_eq!(resp.headers()[X_SMARTLB_ERROR], "no-healthy-backend");
    }

    #[test]
    fn invalid_cause_is_replaced() {
        let resp = error_response(StatusCode::BAD_GATEWAY, "bad\ncause");
        assert_eq!(resp.headers()[X_SMARTLB_ERROR], "proxy-error");
        let resp = error_response(StatusCode::BAD_GATEWAY, "");
        assert_eq!(resp.headers()[X_SMARTLB_ERROR], "proxy-error");
    }
}
