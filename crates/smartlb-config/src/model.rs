//! The validated configuration model: what other crates see.
//!
//! Every value here has passed validation. `Default` impls give the defaults of the
//! configuration reference (`docs/configuration.md`).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::address::BackendAddress;
use crate::duration::serde_format;

/// A name that is not one of an enumeration's configuration names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} \"{name}\"; expected one of: {}{}", .expected.join(", "), hint(.suggestion))]
pub struct UnknownNameError {
    what: &'static str,
    name: String,
    expected: Vec<&'static str>,
    suggestion: Option<&'static str>,
}

fn hint(suggestion: &Option<&'static str>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean \"{s}\"?)"),
        None => String::new(),
    }
}

impl UnknownNameError {
    pub(crate) fn new(what: &'static str, name: &str, expected: &[&'static str]) -> Self {
        UnknownNameError {
            what,
            name: name.to_owned(),
            expected: expected.to_vec(),
            suggestion: crate::schema::closest(name, expected.iter().copied()),
        }
    }
}

/// Declares a fieldless enum whose variants have fixed configuration names.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in the configuration file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }

            /// Every configuration name, in documentation order.
            pub fn names() -> &'static [&'static str] {
                &[$($text),+]
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownNameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(UnknownNameError::new($what, s, Self::names())),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

/// Serializes through `Display`.
macro_rules! serialize_as_display {
    ($($name:ident),+) => {
        $(
            impl Serialize for $name {
                fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                    serializer.collect_str(self)
                }
            }
        )+
    };
}

/// The whole validated configuration.
///
/// Built by [`parse_str`](crate::parse_str) or [`load_file`](crate::load_file). There is
/// always at least one upstream, upstream names are unique, and every route names
/// existing upstreams.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// `[server]`: the proxy listener.
    pub server: ServerConfig,
    /// `[admin]`: the admin API listener.
    pub admin: AdminConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[[upstream]]`: the backend groups, in file order (at least one).
    pub upstreams: Vec<UpstreamConfig>,
    /// `[[route]]`: request routing, in file order. When empty, every request goes to
    /// the first upstream (see [`Config::default_upstream`]).
    pub routes: Vec<RouteConfig>,
}

impl Config {
    /// The upstream named `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The first upstream: where requests go when there are no routes.
    pub fn default_upstream(&self) -> Option<&UpstreamConfig> {
        self.upstreams.first()
    }
}

/// `[server]`: the proxy's listener and its limits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerConfig {
    /// Addresses to accept connections on (at least one; port 0 picks a free port).
    pub listen: Vec<SocketAddr>,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Time allowed for a client to send the whole request head.
    #[serde(serialize_with = "serde_format::duration")]
    pub header_read_timeout: Duration,
    /// How long an idle client connection is kept open.
    #[serde(serialize_with = "serde_format::duration")]
    pub idle_timeout: Duration,
    /// Time allowed for a whole exchange through the proxy.
    #[serde(serialize_with = "serde_format::duration")]
    pub request_timeout: Duration,
    /// Largest request head accepted; larger ones get 431.
    pub max_header_bytes: usize,
    /// Open client connections past which new ones wait in the accept queue.
    pub max_connections: usize,
    /// How long in-flight requests may finish after a stop signal.
    #[serde(serialize_with = "serde_format::duration")]
    pub shutdown_grace: Duration,
    /// TLS termination; `None` serves plain HTTP (and h2c).
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8080))],
            workers: 0,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_header_bytes: 65_536,
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// `[server.tls]`: certificate and key for TLS termination (ALPN h2 and http/1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsConfig {
    /// PEM certificate chain file, as written in the file (relative paths are relative
    /// to the working directory of the process).
    pub cert: PathBuf,
    /// PEM private key file.
    pub key: PathBuf,
}

/// `[admin]`: the admin API, `/metrics` and the dashboard.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct AdminConfig {
    /// The admin listener address.
    pub listen: SocketAddr,
    /// Bearer token required by mutating calls; `None` when not set. Never empty, and
    /// always set when `listen` is not a loopback address. Redacted from `Debug` and
    /// serialized output.
    #[serde(serialize_with = "redact")]
    pub token: Option<String>,
}

fn redact<S: Serializer>(token: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    match token {
        Some(_) => serializer.serialize_str("<redacted>"),
        None => serializer.serialize_none(),
    }
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9901)),
            token: None,
        }
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogConfig {
    /// Minimum level (the `RUST_LOG` environment variable overrides it).
    pub level: LogLevel,
    /// Output format.
    pub format: LogFormat,
    /// Whether every proxied request is logged.
    pub access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::Info,
            format: LogFormat::Text,
            access_log: true,
        }
    }
}

named_enum! {
    /// `log.level`.
    LogLevel ("log level") {
        /// Everything.
        Trace => "trace",
        /// Debugging detail.
        Debug => "debug",
        /// Normal operation (the default).
        #[default]
        Info => "info",
        /// Problems that smartlb works around.
        Warn => "warn",
        /// Failures.
        Error => "error",
    }
}

named_enum! {
    /// `log.format`.
    LogFormat ("log format") {
        /// Human-readable lines (the default).
        #[default]
        Text => "text",
        /// One JSON object per line.
        Json => "json",
    }
}

named_enum! {
    /// `upstream.algorithm`: how a backend is chosen for each request.
    Algorithm ("algorithm") {
        /// Each backend in turn, ignoring weights.
        RoundRobin => "round-robin",
        /// In turn, in proportion to weights (smooth weighted round-robin).
        WeightedRoundRobin => "weighted-round-robin",
        /// Uniformly at random.
        Random => "random",
        /// At random, in proportion to weights.
        WeightedRandom => "weighted-random",
        /// The backend with the fewest requests in flight.
        LeastRequests => "least-requests",
        /// Power of two choices over peak-EWMA latency times load.
        P2cEwma => "p2c-ewma",
        /// A consistent-hash ring over `hash_key`.
        ConsistentHash => "consistent-hash",
        /// A hash of the client IP address.
        IpHash => "ip-hash",
        /// Analytics-driven weights combined with live load (the default).
        #[default]
        Adaptive => "adaptive",
    }
}

/// One `[[upstream]]`: a named group of backends and how to use them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamConfig {
    /// Unique name, used by routes, the admin API and metric labels.
    pub name: String,
    /// The selection algorithm.
    pub algorithm: Algorithm,
    /// What a consistent hash is computed over: `Some` exactly when `algorithm` is
    /// [`Algorithm::ConsistentHash`] (it defaults to [`HashKey::Ip`]).
    pub hash_key: Option<HashKey>,
    /// Time allowed to open a connection to a backend.
    #[serde(serialize_with = "serde_format::duration")]
    pub connect_timeout: Duration,
    /// The configured backends; empty when `discovery` is DNS or etcd.
    pub backends: Vec<BackendConfig>,
    /// Where backends come from: [`DiscoveryConfig::Static`] when `backends` was given.
    pub discovery: DiscoveryConfig,
    /// Active health checks; `None` when the `[upstream.health]` table is absent.
    pub health: Option<HealthConfig>,
    /// Passive outlier detection (defaults when the table is absent).
    pub outlier: OutlierConfig,
    /// Retries (defaults when the table is absent).
    pub retry: RetryConfig,
    /// Ramp-up of joining or recovering backends (defaults when the table is absent).
    pub slow_start: SlowStartConfig,
    /// Traffic analysis and weight control (defaults when the table is absent).
    pub analysis: AnalysisConfig,
    /// Cookie-based session persistence; `None` when the table is absent.
    pub sticky: Option<StickyConfig>,
    /// The HTTP version spoken to the backends.
    pub protocol: UpstreamProtocol,
    /// TLS settings for `https://` backends; `None` when the table is absent (the
    /// bundled public roots verify backends then, with no client certificate).
    pub tls: Option<UpstreamTlsConfig>,
}

/// `upstream.protocol`: the HTTP version spoken to backends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    /// `http1`: HTTP/1.1, one request at a time per connection (the default).
    #[default]
    Http1,
    /// `h2`: HTTP/2, many requests per connection (gRPC needs it): by ALPN over TLS for
    /// `https://` backends, with prior knowledge (h2c) for plain ones.
    H2,
}

impl UpstreamProtocol {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Http1 => "http1",
            UpstreamProtocol::H2 => "h2",
        }
    }
}

/// `[upstream.tls]`: how `https://` backends are verified and whom smartlb shows itself as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UpstreamTlsConfig {
    /// PEM file of the certificate authorities that backends' certificates must chain
    /// to, instead of the bundled public roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain presented to backends (with `key`).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// The name sent as SNI and checked against the backends' certificates, instead of
    /// each backend's host.
    pub server_name: Option<String>,
}

impl UpstreamConfig {
    /// An upstream with static `backends` and every other setting at its default.
    pub fn new(name: impl Into<String>, backends: Vec<BackendConfig>) -> Self {
        UpstreamConfig {
            name: name.into(),
            algorithm: Algorithm::default(),
            hash_key: None,
            connect_timeout: Duration::from_secs(1),
            backends,
            discovery: DiscoveryConfig::Static,
            health: None,
            outlier: OutlierConfig::default(),
            retry: RetryConfig::default(),
            slow_start: SlowStartConfig::default(),
            analysis: AnalysisConfig::default(),
            sticky: None,
            protocol: UpstreamProtocol::Http1,
            tls: None,
        }
    }
}

/// One entry of `upstream.backends`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct BackendConfig {
    /// Where the backend is.
    pub address: BackendAddress,
    /// Relative share of the traffic, 1 to 1000 (default 1).
    pub weight: u32,
    /// A backup only receives traffic when no primary backend is healthy.
    pub backup: bool,
}

impl BackendConfig {
    /// Smallest accepted weight.
    pub const MIN_WEIGHT: u32 = 1;
    /// Largest accepted weight.
    pub const MAX_WEIGHT: u32 = 1000;

    /// A primary backend of weight 1.
    pub fn new(address: BackendAddress) -> Self {
        BackendConfig {
            address,
            weight: 1,
            backup: false,
        }
    }
}

/// `upstream.hash_key`: the request property a consistent hash is computed over.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashKey {
    /// `header:NAME`: a request header (name stored in lower case).
    Header(String),
    /// `cookie:NAME`: a cookie.
    Cookie(String),
    /// `query:NAME`: a query-string parameter.
    Query(String),
    /// `ip`: the client IP address.
    Ip,
    /// `path`: the request path.
    Path,
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::Header(name) => write!(f, "header:{name}"),
            HashKey::Cookie(name) => write!(f, "cookie:{name}"),
            HashKey::Query(name) => write!(f, "query:{name}"),
            HashKey::Ip => f.write_str("ip"),
            HashKey::Path => f.write_str("path"),
        }
    }
}

/// `[upstream.health]`: active health checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthConfig {
    /// Path requested with `GET` (starts with `/`).
    pub path: String,
    /// Time between checks of one backend.
    #[serde(serialize_with = "serde_format::duration")]
    pub interval: Duration,
    /// Time allowed for one check (never longer than `interval`).
    #[serde(serialize_with = "serde_format::duration")]
    pub timeout: Duration,
    /// Consecutive passes that bring a backend back.
    pub healthy_threshold: u32,
    /// Consecutive failures that take a backend out.
    pub unhealthy_threshold: u32,
    /// Status codes that count as a pass.
    pub expect_status: StatusRange,
    /// What a check is: `GET path` over HTTP, or a gRPC health check.
    pub kind: HealthCheckKind,
    /// The service a gRPC health check asks about (`""`: the whole server).
    pub grpc_service: String,
}

/// `upstream.health.kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthCheckKind {
    /// `http`: `GET path`, passing on a status in `expect_status`.
    #[default]
    Http,
    /// `grpc`: `grpc.health.v1.Health/Check` over HTTP/2, passing on `SERVING`.
    Grpc,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            path: "/health".to_owned(),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expect_status: StatusRange { min: 200, max: 399 },
            kind: HealthCheckKind::Http,
            grpc_service: String::new(),
        }
    }
}

/// An inclusive range of HTTP status codes, written `"200-399"` or `"200"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// Lowest accepted code (100 to 599).
    pub min: u16,
    /// Highest accepted code (`min` to 599).
    pub max: u16,
}

impl StatusRange {
    /// Whether `status` lies in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// `[upstream.outlier]`: passive detection of failing backends from live traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutlierConfig {
    /// Consecutive failures (connect errors, resets, timeouts, 5xx) that eject a backend.
    pub consecutive_failures: u32,
    /// First ejection time; doubles on each repeat ejection.
    #[serde(serialize_with = "serde_format::duration")]
    pub base_ejection_time: Duration,
    /// Upper bound of the ejection time (at least `base_ejection_time`).
    #[serde(serialize_with = "serde_format::duration")]
    pub max_ejection_time: Duration,
    /// Largest share of an upstream's backends ejected at once, in percent (0 disables
    /// ejection).
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// `[upstream.retry]`: retrying failed requests on other backends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryConfig {
    /// Extra tries after the first, each on a different backend (0 disables retries).
    pub attempts: u32,
    /// Failures that may be retried.
    pub on: Vec<RetryOn>,
    /// Retries may add at most this fraction to the request rate (0 to 1).
    pub budget_ratio: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: 2,
            on: vec![
                RetryOn::ConnectFailure,
                RetryOn::Reset,
                RetryOn::Timeout,
                RetryOn::Status(502),
                RetryOn::Status(503),
                RetryOn::Status(504),
            ],
            budget_ratio: 0.2,
        }
    }
}

/// One entry of `upstream.retry.on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryOn {
    /// `connect-failure`: the connection could not be opened (always safe to retry).
    ConnectFailure,
    /// `reset`: the connection was reset or closed mid-exchange.
    Reset,
    /// `timeout`: the backend did not answer in time.
    Timeout,
    /// A status code from 400 to 599, such as `"503"`.
    Status(u16),
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryOn::ConnectFailure => f.write_str("connect-failure"),
            RetryOn::Reset => f.write_str("reset"),
            RetryOn::Timeout => f.write_str("timeout"),
            RetryOn::Status(code) => write!(f, "{code}"),
        }
    }
}

/// `[upstream.slow_start]`: ramp-up of backends that join or recover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlowStartConfig {
    /// Time over which the backend's share grows to its full weight (0 disables).
    #[serde(serialize_with = "serde_format::duration")]
    pub duration: Duration,
}

impl Default for SlowStartConfig {
    fn default() -> Self {
        SlowStartConfig {
            duration: Duration::from_secs(30),
        }
    }
}

/// `[upstream.analysis]`: traffic analysis, forecasting and weight control.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalysisConfig {
    /// Whether the analyser runs for this upstream.
    pub enabled: bool,
    /// How often weights are recomputed.
    #[serde(serialize_with = "serde_format::duration")]
    pub tick: Duration,
    /// How much per-second history is kept in memory.
    #[serde(serialize_with = "serde_format::duration")]
    pub history: Duration,
    /// Seasonal period for forecasting; `None` disables seasonality.
    #[serde(serialize_with = "serde_format::season")]
    pub season: Option<Duration>,
    /// Largest relative change of a weight per tick, in (0, 1].
    pub max_weight_change: f64,
    /// Whether computed weights are applied or only reported.
    pub mode: AnalysisMode,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            enabled: true,
            tick: Duration::from_secs(1),
            history: Duration::from_secs(3600),
            season: Some(Duration::from_secs(86_400)),
            max_weight_change: 0.25,
            mode: AnalysisMode::Enforce,
        }
    }
}

named_enum! {
    /// `upstream.analysis.mode`.
    AnalysisMode ("analysis mode") {
        /// Apply the computed weights (the default).
        #[default]
        Enforce => "enforce",
        /// Compute and report the weights without applying them.
        Shadow => "shadow",
    }
}

/// `[upstream.sticky]`: cookie-based session persistence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StickyConfig {
    /// Cookie name; its value names the backend opaquely, never by address.
    pub cookie: String,
    /// Cookie lifetime.
    #[serde(serialize_with = "serde_format::duration")]
    pub ttl: Duration,
}

impl Default for StickyConfig {
    fn default() -> Self {
        StickyConfig {
            cookie: "smartlb_sticky".to_owned(),
            ttl: Duration::from_secs(3600),
        }
    }
}

/// `[upstream.discovery]`: where an upstream's backends come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum DiscoveryConfig {
    /// The `backends` list of the file (and admin API changes).
    Static,
    /// Re-resolved DNS records.
    Dns(DnsDiscovery),
    /// A watched etcd key prefix.
    Etcd(EtcdDiscovery),
}

/// `kind = "dns"` discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsDiscovery {
    /// The name to resolve.
    pub name: String,
    /// Which records to ask for.
    pub record: DnsRecord,
    /// Backend port for A/AAAA records; `None` for SRV (the records carry ports).
    pub port: Option<u16>,
    /// How often the name is resolved again.
    #[serde(serialize_with = "serde_format::duration")]
    pub refresh: Duration,
    /// DNS servers to ask; empty means the system's resolvers.
    pub resolvers: Vec<SocketAddr>,
}

named_enum! {
    /// `upstream.discovery.record`.
    DnsRecord ("DNS record type") {
        /// IPv4 addresses (the default).
        #[default]
        A => "A",
        /// IPv6 addresses.
        Aaaa => "AAAA",
        /// Service records: target host and port each.
        Srv => "SRV",
    }
}

/// `kind = "etcd"` discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtcdDiscovery {
    /// etcd client endpoints (use [`BackendAddress::to_url`] for `http://host:port`).
    pub endpoints: Vec<BackendAddress>,
    /// Key prefix; each key below it is one backend, its value a JSON object with
    /// `address` and an optional `weight`.
    pub prefix: String,
}

/// One `[[route]]`: which requests go to which upstreams.
///
/// A request matches a route when its host matches `host` (if set) and its path starts
/// with `path_prefix` (if set). Without any route, every request goes to the first
/// upstream ([`Config::default_upstream`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteConfig {
    /// Host to match; `None` matches every host.
    pub host: Option<HostMatch>,
    /// Path prefix to match (starts with `/`); `None` matches every path.
    pub path_prefix: Option<String>,
    /// Upstreams and their relative weights (at least one; the sum is positive). A
    /// route written with `upstream = "x"` has the single target `x` with weight 100.
    pub targets: Vec<SplitTarget>,
    /// Automatic canary promotion or rollback of a split.
    pub canary: Option<CanaryConfig>,
    /// Per-key request rate limit.
    pub rate_limit: Option<RateLimitConfig>,
    /// In-memory response cache.
    pub cache: Option<CacheConfig>,
}

/// `route.host`: an exact host name or a `*.` wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// Matches this host exactly (stored in lower case).
    Exact(String),
    /// `*.example.com`: matches any host strictly below the stored suffix
    /// (`example.com`), at any depth, but not the suffix itself.
    Wildcard(String),
}

impl HostMatch {
    /// Whether `host` (a host name without port, any case) matches.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        match self {
            HostMatch::Exact(name) => host.eq_ignore_ascii_case(name),
            HostMatch::Wildcard(suffix) => {
                let (host, suffix) = (host.as_bytes(), suffix.as_bytes());
                host.len() > suffix.len() + 1
                    && host[host.len() - suffix.len() - 1] == b'.'
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostMatch::Exact(name) => f.write_str(name),
            HostMatch::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// One target of a route: an upstream and its relative weight.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct SplitTarget {
    /// Name of an upstream of the same configuration.
    pub upstream: String,
    /// Relative weight, 0 to 1 000 000.
    pub weight: u32,
}

/// `[route.canary]`: an SLO gate that advances or rolls back a split by itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CanaryConfig {
    /// The canary upstream: one of the route's split targets.
    pub upstream: String,
    /// Percentage points moved to the canary per successful step (1 to 100).
    pub step: u32,
    /// Evaluation window per step.
    #[serde(serialize_with = "serde_format::duration")]
    pub interval: Duration,
    /// Canary error rate (0 to 1) above which the canary is rolled back to 0.
    pub max_error_rate: f64,
    /// Canary p99 latency above this multiple of the baseline's rolls it back to 0.
    pub max_p99_ratio: f64,
}

/// `[route.rate_limit]`: a token bucket per key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateLimitConfig {
    /// Sustained requests per second per key.
    pub rps: u32,
    /// Bucket size: requests allowed at once after a quiet period.
    pub burst: u32,
    /// What a bucket is kept per.
    pub key: RateLimitKey,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            rps: 100,
            burst: 200,
            key: RateLimitKey::Ip,
        }
    }
}

/// `route.rate_limit.key`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateLimitKey {
    /// `ip`: one bucket per client IP address.
    Ip,
    /// `header:NAME`: one bucket per value of a request header (lower-case name).
    Header(String),
    /// `none`: one bucket for the whole route.
    None,
}

impl fmt::Display for RateLimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitKey::Ip => f.write_str("ip"),
            RateLimitKey::Header(name) => write!(f, "header:{name}"),
            RateLimitKey::None => f.write_str("none"),
        }
    }
}

/// `[route.cache]`: an in-memory response cache honouring `Cache-Control`, `Expires`
/// and `Vary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheConfig {
    /// Most responses kept.
    pub max_entries: usize,
    /// Most bytes of response bodies kept.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 10_000,
            max_bytes: 67_108_864,
        }
    }
}

serialize_as_display!(HashKey, StatusRange, RetryOn, HostMatch, RateLimitKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>(), Ok(*a));
        }
        assert_eq!(Algorithm::default(), Algorithm::Adaptive);
        assert_eq!(Algorithm::P2cEwma.as_str(), "p2c-ewma");
        let err = "round_robin".parse::<Algorithm>().unwrap_err().to_string();
        assert!(err.contains("did you mean \"round-robin\""), "{err}");
    }

    #[test]
    fn host_matching() {
        let w = HostMatch::Wildcard("example.com".into());
        assert!(w.matches("a.example.com"));
        assert!(w.matches("A.B.Example.COM"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("aexample.com"));
        assert!(!w.matches("com"));
        let e = HostMatch::Exact("api.example.com".into());
        assert!(e.matches("API.example.com."));
        assert!(!e.matches("x.api.example.com"));
        assert_eq!(w.to_string(), "*.example.com");
    }

    #[test]
    fn status_range() {
        let r = StatusRange { min: 200, max: 399 };
        assert!(r.contains(200) && r.contains(399) && !r.contains(400));
        assert_eq!(r.to_string(), "200-399");
        assert_eq!(StatusRange { min: 204, max: 204 }.to_string(), "204");
    }

    #[test]
    fn admin_debug_redacts_token() {
        let a = AdminConfig {
            token: Some("s3cret".into()),
            ..AdminConfig::default()
        };
        assert!(!format!("{a:?}").contains("s3cret"));
    }
}
