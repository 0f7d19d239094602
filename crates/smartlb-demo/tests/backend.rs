//! The demo backend on real loopback sockets.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{get, request};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use smartlb_demo::{DemoBackend, DemoBackendOptions, DemoError, Latency};
use tokio::net::TcpStream;

async fn start(name: &str) -> DemoBackend {
    DemoBackend::start(name, DemoBackendOptions::default())
        .await
        .expect("backend starts")
}

#[tokio::test]
async fn answers_with_its_name_and_latency() {
    let backend = DemoBackend::start(
        "alpha",
        DemoBackendOptions::default().with_latency(Latency::fixed(Duration::from_millis(60))),
    )
    .await
    .unwrap();
    assert!(backend.addr().ip().is_loopback());
    assert_ne!(backend.addr().port(), 0);

    let started = Instant::now();
    let answer = get(backend.addr(), "/").await.unwrap();
    let took = started.elapsed();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.backend(), Some("alpha"));
    assert!(String::from_utf8_lossy(&answer.body).contains("alpha"));
    assert!(took >= Duration::from_millis(60), "{took:?}");

    backend.set_latency(Latency::from_millis(120, 10));
    assert_eq!(backend.latency(), Latency::from_millis(120, 10));
    let started = Instant::now();
    get(backend.addr(), "/anything?x=1").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(120));

    assert_eq!(backend.requests(), 2);
    assert_eq!(backend.connections(), 2);
    assert_eq!(backend.in_flight(), 0);
}

#[tokio::test]
async fn crash_resets_connections_and_recover_serves_on_the_same_port() {
    let backend = start("flaky").await;
    let handle = backend.handle();
    let addr = backend.addr();

    // A request in flight on a kept-alive connection when the backend dies.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let warm = sender
        .send_request(
            Request::get("/")
                .header("host", "t")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(warm.status(), StatusCode::OK);
    warm.into_body().collect().await.unwrap();

    handle.set_latency(Latency::fixed(Duration::from_secs(30)));
    sender.ready().await.unwrap();
    let in_flight = tokio::spawn(
        sender.send_request(
            Request::get("/")
                .header("host", "t")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        ),
    );
    // Wait until the backend holds the request, then kill it.
    for _ in 0..200 {
        if handle.in_flight() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(handle.in_flight(), 1);
    assert!(handle.crash());
    assert!(!handle.crash(), "a second crash is a no-op");
    assert!(!handle.is_running());
    assert_eq!(handle.condition(), "down");

    let outcome = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the in-flight request ends promptly")
        .unwrap();
    assert!(outcome.is_err(), "the in-flight request must fail");
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;

    // New connections are refused at once.
    assert!(TcpStream::connect(addr).await.is_err());

    handle.set_latency(Latency::ZERO);
    handle.recover().await.unwrap();
    assert!(handle.is_running());
    assert_eq!(handle.addr(), addr);
    let answer = get(addr, "/").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.backend(), Some("flaky"));
    // Recovering a running backend changes nothing.
    handle.recover().await.unwrap();
    assert_eq!(handle.stats().crashes, 1);

    // Crash and recover again, to be sure the port comes back every time.
    handle.crash();
    handle.recover().await.unwrap();
    assert_eq!(get(addr, "/").await.unwrap().status, StatusCode::OK);
    assert_eq!(handle.stats().crashes, 2);
}

#[tokio::test]
async fn blackhole_accepts_but_never_answers() {
    let backend = start("hole").await;
    backend.blackhole(true);
    assert!(backend.is_blackholed());
    assert_eq!(backend.condition(), "blackhole");

    let result = request(
        backend.addr(),
        Method::GET,
        "/",
        Bytes::new(),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(result.unwrap_err(), "timeout");
    let health = request(
        backend.addr(),
        Method::GET,
        "/health",
        Bytes::new(),
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(health.unwrap_err(), "timeout");
    assert_eq!(backend.connections(), 2, "connections are accepted");

    backend.blackhole(false);
    assert_eq!(
        get(backend.addr(), "/").await.unwrap().status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_held_request_is_answered_when_the_blackhole_lifts() {
    let backend = start("hole").await;
    backend.blackhole(true);
    let addr = backend.addr();
    let pending = tokio::spawn(async move { get(addr, "/").await });
    for _ in 0..200 {
        if backend.in_flight() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(backend.in_flight(), 1);
    backend.blackhole(false);
    let answer = pending.await.unwrap().unwrap();
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn failing_health_answers_503_while_serving_traffic() {
    let backend = start("sick").await;
    assert_eq!(
        get(backend.addr(), "/health").await.unwrap().status,
        StatusCode::OK
    );

    backend.set_health_failing(true);
    let health = get(backend.addr(), "/health").await.unwrap();
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(health.backend(), Some("sick"));
    assert_eq!(
        get(backend.addr(), "/").await.unwrap().status,
        StatusCode::OK
    );

    backend.set_health_failing(false);
    assert_eq!(
        get(backend.addr(), "/health").await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(backend.health_checks(), 3);
    assert_eq!(backend.requests(), 1);
}

#[tokio::test]
async fn full_error_rate_answers_every_request_with_a_5xx() {
    let backend = DemoBackend::start("broken", DemoBackendOptions::default().with_error_rate(1.0))
        .await
        .unwrap();
    for _ in 0..20 {
        let answer = get(backend.addr(), "/").await.unwrap();
        assert!(
            answer.status == StatusCode::INTERNAL_SERVER_ERROR
                || answer.status == StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            answer.status
        );
        assert_eq!(answer.backend(), Some("broken"));
    }
    assert_eq!(backend.errors_injected(), 20);
    // Health has its own switch.
    assert_eq!(
        get(backend.addr(), "/health").await.unwrap().status,
        StatusCode::OK
    );

    assert!(matches!(
        backend.set_error_rate(1.5),
        Err(DemoError::InvalidErrorRate(_))
    ));
    assert_eq!(backend.error_rate(), 1.0);
    backend.set_error_rate(0.0).unwrap();
    assert_eq!(
        get(backend.addr(), "/").await.unwrap().status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn echo_streams_the_body_back() {
    let backend = start("echo").await;
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let answer = request(
        backend.addr(),
        Method::POST,
        "/echo",
        Bytes::from(body.clone()),
        common::TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.backend(), Some("echo"));
    assert_eq!(answer.body.as_ref(), body.as_slice());
}

#[tokio::test]
async fn speaks_h2c_with_prior_knowledge() {
    let backend = start("h2").await;
    let stream = TcpStream::connect(backend.addr()).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://test/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = tokio::time::timeout(common::TIMEOUT, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.headers()["x-backend"], "h2");
}

#[tokio::test]
async fn bad_options_are_rejected() {
    let err = DemoBackend::start("", DemoBackendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = DemoBackend::start("has space", DemoBackendOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = DemoBackend::start("x", DemoBackendOptions::default().with_error_rate(-1.0))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);

    // A port already in use is a bind error.
    let taken = start("taken").await;
    let err = DemoBackend::start(
        "again",
        DemoBackendOptions::default().with_addr(taken.addr()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
}

#[tokio::test]
async fn dropping_the_backend_stops_it() {
    let backend = start("gone").await;
    let addr = backend.addr();
    let handle = backend.handle();
    drop(backend);
    assert!(!handle.is_running());
    assert!(TcpStream::connect(addr).await.is_err());
}
