//! Requests through `serve` + `BackendClient`: headers, pooling, bodies, h2c.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use smartlb_proxy::{BackendClient, ClientOptions, ProxyBody, ServerOptions};
use tokio::net::TcpStream;
use tower::{Service, ServiceExt};

#[tokio::test]
async fn forwarding_headers_are_added_and_host_kept() {
    bounded(async {
        let backend = echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let mut tx = h1(proxy.addr).await;
        let req = Request::builder()
            .uri("/some/path?x=1")
            .header("host", "app.example:8443")
            .header("x-forwarded-for", "203.0.113.9")
            .header("via", "1.1 edge")
            .body(ProxyBody::empty())
            .unwrap();
        let resp = exchange(&mut tx, req).await;
        assert_eq!(resp.status, StatusCode::OK);
        let h = &resp.headers;
        assert_eq!(h["echo-host"], "app.example:8443");
        assert_eq!(h["echo-x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["echo-x-forwarded-proto"], "http");
        assert_eq!(h["echo-x-forwarded-host"], "app.example:8443");
        let via: Vec<_> = h.get_all("echo-via").iter().collect();
        assert_eq!(via, ["1.1 edge", "1.1 smartlb"]);
        assert_eq!(h["echo-path"], "/some/path?x=1");
        // The response carries the proxy's Via too.
        assert_eq!(h["via"], "1.1 smartlb");
    })
    .await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_both_ways() {
    bounded(async {
        let backend = backend(|_req: Request<Incoming>| async {
            Response::builder()
                .header("connection", "x-backend-hop")
                .header("x-backend-hop", "secret")
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "Basic")
                .header("x-end-to-end", "kept")
                .body(ProxyBody::from("ok"))
                .unwrap()
        })
        .await;
        let echo = echo_backend().await;

        // Request direction: the echo backend shows what arrived.
        let proxy_echo = proxy(echo.addr, quick_client(), ServerOptions::default()).await;
        let sent = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Client-Hop\r\n\
                    X-Client-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic x\r\n\
                    Proxy-Connection: keep-alive\r\nTE: gzip\r\nX-Kept: yes\r\n\
                    Connection: close\r\n\r\n";
        let answer = raw(proxy_echo.addr, sent.as_bytes(), Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(lower.contains("echo-x-kept: yes"), "{answer}");
        for gone in [
            "echo-x-client-hop",
            "echo-connection",
            "echo-keep-alive",
            "echo-proxy-authorization",
            "echo-proxy-connection",
            "echo-te",
        ] {
            assert!(
                !lower.contains(gone),
                "{gone} reached the backend: {answer}"
            );
        }

        // Response direction.
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let mut tx = h1(proxy.addr).await;
        let resp = exchange(&mut tx, get("/")).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert!(!resp.headers.contains_key("x-backend-hop"));
        assert!(!resp.headers.contains_key("keep-alive"));
        assert!(!resp.headers.contains_key("proxy-authenticate"));
        assert_eq!(resp.headers["x-end-to-end"], "kept");
        assert_eq!(&resp.body[..], b"ok");
    })
    .await;
}

#[tokio::test]
async fn keep_alive_connections_are_reused() {
    bounded(async {
        let backend = echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        // Sequential requests over several client connections share upstream ones.
        for _ in 0..4 {
            let mut tx = h1(proxy.addr).await;
            for i in 0..25 {
                let resp = exchange(&mut tx, get(&format!("/{i}"))).await;
                assert_eq!(resp.status, StatusCode::OK);
            }
        }
        assert_eq!(
            backend.connections(),
            1,
            "sequential requests need one connection"
        );
        assert_eq!(proxy.client.idle_connections(), 1);

        // Concurrent requests open a few more, and they are reused afterwards.
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let addr = proxy.addr;
            tasks.push(tokio::spawn(async move {
                let mut tx = h1(addr).await;
                for _ in 0..10 {
                    let body = ProxyBody::from(Bytes::from(vec![b'x'; 1000]));
                    let req = Request::post("/").header("host", "h").body(body).unwrap();
                    let resp = exchange(&mut tx, req).await;
                    assert_eq!(resp.body.len(), 1000);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let after_burst = backend.connections();
        assert!(
            after_burst <= 9,
            "opened {after_burst} connections for 8 concurrent clients"
        );
        let mut tx = h1(proxy.addr).await;
        for _ in 0..20 {
            exchange(&mut tx, get("/")).await;
        }
        assert_eq!(
            backend.connections(),
            after_burst,
            "idle connections were not reused"
        );
        assert!(proxy.client.idle_connections() <= after_burst);
    })
    .await;
}

#[tokio::test]
async fn idle_cap_and_prewarm() {
    bounded(async {
        let backend = echo_backend().await;
        let opts = ClientOptions {
            max_idle: 3,
            ..quick_client()
        };
        let client = BackendClient::new(backend.addr, opts);
        assert_eq!(client.prewarm(5).await.unwrap(), 3, "capped by max_idle");
        assert_eq!(client.idle_connections(), 3);
        assert_eq!(client.open_connections(), 3);
        assert_eq!(client.prewarm(2).await.unwrap(), 0, "already full");
        // Prewarmed connections serve requests without new connects.
        for _ in 0..5 {
            let resp = client.send(get("/")).await.unwrap();
            resp.into_body().collect().await.unwrap();
        }
        assert_eq!(backend.connections(), 3);

        // Many concurrent requests open more connections; only max_idle stay.
        let mut pending = Vec::new();
        for _ in 0..6 {
            let (tx, body) = channel_body();
            let req = Request::post("/")
                .header("host", "h")
                .body(ProxyBody::new(body))
                .unwrap();
            let c = client.clone();
            pending.push((tx, tokio::spawn(async move { c.send(req).await })));
        }
        let mut responses = Vec::new();
        for (tx, task) in pending {
            tx.send(Bytes::from_static(b"hi")).await.unwrap();
            drop(tx);
            responses.push(task.await.unwrap().unwrap());
        }
        assert_eq!(client.open_connections(), 6);
        for resp in responses {
            resp.into_body().collect().await.unwrap();
        }
        assert_eq!(client.idle_connections(), 3);
        // The three dropped connections close.
        for _ in 0..100 {
            if client.open_connections() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(client.open_connections(), 3);
    })
    .await;
}

#[tokio::test]
async fn idle_connections_expire() {
    bounded(async {
        let backend = echo_backend().await;
        let opts = ClientOptions {
            idle_timeout: Duration::from_millis(100),
            ..quick_client()
        };
        let client = BackendClient::new(backend.addr, opts);
        let resp = client.send(get("/")).await.unwrap();
        resp.into_body().collect().await.unwrap();
        assert_eq!(client.idle_connections(), 1);
        for _ in 0..100 {
            if client.open_connections() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(client.idle_connections(), 0);
        assert_eq!(client.open_connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn backend_closing_idle_connections_does_not_fail_requests() {
    bounded(async {
        // A backend that closes every connection after one response.
        let backend = backend(|_req: Request<Incoming>| async {
            Response::builder()
                .header("connection", "close")
                .body(ProxyBody::from("once"))
                .unwrap()
        })
        .await;
        let client = BackendClient::new(backend.addr, quick_client());
        for _ in 0..10 {
            let resp = client.send(get("/")).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"once");
        }
        assert_eq!(backend.connections(), 10);
        assert_eq!(client.idle_connections(), 0);

        // A keep-alive backend whose idle connections are killed behind the pool's
        // back: the stale connection is skipped.
        let backend = echo_backend().await;
        let client = BackendClient::new(backend.addr, quick_client());
        let resp = client.send(get("/")).await.unwrap();
        resp.into_body().collect().await.unwrap();
        assert_eq!(client.idle_connections(), 1);
        let addr = backend.addr;
        drop(backend); // aborts the accept loop and every connection
        let backend = echo_backend_at(addr).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let resp = client.send(get("/")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.unwrap();
        backend.abort();
    })
    .await;
}

/// An echo-like backend on a given address (used after a restart).
async fn echo_backend_at(addr: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    // The old listener closes once its aborted task is dropped: retry briefly.
    let mut listener = None;
    for _ in 0..200 {
        if let Ok(l) = tokio::net::TcpListener::bind(addr).await {
            listener = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let listener = listener.expect("port reusable");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(ProxyBody::from("again")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    bounded(async {
        let backend = echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let mut tx = h1(proxy.addr).await;
        let payload = pattern(3 * 1024 * 1024 + 17);
        let req = Request::post("/upload")
            .header("host", "h")
            .body(ProxyBody::from(payload.clone()))
            .unwrap();
        let resp = exchange(&mut tx, req).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.body.len(), payload.len());
        assert!(resp.body == payload);

        // Chunked (unknown length) both ways.
        let (chunks, body) = channel_body();
        let req = Request::post("/chunked")
            .header("host", "h")
            .body(ProxyBody::new(body))
            .unwrap();
        tx.ready().await.unwrap();
        let sending = tokio::spawn(async move {
            for i in 0..64u8 {
                chunks.send(Bytes::from(vec![i; 32 * 1024])).await.unwrap();
            }
        });
        let resp = tx.send_request(req).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        sending.await.unwrap();
        assert_eq!(body.len(), 64 * 32 * 1024);
        assert!(
            body.chunks(32 * 1024)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&b| b == i as u8))
        );
    })
    .await;
}

#[tokio::test]
async fn response_body_is_not_buffered_whole() {
    bounded(async {
        // The backend sends one chunk, then waits for the client to have seen it
        // before finishing: only a streaming proxy can pass this.
        let (seen_tx, seen_rx) = tokio::sync::mpsc::channel::<()>(1);
        let seen_rx = std::sync::Arc::new(tokio::sync::Mutex::new(seen_rx));
        let backend = backend(move |_req: Request<Incoming>| {
            let seen_rx = seen_rx.clone();
            async move {
                let (chunks, body) = channel_body();
                tokio::spawn(async move {
                    chunks.send(Bytes::from_static(b"first;")).await.unwrap();
                    seen_rx.lock().await.recv().await;
                    chunks.send(Bytes::from_static(b"second")).await.unwrap();
                });
                Response::new(ProxyBody::new(body))
            }
        })
        .await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let mut tx = h1(proxy.addr).await;
        tx.ready().await.unwrap();
        let resp = tx.send_request(get("/stream")).await.unwrap();
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"first;");
        seen_tx.send(()).await.unwrap();
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"second");
    })
    .await;
}

#[tokio::test]
async fn request_body_is_not_buffered_whole() {
    bounded(async {
        // The backend answers after the first chunk; the client sends the rest
        // only once it has the answer.
        let backend = backend(|req: Request<Incoming>| async move {
            let mut body = req.into_body();
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            let (chunks, out) = channel_body();
            tokio::spawn(async move {
                chunks.send(first).await.unwrap();
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        chunks.send(data).await.unwrap();
                    }
                }
            });
            Response::new(ProxyBody::new(out))
        })
        .await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let mut tx = h1(proxy.addr).await;
        let (chunks, body) = channel_body();
        let req = Request::post("/")
            .header("host", "h")
            .body(ProxyBody::new(body))
            .unwrap();
        tx.ready().await.unwrap();
        let pending = tx.send_request(req);
        chunks.send(Bytes::from_static(b"one;")).await.unwrap();
        let resp = pending.await.unwrap();
        let mut resp_body = resp.into_body();
        let first = resp_body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap();
        assert_eq!(&first[..], b"one;");
        chunks.send(Bytes::from_static(b"two")).await.unwrap();
        drop(chunks);
        let rest = resp_body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"two");
    })
    .await;
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    bounded(async {
        let backend = echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let stream = TcpStream::connect(proxy.addr).await.unwrap();
        let (mut tx, conn) = hyper::client::conn::http2::handshake::<_, _, ProxyBody>(
            TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let mut streams = Vec::new();
        for i in 0..5 {
            let req = Request::builder()
                .version(Version::HTTP_2)
                .uri(format!("http://h2.example:8080/h2/{i}?q=1"))
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .body(ProxyBody::from("h2 body"))
                .unwrap();
            streams.push(tx.send_request(req));
        }
        for (i, pending) in streams.into_iter().enumerate() {
            let resp = pending.await.unwrap();
            assert_eq!(resp.version(), Version::HTTP_2);
            let resp = collect(resp).await;
            assert_eq!(resp.status, StatusCode::OK);
            assert_eq!(resp.headers["echo-host"], "h2.example:8080");
            assert_eq!(resp.headers["echo-x-forwarded-host"], "h2.example:8080");
            assert_eq!(resp.headers["echo-path"], format!("/h2/{i}?q=1"));
            assert_eq!(resp.headers["echo-via"], "2 smartlb");
            assert_eq!(resp.headers["echo-cookie"], "a=1; b=2");
            assert_eq!(resp.headers["via"], "1.1 smartlb");
            assert_eq!(&resp.body[..], b"h2 body");
        }
    })
    .await;
}

#[tokio::test]
async fn unsent_request_is_given_back() {
    bounded(async {
        let dead = closed_port().await;
        let client = BackendClient::new(dead, quick_client());
        let req = Request::post("/retry-me")
            .header("host", "h")
            .body(ProxyBody::from("the body"))
            .unwrap();
        let mut err = client.send(req).await.unwrap_err();
        assert!(err.is_connect());
        assert!(!err.was_sent());
        assert!(err.is_retryable());
        assert_eq!(err.status(), StatusCode::BAD_GATEWAY);
        let req = err.take_request().expect("the request comes back");
        assert_eq!(req.uri(), "/retry-me");
        assert!(smartlb_proxy::is_prepared(&req));

        // The same request, body unread, goes to a live backend; headers are not
        // prepared twice.
        let backend = echo_backend().await;
        let mut live = BackendClient::new(backend.addr, quick_client());
        let resp = ServiceExt::<Request<ProxyBody>>::ready(&mut live)
            .await
            .unwrap()
            .call(req)
            .await
            .unwrap();
        assert_eq!(resp.headers().get_all("echo-via").iter().count(), 1);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"the body");
    })
    .await;
}

#[tokio::test]
async fn from_authority_resolves_at_connect() {
    bounded(async {
        let backend = echo_backend().await;
        let authority = format!("127.0.0.1:{}", backend.addr.port());
        let client = BackendClient::from_authority(&authority, quick_client()).unwrap();
        let resp = client.send(get("/")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let named = format!("localhost:{}", backend.addr.port());
        assert!(BackendClient::from_authority(&named, quick_client()).is_ok());
        for bad in ["localhost", ":80", "host:port", "a/b:80", ""] {
            assert!(
                BackendClient::from_authority(bad, quick_client()).is_err(),
                "{bad}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn http10_request_without_host_gets_the_backend_address() {
    bounded(async {
        let backend = echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let answer = raw(
            proxy.addr,
            b"GET /old HTTP/1.0\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
        let lower = answer.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("echo-host: {}", backend.addr)),
            "{answer}"
        );
        assert!(lower.contains("echo-via: 1.0 smartlb"), "{answer}");
        assert!(!lower.contains("echo-x-forwarded-host"), "{answer}");
    })
    .await;
}
