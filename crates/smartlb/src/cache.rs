//! Per-route in-memory response cache (`[route.cache]`), bounded in entries and bytes.
//!
//! What is stored, following HTTP caching (RFC 9111) as a shared cache:
//! - only `GET` requests, and only responses with explicit freshness: `s-maxage`, else
//!   `max-age`, else `Expires` minus `Date` (no heuristic freshness);
//! - never a response with `Set-Cookie`, `Cache-Control: no-store`, `private` or
//!   `no-cache`, `Vary: *`, or a status other than 200, 203, 204, 300, 301, 404, 410;
//! - never for a request with `Authorization`, unless the response allows it explicitly
//!   (`public`, `s-maxage` or `must-revalidate`);
//! - never a body longer than [`MAX_BODY_BYTES`] or than an eighth of `max_bytes`, and
//!   only bodies whose length is declared (`Content-Length`).
//!
//! A request with `Cache-Control: no-store` bypasses the cache; `no-cache` or `max-age=0`
//! goes to the backend and refreshes the entry. Variants named by `Vary` are kept apart:
//! each stored response remembers the values the request had for every header its `Vary`
//! lists, and is served only to requests with the same values. Served entries carry an
//! `Age` header. When full, the least recently used entries go first.
//! Lookups are counted in `smartlb_cache_requests_total{route,result}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use smartlb_admin::metrics::{CacheResult, cache_bytes, cache_request};
use smartlb_config::CacheConfig;
use smartlb_proxy::ProxyBody;

/// The longest body a cache stores (1 MiB).
pub const MAX_BODY_BYTES: u64 = 1 << 20;

/// A route's response cache.
#[derive(Debug)]
pub struct ResponseCache {
    label: String,
    max_entries: usize,
    max_bytes: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Entries by request target (host and path with query), each with its variants.
    entries: HashMap<String, Vec<Entry>>,
    /// Least recently used first: use sequence number -> target and variant key.
    lru: BTreeMap<u64, (String, Vec<Option<HeaderValue>>)>,
    next_use: u64,
    count: usize,
    bytes: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    /// The header names of the response's `Vary`, and the request's values for them.
    vary: Vec<HeaderName>,
    values: Vec<Option<HeaderValue>>,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    stored: Instant,
    /// The response's age when stored (its `Age` header).
    initial_age: Duration,
    fresh_for: Duration,
    used: u64,
    /// Whether the response allows serving requests with `Authorization` (`public`,
    /// `s-maxage` or `must-revalidate`).
    shared: bool,
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup {
    /// A fresh stored response.
    Hit(Response<ProxyBody>),
    /// Forward the request; offer the response to [`ResponseCache::store`] with this key.
    Miss(CacheKey),
    /// Forward the request; its response is not to be stored.
    Bypass,
}

/// What [`ResponseCache::store`] needs from the request.
#[derive(Debug)]
pub struct CacheKey {
    target: String,
    headers: HeaderMap,
    authorized: bool,
}

impl ResponseCache {
    /// An empty cache with the bounds of `config`, counted under the route label `label`.
    pub fn new(config: &CacheConfig, label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            max_entries: config.max_entries.max(1),
            max_bytes: config.max_bytes.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Looks `req` up, counting the result.
    pub fn lookup<B>(&self, req: &Request<B>) -> Lookup {
        let lookup = self.lookup_at(req, Instant::now());
        let result = match &lookup {
            Lookup::Hit(_) => CacheResult::Hit,
            Lookup::Miss(_) => CacheResult::Miss,
            Lookup::Bypass => CacheResult::Bypass,
        };
        cache_request(&self.label, result);
        lookup
    }

    fn lookup_at<B>(&self, req: &Request<B>, now: Instant) -> Lookup {
        if req.method() != Method::GET {
            return Lookup::Bypass;
        }
        let directives = Directives::of(req.headers());
        if directives.no_store {
            return Lookup::Bypass;
        }
        let target = target(req);
        let authorized = req.headers().contains_key(header::AUTHORIZATION);
        // What a miss hands to `store`; the request's headers are copied only then.
        let miss = |target: String| {
            Lookup::Miss(CacheKey {
                target,
                headers: req.headers().clone(),
                authorized,
            })
        };
        if directives.no_cache || directives.max_age == Some(0) {
            return miss(target);
        }
        let mut state = self.lock();
        let use_seq = state.next_use;
        let State { entries, lru, .. } = &mut *state;
        let Some(variants) = entries.get_mut(&target) else {
            drop(state);
            return miss(target);
        };
        let Some(entry) = variants.iter_mut().find(|e| e.matches(req.headers())) else {
            drop(state);
            return miss(target);
        };
        let age = entry.initial_age + now.saturating_duration_since(entry.stored);
        if age >= entry.fresh_for {
            drop(state);
            return miss(target);
        }
        if authorized && !entry.shared {
            return Lookup::Bypass;
        }
        if let Some(old) = lru.remove(&entry.used) {
            lru.insert(use_seq, old);
        }
        entry.used = use_seq;
        let mut resp = Response::new(ProxyBody::full(entry.body.clone()));
        *resp.status_mut() = entry.status;
        *resp.headers_mut() = entry.headers.clone();
        resp.headers_mut()
            .insert(header::AGE, HeaderValue::from(age.as_secs()));
        state.next_use += 1;
        Lookup::Hit(resp)
    }

    /// Forwards the backend's response to the client, storing a copy when it may be
    /// cached. A cacheable response's body (bounded, with a declared length) is read
    /// whole first.
    pub async fn store(&self, key: CacheKey, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        let Some((fresh_for, initial_age)) = self.cacheable(&key, &resp) else {
            return resp;
        };
        let (parts, body) = resp.into_parts();
        let limit = usize::try_from(self.body_limit()).unwrap_or(usize::MAX);
        let body = match http_body_util::Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                // The head was sent to us but the body failed: the client gets what a
                // failed body gets without the cache, an aborted response.
                tracing::debug!(route = %self.label, %error, "reading a cacheable body failed");
                return smartlb_proxy::error_response(StatusCode::BAD_GATEWAY, "upstream-body");
            }
        };
        let vary = vary_names(&parts.headers);
        let values = values_of(&vary, &key.headers);
        self.insert(
            key.target,
            Entry {
                vary,
                values,
                status: parts.status,
                headers: parts.headers.clone(),
                body: body.clone(),
                stored: Instant::now(),
                initial_age,
                fresh_for,
                used: 0,
                shared: Directives::of(&parts.headers).allow_authorized(),
            },
        );
        Response::from_parts(parts, ProxyBody::full(body))
    }

    fn body_limit(&self) -> u64 {
        MAX_BODY_BYTES.min(self.max_bytes / 8).max(1)
    }

    /// The freshness lifetime and initial age of a response that may be stored.
    fn cacheable(
        &self,
        key: &CacheKey,
        resp: &Response<ProxyBody>,
    ) -> Option<(Duration, Duration)> {
        let status = resp.status().as_u16();
        if !matches!(status, 200 | 203 | 204 | 300 | 301 | 404 | 410) {
            return None;
        }
        let headers = resp.headers();
        if headers.contains_key(header::SET_COOKIE) {
            return None;
        }
        let d = Directives::of(headers);
        if d.no_store || d.private || d.no_cache {
            return None;
        }
        if key.authorized && !d.allow_authorized() {
            return None;
        }
        if headers.get_all(header::VARY).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|n| n.trim() == "*"))
        }) {
            return None;
        }
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| resp.body().size_hint().exact())?;
        if length > self.body_limit() {
            return None;
        }
        let fresh_for = match d.s_maxage.or(d.max_age) {
            Some(seconds) => Duration::from_secs(seconds),
            None => {
                let expires = http_date(headers.get(header::EXPIRES)?)?;
                let date = headers
                    .get(header::DATE)
                    .and_then(http_date)
                    .unwrap_or_else(SystemTime::now);
                expires.duration_since(date).ok()?
            }
        };
        let initial_age = headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(Duration::ZERO, Duration::from_secs);
        (fresh_for > initial_age).then_some((fresh_for, initial_age))
    }

    fn insert(&self, target: String, mut entry: Entry) {
        let size = entry.body.len() as u64;
        let mut guard = self.lock();
        let state = &mut *guard;
        entry.used = state.next_use;
        state.next_use += 1;
        let lru_key = (target.clone(), entry.values.clone());
        // Replace the same variant if present.
        let mut replaced = None;
        if let Some(variants) = state.entries.get_mut(&target)
            && let Some(i) = variants
                .iter()
                .position(|e| e.vary == entry.vary && e.values == entry.values)
        {
            replaced = Some(variants.swap_remove(i));
        }
        if let Some(old) = replaced {
            state.lru.remove(&old.used);
            state.count -= 1;
            state.bytes -= old.body.len() as u64;
        }
        state.lru.insert(entry.used, lru_key);
        state.entries.entry(target).or_default().push(entry);
        state.count += 1;
        state.bytes += size;
        while state.count > self.max_entries || state.bytes > self.max_bytes {
            let Some((_, (target, values))) = state.lru.pop_first() else {
                break;
            };
            let mut emptied = false;
            if let Some(variants) = state.entries.get_mut(&target) {
                if let Some(i) = variants.iter().position(|e| e.values == values) {
                    let old = variants.swap_remove(i);
                    state.count -= 1;
                    state.bytes -= old.body.len() as u64;
                }
                emptied = variants.is_empty();
            }
            if emptied {
                state.entries.remove(&target);
            }
        }
        let bytes = state.bytes;
        drop(guard);
        cache_bytes(&self.label, bytes);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().count
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of bodies held now.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

impl Entry {
    /// Whether a request with `headers` is this variant: the same values for every
    /// header the response's `Vary` names.
    fn matches(&self, headers: &HeaderMap) -> bool {
        self.vary
            .iter()
            .zip(&self.values)
            .all(|(name, value)| headers.get(name) == value.as_ref())
    }
}

impl Directives {
    /// Whether a response with these directives may serve requests with `Authorization`.
    fn allow_authorized(&self) -> bool {
        self.public || self.s_maxage.is_some() || self.must_revalidate
    }
}

/// The request target: host and path with query.
fn target<B>(req: &Request<B>) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    format!("{}{path}", host.to_ascii_lowercase())
}

fn vary_names(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

fn values_of(names: &[HeaderName], headers: &HeaderMap) -> Vec<Option<HeaderValue>> {
    names.iter().map(|n| headers.get(n).cloned()).collect()
}

/// The `Cache-Control` directives smartlb acts on.
#[derive(Debug, Default)]
struct Directives {
    no_store: bool,
    no_cache: bool,
    private: bool,
    public: bool,
    must_revalidate: bool,
    max_age: Option<u64>,
    s_maxage: Option<u64>,
}

impl Directives {
    fn of(headers: &HeaderMap) -> Self {
        let mut d = Directives::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let (name, arg) = match directive.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                let seconds = || arg.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    "must-revalidate" | "proxy-revalidate" => d.must_revalidate = true,
                    // An unparsable lifetime makes the response stale (RFC 9111 4.2.1).
                    "max-age" => d.max_age = Some(seconds().unwrap_or(0)),
                    "s-maxage" => d.s_maxage = Some(seconds().unwrap_or(0)),
                    _ => {}
                }
            }
        }
        d
    }
}

/// Parses an HTTP date (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    let s = value.to_str().ok()?.trim();
    let (_, rest) = s.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let sec: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    let seconds = days.checked_mul(86_400)? + h * 3600 + m * 60 + sec;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (none before 1970).
fn days_from_civil(year: i64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize, max_bytes: u64) -> ResponseCache {
        ResponseCache::new(
            &CacheConfig {
                max_entries,
                max_bytes,
            },
            "test",
        )
    }

    fn get(path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(path).header("host", "example.com");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap()
    }

    fn response(body: &'static str, headers: &[(&str, &str)]) -> Response<ProxyBody> {
        let mut b = Response::builder()
            .status(200)
            .header("content-length", body.len());
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(ProxyBody::full(body)).unwrap()
    }

    async fn body_of(resp: Response<ProxyBody>) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    /// Offers `resp` for `req` and returns whether the next lookup hits.
    async fn offer(c: &ResponseCache, req: &Request<()>, resp: Response<ProxyBody>) -> bool {
        if let Lookup::Miss(key) = c.lookup(req) {
            let served = c.store(key, resp).await;
            assert_eq!(served.status(), 200);
        }
        matches!(c.lookup(req), Lookup::Hit(_))
    }

    #[tokio::test]
    async fn fresh_responses_are_served_from_the_cache_with_their_age() {
        let c = cache(10, 1 << 20);
        let req = get("/a?x=1", &[]);
        let Lookup::Miss(key) = c.lookup(&req) else {
            panic!("empty cache")
        };
        let served = c
            .store(key, response("hello", &[("cache-control", "max-age=60")]))
            .await;
        assert_eq!(body_of(served).await, "hello");
        let Lookup::Hit(hit) = c.lookup(&req) else {
            panic!("stored")
        };
        assert_eq!(hit.headers()[header::AGE], "0");
        assert_eq!(body_of(hit).await, "hello");
        // Another query string is another resource.
        assert!(matches!(c.lookup(&get("/a?x=2", &[])), Lookup::Miss(_)));
        assert_eq!((c.len(), c.bytes()), (1, 5));
    }

    #[tokio::test]
    async fn what_must_not_be_stored_is_not() {
        let c = cache(10, 1 << 20);
        for (i, headers) in [
            vec![],
            vec![("cache-control", "no-store, max-age=60")],
            vec![("cache-control", "private, max-age=60")],
            vec![("cache-control", "no-cache, max-age=60")],
            vec![("cache-control", "max-age=60"), ("set-cookie", "a=b")],
            vec![("cache-control", "max-age=60"), ("vary", "*")],
            vec![("cache-control", "max-age=abc")],
        ]
        .into_iter()
        .enumerate()
        {
            let req = get(&format!("/n{i}"), &[]);
            assert!(
                !offer(&c, &req, response("x", &headers)).await,
                "{headers:?}"
            );
        }
        // Authorization: only when the response allows it.
        let auth = get("/private", &[("authorization", "Bearer t")]);
        assert!(!offer(&c, &auth, response("x", &[("cache-control", "max-age=60")])).await);
        let auth = get("/shared", &[("authorization", "Bearer t")]);
        assert!(
            offer(
                &c,
                &auth,
                response("x", &[("cache-control", "public, max-age=60")])
            )
            .await
        );
        // Not GET, and requests asking not to be stored.
        let mut post = get("/p", &[]);
        *post.method_mut() = Method::POST;
        assert!(matches!(c.lookup(&post), Lookup::Bypass));
        assert!(matches!(
            c.lookup(&get("/shared", &[("cache-control", "no-store")])),
            Lookup::Bypass
        ));
        assert!(matches!(
            c.lookup(&get("/shared", &[("cache-control", "no-cache")])),
            Lookup::Miss(_)
        ));
        assert_eq!(c.len(), 1);
    }

    #[tokio::test]
    async fn vary_keeps_variants_apart() {
        let c = cache(10, 1 << 20);
        let en = get("/v", &[("accept-language", "en")]);
        let fr = get("/v", &[("accept-language", "fr")]);
        let vary = [("cache-control", "max-age=60"), ("vary", "Accept-Language")];
        assert!(offer(&c, &en, response("hello", &vary)).await);
        assert!(matches!(c.lookup(&fr), Lookup::Miss(_)));
        assert!(offer(&c, &fr, response("bonjour", &vary)).await);
        let Lookup::Hit(hit) = c.lookup(&en) else {
            panic!()
        };
        assert_eq!(body_of(hit).await, "hello");
        let Lookup::Hit(hit) = c.lookup(&fr) else {
            panic!()
        };
        assert_eq!(body_of(hit).await, "bonjour");
        assert!(matches!(c.lookup(&get("/v", &[])), Lookup::Miss(_)));
    }

    #[tokio::test]
    async fn expiry_and_expires_headers() {
        let c = cache(10, 1 << 20);
        let req = get("/e", &[]);
        let Lookup::Miss(key) = c.lookup(&req) else {
            panic!()
        };
        let _ = c
            .store(
                key,
                response("x", &[("cache-control", "max-age=10"), ("age", "4")]),
            )
            .await;
        let later = Instant::now() + Duration::from_secs(7);
        assert!(matches!(c.lookup_at(&req, later), Lookup::Miss(_)));
        let soon = Instant::now() + Duration::from_secs(2);
        let Lookup::Hit(hit) = c.lookup_at(&req, soon) else {
            panic!()
        };
        assert_eq!(hit.headers()[header::AGE], "6");

        let with_expires = [
            ("date", "Thu, 26 Nov 2026 10:00:00 GMT"),
            ("expires", "Thu, 26 Nov 2026 10:01:00 GMT"),
        ];
        assert!(offer(&c, &get("/x", &[]), response("x", &with_expires)).await);
        let past = [
            ("date", "Thu, 26 Nov 2026 10:00:00 GMT"),
            ("expires", "Thu, 26 Nov 2026 09:00:00 GMT"),
        ];
        assert!(!offer(&c, &get("/y", &[]), response("x", &past)).await);
        assert!(!offer(&c, &get("/z", &[]), response("x", &[("expires", "0")])).await);
    }

    #[tokio::test]
    async fn bounded_by_entries_and_bytes_least_recently_used_first() {
        let c = cache(2, 1 << 20);
        let fresh = [("cache-control", "max-age=60")];
        assert!(offer(&c, &get("/1", &[]), response("a", &fresh)).await);
        assert!(offer(&c, &get("/2", &[]), response("b", &fresh)).await);
        // Using /1 makes /2 the oldest.
        assert!(matches!(c.lookup(&get("/1", &[])), Lookup::Hit(_)));
        assert!(offer(&c, &get("/3", &[]), response("c", &fresh)).await);
        assert!(matches!(c.lookup(&get("/2", &[])), Lookup::Miss(_)));
        assert!(matches!(c.lookup(&get("/1", &[])), Lookup::Hit(_)));
        assert_eq!(c.len(), 2);

        let small = cache(100, 80);
        // Bodies over an eighth of max_bytes are not stored.
        assert!(!offer(&small, &get("/big", &[]), response("0123456789a", &fresh)).await);
        for i in 0..20 {
            assert!(
                offer(
                    &small,
                    &get(&format!("/{i}"), &[]),
                    response("0123456789", &fresh)
                )
                .await
            );
        }
        assert!(small.bytes() <= 80, "{}", small.bytes());
    }

    #[test]
    fn http_dates() {
        let v = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        let t = http_date(&v).unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
        for bad in [
            "0",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "",
        ] {
            assert!(http_date(&HeaderValue::from_static(bad)).is_none(), "{bad}");
        }
    }
}
