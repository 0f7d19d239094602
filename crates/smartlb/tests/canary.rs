//! SLO-gated canaries and run-time route splits over real sockets: a canary answering 20%
//! 500s is rolled back to 0% within its evaluation window, a healthy one advances step by
//! step to 100%, and `PATCH /api/v1/routes/{index}` changes a split by hand.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use smartlb_demo::{DemoBackend, DemoBackendOptions, Latency};

fn config(base: SocketAddr, bad: SocketAddr, good: SocketAddr) -> String {
    format!(
        r#"{PREAMBLE}
[[upstream]]
name = "web"
algorithm = "round-robin"
backends = ["{base}"]

[[upstream]]
name = "bad-canary"
algorithm = "round-robin"
backends = ["{bad}"]

[upstream.retry]
attempts = 0

[[upstream]]
name = "good-canary"
algorithm = "round-robin"
backends = ["{good}"]

[[route]]
host = "bad.test"
split = [{{ upstream = "web", weight = 80 }}, {{ upstream = "bad-canary", weight = 20 }}]

[route.canary]
upstream = "bad-canary"
step = 30
interval = "1s"
max_error_rate = 0.05
max_p99_ratio = 5

[[route]]
host = "good.test"
split = [{{ upstream = "web", weight = 80 }}, {{ upstream = "good-canary", weight = 20 }}]

[route.canary]
upstream = "good-canary"
step = 30
interval = "1s"
max_error_rate = 0.05
max_p99_ratio = 5
"#
    )
}

async fn started(name: &str, error_rate: f64) -> DemoBackend {
    let options = DemoBackendOptions::default()
        .with_latency(Latency::fixed(Duration::from_millis(2)))
        .with_error_rate(error_rate);
    DemoBackend::start(name, options).await.unwrap()
}

async fn routes(admin: SocketAddr) -> serde_json::Value {
    let answer = get(&client(), admin, "/api/v1/routes").await;
    assert_eq!(answer.status, 200);
    serde_json::from_slice(&answer.body).unwrap()
}

async fn patch(admin: SocketAddr, path: &str, body: &str) -> Answer {
    let req = http::Request::patch(format!("http://{admin}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    send(&client(), req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_and_a_healthy_one_promoted() {
    let base = started("base", 0.0).await;
    let bad = started("bad", 0.2).await;
    let good = started("good", 0.0).await;
    let running = start_proxy(&config(base.addr(), bad.addr(), good.addr())).await;
    let proxy = proxy_addr(&running);
    let admin = running.admin_addr();

    let before = routes(admin).await;
    assert_eq!(before["routes"][0]["label"], "bad.test/");
    assert_eq!(before["routes"][0]["canary"]["percent"], 20);
    assert_eq!(before["routes"][0]["canary"]["state"], "advancing");

    // Steady traffic to both routes (bounded: the loop ends when told, or after 30 s).
    let done = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for host in ["bad.test", "good.test", "bad.test", "good.test"] {
        let done = done.clone();
        load.push(tokio::spawn(async move {
            let client = client();
            let deadline = Instant::now() + Duration::from_secs(30);
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                let _ = get_with(&client, proxy, "/", &[("host", host)]).await;
            }
        }));
    }

    // The bad canary is judged at the end of its first window (1 s, once it has 10
    // requests) and rolled back for good.
    let started_at = Instant::now();
    let mut rolled_back = None;
    while started_at.elapsed() < Duration::from_secs(8) {
        let report = routes(admin).await;
        if report["routes"][0]["canary"]["state"] == "rolled-back" {
            rolled_back = Some(report);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = rolled_back.expect("the failing canary is rolled back");
    let canary = &report["routes"][0]["canary"];
    assert_eq!(canary["percent"], 0, "{report}");
    assert_eq!(
        canary["evaluations"], 1,
        "rolled back at its first evaluation: {report}"
    );
    assert!(
        canary["reason"].as_str().unwrap().starts_with("error rate"),
        "{report}"
    );
    assert_eq!(report["routes"][0]["split"][0]["weight"], 100, "{report}");
    let bad_seen = bad.handle().requests();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bad.handle().requests(),
        bad_seen,
        "a rolled-back canary gets no more requests"
    );

    // The healthy canary goes 20 -> 50 -> 80 -> 100, one step per window.
    let mut promoted = None;
    while started_at.elapsed() < Duration::from_secs(20) {
        let report = routes(admin).await;
        if report["routes"][1]["canary"]["state"] == "promoted" {
            promoted = Some(report);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = promoted.expect("the healthy canary is promoted");
    assert_eq!(report["routes"][1]["canary"]["percent"], 100, "{report}");
    assert_eq!(report["routes"][1]["canary"]["evaluations"], 3, "{report}");
    assert_eq!(report["routes"][1]["split"][0]["weight"], 0, "{report}");
    assert_eq!(report["routes"][0]["canary"]["state"], "rolled-back");
    done.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    // By hand: a blue-green switch of the first route back to half and half.
    let answer = patch(
        admin,
        "/api/v1/routes/0",
        r#"{"split": [{"upstream": "web", "weight": 50}, {"upstream": "bad-canary", "weight": 50}]}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["canary"]["state"], "manual");
    assert_eq!(body["split"][1]["weight"], 50);
    let client = client();
    let mut to_canary = 0;
    for _ in 0..200 {
        let a = get_with(&client, proxy, "/", &[("host", "bad.test")]).await;
        if a.backend() == "bad" {
            to_canary += 1;
        }
    }
    assert!((60..=140).contains(&to_canary), "about half: {to_canary}");

    // Errors: unknown route, unknown upstream, all zero, bad JSON.
    assert_eq!(
        patch(
            admin,
            "/api/v1/routes/9",
            r#"{"split": [{"upstream": "web", "weight": 1}]}"#
        )
        .await
        .status,
        404
    );
    assert_eq!(
        patch(
            admin,
            "/api/v1/routes/0",
            r#"{"split": [{"upstream": "nope", "weight": 1}]}"#
        )
        .await
        .status,
        400
    );
    assert_eq!(
        patch(admin, "/api/v1/routes/0", r#"{"split": [{"upstream": "web", "weight": 0}, {"upstream": "bad-canary", "weight": 0}]}"#).await.status,
        400
    );
    assert_eq!(patch(admin, "/api/v1/routes/0", "{").await.status, 400);
    assert_eq!(patch(admin, "/api/v1/routes/x", "{}").await.status, 400);
    stop(running).await;
}
