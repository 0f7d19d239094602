//! Reloading the configuration under load: a file that adds and removes backends, then an
//! invalid file, fail no request; the added backend takes traffic, the removed one stops
//! receiving new requests, and the invalid file is refused and counted.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use smartlb_demo::{LoadGenerator, LoadOptions};

async fn reload(client: &HttpClient, admin: std::net::SocketAddr) -> Answer {
    let req = Request::post(format!("http://{admin}/api/v1/reload"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(client, req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_adds_removes_and_refuses_invalid_files() {
    let a = backend("a", 1).await;
    let b = backend("b", 1).await;
    let c = backend("c", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smartlb.toml");
    let first = one_upstream("round-robin", &[(a.addr(), 1), (b.addr(), 1)], "");
    std::fs::write(&path, &first).unwrap();
    let config = smartlb::config::load_file(&path).unwrap();
    let running = smartlb::start(&config).await.unwrap();
    running.proxy().set_config_source(&path);
    let admin = running.admin_addr();
    let client = client();

    let load = LoadGenerator::start(
        proxy_addr(&running),
        LoadOptions::default().with_rate(200.0).with_concurrency(16),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Add c, remove a.
    let second = one_upstream("round-robin", &[(b.addr(), 1), (c.addr(), 1)], "");
    std::fs::write(&path, &second).unwrap();
    let answer = reload(&client, admin).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let report: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    let changes = report["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = load.take_interval();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let window = load.take_interval();
    assert_eq!(
        window.share("a"),
        0.0,
        "the removed backend still gets requests"
    );
    assert!(
        window.share("c") > 0.2,
        "the added backend gets {:.2}",
        window.share("c")
    );

    // An invalid file is refused; the running configuration keeps serving.
    std::fs::write(&path, "[server]\nlisten = 8080\n").unwrap();
    let answer = reload(&client, admin).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert!(answer.text().contains("listen"), "{}", answer.text());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = get(&client, admin, "/metrics").await.text();
    assert!(
        metrics.contains("smartlb_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );

    let totals = load.stop().await;
    assert_eq!(totals.errors, 0, "{totals:?}");
    assert!(totals.requests > 300);
    assert_eq!(
        running.proxy().status().upstreams[0].backends.len(),
        2,
        "a was not dropped after draining"
    );
    stop(running).await;
}
