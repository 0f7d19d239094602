//! Helpers shared by the integration tests: starting the proxy from TOML text, a small
//! HTTP client with bounded waits, and counting which backend answered.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use smartlb::Running;
use smartlb_demo::{DemoBackend, DemoBackendOptions, Latency};

/// The longest any single request of a test may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP/1.1 client with keep-alive.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The `x-backend` header, or `""`.
    pub fn backend(&self) -> &str {
        self.header("x-backend")
    }

    /// A header as text, or `""`.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Runs `fut`, failing the test with `what` when it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Parses `toml` and starts the proxy it describes.
pub async fn start_proxy(toml: &str) -> Running {
    let config = match smartlb::config::parse_str(toml, "test.toml", &|_| None) {
        Ok(config) => config,
        Err(errors) => panic!("test configuration rejected:\n{errors}\n---\n{toml}"),
    };
    within(Duration::from_secs(10), "starting the proxy", async {
        smartlb::start(&config).await.expect("the proxy starts")
    })
    .await
}

/// The proxy's first listening address.
pub fn proxy_addr(running: &Running) -> SocketAddr {
    running.listen_addrs()[0]
}

/// Stops the proxy, bounded in time.
pub async fn stop(running: Running) {
    within(Duration::from_secs(10), "shutting the proxy down", async {
        running.shutdown().await.expect("clean shutdown")
    })
    .await;
}

/// A configuration with one upstream over `backends` (address, weight), `algorithm`,
/// and `extra` appended verbatim to the upstream table (e.g. `hash_key = ...` or
/// sub-tables).
pub fn one_upstream(algorithm: &str, backends: &[(SocketAddr, u32)], extra: &str) -> String {
    let list = backends
        .iter()
        .map(|(addr, weight)| format!("{{ address = \"{addr}\", weight = {weight} }}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"{PREAMBLE}
[[upstream]]
name = "web"
algorithm = "{algorithm}"
backends = [{list}]
{extra}
"#
    )
}

/// The start of a test configuration: proxy and admin on ephemeral loopback ports, no
/// access log.
pub const PREAMBLE: &str = r#"[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[log]
access_log = false
"#;

/// The admin server's `/metrics` text.
pub async fn metrics_text(client: &HttpClient, admin: SocketAddr) -> String {
    get(client, admin, "/metrics").await.text()
}

/// A keep-alive HTTP/1.1 client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http()
}

/// Sends `req` and reads the whole response, bounded by [`REQUEST_TIMEOUT`].
pub async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> Answer {
    let what = format!("{} {}", req.method(), req.uri());
    within(REQUEST_TIMEOUT, &what, async {
        let resp = client
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{what}: body: {e:?}"))
            .to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
}

/// `GET http://{addr}{path}` with extra headers.
pub async fn get_with(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut builder = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    send(
        client,
        builder.body(Full::new(Bytes::new())).expect("request"),
    )
    .await
}

/// `GET http://{addr}{path}`.
pub async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> Answer {
    get_with(client, addr, path, &[]).await
}

/// Starts a demo backend named `name` with a fixed latency.
pub async fn backend(name: &str, latency_ms: u64) -> DemoBackend {
    let options = DemoBackendOptions::default()
        .with_latency(Latency::fixed(Duration::from_millis(latency_ms)));
    DemoBackend::start(name, options)
        .await
        .expect("demo backend starts")
}

/// Counts answers by their `x-backend` header; fails on any answer other than 200.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub by_backend: BTreeMap<String, usize>,
    pub total: usize,
}

impl Tally {
    /// Records one answer.
    pub fn add(&mut self, answer: &Answer) {
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "unexpected answer: {} {:?} {}",
            answer.status,
            answer.headers,
            answer.text()
        );
        *self
            .by_backend
            .entry(answer.backend().to_string())
            .or_default() += 1;
        self.total += 1;
    }

    /// Requests answered by `name`.
    pub fn count(&self, name: &str) -> usize {
        self.by_backend.get(name).copied().unwrap_or(0)
    }

    /// The share answered by `name`.
    pub fn share(&self, name: &str) -> f64 {
        self.count(name) as f64 / self.total.max(1) as f64
    }

    /// Merges another tally into this one.
    pub fn merge(&mut self, other: &Tally) {
        for (name, n) in &other.by_backend {
            *self.by_backend.entry(name.clone()).or_default() += n;
        }
        self.total += other.total;
    }
}

/// `n` sequential `GET path` requests through the proxy at `addr`.
pub async fn sequential(addr: SocketAddr, path: &str, n: usize) -> Tally {
    let client = client();
    let mut tally = Tally::default();
    for _ in 0..n {
        tally.add(&get(&client, addr, path).await);
    }
    tally
}

/// `workers` clients each sending `per_worker` sequential requests at once.
pub async fn concurrent(addr: SocketAddr, path: &str, workers: usize, per_worker: usize) -> Tally {
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            sequential(addr, &path, per_worker).await
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(&task.await.expect("worker"));
    }
    tally
}

/// Polls `check` every 20 ms until it holds, failing the test after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("not reached within {limit:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The states of an upstream's backends in the proxy's status report, by address.
pub fn backend_states(running: &Running, upstream: &str) -> BTreeMap<String, String> {
    running
        .proxy()
        .status()
        .upstreams
        .iter()
        .filter(|u| u.name == upstream)
        .flat_map(|u| u.backends.iter())
        .map(|b| (b.address.clone(), b.state.clone()))
        .collect()
}
