//! Which requests are sent again after they reached a backend that failed: idempotent ones
//! whose body could be kept (none, or at most 64 KiB of declared length), never the others.
//! Backends here are small in-process servers: one that reads the whole request and then
//! drops the connection without answering, one that echoes the body back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use smartlb::Upstream;
use smartlb::config::Algorithm;
use tokio::net::TcpListener;

/// What a test backend saw.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    /// Bytes of request bodies read.
    bytes: AtomicUsize,
}

/// Starts a backend: an echo (answers 200 with the request body and `x-backend: echo`),
/// or a breaker (reads the request body, then drops the connection without an answer).
async fn backend(echo: bool) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        // Bounded: each test makes a handful of connections.
        for _ in 0..10_000 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counts = counts.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let counts = counts.clone();
                    async move {
                        counts.requests.fetch_add(1, Ordering::SeqCst);
                        let body = match req.into_body().collect().await {
                            Ok(body) => body.to_bytes(),
                            Err(e) => return Err(std::io::Error::other(e)),
                        };
                        counts.bytes.fetch_add(body.len(), Ordering::SeqCst);
                        if !echo {
                            // An error makes hyper drop the connection unanswered.
                            return Err(std::io::Error::other("dropped"));
                        }
                        let mut resp = Response::new(Full::new(body));
                        resp.headers_mut()
                            .insert("x-backend", http::HeaderValue::from_static("echo"));
                        Ok(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// An upstream over `backends`, round-robin, with the default retry policy (two retries)
/// and outlier detection (five failures in a row, more than any test here makes).
fn upstream(backends: &[SocketAddr]) -> Upstream {
    let mut builder = Upstream::builder("retry")
        .algorithm(Algorithm::RoundRobin)
        .request_timeout(Duration::from_secs(2));
    for addr in backends {
        builder = builder.backend(*addr, 1);
    }
    builder.build().expect("upstream")
}

/// Sends `req` through `upstream` and reads the answer: status and body.
async fn send<B>(upstream: &Upstream, req: Request<B>) -> (StatusCode, String, Bytes)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let resp = tokio::time::timeout(Duration::from_secs(10), upstream.forward(req))
        .await
        .expect("an answer within 10 s");
    let status = resp.status();
    let backend = resp
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, backend, body)
}

/// Builds one request of a kind, again and again.
type MakeRequest = Box<dyn Fn() -> Request<smartlb_proxy::ProxyBody>>;

fn put(body: Bytes) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::PUT)
        .uri("/item")
        .body(Full::new(body))
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_idempotent_body_is_replayed_on_another_backend() {
    let (breaker, broke) = backend(false).await;
    let (echo, echoed) = backend(true).await;
    let upstream = upstream(&[breaker, echo]);
    let body = Bytes::from((0..10_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    for _ in 0..4 {
        let (status, backend, answer) = send(&upstream, put(body.clone())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(backend, "echo");
        assert_eq!(answer, body, "the replayed body differs");
    }
    // Round-robin sent some of them to the breaker first, which read them whole.
    let broken = broke.requests.load(Ordering::SeqCst);
    assert!(broken >= 1, "the breaker saw nothing");
    assert_eq!(broke.bytes.load(Ordering::SeqCst), broken * body.len());
    assert_eq!(echoed.requests.load(Ordering::SeqCst), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_be_replayed_are_not_retried_after_sending() {
    let (breaker, broke) = backend(false).await;
    let (echo, _) = backend(true).await;
    let upstream = upstream(&[breaker, echo]);

    // Each kind of request twice: round-robin sends one of the two to the breaker first.
    let small = Bytes::from_static(b"hello");
    let large = Bytes::from(vec![b'x'; 100 * 1024]);
    let cases: Vec<(&str, MakeRequest)> = vec![
        (
            "POST, small body",
            Box::new(move || {
                let mut req = put(small.clone()).map(smartlb_proxy::ProxyBody::new);
                *req.method_mut() = Method::POST;
                req
            }),
        ),
        (
            "PUT, body above the limit",
            Box::new(move || put(large.clone()).map(smartlb_proxy::ProxyBody::new)),
        ),
        (
            "PUT, body of unknown length",
            Box::new(|| {
                let chunks = futures_util::stream::iter(
                    [
                        Bytes::from_static(b"chunk one "),
                        Bytes::from_static(b"chunk two"),
                    ]
                    .map(|b| Ok::<_, Infallible>(Frame::data(b))),
                );
                put(Bytes::new()).map(|_| smartlb_proxy::ProxyBody::new(StreamBody::new(chunks)))
            }),
        ),
    ];
    for (what, make) in &cases {
        let before = broke.requests.load(Ordering::SeqCst);
        let mut statuses = Vec::new();
        for _ in 0..2 {
            statuses.push(send(&upstream, make()).await.0);
        }
        let hit = broke.requests.load(Ordering::SeqCst) - before;
        assert_eq!(hit, 1, "{what}: the breaker should see one of two");
        statuses.sort();
        assert_eq!(
            statuses,
            vec![StatusCode::OK, StatusCode::BAD_GATEWAY],
            "{what}: one answered, one failed without a retry"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_left_is_retried_whatever_its_method_and_body() {
    // Nothing listens on a port that was just released: connecting is refused.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let (echo, _) = backend(true).await;
    let upstream = upstream(&[closed, echo]);
    let large = Bytes::from(vec![b'y'; 100 * 1024]);
    for _ in 0..2 {
        let mut req = put(large.clone());
        *req.method_mut() = Method::POST;
        let (status, backend, answer) = send(&upstream, req).await;
        assert_eq!((status, backend.as_str()), (StatusCode::OK, "echo"));
        assert_eq!(answer, large);
    }
}
