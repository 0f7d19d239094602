//! Backend failures become the proxy's labelled error responses.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use smartlb_proxy::{BackendClient, ClientOptions, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A raw backend: accepts connections and runs `behaviour` on each.
async fn raw_backend<F, Fut>(behaviour: F) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            conns.spawn(behaviour(stream));
        }
    });
    (addr, task)
}

/// Reads until the end of a request head.
async fn read_head(stream: &mut tokio::net::TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn closed_port_gives_502_unreachable() {
    bounded(async {
        let dead = closed_port().await;
        let proxy = proxy(dead, quick_client(), ServerOptions::default()).await;
        let mut tx = h1(proxy.addr).await;
        let resp = exchange(&mut tx, get("/")).await;
        assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
        assert_eq!(resp.headers["x-smartlb-error"], "backend-unreachable");
        assert!(String::from_utf8_lossy(&resp.body).contains("backend-unreachable"));
        // The client connection stays usable.
        let resp = exchange(&mut tx, get("/again")).await;
        assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
    })
    .await;
}

#[tokio::test]
async fn silent_backend_gives_504_timeout() {
    bounded(async {
        let (addr, task) = raw_backend(|mut stream| async move {
            read_head(&mut stream).await;
            // Never answer; hold the connection until the peer goes away.
            let mut buf = [0u8; 64];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        let opts = ClientOptions {
            request_timeout: Duration::from_millis(300),
            ..quick_client()
        };
        let proxy = proxy(addr, opts, ServerOptions::default()).await;
        let mut tx = h1(proxy.addr).await;
        let resp = exchange(&mut tx, get("/slow")).await;
        assert_eq!(resp.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(resp.headers["x-smartlb-error"], "backend-timeout");
        // The timed-out connection is not kept for reuse.
        assert_eq!(proxy.client.idle_connections(), 0);

        let client = BackendClient::new(
            addr,
            ClientOptions {
                request_timeout: Duration::from_millis(100),
                ..quick_client()
            },
        );
        let err = client.send(get("/")).await.unwrap_err();
        assert!(err.is_timeout() && !err.is_connect());
        assert!(err.was_sent());
        assert!(err.is_retryable(), "GET is idempotent");
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn backend_closing_mid_exchange_gives_502_reset() {
    bounded(async {
        // Reads the head, then closes without answering.
        let (addr, task) = raw_backend(|mut stream| async move {
            read_head(&mut stream).await;
        })
        .await;
        let proxy = proxy(addr, quick_client(), ServerOptions::default()).await;
        let mut tx = h1(proxy.addr).await;
        let resp = exchange(&mut tx, get("/")).await;
        assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
        assert_eq!(resp.headers["x-smartlb-error"], "backend-reset");

        let client = BackendClient::new(addr, quick_client());
        let post = http::Request::post("/")
            .header("host", "h")
            .body(smartlb_proxy::ProxyBody::from("x"))
            .unwrap();
        let err = client.send(post).await.unwrap_err();
        assert!(err.is_reset());
        assert!(err.was_sent());
        assert!(!err.is_retryable(), "POST was sent: not safe to retry");
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn backend_reset_mid_response_gives_502_or_aborts_the_body() {
    bounded(async {
        // Sends a partial head, then resets the connection (RST).
        let (addr, task) = raw_backend(|mut stream| async move {
            read_head(&mut stream).await;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
            let _ = stream.set_zero_linger();
            drop(stream);
        })
        .await;
        let proxy = proxy(addr, quick_client(), ServerOptions::default()).await;
        let mut tx = h1(proxy.addr).await;
        let resp = exchange(&mut tx, get("/")).await;
        assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
        assert_eq!(resp.headers["x-smartlb-error"], "backend-reset");
        task.abort();

        // A reset after the head was relayed can only cut the body short.
        let (addr, task) = raw_backend(|mut stream| async move {
            read_head(&mut stream).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = stream.set_zero_linger();
            drop(stream);
        })
        .await;
        let proxy2 = common::proxy(addr, quick_client(), ServerOptions::default()).await;
        let mut tx = h1(proxy2.addr).await;
        tx.ready().await.unwrap();
        let resp = tx.send_request(get("/")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(resp.into_body()).await;
        assert!(body.is_err(), "a truncated body must not look complete");
        task.abort();
    })
    .await;
}

#[tokio::test]
async fn invalid_response_gives_502_protocol() {
    bounded(async {
        let (addr, task) = raw_backend(|mut stream| async move {
            read_head(&mut stream).await;
            let _ = stream.write_all(b"this is not http\r\n\r\n").await;
        })
        .await;
        let proxy = proxy(addr, quick_client(), ServerOptions::default()).await;
        let mut tx = h1(proxy.addr).await;
        let resp = exchange(&mut tx, get("/")).await;
        assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
        assert_eq!(resp.headers["x-smartlb-error"], "backend-protocol");
        task.abort();
    })
    .await;
}

/// Polls `cond` every 10 ms for up to 5 s.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn client_abort_mid_upload_frees_the_backend_connection() {
    bounded(async {
        let backend = echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let mut conn = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(
            b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1000000\r\n\r\npartial",
        )
        .await
        .unwrap();
        assert!(eventually(|| proxy.client.open_connections() == 1).await);
        drop(conn);
        assert!(
            eventually(|| proxy.client.open_connections() == 0).await,
            "backend connection outlived the aborted upload"
        );
        assert_eq!(proxy.client.idle_connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn client_abort_mid_download_frees_the_backend_connection() {
    bounded(async {
        let backend = backend(|_req: http::Request<hyper::body::Incoming>| async {
            let (chunks, body) = channel_body();
            tokio::spawn(async move {
                for _ in 0..2000 {
                    if chunks
                        .send(bytes::Bytes::from(vec![b'z'; 1024]))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
            http::Response::new(smartlb_proxy::ProxyBody::new(body))
        })
        .await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let mut conn = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        assert_eq!(proxy.client.open_connections(), 1);
        drop(conn);
        assert!(
            eventually(|| proxy.client.open_connections() == 0).await,
            "backend connection outlived the aborted download"
        );
        assert_eq!(proxy.client.idle_connections(), 0);
    })
    .await;
}
