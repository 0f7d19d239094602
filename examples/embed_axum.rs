// Run with: cargo run -p smartlb-examples --example embed_axum
//
//! smartlb mounted in an axum application.
//!
//! The application answers `/` itself and hands everything under `/api` to a smartlb
//! [`Upstream`]: balanced over two backends (started here in-process, so the example
//! needs nothing else), with outlier detection and retries. The example then sends a few
//! requests to itself, prints which backend answered each, and exits.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use smartlb::Upstream;
use smartlb::config::Algorithm;
use smartlb_demo::{DemoBackend, DemoBackendOptions, Latency};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Two backends of different speeds.
    let quick = DemoBackend::start(
        "quick",
        DemoBackendOptions::default().with_latency(Latency::fixed(Duration::from_millis(1))),
    )
    .await?;
    let steady = DemoBackend::start(
        "steady",
        DemoBackendOptions::default().with_latency(Latency::fixed(Duration::from_millis(5))),
    )
    .await?;

    // The smartlb upstream: a tower Service<http::Request<B>>.
    let api = Upstream::builder("api")
        .algorithm(Algorithm::RoundRobin)
        .backend(quick.addr(), 1)
        .backend(steady.addr(), 1)
        .request_timeout(Duration::from_secs(5))
        .build()?;

    // The application: its own route, and smartlb under /api.
    let app = Router::new()
        .route("/", get(|| async { "the application itself\n" }))
        .nest_service("/api", api);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving on http://{addr}/ (smartlb under /api)");

    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    for path in ["/", "/api/a", "/api/b", "/api/c", "/api/d"] {
        let resp = client.get(format!("http://{addr}{path}").parse()?).await?;
        let status = resp.status();
        let backend = resp
            .headers()
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let body = resp.into_body().collect().await?.to_bytes();
        println!(
            "GET {path:<7} -> {status} from {backend:<6} {}",
            String::from_utf8_lossy(&body).trim()
        );
    }

    server.abort();
    Ok(())
}
