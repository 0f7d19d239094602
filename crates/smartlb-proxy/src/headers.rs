//! Header hygiene: what a reverse proxy must change in the messages it relays.
//!
//! - Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection, not the
//!   message, so they are removed in both directions: `Connection` and every
//!   header it names, `Keep-Alive`, `Proxy-Connection`, `TE` (unless it is just
//!   `trailers`), `Trailer`, `Transfer-Encoding`, `Upgrade` (unless the request is
//!   an upgrade being tunnelled), `Proxy-Authenticate` and `Proxy-Authorization`.
//! - Requests gain `X-Forwarded-For` (the client address appended to any existing
//!   list), `X-Forwarded-Proto`, `X-Forwarded-Host` and a `Via` entry; the client's
//!   `Host` is kept.
//! - Responses gain a `Via` entry.
//!
//! [`prepare_request`] marks the request it changed, so applying it again (for
//! example when a request is retried on another backend) changes nothing.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::Bytes;
use http::header::{
    CONNECTION, COOKIE, Entry, HOST, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA,
};
use http::uri::Uri;
use http::{Method, Request, Response, StatusCode, Version};

use crate::server::ClientInfo;

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

const VIA_10: HeaderValue = HeaderValue::from_static("1.0 smartlb");
const VIA_11: HeaderValue = HeaderValue::from_static("1.1 smartlb");
const VIA_2: HeaderValue = HeaderValue::from_static("2 smartlb");
const VIA_3: HeaderValue = HeaderValue::from_static("3 smartlb");

/// Marks a request whose headers were already prepared for forwarding.
#[derive(Clone, Copy, Debug)]
struct Prepared;

/// What [`strip_hop_by_hop`] found on its way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stripped {
    /// `Connection` carried the `close` token.
    pub close: bool,
}

/// Removes the hop-by-hop headers from `headers`.
///
/// With `keep_upgrade`, `Upgrade` stays (and the `upgrade` token of `Connection` is
/// not treated as naming a header to remove); the caller then sets
/// `Connection: upgrade` itself. `Host` is never removed, even when `Connection`
/// names it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) -> Stripped {
    let present = hop_by_hop_present(headers);
    strip_present(headers, present, keep_upgrade)
}

/// Which of the fixed hop-by-hop headers `headers` holds, as bits: one pass over the
/// names, so that the (usually few or none) present ones are the only ones looked
/// up.
fn hop_by_hop_present(headers: &HeaderMap) -> u16 {
    let mut present = 0u16;
    for name in headers.keys() {
        present |= hop_by_hop_bit(name);
    }
    present
}

/// [`strip_hop_by_hop`] once the headers present are known.
fn strip_present(headers: &mut HeaderMap, present: u16, keep_upgrade: bool) -> Stripped {
    let mut found = Stripped::default();
    if present == 0 {
        return found;
    }
    if present & HOP_CONNECTION != 0
        && let Entry::Occupied(entry) = headers.entry(CONNECTION)
    {
        let (_, mut values) = entry.remove_entry_mult();
        // One `Connection` line is the common case: no allocation for it.
        let first = values.next();
        let rest: Vec<HeaderValue> = values.collect();
        for value in first.iter().chain(rest.iter()) {
            // The usual values name no other header: no tokenizing for them.
            let bytes = value.as_bytes();
            if bytes.eq_ignore_ascii_case(b"keep-alive") {
                continue;
            }
            if bytes.eq_ignore_ascii_case(b"close") {
                found.close = true;
                continue;
            }
            for token in tokens(value) {
                if token.eq_ignore_ascii_case("close") {
                    found.close = true;
                    continue;
                }
                if token.eq_ignore_ascii_case("host")
                    || (keep_upgrade && token.eq_ignore_ascii_case("upgrade"))
                {
                    continue;
                }
                // Names of the fixed set are removed below anyway.
                if token.eq_ignore_ascii_case("keep-alive") {
                    continue;
                }
                headers.remove(token);
            }
        }
    }
    if present & HOP_KEEP_ALIVE != 0 {
        headers.remove(&KEEP_ALIVE);
    }
    if present & HOP_PROXY_CONNECTION != 0 {
        headers.remove(&PROXY_CONNECTION);
    }
    if present & HOP_TE != 0 && !te_is_trailers(headers) {
        headers.remove(TE);
    }
    if present & HOP_TRAILER != 0 {
        headers.remove(TRAILER);
    }
    if present & HOP_TRANSFER_ENCODING != 0 {
        headers.remove(TRANSFER_ENCODING);
    }
    if present & HOP_UPGRADE != 0 && !keep_upgrade {
        headers.remove(UPGRADE);
    }
    if present & HOP_PROXY_AUTHENTICATE != 0 {
        headers.remove(PROXY_AUTHENTICATE);
    }
    if present & HOP_PROXY_AUTHORIZATION != 0 {
        headers.remove(PROXY_AUTHORIZATION);
    }
    found
}

const HOP_CONNECTION: u16 = 1;
const HOP_KEEP_ALIVE: u16 = 1 << 1;
const HOP_PROXY_CONNECTION: u16 = 1 << 2;
const HOP_TE: u16 = 1 << 3;
const HOP_TRAILER: u16 = 1 << 4;
const HOP_TRANSFER_ENCODING: u16 = 1 << 5;
const HOP_UPGRADE: u16 = 1 << 6;
const HOP_PROXY_AUTHENTICATE: u16 = 1 << 7;
const HOP_PROXY_AUTHORIZATION: u16 = 1 << 8;

/// Which of the fixed hop-by-hop headers `name` is, as a bit (0: none).
fn hop_by_hop_bit(name: &HeaderName) -> u16 {
    match name.as_str() {
        "connection" => HOP_CONNECTION,
        "keep-alive" => HOP_KEEP_ALIVE,
        "proxy-connection" => HOP_PROXY_CONNECTION,
        "te" => HOP_TE,
        "trailer" => HOP_TRAILER,
        "transfer-encoding" => HOP_TRANSFER_ENCODING,
        "upgrade" => HOP_UPGRADE,
        "proxy-authenticate" => HOP_PROXY_AUTHENTICATE,
        "proxy-authorization" => HOP_PROXY_AUTHORIZATION,
        _ => 0,
    }
}

/// The comma-separated tokens of a header value, trimmed, empty ones skipped.
fn tokens(value: &HeaderValue) -> impl Iterator<Item = &str> {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .filter_map(|t| std::str::from_utf8(t).ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(token)))
}

fn te_is_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .all(|v| tokens(v).all(|t| t.eq_ignore_ascii_case("trailers")))
}

/// Whether `req` asks to switch protocols (HTTP/1.1 `Connection: upgrade` with an
/// `Upgrade` header, as a WebSocket handshake does).
///
/// `Upgrade: h2c` alone is not tunnelled: HTTP/2 is negotiated hop by hop, and the
/// proxy already speaks it to clients.
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req
            .headers()
            .get_all(UPGRADE)
            .iter()
            .any(|v| tokens(v).any(|t| !t.eq_ignore_ascii_case("h2c")))
        && has_token(req.headers(), CONNECTION, "upgrade")
}

/// Whether [`prepare_request`] was already applied to `req`.
pub fn is_prepared<B>(req: &Request<B>) -> bool {
    req.extensions().get::<Prepared>().is_some()
}

/// Prepares a client's request for forwarding, once.
///
/// Strips the hop-by-hop headers (keeping `Upgrade` and setting
/// `Connection: upgrade` for an upgrade request), appends the client's address to
/// `X-Forwarded-For`, sets `X-Forwarded-Proto` and `X-Forwarded-Host` (from `Host`,
/// or the URI authority of an HTTP/2 request), and appends a `Via` entry naming the
/// client's HTTP version. `Host` is kept.
///
/// The request is marked as prepared; a second call does nothing, so a request
/// handed back by a failed attempt can be sent elsewhere as it is.
/// [`BackendClient`](crate::BackendClient) calls this itself (with the
/// [`ClientInfo`] found in the request's extensions) for requests not yet prepared.
pub fn prepare_request<B>(req: &mut Request<B>, client: &ClientInfo) {
    let _ = prepare(req, Some(client));
}

/// [`prepare_request`] for requests that may lack a [`ClientInfo`]: without one,
/// `X-Forwarded-For` and `X-Forwarded-Proto` are left as they are.
///
/// Returns whether the request is an upgrade, or `None` when it was already
/// prepared (and nothing was done).
pub(crate) fn prepare<B>(req: &mut Request<B>, client: Option<&ClientInfo>) -> Option<bool> {
    if is_prepared(req) {
        return None;
    }
    let present = hop_by_hop_present(req.headers());
    // An upgrade needs both `Upgrade` and `Connection`: most requests are ruled out
    // by the scan alone.
    let upgrade =
        present & HOP_UPGRADE != 0 && present & HOP_CONNECTION != 0 && is_upgrade_request(req);
    let version = req.version();
    let forwarded_host = match req.headers().get(HOST) {
        Some(host) => Some(host.clone()),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    let headers = req.headers_mut();
    strip_present(headers, present, upgrade);
    // Room for the headers added below, so the map grows at most once.
    headers.reserve(4 + usize::from(upgrade));
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if let Some(client) = client {
        append_forwarded_for(headers, client.remote.ip());
        let proto = match client.proto {
            "http" => Some(HeaderValue::from_static("http")),
            "https" => Some(HeaderValue::from_static("https")),
            other => HeaderValue::from_str(other).ok(),
        };
        match proto {
            Some(proto) => headers.insert(X_FORWARDED_PROTO, proto),
            None => headers.remove(X_FORWARDED_PROTO),
        };
    }
    match forwarded_host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        // A client-supplied value cannot be trusted; there is nothing to replace it.
        None => headers.remove(X_FORWARDED_HOST),
    };
    headers.append(VIA, via(version));
    req.extensions_mut().insert(Prepared);
    Some(upgrade)
}

/// Appends `ip` to `X-Forwarded-For`, folding existing lines into one list.
fn append_forwarded_for(headers: &mut HeaderMap, ip: IpAddr) {
    let ip = ip.to_canonical();
    match headers.entry(X_FORWARDED_FOR) {
        http::header::Entry::Vacant(slot) => {
            // The common case: the client sent none. An IPv4 address is written
            // without the formatting machinery.
            let value = match ip {
                IpAddr::V4(v4) => {
                    let mut buf = [0u8; 15];
                    let len = write_ipv4(&mut buf, v4.octets());
                    HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&buf[..len]))
                }
                IpAddr::V6(v6) => HeaderValue::from_maybe_shared(Bytes::from(v6.to_string())),
            };
            if let Ok(v) = value {
                slot.insert(v);
            }
        }
        http::header::Entry::Occupied(_) => append_forwarded_for_slow(headers, ip),
    }
}

/// Writes the dotted-decimal form of an IPv4 address; returns its length.
fn write_ipv4(buf: &mut [u8; 15], octets: [u8; 4]) -> usize {
    let mut len = 0;
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

/// [`append_forwarded_for`] when the request already carries the header.
fn append_forwarded_for_slow(headers: &mut HeaderMap, ip: IpAddr) {
    let mut value = String::new();
    for existing in headers.get_all(X_FORWARDED_FOR) {
        if let Ok(s) = existing.to_str() {
            let s = s.trim();
            if s.is_empty() {
                continue;
            }
            if !value.is_empty() {
                value.push_str(", ");
            }
            value.push_str(s);
        }
    }
    if !value.is_empty() {
        value.push_str(", ");
    }
    // Writing into a String cannot fail.
    let _ = write!(value, "{ip}");
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

fn via(version: Version) -> HeaderValue {
    match version {
        Version::HTTP_09 | Version::HTTP_10 => VIA_10,
        Version::HTTP_2 => VIA_2,
        Version::HTTP_3 => VIA_3,
        _ => VIA_11,
    }
}

/// Prepares a backend's response for the client: strips the hop-by-hop headers
/// (keeping `Upgrade` and `Connection: upgrade` on a `101 Switching Protocols`)
/// and appends a `Via` entry naming the backend's HTTP version.
pub fn prepare_response<B>(resp: &mut Response<B>) -> Stripped {
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    let version = resp.version();
    let headers = resp.headers_mut();
    let stripped = strip_hop_by_hop(headers, switching);
    // No `reserve` for the one or two headers added: the map usually has room left
    // by the hop-by-hop headers just removed, and reserving would grow it anyway.
    if switching {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
    headers.append(VIA, via(version));
    stripped
}

/// Puts a prepared request into the form an HTTP/1.1 backend expects: version
/// HTTP/1.1, origin-form URI (path and query only), a `Host` header (taken from the
/// URI authority when the client, speaking HTTP/2, sent none, else
/// `fallback_host`: the backend's own address, for HTTP/1.0 clients), and HTTP/2's
/// split `Cookie` fields joined into one (RFC 9113 section 8.2.3). Applying it
/// twice changes nothing.
pub(crate) fn to_upstream_form<B>(
    req: &mut Request<B>,
    fallback_host: &HeaderValue,
) -> Result<(), &'static str> {
    if req.method() == Method::CONNECT {
        return Err("CONNECT is not forwarded");
    }
    if req.version() == Version::HTTP_2 {
        join_cookies(req.headers_mut());
    }
    if !req.headers().contains_key(HOST) {
        let host = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
        let host = host.unwrap_or_else(|| fallback_host.clone());
        req.headers_mut().insert(HOST, host);
    }
    let uri = req.uri();
    if uri.scheme().is_some() || uri.authority().is_some() {
        let origin = match uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
        *req.uri_mut() = origin;
    }
    *req.version_mut() = Version::HTTP_11;
    Ok(())
}

fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(COOKIE).iter();
    let Some(first) = cookies.next() else {
        return;
    };
    let mut rest = cookies.peekable();
    if rest.peek().is_none() {
        return;
    }
    let mut joined = first.as_bytes().to_vec();
    for c in rest {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(c.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        headers.insert(COOKIE, v);
    }
}

/// The size of a request head as it would appear on the wire in HTTP/1.1:
/// request line, header lines and the blank line.
pub(crate) fn request_head_size<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    // "METHOD target HTTP/1.1\r\n"
    let mut size = req.method().as_str().len() + 1 + target + authority + 11;
    for (name, value) in req.headers() {
        size += name.as_str().len() + 2 + value.len() + 2;
    }
    size + 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn client() -> ClientInfo {
        ClientInfo {
            remote: "10.1.2.3:5555".parse::<SocketAddr>().unwrap(),
            local: "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
            proto: "http",
        }
    }

    fn fallback() -> HeaderValue {
        HeaderValue::from_static("10.0.0.1:80")
    }

    fn get(headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri("/p?q=1");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn strips_fixed_hop_by_hop_headers() {
        let mut req = get(&[
            ("host", "example.com"),
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-authenticate", "Basic"),
            ("accept", "*/*"),
        ]);
        prepare_request(&mut req, &client());
        let h = req.headers();
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-authenticate",
        ] {
            assert!(!h.contains_key(name), "{name} kept");
        }
        assert_eq!(h["accept"], "*/*");
        assert_eq!(h["host"], "example.com");
    }

    #[test]
    fn strips_headers_named_in_connection() {
        let mut req = get(&[
            ("host", "a"),
            ("connection", "X-Secret, close"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
        ]);
        let found = strip_hop_by_hop(req.headers_mut(), false);
        assert!(found.close);
        let h = req.headers();
        assert!(!h.contains_key("x-secret"));
        assert!(!h.contains_key("x-other"));
        assert_eq!(h["x-kept"], "3");
    }

    #[test]
    fn connection_cannot_remove_host() {
        let mut req = get(&[("host", "a"), ("connection", "host")]);
        strip_hop_by_hop(req.headers_mut(), false);
        assert_eq!(req.headers()["host"], "a");
    }

    #[test]
    fn invalid_connection_tokens_are_ignored() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("bad name, , ok"));
        headers.insert("ok", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers, false);
        assert!(headers.is_empty());
    }

    #[test]
    fn te_trailers_is_kept() {
        let mut req = get(&[("host", "a"), ("te", "Trailers")]);
        strip_hop_by_hop(req.headers_mut(), false);
        assert_eq!(req.headers()["te"], "Trailers");
        let mut req = get(&[("host", "a"), ("te", "trailers, deflate")]);
        strip_hop_by_hop(req.headers_mut(), false);
        assert!(!req.headers().contains_key("te"));
    }

    #[test]
    fn adds_forwarding_headers() {
        let mut req = get(&[("host", "example.com:8080"), ("x-forwarded-proto", "https")]);
        prepare_request(&mut req, &client());
        let h = req.headers();
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com:8080");
        assert_eq!(h["via"], "1.1 smartlb");
        assert_eq!(h["host"], "example.com:8080");
    }

    #[test]
    fn forwarded_for_keeps_existing_values() {
        let mut req = get(&[
            ("host", "a"),
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-forwarded-for", "3.3.3.3"),
        ]);
        prepare_request(&mut req, &client());
        let all: Vec<_> = req.headers().get_all("x-forwarded-for").iter().collect();
        assert_eq!(all, ["1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3"]);
    }

    #[test]
    fn forwarded_for_shows_mapped_ipv4_plainly() {
        let mut info = client();
        info.remote = "[::ffff:192.0.2.7]:1".parse().unwrap();
        let mut req = get(&[("host", "a")]);
        prepare_request(&mut req, &info);
        assert_eq!(req.headers()["x-forwarded-for"], "192.0.2.7");
        info.remote = "[2001:db8::1]:1".parse().unwrap();
        let mut req = get(&[("host", "a")]);
        prepare_request(&mut req, &info);
        assert_eq!(req.headers()["x-forwarded-for"], "2001:db8::1");
    }

    #[test]
    fn ipv4_is_written_in_dotted_decimal() {
        for ip in [
            "0.0.0.0",
            "9.10.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "1.20.201.5",
        ] {
            let addr: std::net::Ipv4Addr = ip.parse().unwrap();
            let mut buf = [0u8; 15];
            let len = write_ipv4(&mut buf, addr.octets());
            assert_eq!(&buf[..len], ip.as_bytes());
        }
    }

    #[test]
    fn via_is_appended_and_version_aware() {
        let mut req = get(&[("host", "a"), ("via", "1.1 edge")]);
        *req.version_mut() = Version::HTTP_10;
        prepare_request(&mut req, &client());
        let all: Vec<_> = req.headers().get_all("via").iter().collect();
        assert_eq!(all, ["1.1 edge", "1.0 smartlb"]);
    }

    #[test]
    fn prepare_applies_once() {
        let mut req = get(&[("host", "a")]);
        prepare_request(&mut req, &client());
        assert!(is_prepared(&req));
        prepare_request(&mut req, &client());
        assert_eq!(req.headers().get_all("via").iter().count(), 1);
        assert_eq!(req.headers()["x-forwarded-for"], "10.1.2.3");
    }

    #[test]
    fn spoofed_forwarded_host_is_dropped_without_host() {
        let mut req = Request::builder()
            .uri("/")
            .header("x-forwarded-host", "evil")
            .body(())
            .unwrap();
        prepare(&mut req, None);
        assert!(!req.headers().contains_key("x-forwarded-host"));
        assert!(!req.headers().contains_key("x-forwarded-for"));
    }

    #[test]
    fn upgrade_request_keeps_upgrade() {
        let mut req = get(&[
            ("host", "a"),
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_upgrade_request(&req));
        prepare_request(&mut req, &client());
        let h = req.headers();
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["sec-websocket-key"], "k");
        assert!(is_upgrade_request(&req));
    }

    #[test]
    fn upgrade_needs_http11_and_both_headers() {
        let req = get(&[("upgrade", "websocket")]);
        assert!(!is_upgrade_request(&req));
        let req = get(&[("connection", "upgrade")]);
        assert!(!is_upgrade_request(&req));
        let mut req = get(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        *req.version_mut() = Version::HTTP_10;
        assert!(!is_upgrade_request(&req));
        let req = get(&[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
        ]);
        assert!(!is_upgrade_request(&req));
    }

    #[test]
    fn h2_request_gets_host_and_origin_form() {
        let mut req = Request::builder()
            .version(Version::HTTP_2)
            .uri("http://example.com:8080/a/b?c=d")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(())
            .unwrap();
        prepare_request(&mut req, &client());
        assert_eq!(req.headers()["x-forwarded-host"], "example.com:8080");
        assert_eq!(req.headers()["via"], "2 smartlb");
        to_upstream_form(&mut req, &fallback()).unwrap();
        assert_eq!(req.uri(), "/a/b?c=d");
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "example.com:8080");
        let cookies: Vec<_> = req.headers().get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2"]);
        // A second pass changes nothing.
        to_upstream_form(&mut req, &fallback()).unwrap();
        assert_eq!(req.uri(), "/a/b?c=d");
        assert_eq!(req.headers()["host"], "example.com:8080");
    }

    #[test]
    fn absolute_form_h1_keeps_client_host() {
        let mut req = Request::builder()
            .uri("http://other.example/x")
            .header("host", "client.example")
            .body(())
            .unwrap();
        to_upstream_form(&mut req, &fallback()).unwrap();
        assert_eq!(req.uri(), "/x");
        assert_eq!(req.headers()["host"], "client.example");
    }

    #[test]
    fn upstream_form_rejects_connect_and_fills_missing_host() {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri("example.com:443")
            .body(())
            .unwrap();
        assert!(to_upstream_form(&mut req, &fallback()).is_err());
        let mut req = Request::builder()
            .version(Version::HTTP_10)
            .uri("/")
            .body(())
            .unwrap();
        to_upstream_form(&mut req, &fallback()).unwrap();
        assert_eq!(req.headers()["host"], "10.0.0.1:80");
    }

    #[test]
    fn response_hygiene() {
        let mut resp = Response::builder()
            .header("connection", "x-hop, keep-alive")
            .header("x-hop", "1")
            .header("keep-alive", "timeout=5")
            .header("transfer-encoding", "chunked")
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        let s = prepare_response(&mut resp);
        assert!(!s.close);
        let h = resp.headers();
        assert!(!h.contains_key("connection"));
        assert!(!h.contains_key("x-hop"));
        assert!(!h.contains_key("keep-alive"));
        assert!(!h.contains_key("transfer-encoding"));
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h["via"], "1.1 smartlb");
    }

    #[test]
    fn switching_protocols_keeps_upgrade() {
        let mut resp = Response::builder()
            .status(101)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap();
        prepare_response(&mut resp);
        assert_eq!(resp.headers()["upgrade"], "websocket");
        assert_eq!(resp.headers()["connection"], "upgrade");
    }

    #[test]
    fn head_size_counts_the_wire_form() {
        let req = get(&[("host", "abc")]);
        // "GET /p?q=1 HTTP/1.1\r\n" + "host: abc\r\n" + "\r\n"
        assert_eq!(request_head_size(&req), 21 + 11 + 2);
    }
}
