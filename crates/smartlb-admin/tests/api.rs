//! The read-only admin API over real HTTP on loopback.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Fake, Running, get, send};
use smartlb_admin::{AdminServer, AdminSource, StatusReport, TrafficReport};

#[tokio::test]
async fn read_endpoints_answer_over_http() {
    let fake = Fake::new();
    fake.ready.store(false, Ordering::Relaxed);
    let server = Running::start(AdminServer::new(fake.clone())).await;
    let addr = server.addr;

    let health = get(addr, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    assert_eq!(get(addr, "/readyz").await.status, 503);
    fake.ready.store(true, Ordering::Relaxed);
    assert_eq!(get(addr, "/readyz").await.status, 200);
    assert_eq!(send(addr, "HEAD", "/healthz", &[], None).await.status, 200);

    let status = get(addr, "/api/v1/status").await;
    assert_eq!(status.status, 200);
    assert_eq!(status.headers["content-type"], "application/json");
    let report: StatusReport = serde_json::from_str(&status.body).unwrap();
    assert_eq!(report.version, "9.9.9");
    let json = status.json();
    let backend = &json["upstreams"][0]["backends"][0];
    for key in [
        "address",
        "state",
        "configured_weight",
        "effective_weight",
        "in_flight",
        "requests_total",
        "errors_total",
        "latency_ewma_ms",
        "latency_p99_ms",
    ] {
        assert!(!backend[key].is_null(), "status lacks {key}: {backend}");
    }
    assert_eq!(backend["address"], "127.0.0.1:8081");
    assert_eq!(backend["latency_p99_ms"], 3.0);

    let msg = get(addr, "/nope").await.error(404);
    assert!(msg.contains("no such admin endpoint"));
    let not_allowed = send(addr, "POST", "/healthz", &[], None).await;
    not_allowed.error(405);
    assert_eq!(not_allowed.headers["allow"], "GET, HEAD");
    let not_allowed = send(addr, "GET", "/api/v1/reload", &[], None).await;
    not_allowed.error(405);
    assert_eq!(not_allowed.headers["allow"], "POST");
    let not_allowed = send(addr, "GET", "/api/v1/upstreams/web/backends/a:1", &[], None).await;
    assert_eq!(not_allowed.headers["allow"], "PATCH, DELETE");

    // Without a recorder installed in this test binary there is nothing to render.
    let msg = get(addr, "/metrics").await.error(404);
    assert!(msg.contains("metrics are not enabled"), "{msg}");

    server.stop().await;
}

#[tokio::test]
async fn traffic_endpoint_serves_series_forecast_and_anomalies() {
    let fake = Fake::new();
    let server = Running::start(AdminServer::new(fake.clone())).await;
    let addr = server.addr;

    let answer = get(addr, "/api/v1/traffic?samples=10").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let report: TrafficReport = serde_json::from_str(&answer.body).unwrap();
    assert!(report.now_ms > 0);
    assert_eq!(report.upstreams.len(), 2);
    let web = &report.upstreams[0];
    assert_eq!(web.name, "web");
    assert_eq!(web.total.len(), 10);
    assert_eq!(web.backends.len(), 3);
    assert!(web.backends.iter().all(|b| b.series.len() == 10));
    assert!(web.forecast.is_some());
    assert_eq!(web.forecast_series.len(), 10);
    assert_eq!(web.anomalies[0].kind, "rate-spike");
    // Optional values are explicit nulls in the JSON, not missing keys.
    let json = answer.json();
    assert!(json["upstreams"][0]["total"][3]["p99_ms"].is_null());
    assert!(
        json["upstreams"][0]["anomalies"][0]
            .as_object()
            .unwrap()
            .contains_key("backend")
    );

    let answer = get(addr, "/api/v1/traffic").await;
    let report: TrafficReport = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        report.upstreams[0].total.len(),
        31,
        "default cut: all 31 points of the fake"
    );

    for bad in ["samples=0", "samples=abc", "samples=3601", "samples="] {
        let msg = get(addr, &format!("/api/v1/traffic?{bad}"))
            .await
            .error(400);
        assert!(msg.contains("samples"), "{msg}");
    }
    server.stop().await;
}

#[tokio::test]
async fn default_traffic_is_empty() {
    struct Plain;
    impl AdminSource for Plain {
        fn status(&self) -> StatusReport {
            StatusReport {
                version: "1".into(),
                uptime_seconds: 0.0,
                config: None,
                upstreams: vec![],
            }
        }
        fn ready(&self) -> bool {
            true
        }
    }
    let server = Running::start(AdminServer::new(Arc::new(Plain))).await;
    let answer = get(server.addr, "/api/v1/traffic").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        serde_json::json!({"now_ms": 0, "upstreams": []})
    );
    server.stop().await;
}

#[tokio::test]
async fn dashboard_is_one_self_contained_page() {
    let server = Running::start(AdminServer::new(Fake::new())).await;
    let page = get(server.addr, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    assert!(page.headers["content-security-policy"].contains("default-src 'none'"));
    assert!(page.body.contains("api/v1/status") && page.body.contains("api/v1/traffic"));
    // No external assets: no absolute URLs other than the SVG namespace.
    for (i, _) in page.body.match_indices("http") {
        let rest = &page.body[i..];
        assert!(
            rest.starts_with("http://www.w3.org/2000/svg"),
            "external reference: {}",
            &rest[..rest.len().min(60)]
        );
    }
    assert!(
        !page.body.contains("src=\""),
        "no external scripts or images"
    );
    server.stop().await;
}

#[tokio::test]
async fn public_listener_without_token_is_refused() {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let error = smartlb_admin::serve(listener, Fake::new(), async {})
        .await
        .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("without a token"), "{error}");
    let inner = error.get_ref().unwrap();
    assert!(inner.is::<smartlb_admin::SetupError>());

    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    AdminServer::new(Fake::new())
        .with_token(Some("t".into()))
        .serve(listener, async {})
        .await
        .unwrap();
}
