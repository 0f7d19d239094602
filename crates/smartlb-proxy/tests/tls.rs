//! TLS termination over real sockets: hyper clients and curl with both ALPN protocols,
//! certificate rotation for new connections, and a plain-text client refused without
//! harm to the listener.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

#[path = "support/pki.rs"]
mod pki;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pki::Pki;
use smartlb_proxy::tls::{ClientTlsOptions, ServerTls, client_config, server_name};
use smartlb_proxy::{ClientInfo, ProxyBody, ServerOptions, serve_tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Answers with the scheme and HTTP version the request arrived with.
async fn echo(req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let proto = req
        .extensions()
        .get::<ClientInfo>()
        .map_or("none", |c| c.proto);
    Ok(Response::new(ProxyBody::full(format!(
        "{proto} {:?}",
        req.version()
    ))))
}

async fn start(tls: ServerTls) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let options = ServerOptions {
        header_read_timeout: Duration::from_secs(2),
        ..ServerOptions::default()
    };
    tokio::spawn(serve_tls(
        listener,
        tls,
        tower::service_fn(echo),
        options,
        std::future::pending(),
    ));
    addr
}

/// Connects over TLS trusting `pki`, offering h2 or not; returns the stream.
async fn connect(
    pki: &Pki,
    addr: SocketAddr,
    h2: bool,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = client_config(&ClientTlsOptions {
        ca: Some(pki.ca()),
        h2,
        ..ClientTlsOptions::default()
    })
    .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(server_name("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

async fn body_text(resp: Response<Incoming>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn hyper_clients_speak_h2_and_http1_over_tls() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", &["localhost"]);
    let addr = start(ServerTls::load(&cert, &key).unwrap()).await;

    let stream = connect(&pki, addr, true).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://localhost/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(body_text(resp).await, "https HTTP/2.0");

    let stream = connect(&pki, addr, false).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_11);
    assert_eq!(body_text(resp).await, "https HTTP/1.1");
}

#[tokio::test]
async fn curl_speaks_both_protocols() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "curl is missing on CI"
        );
        eprintln!("skipped: curl is not installed");
        return;
    }
    let pki = Pki::new();
    let (cert, key) = pki.leaf("server", &["localhost"]);
    let addr = start(ServerTls::load(&cert, &key).unwrap()).await;
    for (flag, version, body) in [
        ("--http2", "2", "https HTTP/2.0"),
        ("--http1.1", "1.1", "https HTTP/1.1"),
    ] {
        let output = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", flag, "--cacert"])
            .arg(pki.ca())
            .arg("--resolve")
            .arg(format!("localhost:{}:127.0.0.1", addr.port()))
            .args(["-w", "\n%{http_version}"])
            .arg(format!("https://localhost:{}/", addr.port()))
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{flag}: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stdout, format!("{body}\n{version}"), "{flag}");
    }
}

#[tokio::test]
async fn new_certificates_serve_new_connections_and_plain_text_is_refused() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("first", &["localhost"]);
    let tls = ServerTls::load(&cert, &key).unwrap();
    let addr = start(tls.clone()).await;
    let first = connect(&pki, addr, false).await;
    let seen_first = first.get_ref().1.peer_certificates().unwrap()[0].clone();

    let (cert2, key2) = pki.leaf("second", &["localhost"]);
    tls.reload(&cert2, &key2).unwrap();
    let second = connect(&pki, addr, false).await;
    let seen_second = second.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_ne!(
        seen_first, seen_second,
        "new connections get the new certificate"
    );
    // The connection opened before the rotation still works.
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(first))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(
            Request::get("/")
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(body_text(resp).await, "https HTTP/1.1");

    // Plain HTTP to the TLS port: the connection is closed, the listener serves on.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "closed, not left hanging");
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/1.1 200"));
    let _ = connect(&pki, addr, true).await;
}
