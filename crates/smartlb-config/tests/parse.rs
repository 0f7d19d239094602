//! Valid files: the SPEC examples, defaults and the optional tables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use smartlb_config::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture is readable")
}

fn token_env(name: &str) -> Option<String> {
    (name == "SMARTLB_ADMIN_TOKEN").then(|| "s3cret-token".to_owned())
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(source: &str) -> Config {
    match parse_str(source, "test.toml", &token_env) {
        Ok(c) => c,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a socket address")
}

const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8080"

[[upstream]]
name = "web"
backends = ["127.0.0.1:8081", "127.0.0.1:8082"]
"#;

#[test]
fn smallest_file_gets_every_default() {
    let c = parse_str(&read_fixture("minimal.toml"), "minimal.toml", &no_env).unwrap();
    assert_eq!(c, parse(MINIMAL));

    let expected_server = ServerConfig {
        listen: vec![addr("127.0.0.1:8080")],
        ..ServerConfig::default()
    };
    assert_eq!(c.server, expected_server);
    assert_eq!(c.server.workers, 0);
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(c.server.request_timeout, Duration::from_secs(30));
    assert_eq!(c.server.max_header_bytes, 65_536);
    assert_eq!(c.server.max_connections, 10_000);
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.server.tls, None);

    assert_eq!(c.admin.listen, addr("127.0.0.1:9901"));
    assert_eq!(c.admin.token, None);
    assert_eq!(c.log.level, LogLevel::Info);
    assert_eq!(c.log.format, LogFormat::Text);
    assert!(c.log.access_log);
    assert!(c.routes.is_empty());

    assert_eq!(c.upstreams.len(), 1);
    let web = &c.upstreams[0];
    let expected = UpstreamConfig::new(
        "web",
        vec![
            BackendConfig::new("127.0.0.1:8081".parse().unwrap()),
            BackendConfig::new("127.0.0.1:8082".parse().unwrap()),
        ],
    );
    assert_eq!(*web, expected);
    assert_eq!(web.algorithm, Algorithm::Adaptive);
    assert_eq!(web.hash_key, None);
    assert_eq!(web.connect_timeout, Duration::from_secs(1));
    assert_eq!(web.discovery, DiscoveryConfig::Static);
    assert_eq!(
        web.health, None,
        "no [upstream.health] means no active checks"
    );
    assert_eq!(web.outlier.consecutive_failures, 5);
    assert_eq!(web.outlier.base_ejection_time, Duration::from_secs(10));
    assert_eq!(web.outlier.max_ejection_time, Duration::from_secs(300));
    assert_eq!(web.outlier.max_ejection_percent, 50);
    assert_eq!(web.retry.attempts, 2);
    assert_eq!(web.retry.on.len(), 6);
    assert_eq!(web.retry.budget_ratio, 0.2);
    assert_eq!(web.slow_start.duration, Duration::from_secs(30));
    assert!(web.analysis.enabled);
    assert_eq!(web.analysis.tick, Duration::from_secs(1));
    assert_eq!(web.analysis.history, Duration::from_secs(3600));
    assert_eq!(web.analysis.season, Some(Duration::from_secs(86_400)));
    assert_eq!(web.analysis.max_weight_change, 0.25);
    assert_eq!(web.analysis.mode, AnalysisMode::Enforce);
    assert_eq!(web.sticky, None);
    assert_eq!(c.default_upstream().map(|u| u.name.as_str()), Some("web"));
    assert!(c.upstream("web").is_some() && c.upstream("nope").is_none());
}

#[test]
fn spec_full_shape_parses() {
    let c = parse_str(&read_fixture("full.toml"), "full.toml", &token_env).unwrap();
    assert_eq!(c.server.listen, vec![addr("0.0.0.0:8080")]);
    assert_eq!(c.admin.token.as_deref(), Some("s3cret-token"));
    assert_eq!(c.upstreams.len(), 2);

    let web = &c.upstreams[0];
    assert_eq!(web.name, "web");
    let weights: Vec<(String, u32, bool)> = web
        .backends
        .iter()
        .map(|b| (b.address.to_string(), b.weight, b.backup))
        .collect();
    assert_eq!(
        weights,
        vec![
            ("127.0.0.1:8081".to_owned(), 1, false),
            ("127.0.0.1:8082".to_owned(), 3, false),
            ("127.0.0.1:8083".to_owned(), 1, true),
        ]
    );
    assert_eq!(web.health, Some(HealthConfig::default()));
    assert_eq!(web.outlier, OutlierConfig::default());
    assert_eq!(web.retry, RetryConfig::default());
    assert_eq!(web.slow_start, SlowStartConfig::default());
    assert_eq!(web.analysis, AnalysisConfig::default());
    assert_eq!(web.sticky, Some(StickyConfig::default()));
    assert_eq!(c.upstreams[1].name, "web-canary");

    assert_eq!(c.routes.len(), 2);
    let api = &c.routes[0];
    assert_eq!(api.host, Some(HostMatch::Exact("api.example.com".into())));
    assert_eq!(api.path_prefix.as_deref(), Some("/api"));
    assert_eq!(
        api.targets,
        vec![
            SplitTarget {
                upstream: "web".into(),
                weight: 90
            },
            SplitTarget {
                upstream: "web-canary".into(),
                weight: 10
            },
        ]
    );
    let canary = api.canary.as_ref().unwrap();
    assert_eq!(canary.upstream, "web-canary");
    assert_eq!(
        (canary.step, canary.interval),
        (10, Duration::from_secs(30))
    );
    assert_eq!((canary.max_error_rate, canary.max_p99_ratio), (0.02, 1.5));
    assert_eq!(api.rate_limit, Some(RateLimitConfig::default()));
    assert_eq!(api.cache, Some(CacheConfig::default()));
    let fallback = &c.routes[1];
    assert_eq!(fallback.host, None);
    assert_eq!(
        fallback.targets,
        vec![SplitTarget {
            upstream: "web".into(),
            weight: 100
        }]
    );
}

#[test]
fn full_shape_needs_its_token() {
    let errors = parse_str(&read_fixture("full.toml"), "full.toml", &no_env).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.errors()[0];
    assert_eq!(e.kind(), ErrorKind::Environment);
    assert_eq!(e.path(), "admin.token");
    assert_eq!(e.line(), Some(14));
    assert_eq!(e.column(), Some(10));
    assert_eq!(
        e.message(),
        "environment variable `SMARTLB_ADMIN_TOKEN` is not set"
    );
}

#[test]
fn load_file_reads_the_file() {
    let c = load_file(&fixture("minimal.toml")).unwrap();
    assert_eq!(c.upstreams[0].backends.len(), 2);
}

#[test]
fn load_file_reports_an_unreadable_file() {
    let path = fixture("does-not-exist.toml");
    let errors = load_file(&path).unwrap_err();
    assert_eq!(errors.len(), 1);
    let e = &errors.errors()[0];
    assert_eq!(e.kind(), ErrorKind::Io);
    assert_eq!(e.line(), None);
    assert!(
        e.to_string()
            .starts_with(&format!("{}: cannot read the file:", path.display()))
    );
}

#[test]
fn load_file_reports_a_non_utf8_file() {
    let dir = std::env::temp_dir().join(format!("smartlb-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("latin1.toml");
    std::fs::write(&path, b"[server]\nlisten = \"\xe9\"\n").unwrap();
    let errors = load_file(&path).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(errors.to_string().contains("not UTF-8"), "{errors}");
}

#[test]
fn optional_tables_and_values() {
    let c = parse(
        r#"
[server]
listen = ["127.0.0.1:8080", "[::1]:8080", "127.0.0.1:0"]
workers = 4
shutdown_grace = "0"
max_header_bytes = 0x4000

[server.tls]
cert = "/etc/smartlb/cert.pem"
key = "${SMARTLB_ADMIN_TOKEN}.key"

[admin]
listen = "0.0.0.0:9901"
token = "${SMARTLB_ADMIN_TOKEN}"

[log]
level = "debug"
format = "json"
access_log = false

[[upstream]]
name = "api"
algorithm = "consistent-hash"
hash_key = "header:X-User-Id"
connect_timeout = "1.5s"
backends = [
  "https://API.internal",
  { address = "[::1]:9000", weight = 1000, backup = true },
]

[upstream.health]
path = "/ready?full=1"
interval = "1m30s"
timeout = "250ms"
healthy_threshold = 1
unhealthy_threshold = 10
expect_status = 204

[upstream.retry]
attempts = 0
on = ["reset", 429, "503", "503"]
budget_ratio = 1

[upstream.slow_start]
duration = "0s"

[upstream.analysis]
enabled = false
season = "none"
mode = "shadow"
max_weight_change = 1

[upstream.sticky]
cookie = "lb"
ttl = "1d"

[[upstream]]
name = "hashed"
algorithm = "consistent-hash"
backends = ["10.0.0.1:80"]

[[route]]
host = "*.Example.com"
upstream = "hashed"

[route.rate_limit]
rps = 5
key = "header:X-Api-Key"
"#,
    );
    assert_eq!(c.server.listen.len(), 3);
    assert_eq!(c.server.workers, 4);
    assert_eq!(c.server.shutdown_grace, Duration::ZERO);
    assert_eq!(c.server.max_header_bytes, 16_384);
    assert_eq!(
        c.server.tls,
        Some(TlsConfig {
            cert: "/etc/smartlb/cert.pem".into(),
            key: "s3cret-token.key".into(),
        })
    );
    assert_eq!(c.admin.listen, addr("0.0.0.0:9901"));
    assert_eq!(c.log.level, LogLevel::Debug);
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(!c.log.access_log);

    let api = &c.upstreams[0];
    assert_eq!(api.algorithm, Algorithm::ConsistentHash);
    assert_eq!(api.hash_key, Some(HashKey::Header("x-user-id".into())));
    assert_eq!(api.connect_timeout, Duration::from_millis(1500));
    assert_eq!(
        api.backends[0].address,
        BackendAddress::new(Scheme::Https, "api.internal", 443)
    );
    assert_eq!(
        api.backends[1].address.socket_addr(),
        Some(addr("[::1]:9000"))
    );
    assert_eq!(
        (api.backends[1].weight, api.backends[1].backup),
        (1000, true)
    );
    let health = api.health.as_ref().unwrap();
    assert_eq!(health.path, "/ready?full=1");
    assert_eq!(health.interval, Duration::from_secs(90));
    assert_eq!(health.timeout, Duration::from_millis(250));
    assert_eq!(
        (health.healthy_threshold, health.unhealthy_threshold),
        (1, 10)
    );
    assert_eq!(health.expect_status, StatusRange { min: 204, max: 204 });
    assert_eq!(api.retry.attempts, 0);
    assert_eq!(
        api.retry.on,
        vec![RetryOn::Reset, RetryOn::Status(429), RetryOn::Status(503)]
    );
    assert_eq!(api.retry.budget_ratio, 1.0);
    assert_eq!(api.slow_start.duration, Duration::ZERO);
    assert!(!api.analysis.enabled);
    assert_eq!(api.analysis.season, None);
    assert_eq!(api.analysis.mode, AnalysisMode::Shadow);
    assert_eq!(api.analysis.max_weight_change, 1.0);
    assert_eq!(
        api.sticky,
        Some(StickyConfig {
            cookie: "lb".into(),
            ttl: Duration::from_secs(86_400)
        })
    );
    assert_eq!(
        c.upstreams[1].hash_key,
        Some(HashKey::Ip),
        "consistent-hash defaults to ip"
    );

    let route = &c.routes[0];
    assert_eq!(route.host, Some(HostMatch::Wildcard("example.com".into())));
    assert_eq!(
        route.rate_limit,
        Some(RateLimitConfig {
            rps: 5,
            burst: 200,
            key: RateLimitKey::Header("x-api-key".into())
        })
    );
}

#[test]
fn discovery_tables() {
    let c = parse(
        r#"
[[upstream]]
name = "from-dns"
[upstream.discovery]
kind = "dns"
name = "web.internal"
port = 8080
resolvers = ["127.0.0.1", "127.0.0.1:5353"]

[[upstream]]
name = "from-srv"
[upstream.discovery]
kind = "dns"
name = "_http._tcp.web.internal"
record = "SRV"
refresh = "30s"

[[upstream]]
name = "from-etcd"
[upstream.discovery]
kind = "etcd"
endpoints = ["http://127.0.0.1:2379", "127.0.0.1:22379"]
prefix = "/smartlb/web/"

[[upstream]]
name = "explicit-static"
backends = ["127.0.0.1:1"]
[upstream.discovery]
kind = "static"
"#,
    );
    assert!(c.upstreams[0].backends.is_empty());
    assert_eq!(
        c.upstreams[0].discovery,
        DiscoveryConfig::Dns(DnsDiscovery {
            name: "web.internal".into(),
            record: DnsRecord::A,
            port: Some(8080),
            refresh: Duration::from_secs(5),
            resolvers: vec![addr("127.0.0.1:53"), addr("127.0.0.1:5353")],
        })
    );
    let DiscoveryConfig::Dns(srv) = &c.upstreams[1].discovery else {
        panic!("expected dns discovery");
    };
    assert_eq!((srv.record, srv.port), (DnsRecord::Srv, None));
    assert_eq!(srv.refresh, Duration::from_secs(30));
    assert!(srv.resolvers.is_empty());
    let DiscoveryConfig::Etcd(etcd) = &c.upstreams[2].discovery else {
        panic!("expected etcd discovery");
    };
    let urls: Vec<String> = etcd.endpoints.iter().map(BackendAddress::to_url).collect();
    assert_eq!(urls, ["http://127.0.0.1:2379", "http://127.0.0.1:22379"]);
    assert_eq!(etcd.prefix, "/smartlb/web/");
    assert_eq!(c.upstreams[3].discovery, DiscoveryConfig::Static);
    assert_eq!(c.upstreams[3].backends.len(), 1);
}

#[test]
fn serializes_for_the_status_api() {
    let c = parse_str(&read_fixture("full.toml"), "full.toml", &token_env).unwrap();
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["server"]["listen"][0], "0.0.0.0:8080");
    assert_eq!(json["server"]["idle_timeout"], "1m");
    assert_eq!(json["admin"]["token"], "<redacted>");
    assert_eq!(json["upstreams"][0]["algorithm"], "adaptive");
    assert_eq!(
        json["upstreams"][0]["backends"][1]["address"],
        "127.0.0.1:8082"
    );
    assert_eq!(json["upstreams"][0]["health"]["expect_status"], "200-399");
    assert_eq!(json["upstreams"][0]["retry"]["on"][3], "502");
    assert_eq!(json["upstreams"][0]["analysis"]["season"], "1d");
    assert_eq!(json["upstreams"][0]["discovery"]["kind"], "static");
    assert_eq!(json["routes"][0]["host"], "api.example.com");
    assert!(!json.to_string().contains("s3cret-token"));
}
