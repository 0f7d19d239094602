//! Turning the checked document into a validated [`Config`]: defaults, ranges and the
//! rules that tie several keys or tables together.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_spanned::Spanned;
use toml::de::DeTable;

use crate::address::{BackendAddress, validate_dns_name};
use crate::decode::{Ctx, Node, Table};
use crate::error::ErrorKind;
use crate::model::*;
use crate::schema;

/// Builds the configuration; every problem is recorded in `cx`.
pub(crate) fn config(cx: &mut Ctx<'_>, root: &Spanned<DeTable<'_>>) -> Config {
    let root = cx.checked_table(root.get_ref(), root.span(), String::new(), &schema::ROOT);
    let server = server(cx, &root);
    let admin = admin(cx, &root, &server);
    let log = log(cx, &root);
    let upstreams = upstreams(cx, &root);
    let routes = routes(cx, &root, &upstreams);
    Config {
        server,
        admin,
        log,
        upstreams,
        routes,
    }
}

/// Stores the value of `key` in `slot` when it is present and valid.
fn set<'s, 'a, 'i, T>(
    cx: &mut Ctx<'s>,
    table: &Table<'a, 'i>,
    key: &str,
    slot: &mut T,
    read: impl FnOnce(&mut Ctx<'s>, &Node<'a, 'i>) -> Option<T>,
) {
    if let Some(value) = cx.optional(table, key, |cx, n| read(cx, n)) {
        *slot = value;
    }
}

/// The sub-table `key` of `table`, checked against `schema`, when present.
fn sub_table<'a, 'i>(
    cx: &mut Ctx<'_>,
    table: &Table<'a, 'i>,
    key: &str,
    schema: &'static schema::Schema,
) -> Option<Table<'a, 'i>> {
    let node = table.node(key)?;
    cx.table(&node, schema)
}

// ---------------------------------------------------------------------------------
// [server], [admin], [log]

fn server(cx: &mut Ctx<'_>, root: &Table<'_, '_>) -> ServerConfig {
    let mut out = ServerConfig::default();
    let Some(t) = sub_table(cx, root, "server", &schema::SERVER) else {
        return out;
    };
    set(cx, &t, "listen", &mut out.listen, listen_list);
    set(cx, &t, "workers", &mut out.workers, |cx, n| {
        cx.uint(n, 0, 1024).map(|v| v as usize)
    });
    set(
        cx,
        &t,
        "header_read_timeout",
        &mut out.header_read_timeout,
        Ctx::duration,
    );
    set(cx, &t, "idle_timeout", &mut out.idle_timeout, Ctx::duration);
    set(
        cx,
        &t,
        "request_timeout",
        &mut out.request_timeout,
        Ctx::duration,
    );
    set(
        cx,
        &t,
        "max_header_bytes",
        &mut out.max_header_bytes,
        |cx, n| cx.uint(n, 1024, 1 << 20).map(|v| v as usize),
    );
    set(
        cx,
        &t,
        "max_connections",
        &mut out.max_connections,
        |cx, n| cx.uint(n, 1, 1_000_000).map(|v| v as usize),
    );
    set(
        cx,
        &t,
        "shutdown_grace",
        &mut out.shutdown_grace,
        Ctx::duration_or_zero,
    );
    if let Some(tls) = sub_table(cx, &t, "tls", &schema::TLS) {
        let cert = cx.required(&tls, "cert", Ctx::non_empty_string);
        let key = cx.required(&tls, "key", Ctx::non_empty_string);
        if let (Some(cert), Some(key)) = (cert, key) {
            out.tls = Some(TlsConfig {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            });
        }
    }
    out
}

/// `listen`: one socket address or a non-empty list of distinct ones.
fn listen_list(cx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<Vec<SocketAddr>> {
    let items = cx.one_or_many(node)?;
    if items.is_empty() {
        cx.invalid(node, "must list at least one address");
        return None;
    }
    let mark = cx.mark();
    let mut out: Vec<SocketAddr> = Vec::new();
    for item in &items {
        let Some(addr) = cx.parsed(item, parse_socket_addr) else {
            continue;
        };
        if let Some(i) = out.iter().position(|a| overlaps(*a, addr)) {
            cx.invalid(item, format!("{addr} overlaps {} (listed earlier)", out[i]));
            continue;
        }
        out.push(addr);
    }
    cx.clean_since(mark).then_some(out)
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!(
            "\"{s}\" is not a socket address; expected IP:PORT such as 0.0.0.0:8080 or [::]:8080"
        )
    })
}

fn admin(cx: &mut Ctx<'_>, root: &Table<'_, '_>, server: &ServerConfig) -> AdminConfig {
    let mut out = AdminConfig::default();
    let Some(t) = sub_table(cx, root, "admin", &schema::ADMIN) else {
        return out;
    };
    if let Some(node) = t.node("listen")
        && let Some(addr) = cx.parsed(&node, parse_socket_addr)
    {
        out.listen = addr;
        if !addr.ip().is_loopback() && !t.has("token") {
            cx.invalid(
                &node,
                format!(
                    "the admin API listens on non-loopback address {addr} without a token; set `admin.token` or listen on 127.0.0.1"
                ),
            );
        }
        if let Some(i) = server.listen.iter().position(|s| overlaps(*s, addr)) {
            cx.invalid(
                &node,
                format!("{addr} is also a proxy listener (server.listen[{i}])"),
            );
        }
    }
    out.token = cx.optional(&t, "token", |cx, n| {
        let token = cx.string(n)?;
        if token.is_empty() {
            cx.invalid(
                n,
                "must not be empty; leave `token` out to disable authentication",
            );
            return None;
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            cx.invalid(n, "must not contain whitespace or control characters");
            return None;
        }
        Some(token)
    });
    out
}

/// Whether two listeners would bind the same port (same IP, or one unspecified).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn log(cx: &mut Ctx<'_>, root: &Table<'_, '_>) -> LogConfig {
    let mut out = LogConfig::default();
    if let Some(t) = sub_table(cx, root, "log", &schema::LOG) {
        set(cx, &t, "level", &mut out.level, Ctx::choice);
        set(cx, &t, "format", &mut out.format, Ctx::choice);
        set(cx, &t, "access_log", &mut out.access_log, Ctx::boolean);
    }
    out
}

// ---------------------------------------------------------------------------------
// [[upstream]]

fn upstreams(cx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Vec<UpstreamConfig> {
    let Some(node) = root.node("upstream") else {
        cx.error(
            ErrorKind::MissingKey,
            root.span.clone(),
            "upstream",
            "at least one [[upstream]] table is required",
        );
        return Vec::new();
    };
    let tables = cx.tables(&node, &schema::UPSTREAM);
    if tables.is_empty() && matches!(node.value, toml::de::DeValue::Array(_)) {
        cx.invalid(&node, "at least one [[upstream]] table is required");
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for t in &tables {
        let upstream = upstream(cx, t);
        if !upstream.name.is_empty() {
            if let Some(first) = seen.get(&upstream.name) {
                let span = t.span_of("name");
                cx.error(
                    ErrorKind::InvalidValue,
                    span,
                    &t.child_path("name"),
                    format!(
                        "duplicate upstream name \"{}\" (also {first})",
                        upstream.name
                    ),
                );
            } else {
                seen.insert(upstream.name.clone(), t.path.clone());
            }
        }
        out.push(upstream);
    }
    out
}

fn upstream(cx: &mut Ctx<'_>, t: &Table<'_, '_>) -> UpstreamConfig {
    let name = cx
        .required(t, "name", |cx, n| cx.parsed(n, check_upstream_name))
        .unwrap_or_default();
    let mut out = UpstreamConfig::new(name, Vec::new());

    let algorithm: Option<Algorithm> = cx.optional(t, "algorithm", Ctx::choice);
    let algorithm_known = algorithm.is_some() || !t.has("algorithm");
    out.algorithm = algorithm.unwrap_or_default();
    let hash_key = cx.optional(t, "hash_key", |cx, n| cx.parsed(n, parse_hash_key));
    if out.algorithm == Algorithm::ConsistentHash {
        out.hash_key = Some(hash_key.unwrap_or(HashKey::Ip));
    } else if let Some(node) = t.node("hash_key").filter(|_| algorithm_known) {
        cx.invalid(
            &node,
            format!(
                "`hash_key` is only used with algorithm = \"consistent-hash\" (this upstream uses \"{}\")",
                out.algorithm
            ),
        );
    }
    set(
        cx,
        t,
        "connect_timeout",
        &mut out.connect_timeout,
        Ctx::duration,
    );
    set(cx, t, "protocol", &mut out.protocol, |cx, n| {
        cx.parsed(n, |v| match v {
            "http1" => Ok(UpstreamProtocol::Http1),
            "h2" => Ok(UpstreamProtocol::H2),
            other => Err(format!(
                "unknown protocol \"{other}\"; expected http1 or h2"
            )),
        })
    });

    let backends = cx.optional(t, "backends", backends);
    // `None`: no table; `Some(None)`: a table with a bad `kind`.
    let mut discovered = None;
    let mut kind = None;
    if let Some(d) = sub_table(cx, t, "discovery", &schema::DISCOVERY) {
        let k = discovery_kind(cx, &d);
        if let Some(k) = k {
            discovered = discovery(cx, &d, k);
        }
        kind = Some((k, d.span.clone()));
    }
    match (&kind, t.has("backends")) {
        (None, false) => cx.error(
            ErrorKind::MissingKey,
            t.span.clone(),
            &t.child_path("backends"),
            "missing required key `backends` (or an [upstream.discovery] table of kind dns or etcd)",
        ),
        (Some((Some(DiscoveryKind::Static), span)), false) => cx.error(
            ErrorKind::MissingKey,
            span.clone(),
            &t.child_path("backends"),
            "discovery kind \"static\" takes its backends from `backends`, which is missing",
        ),
        (Some((Some(k @ (DiscoveryKind::Dns | DiscoveryKind::Etcd)), _)), true) => {
            cx.error(
                ErrorKind::InvalidValue,
                t.span_of("backends"),
                &t.child_path("backends"),
                format!(
                    "an upstream has either `backends` or discovery of kind \"{}\", not both",
                    k.name()
                ),
            );
        }
        _ => {}
    }
    out.backends = backends.unwrap_or_default();
    if let Some(d) = discovered {
        out.discovery = d;
    }

    if let Some(h) = sub_table(cx, t, "health", &schema::HEALTH) {
        out.health = Some(health(cx, &h));
    }
    if let Some(o) = sub_table(cx, t, "outlier", &schema::OUTLIER) {
        out.outlier = outlier(cx, &o);
    }
    if let Some(r) = sub_table(cx, t, "retry", &schema::RETRY) {
        out.retry = retry(cx, &r);
    }
    if let Some(s) = sub_table(cx, t, "slow_start", &schema::SLOW_START) {
        set(
            cx,
            &s,
            "duration",
            &mut out.slow_start.duration,
            Ctx::duration_or_zero,
        );
    }
    if let Some(a) = sub_table(cx, t, "analysis", &schema::ANALYSIS) {
        out.analysis = analysis(cx, &a);
    }
    if let Some(s) = sub_table(cx, t, "sticky", &schema::STICKY) {
        let mut sticky = StickyConfig::default();
        set(cx, &s, "cookie", &mut sticky.cookie, |cx, n| {
            cx.parsed(n, |v| {
                if is_token(v) {
                    Ok(v.to_owned())
                } else {
                    Err(format!(
                        "\"{v}\" is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)"
                    ))
                }
            })
        });
        set(cx, &s, "ttl", &mut sticky.ttl, Ctx::duration);
        out.sticky = Some(sticky);
    }
    if let Some(s) = sub_table(cx, t, "tls", &schema::UPSTREAM_TLS) {
        let path = |cx: &mut Ctx<'_>, name: &str| {
            cx.optional(&s, name, Ctx::non_empty_string)
                .map(PathBuf::from)
        };
        let mut tls = UpstreamTlsConfig {
            ca: path(cx, "ca"),
            cert: path(cx, "cert"),
            key: path(cx, "key"),
            server_name: cx.optional(&s, "server_name", Ctx::non_empty_string),
        };
        if tls.cert.is_some() != tls.key.is_some() {
            let (given, missing) = if tls.cert.is_some() {
                ("cert", "key")
            } else {
                ("key", "cert")
            };
            cx.error(
                ErrorKind::MissingKey,
                s.span.clone(),
                &s.child_path(missing),
                format!("`{given}` is given without `{missing}`: a client certificate needs both"),
            );
            tls.cert = None;
            tls.key = None;
        }
        out.tls = Some(tls);
    }
    out
}

fn check_upstream_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 64 {
        return Err("must be at most 64 characters long".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "\"{name}\" contains {c:?}; a name is letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(name.to_owned())
}

/// An HTTP token (RFC 9110 section 5.6.2): header and cookie names.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_hash_key(s: &str) -> Result<HashKey, String> {
    const EXPECTED: &str = "expected header:NAME, cookie:NAME, query:NAME, ip or path";
    match s {
        "ip" => return Ok(HashKey::Ip),
        "path" => return Ok(HashKey::Path),
        _ => {}
    }
    let Some((kind, name)) = s.split_once(':') else {
        return Err(format!("unknown hash key \"{s}\"; {EXPECTED}"));
    };
    match kind {
        "header" if is_token(name) => Ok(HashKey::Header(name.to_ascii_lowercase())),
        "cookie" if is_token(name) => Ok(HashKey::Cookie(name.to_owned())),
        "query"
            if !name.is_empty()
                && !name
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, '&' | '=' | '#')) =>
        {
            Ok(HashKey::Query(name.to_owned()))
        }
        "header" | "cookie" | "query" => Err(format!("\"{name}\" is not a valid {kind} name")),
        _ => Err(format!("unknown hash key \"{s}\"; {EXPECTED}")),
    }
}

/// `backends`: a non-empty list of distinct addresses, not all backups.
fn backends(cx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<Vec<BackendConfig>> {
    let items = cx.array(node)?;
    if items.is_empty() {
        cx.invalid(node, "must list at least one backend");
        return None;
    }
    let mark = cx.mark();
    let mut out: Vec<BackendConfig> = Vec::new();
    let mut paths: Vec<String> = Vec::new();
    for item in &items {
        let Some(backend) = backend(cx, item) else {
            continue;
        };
        if let Some(i) = out.iter().position(|b| b.address == backend.address) {
            cx.invalid(
                item,
                format!("duplicate backend {} (also {})", backend.address, paths[i]),
            );
            continue;
        }
        out.push(backend);
        paths.push(item.path.clone());
    }
    if !cx.clean_since(mark) {
        return None;
    }
    if out.iter().all(|b| b.backup) {
        cx.invalid(
            node,
            "every backend is a backup; at least one must be a primary",
        );
        return None;
    }
    Some(out)
}

fn backend(cx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<BackendConfig> {
    match node.value {
        toml::de::DeValue::String(_) => {
            let address = cx.parsed(node, parse_address)?;
            Some(BackendConfig::new(address))
        }
        toml::de::DeValue::Table(_) => {
            let t = cx.table(node, &schema::BACKEND)?;
            let address = cx.required(&t, "address", |cx, n| cx.parsed(n, parse_address));
            let mut backend = BackendConfig::new(address?);
            set(cx, &t, "weight", &mut backend.weight, |cx, n| {
                let max = BackendConfig::MAX_WEIGHT;
                cx.uint(n, u64::from(BackendConfig::MIN_WEIGHT), u64::from(max))
                    .map(|v| v as u32)
            });
            set(cx, &t, "backup", &mut backend.backup, Ctx::boolean);
            Some(backend)
        }
        other => {
            cx.error(
                ErrorKind::WrongType,
                node.span.clone(),
                &node.path,
                format!(
                    "expected an address string or a table {{ address, weight, backup }}, found {} {}",
                    if other.type_str().starts_with(['a', 'i']) { "an" } else { "a" },
                    other.type_str()
                ),
            );
            None
        }
    }
}

fn parse_address(s: &str) -> Result<BackendAddress, String> {
    s.parse::<BackendAddress>().map_err(|e| e.to_string())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DiscoveryKind {
    Static,
    Dns,
    Etcd,
}

impl DiscoveryKind {
    fn name(self) -> &'static str {
        match self {
            DiscoveryKind::Static => "static",
            DiscoveryKind::Dns => "dns",
            DiscoveryKind::Etcd => "etcd",
        }
    }
}

fn discovery_kind(cx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<DiscoveryKind> {
    let Some(node) = t.node("kind") else {
        return Some(DiscoveryKind::Static);
    };
    cx.parsed(&node, |s| match s {
        "static" => Ok(DiscoveryKind::Static),
        "dns" => Ok(DiscoveryKind::Dns),
        "etcd" => Ok(DiscoveryKind::Etcd),
        other => Err(crate::model::UnknownNameError::new(
            "discovery kind",
            other,
            &["static", "dns", "etcd"],
        )
        .to_string()),
    })
}

fn discovery(cx: &mut Ctx<'_>, t: &Table<'_, '_>, kind: DiscoveryKind) -> Option<DiscoveryConfig> {
    let allowed: &[&str] = match kind {
        DiscoveryKind::Static => &["kind"],
        DiscoveryKind::Dns => &["kind", "name", "record", "port", "refresh", "resolvers"],
        DiscoveryKind::Etcd => &["kind", "endpoints", "prefix"],
    };
    let kind_name = kind.name();
    let mark = cx.mark();
    for key in schema::DISCOVERY.keys.iter().map(schema::Key::name) {
        if t.has(key) && !allowed.contains(&key) {
            cx.error(
                ErrorKind::InvalidValue,
                t.span_of(key),
                &t.child_path(key),
                format!("`{key}` is not used by discovery kind \"{kind_name}\""),
            );
        }
    }
    let out = match kind {
        DiscoveryKind::Static => DiscoveryConfig::Static,
        DiscoveryKind::Dns => DiscoveryConfig::Dns(dns_discovery(cx, t)?),
        DiscoveryKind::Etcd => {
            let endpoints = cx.required(t, "endpoints", |cx, n| {
                let items = cx.one_or_many(n)?;
                if items.is_empty() {
                    cx.invalid(n, "must list at least one etcd endpoint");
                    return None;
                }
                let parsed: Vec<_> = items
                    .iter()
                    .filter_map(|item| cx.parsed(item, parse_address))
                    .collect();
                (parsed.len() == items.len()).then_some(parsed)
            });
            let prefix = cx.required(t, "prefix", Ctx::non_empty_string);
            DiscoveryConfig::Etcd(EtcdDiscovery {
                endpoints: endpoints?,
                prefix: prefix?,
            })
        }
    };
    cx.clean_since(mark).then_some(out)
}

fn dns_discovery(cx: &mut Ctx<'_>, t: &Table<'_, '_>) -> Option<DnsDiscovery> {
    let name = cx.required(t, "name", |cx, n| {
        cx.parsed(n, |s| validate_dns_name(s).map(|()| s.to_ascii_lowercase()))
    });
    let record_read: Option<DnsRecord> = cx.optional(t, "record", Ctx::choice);
    let record_known = record_read.is_some() || !t.has("record");
    let record = record_read.unwrap_or_default();
    let port = match (record, t.node("port")) {
        _ if !record_known => None,
        (DnsRecord::Srv, Some(node)) => {
            cx.invalid(&node, "SRV records carry their own ports; remove `port`");
            None
        }
        (DnsRecord::Srv, None) => None,
        (_, Some(node)) => cx.uint(&node, 1, 65_535).map(|p| p as u16),
        (_, None) => {
            cx.error(
                ErrorKind::MissingKey,
                t.span.clone(),
                &t.child_path("port"),
                format!("missing required key `port` (record \"{record}\" has no port)"),
            );
            None
        }
    };
    let mut refresh = Duration::from_secs(5);
    set(cx, t, "refresh", &mut refresh, Ctx::duration);
    let resolvers = cx
        .optional(t, "resolvers", |cx, n| {
            let items = cx.one_or_many(n)?;
            let parsed: Vec<_> = items
                .iter()
                .filter_map(|item| {
                    cx.parsed(item, |s| {
                        s.parse::<IpAddr>()
                            .map(|ip| SocketAddr::new(ip, 53))
                            .or_else(|_| s.parse::<SocketAddr>())
                            .map_err(|_| {
                                format!("\"{s}\" is not a resolver address; expected IP or IP:PORT")
                            })
                    })
                })
                .collect();
            (parsed.len() == items.len()).then_some(parsed)
        })
        .unwrap_or_default();
    Some(DnsDiscovery {
        name: name?,
        record,
        port: if record == DnsRecord::Srv {
            None
        } else {
            Some(port?)
        },
        refresh,
        resolvers,
    })
}

fn health(cx: &mut Ctx<'_>, t: &Table<'_, '_>) -> HealthConfig {
    let mut out = HealthConfig::default();
    let mark = cx.mark();
    set(cx, t, "path", &mut out.path, |cx, n| {
        cx.parsed(n, |s| {
            if !s.starts_with('/') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                Err(format!(
                    "\"{s}\" is not a request path; it starts with `/` and has no spaces"
                ))
            } else {
                Ok(s.to_owned())
            }
        })
    });
    set(cx, t, "interval", &mut out.interval, Ctx::duration);
    set(cx, t, "timeout", &mut out.timeout, Ctx::duration);
    set(
        cx,
        t,
        "healthy_threshold",
        &mut out.healthy_threshold,
        |cx, n| cx.uint(n, 1, 100).map(|v| v as u32),
    );
    set(
        cx,
        t,
        "unhealthy_threshold",
        &mut out.unhealthy_threshold,
        |cx, n| cx.uint(n, 1, 100).map(|v| v as u32),
    );
    set(cx, t, "expect_status", &mut out.expect_status, status_range);
    set(cx, t, "kind", &mut out.kind, |cx, n| {
        cx.parsed(n, |v| match v {
            "http" => Ok(HealthCheckKind::Http),
            "grpc" => Ok(HealthCheckKind::Grpc),
            other => Err(format!(
                "unknown check kind \"{other}\"; expected http or grpc"
            )),
        })
    });
    set(cx, t, "grpc_service", &mut out.grpc_service, Ctx::string);
    if cx.clean_since(mark) && out.timeout > out.interval {
        cx.error(
            ErrorKind::InvalidValue,
            t.span_of("timeout"),
            &t.child_path("timeout"),
            format!(
                "timeout ({}) must not be longer than interval ({})",
                crate::format_duration(out.timeout),
                crate::format_duration(out.interval)
            ),
        );
    }
    out
}

/// `"200-399"`, `"200"` or the integer `200`.
fn status_range(cx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<StatusRange> {
    if let toml::de::DeValue::Integer(_) = node.value {
        let code = cx.uint(node, 100, 599)? as u16;
        return Some(StatusRange {
            min: code,
            max: code,
        });
    }
    cx.parsed(node, |s| {
        let bad = || {
            format!(
                "\"{s}\" is not a status range; expected \"200-399\" or \"200\" (codes 100 to 599)"
            )
        };
        let code = |t: &str| match t.trim().parse::<u16>() {
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            _ => Err(bad()),
        };
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (code(a)?, code(b)?),
            None => (code(s)?, code(s)?),
        };
        if min > max {
            return Err(format!(
                "\"{s}\": the range is empty ({min} is above {max})"
            ));
        }
        Ok(StatusRange { min, max })
    })
}

fn outlier(cx: &mut Ctx<'_>, t: &Table<'_, '_>) -> OutlierConfig {
    let mut out = OutlierConfig::default();
    let mark = cx.mark();
    set(
        cx,
        t,
        "consecutive_failures",
        &mut out.consecutive_failures,
        |cx, n| cx.uint(n, 1, 1000).map(|v| v as u32),
    );
    set(
        cx,
        t,
        "base_ejection_time",
        &mut out.base_ejection_time,
        Ctx::duration,
    );
    set(
        cx,
        t,
        "max_ejection_time",
        &mut out.max_ejection_time,
        Ctx::duration,
    );
    set(
        cx,
        t,
        "max_ejection_percent",
        &mut out.max_ejection_percent,
        |cx, n| cx.uint(n, 0, 100).map(|v| v as u32),
    );
    if cx.clean_since(mark) && out.max_ejection_time < out.base_ejection_time {
        cx.error(
            ErrorKind::InvalidValue,
            t.span_of("max_ejection_time"),
            &t.child_path("max_ejection_time"),
            format!(
                "max_ejection_time ({}) must be at least base_ejection_time ({})",
                crate::format_duration(out.max_ejection_time),
                crate::format_duration(out.base_ejection_time)
            ),
        );
    }
    out
}

fn retry(cx: &mut Ctx<'_>, t: &Table<'_, '_>) -> RetryConfig {
    let mut out = RetryConfig::default();
    set(cx, t, "attempts", &mut out.attempts, |cx, n| {
        cx.uint(n, 0, 10).map(|v| v as u32)
    });
    set(cx, t, "on", &mut out.on, |cx, n| {
        let items = cx.array(n)?;
        let mut on: Vec<RetryOn> = Vec::new();
        let mut ok = true;
        for item in &items {
            match retry_on(cx, item) {
                Some(r) if !on.contains(&r) => on.push(r),
                Some(_) => {}
                None => ok = false,
            }
        }
        ok.then_some(on)
    });
    set(cx, t, "budget_ratio", &mut out.budget_ratio, |cx, n| {
        cx.number(n, 0.0, false, 1.0)
    });
    out
}

fn retry_on(cx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<RetryOn> {
    const EXPECTED: &str =
        "expected connect-failure, reset, timeout or a status code from 400 to 599 such as \"503\"";
    if let toml::de::DeValue::Integer(_) = node.value {
        return cx.uint(node, 400, 599).map(|c| RetryOn::Status(c as u16));
    }
    cx.parsed(node, |s| match s {
        "connect-failure" => Ok(RetryOn::ConnectFailure),
        "reset" => Ok(RetryOn::Reset),
        "timeout" => Ok(RetryOn::Timeout),
        _ => match s.parse::<u16>() {
            Ok(code) if (400..=599).contains(&code) && s.len() == 3 => Ok(RetryOn::Status(code)),
            _ => {
                let hint = crate::schema::closest(s, ["connect-failure", "reset", "timeout"])
                    .map(|c| format!(" (did you mean \"{c}\"?)"))
                    .unwrap_or_default();
                Err(format!("unknown retry condition \"{s}\"; {EXPECTED}{hint}"))
            }
        },
    })
}

fn analysis(cx: &mut Ctx<'_>, t: &Table<'_, '_>) -> AnalysisConfig {
    let mut out = AnalysisConfig::default();
    let mark = cx.mark();
    set(cx, t, "enabled", &mut out.enabled, Ctx::boolean);
    set(cx, t, "tick", &mut out.tick, |cx, n| {
        let d = cx.duration_min(n, Duration::from_millis(10))?;
        if d > Duration::from_secs(3600) {
            cx.invalid(n, "must be at most 1h");
            return None;
        }
        Some(d)
    });
    set(cx, t, "history", &mut out.history, |cx, n| {
        let d = cx.duration_min(n, Duration::from_secs(1))?;
        if d > Duration::from_secs(7 * 86_400) {
            cx.invalid(n, "must be at most 7d (it is kept in memory)");
            return None;
        }
        Some(d)
    });
    set(cx, t, "season", &mut out.season, |cx, n| {
        if let toml::de::DeValue::String(s) = n.value
            && s.as_ref() == "none"
        {
            return Some(None);
        }
        cx.duration(n).map(Some)
    });
    set(
        cx,
        t,
        "max_weight_change",
        &mut out.max_weight_change,
        |cx, n| cx.number(n, 0.0, true, 1.0),
    );
    set(cx, t, "mode", &mut out.mode, Ctx::choice);
    if cx.clean_since(mark) {
        if out.history < out.tick {
            cx.error(
                ErrorKind::InvalidValue,
                t.span_of("history"),
                &t.child_path("history"),
                "history must be at least one tick long",
            );
        }
        if out.season.is_some_and(|s| s < out.tick) {
            cx.error(
                ErrorKind::InvalidValue,
                t.span_of("season"),
                &t.child_path("season"),
                "season must be at least one tick long (or \"none\")",
            );
        }
    }
    out
}

// ---------------------------------------------------------------------------------
// [[route]]

fn routes(
    cx: &mut Ctx<'_>,
    root: &Table<'_, '_>,
    upstreams: &[UpstreamConfig],
) -> Vec<RouteConfig> {
    let Some(node) = root.node("route") else {
        return Vec::new();
    };
    let mut names: Vec<&str> = Vec::new();
    for name in upstreams.iter().map(|u| u.name.as_str()) {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    }
    let tables = cx.tables(&node, &schema::ROUTE);
    let mut out: Vec<RouteConfig> = Vec::new();
    let mut earlier: Vec<(RouteConfig, String)> = Vec::new();
    for t in &tables {
        let mark = cx.mark();
        let route = route(cx, t, &names);
        if cx.clean_since(mark) {
            if let Some((_, first)) = earlier.iter().find(|(e, _)| shadows(e, &route)) {
                cx.error(
                    ErrorKind::InvalidValue,
                    t.span.clone(),
                    &t.path,
                    format!(
                        "this route is never used: {first} comes first and matches every request it matches (routes are tried in file order)"
                    ),
                );
            }
            earlier.push((route.clone(), t.path.clone()));
        }
        out.push(route);
    }
    out
}

/// Whether every request `later` matches is matched by `earlier` too.
fn shadows(earlier: &RouteConfig, later: &RouteConfig) -> bool {
    let host = match (&earlier.host, &later.host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(HostMatch::Exact(a)), Some(HostMatch::Exact(b))) => a == b,
        (Some(HostMatch::Exact(_)), Some(HostMatch::Wildcard(_))) => false,
        (Some(w @ HostMatch::Wildcard(_)), Some(HostMatch::Exact(b))) => w.matches(b),
        (Some(HostMatch::Wildcard(a)), Some(HostMatch::Wildcard(b))) => {
            a == b || b.ends_with(&format!(".{a}"))
        }
    };
    let path = match (&earlier.path_prefix, &later.path_prefix) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => b.starts_with(a.as_str()),
    };
    host && path
}

fn route(cx: &mut Ctx<'_>, t: &Table<'_, '_>, names: &[&str]) -> RouteConfig {
    let host = cx.optional(t, "host", |cx, n| cx.parsed(n, parse_host_match));
    let path_prefix = cx.optional(t, "path_prefix", |cx, n| {
        cx.parsed(n, |s| {
            if !s.starts_with('/') {
                Err(format!("\"{s}\" must start with `/`"))
            } else if s
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
            {
                Err(format!(
                    "\"{s}\" is not a path prefix (no spaces, `?` or `#`)"
                ))
            } else {
                Ok(s.to_owned())
            }
        })
    });

    let single = cx.optional(t, "upstream", |cx, n| upstream_ref(cx, n, names));
    let split = cx.optional(t, "split", |cx, n| split(cx, n, names));
    let has_split = t.has("split");
    let targets = match (t.has("upstream"), has_split) {
        (true, true) => {
            cx.error(
                ErrorKind::InvalidValue,
                t.span_of("split"),
                &t.child_path("split"),
                "a route has either `upstream` or `split`, not both",
            );
            Vec::new()
        }
        (false, false) => {
            cx.error(
                ErrorKind::MissingKey,
                t.span.clone(),
                &t.child_path("upstream"),
                "missing required key `upstream` (or `split`)",
            );
            Vec::new()
        }
        (true, false) => single
            .map(|upstream| {
                vec![SplitTarget {
                    upstream,
                    weight: 100,
                }]
            })
            .unwrap_or_default(),
        (false, true) => split.clone().unwrap_or_default(),
    };

    let canary = sub_table(cx, t, "canary", &schema::CANARY).and_then(|c| {
        let canary = canary(cx, &c, names);
        if !has_split {
            cx.error(
                ErrorKind::InvalidValue,
                c.span.clone(),
                &c.path,
                "[route.canary] needs a `split` of the route between the canary and a baseline",
            );
            return None;
        }
        let (canary, targets) = (canary?, split.as_ref()?);
        if !targets.iter().any(|s| s.upstream == canary.upstream) {
            cx.error(
                ErrorKind::InvalidValue,
                c.span_of("upstream"),
                &c.child_path("upstream"),
                format!(
                    "canary upstream \"{}\" is not one of the route's split targets",
                    canary.upstream
                ),
            );
            return None;
        }
        let sum: u64 = targets.iter().map(|s| u64::from(s.weight)).sum();
        if targets.len() < 2 || sum != 100 {
            cx.error(
                ErrorKind::InvalidValue,
                t.span_of("split"),
                &t.child_path("split"),
                format!(
                    "with [route.canary], the split needs a baseline and weights adding up to 100 (percent); they add up to {sum}"
                ),
            );
            return None;
        }
        Some(canary)
    });

    let rate_limit = sub_table(cx, t, "rate_limit", &schema::RATE_LIMIT).map(|r| {
        let mut out = RateLimitConfig::default();
        set(cx, &r, "rps", &mut out.rps, |cx, n| {
            cx.uint(n, 1, 10_000_000).map(|v| v as u32)
        });
        set(cx, &r, "burst", &mut out.burst, |cx, n| {
            cx.uint(n, 1, 10_000_000).map(|v| v as u32)
        });
        set(cx, &r, "key", &mut out.key, |cx, n| {
            cx.parsed(n, |s| match s {
                "ip" => Ok(RateLimitKey::Ip),
                "none" => Ok(RateLimitKey::None),
                _ => match s.strip_prefix("header:") {
                    Some(name) if is_token(name) => {
                        Ok(RateLimitKey::Header(name.to_ascii_lowercase()))
                    }
                    _ => Err(format!(
                        "unknown rate-limit key \"{s}\"; expected ip, header:NAME or none"
                    )),
                },
            })
        });
        out
    });

    let cache = sub_table(cx, t, "cache", &schema::CACHE).map(|c| {
        let mut out = CacheConfig::default();
        set(cx, &c, "max_entries", &mut out.max_entries, |cx, n| {
            cx.uint(n, 1, 100_000_000).map(|v| v as usize)
        });
        set(cx, &c, "max_bytes", &mut out.max_bytes, |cx, n| {
            cx.uint(n, 1, i64::MAX as u64)
        });
        out
    });

    RouteConfig {
        host,
        path_prefix,
        targets,
        canary,
        rate_limit,
        cache,
    }
}

/// A reference to an upstream by name.
fn upstream_ref(cx: &mut Ctx<'_>, node: &Node<'_, '_>, names: &[&str]) -> Option<String> {
    let name = cx.string(node)?;
    if names.contains(&name.as_str()) {
        return Some(name);
    }
    let hint = crate::schema::closest(&name, names.iter().copied())
        .map(|c| format!("; did you mean \"{c}\"?"))
        .unwrap_or_else(|| format!("; the upstreams are: {}", names.join(", ")));
    cx.invalid(node, format!("unknown upstream \"{name}\"{hint}"));
    None
}

fn split(cx: &mut Ctx<'_>, node: &Node<'_, '_>, names: &[&str]) -> Option<Vec<SplitTarget>> {
    let items = cx.array(node)?;
    if items.is_empty() {
        cx.invalid(node, "must list at least one { upstream, weight } target");
        return None;
    }
    let mark = cx.mark();
    let mut out: Vec<SplitTarget> = Vec::new();
    for item in &items {
        let Some(t) = cx.table(item, &schema::SPLIT) else {
            continue;
        };
        let upstream = cx.required(&t, "upstream", |cx, n| upstream_ref(cx, n, names));
        let weight = cx.required(&t, "weight", |cx, n| {
            cx.uint(n, 0, 1_000_000).map(|v| v as u32)
        });
        if let (Some(upstream), Some(weight)) = (upstream, weight) {
            if out.iter().any(|s| s.upstream == upstream) {
                cx.invalid(
                    item,
                    format!("upstream \"{upstream}\" appears twice in the split"),
                );
                continue;
            }
            out.push(SplitTarget { upstream, weight });
        }
    }
    if !cx.clean_since(mark) {
        return None;
    }
    if out.iter().all(|s| s.weight == 0) {
        cx.invalid(
            node,
            "the split weights add up to 0; at least one must be positive",
        );
        return None;
    }
    Some(out)
}

fn canary(cx: &mut Ctx<'_>, t: &Table<'_, '_>, names: &[&str]) -> Option<CanaryConfig> {
    let mark = cx.mark();
    let upstream = cx.required(t, "upstream", |cx, n| upstream_ref(cx, n, names));
    let mut out = CanaryConfig {
        upstream: upstream.unwrap_or_default(),
        step: 10,
        interval: Duration::from_secs(30),
        max_error_rate: 0.02,
        max_p99_ratio: 1.5,
    };
    set(cx, t, "step", &mut out.step, |cx, n| {
        cx.uint(n, 1, 100).map(|v| v as u32)
    });
    set(cx, t, "interval", &mut out.interval, Ctx::duration);
    set(cx, t, "max_error_rate", &mut out.max_error_rate, |cx, n| {
        cx.number(n, 0.0, false, 1.0)
    });
    set(cx, t, "max_p99_ratio", &mut out.max_p99_ratio, |cx, n| {
        cx.number(n, 1.0, false, 1000.0)
    });
    cx.clean_since(mark).then_some(out)
}

fn parse_host_match(s: &str) -> Result<HostMatch, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        validate_dns_name(suffix).map_err(|e| format!("invalid wildcard host \"{s}\": {e}"))?;
        return Ok(HostMatch::Wildcard(suffix.trim_end_matches('.').to_owned()));
    }
    if lower.contains('*') {
        return Err(format!(
            "invalid host \"{s}\": a wildcard is only allowed as the whole first label, as in \"*.example.com\""
        ));
    }
    if let Some(inner) = lower.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| HostMatch::Exact(format!("[{ip}]")))
            .map_err(|_| format!("invalid host \"{s}\": not an IPv6 address"));
    }
    if lower.contains(':') {
        return Err(format!(
            "invalid host \"{s}\": leave the port out (a route matches the host name only)"
        ));
    }
    if let Ok(ip) = lower.parse::<std::net::Ipv4Addr>() {
        return Ok(HostMatch::Exact(ip.to_string()));
    }
    validate_dns_name(&lower).map_err(|e| format!("invalid host: {e}"))?;
    Ok(HostMatch::Exact(lower.trim_end_matches('.').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys() {
        assert_eq!(parse_hash_key("ip"), Ok(HashKey::Ip));
        assert_eq!(parse_hash_key("path"), Ok(HashKey::Path));
        assert_eq!(
            parse_hash_key("header:X-User-Id"),
            Ok(HashKey::Header("x-user-id".into()))
        );
        assert_eq!(
            parse_hash_key("cookie:sid"),
            Ok(HashKey::Cookie("sid".into()))
        );
        assert_eq!(
            parse_hash_key("query:user"),
            Ok(HashKey::Query("user".into()))
        );
        assert!(parse_hash_key("header:").is_err());
        assert!(parse_hash_key("header:a b").is_err());
        assert!(
            parse_hash_key("body")
                .unwrap_err()
                .contains("expected header:NAME")
        );
        assert!(parse_hash_key("foo:bar").is_err());
    }

    #[test]
    fn host_matches() {
        assert_eq!(
            parse_host_match("API.example.com"),
            Ok(HostMatch::Exact("api.example.com".into()))
        );
        assert_eq!(
            parse_host_match("*.Example.com"),
            Ok(HostMatch::Wildcard("example.com".into()))
        );
        assert_eq!(
            parse_host_match("[::1]"),
            Ok(HostMatch::Exact("[::1]".into()))
        );
        assert_eq!(
            parse_host_match("10.0.0.1"),
            Ok(HostMatch::Exact("10.0.0.1".into()))
        );
        assert!(
            parse_host_match("a.*.com")
                .unwrap_err()
                .contains("wildcard")
        );
        assert!(
            parse_host_match("example.com:80")
                .unwrap_err()
                .contains("port")
        );
        assert!(parse_host_match("bad host").is_err());
        assert!(parse_host_match("").is_err());
    }

    #[test]
    fn names_and_tokens() {
        assert!(check_upstream_name("web-canary_2.v1").is_ok());
        assert!(check_upstream_name("").is_err());
        assert!(check_upstream_name("a/b").is_err());
        assert!(check_upstream_name(&"x".repeat(65)).is_err());
        assert!(is_token("smartlb_sticky"));
        assert!(!is_token("a=b"));
        assert!(!is_token(""));
    }

    #[test]
    fn listener_overlap() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(overlaps(a("0.0.0.0:80"), a("127.0.0.1:80")));
        assert!(overlaps(a("127.0.0.1:80"), a("127.0.0.1:80")));
        assert!(!overlaps(a("127.0.0.1:80"), a("127.0.0.2:80")));
        assert!(!overlaps(a("127.0.0.1:0"), a("127.0.0.1:0")));
        assert!(!overlaps(a("[::]:80"), a("127.0.0.1:80")));
    }
}
