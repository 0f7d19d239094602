//! gRPC through smartlb over HTTP/2 end to end, with real tonic clients and servers (the
//! grpc.health.v1 service, whose code tonic-health ships): unary calls are balanced per
//! request over three servers; a server killed mid-stream fails only its own stream, the
//! others stream on, and new calls avoid it.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tonic::transport::Channel;
use tonic_health::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response};
use tonic_health::server::HealthReporter;

/// A tonic server with the health service, naming itself in an `x-server` response
/// header. It runs on a runtime of its own, so that killing it (dropping that runtime)
/// closes every connection at once, as a killed process would.
struct GrpcServer {
    name: &'static str,
    addr: SocketAddr,
    reporter: HealthReporter,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
}

impl GrpcServer {
    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn grpc_server(name: &'static str) -> GrpcServer {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (kill, killed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let named = tower::ServiceBuilder::new().map_response(
                move |mut resp: http::Response<tonic::body::Body>| {
                    resp.headers_mut()
                        .insert("x-server", http::HeaderValue::from_static(name));
                    resp
                },
            );
            let serve = tonic::transport::Server::builder()
                .layer(named)
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
            tokio::select! {
                _ = serve => {}
                _ = killed => {}
            }
        });
        // Dropping the runtime drops every connection task: the sockets close.
        drop(runtime);
    });
    GrpcServer {
        name,
        addr,
        reporter,
        kill: Some(kill),
    }
}

fn config(servers: &[&GrpcServer]) -> String {
    let list = servers
        .iter()
        .map(|s| format!("\"{}\"", s.addr))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{PREAMBLE}\n[[upstream]]\nname = \"grpc\"\nalgorithm = \"round-robin\"\nprotocol = \"h2\"\nbackends = [{list}]\n"
    )
}

fn server_of<T>(resp: &tonic::Response<T>) -> String {
    resp.metadata()
        .get("x-server")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn client(proxy: SocketAddr) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://{proxy}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

fn request() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_balanced_per_request_and_a_killed_server_fails_only_its_stream() {
    let mut servers = [
        grpc_server("s1").await,
        grpc_server("s2").await,
        grpc_server("s3").await,
    ];
    let running = start_proxy(&config(&servers.iter().collect::<Vec<_>>())).await;
    let proxy = proxy_addr(&running);
    // One client connection: HTTP/2 multiplexes every call over it, and smartlb still
    // balances each call on its own.
    let mut client = client(proxy).await;

    let mut by_server = BTreeMap::<String, usize>::new();
    for _ in 0..30 {
        let resp = client.check(request()).await.unwrap();
        assert_eq!(
            resp.get_ref().status(),
            health_check_response::ServingStatus::Serving
        );
        *by_server.entry(server_of(&resp)).or_default() += 1;
    }
    assert_eq!(by_server.len(), 3, "{by_server:?}");
    assert!(
        by_server.values().all(|&n| n == 10),
        "round-robin per call: {by_server:?}"
    );

    // Three server-streaming calls, one on each server.
    let mut streams = Vec::new();
    for _ in 0..3 {
        let resp = client.watch(request()).await.unwrap();
        let server = server_of(&resp);
        let mut stream = resp.into_inner();
        let first = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            first.status(),
            health_check_response::ServingStatus::Serving
        );
        streams.push((server, stream));
    }
    let mut names: Vec<&str> = streams.iter().map(|(s, _)| s.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["s1", "s2", "s3"]);

    // Kill s2 mid-stream: its stream fails...
    servers.iter_mut().find(|s| s.name == "s2").unwrap().kill();
    let (_, mut dead) = streams.remove(streams.iter().position(|(s, _)| s == "s2").unwrap());
    let ended = tokio::time::timeout(Duration::from_secs(10), dead.message())
        .await
        .expect("the killed server's stream ends");
    assert!(
        !matches!(ended, Ok(Some(_))),
        "the killed server's stream must not go on: {ended:?}"
    );
    // ...while the others stream on: a status change reaches them.
    for server in servers.iter().filter(|s| s.name != "s2") {
        server
            .reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
    }
    for (server, stream) in &mut streams {
        let next = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .unwrap_or_else(|_| panic!("{server}'s stream stalled"))
            .unwrap_or_else(|e| panic!("{server}'s stream failed: {e}"))
            .unwrap();
        assert_eq!(
            next.status(),
            health_check_response::ServingStatus::NotServing,
            "{server}"
        );
    }

    // New calls avoid the dead server and all succeed.
    let mut after = BTreeMap::<String, usize>::new();
    for i in 0..20 {
        let resp = client
            .check(request())
            .await
            .unwrap_or_else(|e| panic!("call {i} after the kill failed: {e}"));
        *after.entry(server_of(&resp)).or_default() += 1;
    }
    assert!(!after.contains_key("s2"), "{after:?}");
    assert_eq!(after.values().sum::<usize>(), 20);
    // Endless streams would hold a graceful shutdown for its whole grace period.
    drop(streams);
    drop(client);
    stop(running).await;
}

/// A backend answering every call with gRPC status UNAVAILABLE in the response head (a
/// Trailers-Only response), over h2c.
async fn unavailable_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tower::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
        let resp = http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "14")
            .header("grpc-message", "overloaded")
            .header("x-server", "bad")
            .body(smartlb_proxy::ProxyBody::empty())
            .unwrap();
        Ok::<_, std::convert::Infallible>(resp)
    });
    tokio::spawn(smartlb_proxy::serve(
        listener,
        service,
        smartlb_proxy::ServerOptions::default(),
        std::future::pending(),
    ));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unavailable_answers_eject_the_backend() {
    let good = [grpc_server("g1").await, grpc_server("g2").await];
    let bad = unavailable_server().await;
    let toml = format!(
        "{PREAMBLE}\n[[upstream]]\nname = \"grpc\"\nalgorithm = \"round-robin\"\nprotocol = \"h2\"\nbackends = [\"{}\", \"{}\", \"{bad}\"]\n\n[upstream.outlier]\nconsecutive_failures = 3\nbase_ejection_time = \"30s\"\n",
        good[0].addr, good[1].addr
    );
    let running = start_proxy(&toml).await;
    let mut client = client(proxy_addr(&running)).await;
    let mut failed = 0;
    for _ in 0..30 {
        match client.check(request()).await {
            Ok(resp) => assert_ne!(server_of(&resp), "bad"),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable);
                failed += 1;
            }
        }
    }
    // Three failures in a row eject it; after that every call goes to a good server.
    assert_eq!(failed, 3, "calls answered UNAVAILABLE before the ejection");
    let states = backend_states(&running, "grpc");
    assert_eq!(
        states.get(&bad.to_string()).map(String::as_str),
        Some("ejected"),
        "{states:?}"
    );
    drop(client);
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_checks_take_a_not_serving_server_out_and_bring_it_back() {
    let servers = [grpc_server("h1").await, grpc_server("h2").await];
    let toml = format!(
        "{PREAMBLE}\n[[upstream]]\nname = \"grpc\"\nalgorithm = \"round-robin\"\nprotocol = \"h2\"\nbackends = [\"{}\", \"{}\"]\n\n[upstream.health]\nkind = \"grpc\"\ninterval = \"500ms\"\ntimeout = \"400ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 2\n",
        servers[0].addr, servers[1].addr
    );
    let running = start_proxy(&toml).await;
    let h2 = servers[1].addr.to_string();
    eventually(
        Duration::from_secs(10),
        "both healthy by gRPC checks",
        || {
            backend_states(&running, "grpc")
                .values()
                .all(|s| s == "healthy")
        },
    )
    .await;
    servers[1]
        .reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    eventually(Duration::from_secs(10), "h2 taken out", || {
        backend_states(&running, "grpc")
            .get(&h2)
            .map(String::as_str)
            == Some("unhealthy")
    })
    .await;
    let mut client = client(proxy_addr(&running)).await;
    for _ in 0..10 {
        let resp = client.check(request()).await.unwrap();
        assert_eq!(server_of(&resp), "h1");
    }
    servers[1]
        .reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    eventually(Duration::from_secs(10), "h2 back", || {
        backend_states(&running, "grpc")
            .get(&h2)
            .map(String::as_str)
            != Some("unhealthy")
    })
    .await;
    drop(client);
    stop(running).await;
}
