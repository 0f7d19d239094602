//! The full proxy on loopback: forwarding headers and hop-by-hop hygiene, the proxy's own
//! error answers (502, 503, 504 with `x-smartlb-error`), routing by host and path,
//! WebSocket tunnelling, h2c with prior knowledge, and a backend killed under load
//! costing no client request.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Tally, backend, client, get, get_with, one_upstream, proxy_addr, within};
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// A backend that answers every request with a JSON description of what it received
/// (`method`, `uri`, `version`, `headers` as `[name, value]` pairs), and adds
/// hop-by-hop headers of its own to the response.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let headers: Vec<Value> = req
                        .headers()
                        .iter()
                        .map(|(name, value)| {
                            serde_json::json!([name.as_str(), value.to_str().unwrap_or("?")])
                        })
                        .collect();
                    let doc = serde_json::json!({
                        "method": req.method().as_str(),
                        "uri": req.uri().to_string(),
                        "version": format!("{:?}", req.version()),
                        "headers": headers,
                    });
                    let resp = Response::builder()
                        .header("content-type", "application/json")
                        .header("x-backend", "echo")
                        .header("connection", "x-resp-hop")
                        .header("x-resp-hop", "secret")
                        .header("keep-alive", "timeout=5")
                        .header("x-resp-end-to-end", "kept")
                        .body(Full::new(Bytes::from(doc.to_string())))
                        .expect("response");
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The values of header `name` in an echo document.
fn echoed(doc: &Value, name: &str) -> Vec<String> {
    doc["headers"]
        .as_array()
        .expect("headers array")
        .iter()
        .filter(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str().unwrap_or("").to_string())
        .collect()
}

/// A closed loopback port: bound, then released.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_and_hop_by_hop_hygiene() {
    let echo = echo_backend().await;
    let running = common::start_proxy(&one_upstream("round-robin", &[(echo, 1)], "")).await;
    let addr = proxy_addr(&running);
    let client = client();

    let answer = get_with(
        &client,
        addr,
        "/some/path?q=1",
        &[
            ("host", "app.example.test"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "must-not-pass"),
            ("keep-alive", "timeout=30"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("te", "gzip"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let doc: Value = serde_json::from_slice(&answer.body).expect("echo JSON");

    // What the backend received.
    eprintln!("the backend received: {doc}");
    assert_eq!(doc["method"], "GET");
    assert_eq!(doc["uri"], "/some/path?q=1");
    assert_eq!(echoed(&doc, "host"), ["app.example.test"], "{doc}");
    assert_eq!(echoed(&doc, "x-forwarded-for"), ["127.0.0.1"], "{doc}");
    assert_eq!(echoed(&doc, "x-forwarded-proto"), ["http"], "{doc}");
    assert_eq!(
        echoed(&doc, "x-forwarded-host"),
        ["app.example.test"],
        "{doc}"
    );
    let via = echoed(&doc, "via").join(", ");
    assert!(via.contains("smartlb"), "via: {via:?}");
    assert_eq!(echoed(&doc, "x-end-to-end"), ["kept"]);
    for hop in [
        "x-custom-hop",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
    ] {
        assert!(
            echoed(&doc, hop).is_empty(),
            "hop-by-hop header {hop} reached the backend: {doc}"
        );
    }
    for connection in echoed(&doc, "connection") {
        assert!(
            !connection.contains("x-custom-hop"),
            "connection: {connection}"
        );
    }

    // What the client received back.
    assert_eq!(answer.header("x-resp-end-to-end"), "kept");
    assert_eq!(answer.header("x-resp-hop"), "", "{:?}", answer.headers);
    assert_eq!(answer.header("keep-alive"), "", "{:?}", answer.headers);
    assert!(
        answer.header("via").contains("smartlb"),
        "{:?}",
        answer.headers
    );

    // A client's own X-Forwarded-For is extended, not replaced.
    let answer = get_with(
        &client,
        addr,
        "/",
        &[
            ("host", "app.example.test"),
            ("x-forwarded-for", "203.0.113.9"),
        ],
    )
    .await;
    let doc: Value = serde_json::from_slice(&answer.body).expect("echo JSON");
    assert_eq!(
        echoed(&doc, "x-forwarded-for").join(", "),
        "203.0.113.9, 127.0.0.1"
    );
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_backend_is_a_502() {
    let dead = closed_port().await;
    let running = common::start_proxy(&one_upstream("round-robin", &[(dead, 1)], "")).await;
    let answer = get(&client(), proxy_addr(&running), "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{}", answer.text());
    assert_eq!(answer.header("x-smartlb-error"), "backend-unreachable");
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_backend_is_a_fast_503() {
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    let health = r#"
[upstream.health]
path = "/health"
interval = "100ms"
timeout = "100ms"
healthy_threshold = 1
unhealthy_threshold = 1
"#;
    let running = common::start_proxy(&one_upstream(
        "round-robin",
        &[(a.addr(), 1), (b.addr(), 1)],
        health,
    ))
    .await;
    let addr = proxy_addr(&running);
    let client = client();
    assert_eq!(get(&client, addr, "/").await.status, StatusCode::OK);

    a.set_health_failing(true);
    b.set_health_failing(true);
    common::eventually(Duration::from_secs(5), "both backends unhealthy", || {
        common::backend_states(&running, "web")
            .values()
            .all(|s| s == "unhealthy")
    })
    .await;

    let started = Instant::now();
    let answer = get(&client, addr, "/").await;
    let took = started.elapsed();
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.text()
    );
    assert_eq!(answer.header("x-smartlb-error"), "no-healthy-backend");
    assert!(!answer.header("retry-after").is_empty(), "no Retry-After");
    eprintln!("503 after {took:?}");
    assert!(took < Duration::from_secs(1), "the 503 took {took:?}");
    assert_eq!(
        a.requests() + b.requests(),
        1,
        "a request reached a backend"
    );

    // And back: the checks pass again, the backends serve again.
    a.set_health_failing(false);
    b.set_health_failing(false);
    common::eventually(Duration::from_secs(5), "backends healthy again", || {
        common::backend_states(&running, "web")
            .values()
            .all(|s| s != "unhealthy")
    })
    .await;
    assert_eq!(get(&client, addr, "/").await.status, StatusCode::OK);
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_backend_is_a_504() {
    let hole = backend("hole", 0).await;
    hole.blackhole(true);
    let config = one_upstream("round-robin", &[(hole.addr(), 1)], "").replace(
        "listen = \"127.0.0.1:0\"\n\n[admin]",
        "listen = \"127.0.0.1:0\"\nrequest_timeout = \"300ms\"\n\n[admin]",
    );
    assert!(config.contains("request_timeout"));
    let running = common::start_proxy(&config).await;
    let started = Instant::now();
    let answer = get(&client(), proxy_addr(&running), "/").await;
    let took = started.elapsed();
    assert_eq!(
        answer.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        answer.text()
    );
    assert_eq!(answer.header("x-smartlb-error"), "backend-timeout");
    // At most three attempts of 300 ms; generous bound for a loaded machine.
    eprintln!("504 after {took:?}");
    assert!(took < Duration::from_secs(5), "the 504 took {took:?}");
    hole.blackhole(false);
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_prefix() {
    let api = backend("api", 0).await;
    let statics = backend("static", 0).await;
    let wild = backend("wild", 0).await;
    let fallback = backend("fallback", 0).await;
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[log]
access_log = false

[[upstream]]
name = "fallback"
backends = ["{fallback}"]

[[upstream]]
name = "api"
backends = ["{api}"]

[[upstream]]
name = "static"
backends = ["{statics}"]

[[upstream]]
name = "wild"
backends = ["{wild}"]

[[route]]
host = "api.example.test"
upstream = "api"

[[route]]
host = "*.wild.test"
upstream = "wild"

[[route]]
path_prefix = "/static"
upstream = "static"

[[route]]
path_prefix = "/"
upstream = "fallback"
"#,
        fallback = fallback.addr(),
        api = api.addr(),
        statics = statics.addr(),
        wild = wild.addr(),
    );
    let running = common::start_proxy(&config).await;
    let addr = proxy_addr(&running);
    let client = client();
    for (host, path, expected) in [
        ("api.example.test", "/", "api"),
        ("api.example.test:8080", "/static/x.css", "api"),
        ("a.wild.test", "/anything", "wild"),
        ("other.test", "/static/app.js", "static"),
        ("other.test", "/", "fallback"),
        ("other.test", "/api", "fallback"),
    ] {
        let answer = get_with(&client, addr, path, &[("host", host)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{host}{path}");
        assert_eq!(answer.backend(), expected, "{host}{path}");
    }
    common::stop(running).await;

    // Without a catch-all route, an unmatched request is the proxy's own 404.
    let config = config.replace(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"fallback\"\n",
        "",
    );
    let running = common::start_proxy(&config).await;
    let answer = get_with(
        &client,
        proxy_addr(&running),
        "/",
        &[("host", "other.test")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.header("x-smartlb-error"), "no-route");
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways() {
    let a = backend("a", 0).await;
    let running = common::start_proxy(&one_upstream("round-robin", &[(a.addr(), 1)], "")).await;
    let addr = proxy_addr(&running);
    // 1 MiB of a non-repeating pattern, posted to the backend's echo path.
    let body: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let req = Request::post(format!("http://{addr}/echo"))
        .body(Full::new(Bytes::from(body.clone())))
        .expect("request");
    let answer = common::send(&client(), req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.backend(), "a");
    assert_eq!(answer.body.len(), body.len());
    assert!(answer.body[..] == body[..], "the echoed body differs");
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_is_served_alongside() {
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    let running = common::start_proxy(&one_upstream(
        "least-requests",
        &[(a.addr(), 1), (b.addr(), 2)],
        "",
    ))
    .await;
    let client = client();
    assert_eq!(
        get(&client, proxy_addr(&running), "/").await.status,
        StatusCode::OK
    );
    let admin = running.admin_addr();
    assert_eq!(get(&client, admin, "/healthz").await.status, StatusCode::OK);
    let answer = get(&client, admin, "/api/v1/status").await;
    assert_eq!(answer.status, StatusCode::OK);
    let doc: Value = serde_json::from_slice(&answer.body).expect("status JSON");
    let upstream = &doc["upstreams"][0];
    assert_eq!(upstream["name"], "web", "{doc}");
    assert_eq!(upstream["algorithm"], "least-requests", "{doc}");
    let backends = upstream["backends"].as_array().expect("backends");
    assert_eq!(backends.len(), 2, "{doc}");
    assert_eq!(backends[0]["address"], a.addr().to_string());
    assert_eq!(backends[1]["configured_weight"], 2);
    let served: u64 = backends
        .iter()
        .map(|b| b["requests_total"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(served, 1, "{doc}");
    common::stop(running).await;
}

/// A WebSocket backend echoing every text and binary message.
async fn websocket_echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_is_tunnelled() {
    let echo = websocket_echo_backend().await;
    let running = common::start_proxy(&one_upstream("round-robin", &[(echo, 1)], "")).await;
    let addr = proxy_addr(&running);
    within(Duration::from_secs(10), "websocket exchange", async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
            .await
            .expect("websocket handshake through the proxy");
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        for i in 0..5 {
            let text = format!("hello {i}");
            ws.send(Message::text(text.clone())).await.expect("send");
            let back = ws.next().await.expect("a message").expect("no error");
            assert_eq!(back.into_text().expect("text").as_str(), text);
        }
        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .expect("send");
        let back = ws.next().await.expect("a message").expect("no error");
        assert_eq!(back.into_data().as_ref(), &[0u8, 1, 2, 255]);
        ws.close(None).await.expect("close");
    })
    .await;
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_proxied() {
    let a = backend("a", 0).await;
    let running = common::start_proxy(&one_upstream("round-robin", &[(a.addr(), 1)], "")).await;
    let addr = proxy_addr(&running);
    within(Duration::from_secs(10), "h2c exchange", async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        for _ in 0..3 {
            let req = Request::get(format!("http://{addr}/h2"))
                .body(Full::new(Bytes::new()))
                .expect("request");
            let resp = sender.send_request(req).await.expect("h2 response");
            assert_eq!(resp.version(), Version::HTTP_2);
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()["x-backend"], "a");
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            assert_eq!(&body[..], b"hello from a\n");
        }
    })
    .await;
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_under_load_fails_no_request_round_robin() {
    let running = kill_under_load("round-robin").await;
    // Round-robin kept offering the dead backend until the outlier detector took it out:
    // the failures happened inside the proxy and were retried away.
    let status = running.proxy().status();
    let b = &status.upstreams[0].backends[1];
    assert!(b.errors_total >= 1, "no failure was ever seen: {b:?}");
    assert_eq!(b.state, "ejected", "{b:?}");
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_under_load_fails_no_request_adaptive() {
    let running = kill_under_load("adaptive").await;
    common::stop(running).await;
}

/// Eight clients send GETs through the proxy for two seconds while backend `b` of three
/// is killed after 0.7 s; fails the test on any request that did not get a 200.
async fn kill_under_load(algorithm: &str) -> smartlb::Running {
    let backends = [
        backend("a", 2).await,
        backend("b", 2).await,
        backend("c", 2).await,
    ];
    let list: Vec<(SocketAddr, u32)> = backends.iter().map(|b| (b.addr(), 1)).collect();
    let running = common::start_proxy(&one_upstream(
        algorithm,
        &list,
        "connect_timeout = \"250ms\"",
    ))
    .await;
    let addr = proxy_addr(&running);

    let crashed = Arc::new(AtomicBool::new(false));
    let after_crash_on_b = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let run_for = Duration::from_secs(2);
    let mut workers = Vec::new();
    for _ in 0..8 {
        let crashed = crashed.clone();
        let after_crash_on_b = after_crash_on_b.clone();
        workers.push(tokio::spawn(async move {
            let client = client();
            let mut tally = Tally::default();
            let mut failures = Vec::new();
            // Bounded by time and by count.
            for _ in 0..20_000 {
                if started.elapsed() >= run_for {
                    break;
                }
                let was_crashed = crashed.load(Ordering::SeqCst);
                let req = Request::get(format!("http://{addr}/"))
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                match tokio::time::timeout(common::REQUEST_TIMEOUT, client.request(req)).await {
                    Ok(Ok(resp)) => {
                        let status = resp.status();
                        let backend = resp
                            .headers()
                            .get("x-backend")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let cause = resp
                            .headers()
                            .get("x-smartlb-error")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        match resp.into_body().collect().await {
                            Ok(_) if status == StatusCode::OK => {
                                if was_crashed && backend == "b" {
                                    after_crash_on_b.fetch_add(1, Ordering::SeqCst);
                                }
                                *tally.by_backend.entry(backend).or_default() += 1;
                                tally.total += 1;
                            }
                            Ok(_) => {
                                failures.push(format!("{:?}: {status} {cause}", started.elapsed()))
                            }
                            Err(e) => {
                                failures.push(format!("{:?}: body: {e:?}", started.elapsed()))
                            }
                        }
                    }
                    Ok(Err(e)) => failures.push(format!("{:?}: client: {e:?}", started.elapsed())),
                    Err(_) => failures.push(format!("{:?}: timed out", started.elapsed())),
                }
            }
            (tally, failures)
        }));
    }

    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(backends[1].crash(), "b was running");
    crashed.store(true, Ordering::SeqCst);
    let crashed_at = started.elapsed();

    let mut tally = Tally::default();
    let mut failures = Vec::new();
    for worker in workers {
        let (t, f) = within(Duration::from_secs(30), "load worker", worker)
            .await
            .expect("worker");
        tally.merge(&t);
        failures.extend(f);
    }
    let status = running.proxy().status();
    eprintln!("{algorithm}: b crashed at {crashed_at:?}; {tally:?}; failures: {failures:?}");
    assert!(
        failures.is_empty(),
        "{} of {} requests failed (b crashed at {crashed_at:?}): {failures:#?}\nstatus: {status:#?}",
        failures.len(),
        tally.total + failures.len()
    );
    assert!(
        tally.total > 200,
        "too little load to mean anything: {tally:?}"
    );
    for name in ["a", "b", "c"] {
        assert!(tally.count(name) > 0, "{name} served nothing: {tally:?}");
    }
    // A request that started after the crash cannot have been answered by b.
    assert_eq!(after_crash_on_b.load(Ordering::SeqCst), 0);
    running
}
