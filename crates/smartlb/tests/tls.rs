//! TLS end to end through a running smartlb: clients (curl and hyper) over TLS with both
//! ALPN protocols, an `https://` backend verified against a private CA and health-checked
//! over TLS, and certificates read again on reload.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
#[path = "../../smartlb-proxy/tests/support/pki.rs"]
mod pki;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pki::Pki;
use smartlb_proxy::tls::{ClientTlsOptions, ServerTls, client_config, server_name};
use smartlb_proxy::{ProxyBody, ServerOptions};

fn config(backend: &str, tls: &str, upstream_extra: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
{tls}

[admin]
listen = "127.0.0.1:0"

[log]
access_log = false

[[upstream]]
name = "web"
backends = ["{backend}"]
{upstream_extra}
"#
    )
}

fn server_tls_table(cert: &Path, key: &Path) -> String {
    format!(
        "\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

/// Opens a TLS connection to `addr` as `localhost`, trusting `pki`.
async fn tls_connect(
    pki: &Pki,
    addr: SocketAddr,
    h2: bool,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let config = client_config(&ClientTlsOptions {
        ca: Some(pki.ca()),
        h2,
        ..ClientTlsOptions::default()
    })
    .unwrap();
    let tls = smartlb_proxy::tls::ClientTls::new(config, server_name("localhost").unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tls.connector()
        .connect(tls.server_name().clone(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_backends_through_tls_termination() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("proxy", &["localhost"]);
    let backend = backend("plain", 0).await;
    let running = start_proxy(&config(
        &backend.addr().to_string(),
        &server_tls_table(&cert, &key),
        "",
    ))
    .await;
    let proxy = proxy_addr(&running);

    // hyper over h2.
    let stream = tls_connect(&pki, proxy, true).await;
    let (mut tx, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let resp = tx
        .send_request(
            Request::get("https://localhost/")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-backend"], "plain");
    assert_eq!(resp.version(), http::Version::HTTP_2);

    // hyper over http/1.1.
    let stream = tls_connect(&pki, proxy, false).await;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
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
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_11);

    // curl, both protocols.
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok()
    {
        for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
            let output = tokio::process::Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "10",
                    "-o",
                    "/dev/null",
                    flag,
                    "--cacert",
                ])
                .arg(pki.ca())
                .arg("--resolve")
                .arg(format!("localhost:{}:127.0.0.1", proxy.port()))
                .args(["-w", "%{http_code} %{http_version}"])
                .arg(format!("https://localhost:{}/", proxy.port()))
                .output()
                .await
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&output.stdout),
                format!("200 {version}"),
                "{flag}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "curl is missing on CI"
        );
    }
    stop(running).await;
}

/// A TLS backend answering `/health` and echoing its name.
async fn tls_backend(pki: &Pki) -> SocketAddr {
    let (cert, key) = pki.leaf("backend", &["backend.internal", "127.0.0.1"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = tower::service_fn(|req: Request<Incoming>| async move {
        let mut resp = Response::new(ProxyBody::full(format!("tls backend {}", req.uri().path())));
        resp.headers_mut()
            .insert("x-backend", http::HeaderValue::from_static("tls"));
        Ok::<_, Infallible>(resp)
    });
    tokio::spawn(smartlb_proxy::serve_tls(
        listener,
        ServerTls::load(&cert, &key).unwrap(),
        service,
        ServerOptions::default(),
        std::future::pending(),
    ));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_backend_is_verified_checked_and_served() {
    let pki = Pki::new();
    let backend = tls_backend(&pki).await;
    let upstream_tls = format!(
        "[upstream.health]\npath = \"/health\"\ninterval = \"300ms\"\ntimeout = \"250ms\"\nhealthy_threshold = 1\n\n[upstream.tls]\nca = \"{}\"\nserver_name = \"backend.internal\"\n",
        pki.ca().display()
    );
    let running = start_proxy(&config(&format!("https://{backend}"), "", &upstream_tls)).await;
    let proxy = proxy_addr(&running);
    let client = client();
    for _ in 0..5 {
        let answer = get(&client, proxy, "/hello").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "tls backend /hello");
    }
    // Health checks pass over TLS.
    let name = format!("https://{backend}");
    let wanted = format!(
        "smartlb_health_checks_total{{upstream=\"web\",backend=\"{name}\",result=\"success\"}}"
    );
    let admin = running.admin_addr();
    let mut passed = false;
    for _ in 0..50 {
        let metrics = get(&client, admin, "/metrics").await.text();
        if metrics.lines().any(|l| l.starts_with(&wanted)) {
            passed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(passed, "no successful TLS health check within 5 s");
    let states = backend_states(&running, "web");
    assert_eq!(
        states.get(&name).map(String::as_str),
        Some("healthy"),
        "{states:?}"
    );
    stop(running).await;

    // Without the private CA the backend cannot be verified: 502, never plain text.
    let running = start_proxy(&config(&format!("https://{backend}"), "", "")).await;
    let answer = get(&client, proxy_addr(&running), "/").await;
    assert_eq!(answer.status, 502);
    stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_read_again_on_reload() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("proxy", &["localhost"]);
    let backend = backend("plain", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("smartlb.toml");
    std::fs::write(
        &file,
        config(
            &backend.addr().to_string(),
            &server_tls_table(&cert, &key),
            "",
        ),
    )
    .unwrap();
    let loaded = smartlb::config::load_file(&file).unwrap();
    let running = smartlb::start(&loaded).await.unwrap();
    running.proxy().set_config_source(&file);
    let proxy = proxy_addr(&running);
    let before = tls_connect(&pki, proxy, false).await;
    let first = before.get_ref().1.peer_certificates().unwrap()[0].clone();

    // Renew the certificate in place, as a certificate manager does, and reload.
    let (new_cert, new_key) = pki.leaf("renewed", &["localhost"]);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let changes = running.proxy().reload().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.contains("TLS certificates read again")),
        "{changes:?}"
    );
    let after = tls_connect(&pki, proxy, false).await;
    let second = after.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_ne!(first, second);

    // A certificate that does not load keeps the current one.
    std::fs::write(&cert, "not a certificate").unwrap();
    let changes = running.proxy().reload().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.contains("keeping the current ones")),
        "{changes:?}"
    );
    let still = tls_connect(&pki, proxy, false).await;
    assert_eq!(still.get_ref().1.peer_certificates().unwrap()[0], second);
    drop(before);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_asking_for_a_client_certificate_gets_the_configured_one() {
    use smartlb_proxy::tls::{load_certs, load_key};
    use std::sync::Arc;
    let pki = Pki::new();
    let (cert, key) = pki.leaf("backend", &["backend.internal"]);
    let (client_cert, client_key) = pki.leaf("smartlb-client", &["smartlb.internal"]);
    // A backend that accepts only clients with a certificate from the private CA.
    let mut roots = rustls::RootCertStore::empty();
    for ca in load_certs(&pki.ca()).unwrap() {
        roots.add(ca).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&cert).unwrap(), load_key(&key).unwrap())
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let service = tower::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(ProxyBody::full("mutual")))
    });
    tokio::spawn(smartlb_proxy::serve_tls(
        listener,
        ServerTls::new(Arc::new(server)),
        service,
        ServerOptions::default(),
        std::future::pending(),
    ));
    let client = client();

    let with_cert = format!(
        "[upstream.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nserver_name = \"backend.internal\"\n",
        pki.ca().display(),
        client_cert.display(),
        client_key.display()
    );
    let running = start_proxy(&config(&format!("https://{backend}"), "", &with_cert)).await;
    let answer = get(&client, proxy_addr(&running), "/").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "mutual");
    stop(running).await;

    // Without the client certificate the backend refuses the handshake: 502.
    let without = format!(
        "[upstream.tls]\nca = \"{}\"\nserver_name = \"backend.internal\"\n",
        pki.ca().display()
    );
    let running = start_proxy(&config(&format!("https://{backend}"), "", &without)).await;
    assert_eq!(get(&client, proxy_addr(&running), "/").await.status, 502);
    stop(running).await;
}
