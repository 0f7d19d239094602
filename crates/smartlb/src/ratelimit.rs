//! Per-route rate limiting (`[route.rate_limit]`): a token bucket per key (client IP
//! address, a header's value, or one for the whole route), with governor's GCRA.
//!
//! A request over its key's limit is answered `429 Too Many Requests` by the proxy itself,
//! with `Retry-After` (whole seconds, at least 1) and `x-smartlb-error: rate-limited`, and
//! counted in `smartlb_rate_limited_total{route}`; it never reaches a backend. Buckets of
//! keys that have been quiet long enough to be full again are dropped every
//! 4096 requests, so memory follows the number of recently active keys.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::{Request, Response, StatusCode};
use smartlb_config::{RateLimitConfig, RateLimitKey};
use smartlb_proxy::{ClientInfo, ProxyBody};

/// The bucket a request is counted in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// `key = "ip"`.
    Ip(IpAddr),
    /// `key = "header:NAME"`: the header's value (requests without it share one bucket).
    Header(Option<http::HeaderValue>),
    /// `key = "none"`, and `ip` for a request whose client address is unknown (embedded
    /// use without `ClientInfo`).
    Route,
}

/// A route's rate limit.
pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<Key>,
    clock: DefaultClock,
    key: RateLimitKey,
    label: String,
    checks: AtomicU64,
}

/// Every this many checks, the buckets of quiet keys are dropped.
const MAINTAIN_EVERY: u64 = 4096;

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("key", &self.key)
            .field("label", &self.label)
            .field("keys", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// A limiter for `config`, counted under the route label `label`. `rps` and `burst`
    /// below 1 are taken as 1 (the configuration validator refuses them first).
    pub fn new(config: &RateLimitConfig, label: impl Into<String>) -> Self {
        let rps = NonZeroU32::new(config.rps).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rps).allow_burst(burst);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            key: config.key.clone(),
            label: label.into(),
            checks: AtomicU64::new(0),
        }
    }

    fn key_of<B>(&self, req: &Request<B>) -> Key {
        match &self.key {
            RateLimitKey::Ip => req
                .extensions()
                .get::<ClientInfo>()
                .map_or(Key::Route, |c| Key::Ip(c.remote.ip())),
            // A clone shares the bytes of the request's header.
            RateLimitKey::Header(name) => Key::Header(req.headers().get(name.as_str()).cloned()),
            RateLimitKey::None => Key::Route,
        }
    }

    /// Takes a token for `req`; `Err` carries how long until its key has one again.
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), Duration> {
        let key = self.key_of(req);
        if self.checks.fetch_add(1, Ordering::Relaxed) % MAINTAIN_EVERY == MAINTAIN_EVERY - 1 {
            self.maintain();
        }
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// The proxy's answer to a request over the limit: `429` with `Retry-After` in whole
    /// seconds (rounded up, at least 1). Counts it.
    pub fn refuse(&self, wait: Duration) -> Response<ProxyBody> {
        smartlb_admin::metrics::rate_limited(&self.label);
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut resp = smartlb_proxy::error_response(StatusCode::TOO_MANY_REQUESTS, "rate-limited");
        resp.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from(seconds.max(1)),
        );
        resp
    }

    /// Drops the buckets of keys quiet long enough to be full again (done every
    /// 4096 checks).
    pub fn maintain(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// How many keys have a bucket now.
    pub fn keys(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ip: &str, header: Option<&str>) -> Request<()> {
        let mut req = Request::builder().uri("/");
        if let Some(v) = header {
            req = req.header("x-api-key", v);
        }
        let mut req = req.body(()).unwrap();
        req.extensions_mut().insert(ClientInfo {
            remote: format!("{ip}:5000").parse().unwrap(),
            local: "127.0.0.1:8080".parse().unwrap(),
            proto: "http",
        });
        req
    }

    fn limit(rps: u32, burst: u32, key: RateLimitKey) -> RateLimit {
        RateLimit::new(&RateLimitConfig { rps, burst, key }, "test")
    }

    #[test]
    fn a_client_over_its_burst_is_refused_while_another_is_not() {
        let limit = limit(1, 3, RateLimitKey::Ip);
        let a = request("10.0.0.1", None);
        let b = request("10.0.0.2", None);
        for _ in 0..3 {
            assert!(limit.check(&a).is_ok());
        }
        let wait = limit.check(&a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limit.check(&b).is_ok());
        assert_eq!(limit.keys(), 2);
    }

    #[test]
    fn header_keys_and_the_whole_route() {
        let by_header = limit(1, 1, RateLimitKey::Header("x-api-key".into()));
        assert!(by_header.check(&request("10.0.0.1", Some("k1"))).is_ok());
        assert!(by_header.check(&request("10.0.0.2", Some("k1"))).is_err());
        assert!(by_header.check(&request("10.0.0.1", Some("k2"))).is_ok());
        assert!(by_header.check(&request("10.0.0.1", None)).is_ok());
        assert!(by_header.check(&request("10.0.0.3", None)).is_err());

        let route = limit(1, 2, RateLimitKey::None);
        assert!(route.check(&request("10.0.0.1", None)).is_ok());
        assert!(route.check(&request("10.0.0.2", None)).is_ok());
        assert!(route.check(&request("10.0.0.3", None)).is_err());
    }

    #[test]
    fn refusals_say_when_to_come_back() {
        let limit = limit(1, 1, RateLimitKey::None);
        let resp = limit.refuse(Duration::from_millis(1200));
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[http::header::RETRY_AFTER], "2");
        assert_eq!(resp.headers()["x-smartlb-error"], "rate-limited");
        let resp = limit.refuse(Duration::from_millis(10));
        assert_eq!(resp.headers()[http::header::RETRY_AFTER], "1");
    }
}
