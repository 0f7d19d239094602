//! The downstream server's limits, timeouts and shutdown.

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::*;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use smartlb_proxy::{ClientInfo, ProxyBody, ServerOptions, serve};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

fn opts() -> ServerOptions {
    ServerOptions {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(1200),
        max_header_bytes: 8192,
        shutdown_grace: Duration::from_secs(5),
        ..ServerOptions::default()
    }
}

#[tokio::test]
async fn large_head_gets_431() {
    bounded(async {
        let backend = echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), opts()).await;

        // Over the limit but within hyper's buffer: the proxy's labelled 431.
        let big = "a".repeat(10_000);
        let req = format!("GET / HTTP/1.1\r\nHost: h\r\nX-Big: {big}\r\n\r\n");
        let answer = raw(proxy.addr, req.as_bytes(), Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        assert!(
            answer.contains("x-smartlb-error: request-header-too-large"),
            "{answer}"
        );
        assert!(answer.contains("connection: close"), "{answer}");

        // Far over the limit: hyper's own 431 (no label), then the connection closes.
        let huge = "a".repeat(100_000);
        let req = format!("GET / HTTP/1.1\r\nHost: h\r\nX-Huge: {huge}\r\n\r\n");
        let answer = raw(proxy.addr, req.as_bytes(), Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        assert!(!answer.contains("x-smartlb-error"), "{answer}");

        // Within the limit: served.
        let fine = "a".repeat(4000);
        let req =
            format!("GET / HTTP/1.1\r\nHost: h\r\nX-Fine: {fine}\r\nConnection: close\r\n\r\n");
        let answer = raw(proxy.addr, req.as_bytes(), Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(
            backend.connections(),
            1,
            "only the last request reached the backend"
        );
    })
    .await;
}

#[tokio::test]
async fn malformed_request_gets_400() {
    bounded(async {
        let backend = echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), opts()).await;
        let answer = raw(
            proxy.addr,
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let answer = raw(
            proxy.addr,
            b"\x01\x02\x03 nonsense\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert_eq!(backend.connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn slowloris_is_cut_off() {
    bounded(async {
        let backend = echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), opts()).await;

        // A head that never completes: closed after header_read_timeout (300 ms),
        // well before the idle timeout.
        let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n")
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let mut feeding = true;
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            // Keep dribbling bytes: the deadline runs from the head's start.
            let mut buf = [0u8; 256];
            loop {
                if feeding && slow.write_all(b"X-A: b\r\n").await.is_err() {
                    feeding = false;
                }
                match tokio::time::timeout(
                    Duration::from_millis(50),
                    tokio::io::AsyncReadExt::read(&mut slow, &mut buf),
                )
                .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(_)) | Err(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "slowloris connection still open");
        assert!(
            started.elapsed() < Duration::from_millis(1100),
            "closed by idle, not header timeout"
        );

        // A connection that sends nothing at all is closed too.
        let mut silent = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
        assert_eq!(backend.connections(), 0);

        // On a keep-alive connection, a second head that stalls is cut off
        // header_read_timeout after its first byte, not after the idle timeout.
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::io::AsyncReadExt::read(&mut conn, &mut buf)
            .await
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        conn.write_all(b"GET /2 HTTP/1.1\r\nHo").await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(closed_within(&mut conn, Duration::from_secs(3)).await);
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "closed by idle, not header timeout"
        );
    })
    .await;
}

#[tokio::test]
async fn idle_keep_alive_outlives_header_timeout_then_closes() {
    bounded(async {
        let backend = echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), opts()).await;
        let mut tx = h1(proxy.addr).await;
        assert_eq!(exchange(&mut tx, get("/1")).await.status, StatusCode::OK);
        // Idle for longer than header_read_timeout (300 ms), shorter than idle (1.2 s).
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!tx.is_closed());
        assert_eq!(exchange(&mut tx, get("/2")).await.status, StatusCode::OK);
        // Then idle past the idle timeout: the server closes it.
        let mut closed = false;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if tx.is_closed() {
                closed = true;
                break;
            }
        }
        assert!(closed, "idle connection not closed");
    })
    .await;
}

#[tokio::test]
async fn client_info_is_inserted() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = tower::service_fn(|req: Request<Incoming>| async move {
            let info = req.extensions().get::<ClientInfo>().copied().unwrap();
            let text = format!("{} {} {}", info.remote.ip(), info.local, info.proto);
            Ok::<_, Infallible>(Response::new(ProxyBody::from(text)))
        });
        let server = tokio::spawn(serve(listener, svc, opts(), std::future::pending()));
        let mut tx = h1(addr).await;
        let resp = exchange(&mut tx, get("/")).await;
        assert_eq!(
            String::from_utf8_lossy(&resp.body),
            format!("127.0.0.1 {addr} http")
        );
        server.abort();
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    bounded(async {
        let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(1);
        let backend = backend(move |_req: Request<Incoming>| {
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send(()).await;
                tokio::time::sleep(Duration::from_millis(400)).await;
                Response::new(ProxyBody::from("finished"))
            }
        })
        .await;
        let mut proxy = proxy(backend.addr, quick_client(), opts()).await;
        let addr = proxy.addr;
        let mut tx = h1(addr).await;
        tx.ready().await.unwrap();
        let in_flight = tokio::spawn(tx.send_request(get("/slow")));
        started_rx.recv().await.unwrap();

        proxy.begin_shutdown();
        // New connections are refused once the listener is closed.
        let mut refused = false;
        for _ in 0..50 {
            if TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(refused, "new connections still accepted during shutdown");

        let resp = in_flight.await.unwrap().unwrap();
        let resp = collect(resp).await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(&resp.body[..], b"finished");
        // The connection is closed after its last response, and serve returns.
        proxy.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn shutdown_grace_bounds_the_wait() {
    bounded(async {
        let backend = backend(|_req: Request<Incoming>| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Response::new(ProxyBody::empty())
        })
        .await;
        let server_opts = ServerOptions {
            shutdown_grace: Duration::from_millis(200),
            ..opts()
        };
        let mut proxy = proxy(backend.addr, quick_client(), server_opts).await;
        let mut tx = h1(proxy.addr).await;
        tx.ready().await.unwrap();
        let in_flight = tokio::spawn(tx.send_request(get("/forever")));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = tokio::time::Instant::now();
        proxy.begin_shutdown();
        proxy.shutdown().await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
        // The aborted request fails rather than hanging.
        assert!(in_flight.await.unwrap().is_err());
    })
    .await;
}

#[tokio::test]
async fn max_connections_holds_extra_connections_in_the_queue() {
    bounded(async {
        let backend = echo_backend().await;
        let server_opts = ServerOptions {
            max_connections: 1,
            ..opts()
        };
        let proxy = proxy(backend.addr, quick_client(), server_opts).await;
        let mut first = h1(proxy.addr).await;
        assert_eq!(exchange(&mut first, get("/a")).await.status, StatusCode::OK);

        // The second connection is established by the kernel but not served.
        let mut second = TcpStream::connect(proxy.addr).await.unwrap();
        second
            .write_all(b"GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let early = read_until_close(&mut second, Duration::from_millis(300)).await;
        assert!(early.is_empty(), "served past max_connections: {early}");

        // Once the first connection closes, the waiting one is served.
        drop(first);
        let answer = read_until_close(&mut second, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    })
    .await;
}
