//! Bearer-token and same-origin checks for mutating calls.

use http::{HeaderMap, Uri, header};

/// The outcome of checking a mutating request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No bearer token where one is required (401).
    MissingToken,
    /// A bearer token that does not match (403).
    WrongToken,
    /// A browser request from another origin (403).
    CrossOrigin,
}

/// Checks `Authorization: Bearer TOKEN` against `expected` (when set) and refuses
/// cross-origin browser requests, which could otherwise drive an unauthenticated admin
/// API on loopback from any web page the operator visits.
pub(crate) fn check(expected: Option<&str>, headers: &HeaderMap, uri: &Uri) -> Result<(), Denied> {
    if let Some(expected) = expected {
        let Some(given) = bearer(headers) else {
            return Err(Denied::MissingToken);
        };
        if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(Denied::WrongToken);
        }
    }
    if cross_origin(headers, uri) {
        return Err(Denied::CrossOrigin);
    }
    Ok(())
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether a browser marked the request as coming from another site, or its `Origin`
/// names a different host than the request's own.
fn cross_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site.eq_ignore_ascii_case("cross-site")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Some(origin) = origin.to_str().ok() else {
        return true;
    };
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    let own_host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()));
    match (origin_host, own_host) {
        (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
        // `Origin: null` (sandboxed or file pages) or no host to compare with.
        _ => true,
    }
}

/// Compares two byte strings in time that depends only on their lengths, not on where
/// they first differ.
pub(crate) fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        // Past the end of `given`, compare against 0 so the loop always runs in full.
        let g = given.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(g ^ e);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret2", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret\0", b"secret"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_tokens() {
        let uri = Uri::from_static("/api/v1/reload");
        let host = ("host", "127.0.0.1:9901");
        assert_eq!(check(None, &headers(&[host]), &uri), Ok(()));
        assert_eq!(
            check(Some("t0k"), &headers(&[host]), &uri),
            Err(Denied::MissingToken)
        );
        assert_eq!(
            check(
                Some("t0k"),
                &headers(&[host, ("authorization", "Basic dDBr")]),
                &uri
            ),
            Err(Denied::MissingToken)
        );
        assert_eq!(
            check(
                Some("t0k"),
                &headers(&[host, ("authorization", "Bearer ")]),
                &uri
            ),
            Err(Denied::MissingToken)
        );
        assert_eq!(
            check(
                Some("t0k"),
                &headers(&[host, ("authorization", "Bearer nope")]),
                &uri
            ),
            Err(Denied::WrongToken)
        );
        assert_eq!(
            check(
                Some("t0k"),
                &headers(&[host, ("authorization", "bearer  t0k ")]),
                &uri
            ),
            Ok(())
        );
    }

    #[test]
    fn origins() {
        let uri = Uri::from_static("/api/v1/reload");
        let host = ("host", "127.0.0.1:9901");
        let same = ("origin", "http://127.0.0.1:9901");
        assert_eq!(check(None, &headers(&[host, same]), &uri), Ok(()));
        for origin in ["http://evil.example", "null", "http://127.0.0.1:9902"] {
            let h = {
                let mut h = headers(&[host]);
                h.insert("origin", HeaderValue::from_static(origin));
                h
            };
            assert_eq!(check(None, &h, &uri), Err(Denied::CrossOrigin), "{origin}");
        }
        assert_eq!(
            check(
                None,
                &headers(&[host, ("sec-fetch-site", "cross-site")]),
                &uri
            ),
            Err(Denied::CrossOrigin)
        );
    }
}
