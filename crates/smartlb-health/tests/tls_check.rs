//! Active checks of an `https://` backend: over TLS, verified against the backend's CA;
//! a backend whose certificate is not trusted fails its checks.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

#[path = "../../smartlb-proxy/tests/support/pki.rs"]
mod pki;

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use pki::Pki;
use smartlb_health::{CheckConfig, CheckOutcome, CheckTarget, StatusRange, check_once};
use smartlb_proxy::tls::{ClientTls, ClientTlsOptions, ServerTls, client_config, server_name};
use smartlb_proxy::{ProxyBody, ServerOptions, serve_tls};

#[tokio::test]
async fn checks_speak_tls_and_verify_the_backend() {
    let pki = Pki::new();
    let (cert, key) = pki.leaf("backend", &["backend.internal"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = tower::service_fn(|req: Request<Incoming>| async move {
        let status = if req.uri().path() == "/health" {
            200
        } else {
            404
        };
        let mut resp = Response::new(ProxyBody::empty());
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok::<_, Infallible>(resp)
    });
    tokio::spawn(serve_tls(
        listener,
        ServerTls::load(&cert, &key).unwrap(),
        health,
        ServerOptions::default(),
        std::future::pending(),
    ));
    let config = CheckConfig {
        path: "/health".to_owned(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        expect_status: StatusRange::default(),
        jitter: 0.0,
        grpc: None,
    };
    let trusted = client_config(&ClientTlsOptions {
        ca: Some(pki.ca()),
        ..ClientTlsOptions::default()
    })
    .unwrap();
    let target = CheckTarget::new(addr)
        .with_host("backend.internal")
        .with_tls(ClientTls::new(
            trusted,
            server_name("backend.internal").unwrap(),
        ));
    assert_eq!(
        check_once(&target, &config).await,
        CheckOutcome::Passed { status: 200 }
    );

    // The public roots do not know this CA: the check fails at connect.
    let untrusted = client_config(&ClientTlsOptions::default()).unwrap();
    let target = CheckTarget::new(addr).with_tls(ClientTls::new(
        untrusted,
        server_name("backend.internal").unwrap(),
    ));
    let outcome = check_once(&target, &config).await;
    assert!(
        matches!(outcome, CheckOutcome::Connect(ref m) if m.starts_with("TLS")),
        "{outcome:?}"
    );

    // Plain HTTP to the TLS port is not a pass either.
    let plain = CheckTarget::new(addr);
    assert!(!check_once(&plain, &config).await.is_pass());
}
