//! The admin API of a running proxy over real HTTP: Prometheus metrics after traffic
//! (checked with promtool when present), the traffic document, and adding, re-weighting,
//! draining and deleting backends with the bearer token.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;

const TOKEN: &str = "s3cret";

fn config(backends: &[(std::net::SocketAddr, u32)]) -> String {
    one_upstream("round-robin", backends, "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""),
    )
}

async fn admin(
    client: &HttpClient,
    method: &str,
    url: String,
    token: Option<&str>,
    body: &str,
) -> Answer {
    let mut builder = Request::builder().method(method).uri(url);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    send(
        client,
        builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn metrics_after_traffic_pass_promtool() {
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    let running = start_proxy(&config(&[(a.addr(), 1), (b.addr(), 1)])).await;
    let tally = sequential(proxy_addr(&running), "/", 20).await;
    assert_eq!(tally.total, 20);
    let client = client();
    let admin_addr = running.admin_addr();
    // Let the statistics tick set the gauges once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let metrics = get(&client, admin_addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for name in [
        "smartlb_requests_total",
        "smartlb_request_duration_seconds",
        "smartlb_backend_up",
        "smartlb_backend_effective_weight",
        "smartlb_backend_in_flight",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    assert!(
        text.contains(&format!("backend=\"{}\"", a.addr())),
        "{text}"
    );
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("promtool is required under CI")
        }
        Err(_) => eprintln!("promtool not installed: skipping the promtool check"),
    }
    let traffic = get(&client, admin_addr, "/api/v1/traffic").await;
    assert_eq!(traffic.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&traffic.body).unwrap();
    let backends = json["upstreams"][0]["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 2);
    assert!(!json["upstreams"][0]["total"].as_array().unwrap().is_empty());
    stop(running).await;
}

#[tokio::test]
async fn backends_are_added_reweighted_drained_and_removed_at_run_time() {
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    let running = start_proxy(&config(&[(a.addr(), 1)])).await;
    let client = client();
    let base = format!(
        "http://{}/api/v1/upstreams/web/backends",
        running.admin_addr()
    );
    let body = format!("{{\"address\": \"{}\", \"weight\": 2}}", b.addr());

    assert_eq!(
        admin(&client, "POST", base.clone(), None, &body)
            .await
            .status,
        401
    );
    assert_eq!(
        admin(&client, "POST", base.clone(), Some("wrong"), &body)
            .await
            .status,
        403
    );
    let added = admin(&client, "POST", base.clone(), Some(TOKEN), &body).await;
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(
        admin(&client, "POST", base.clone(), Some(TOKEN), &body)
            .await
            .status,
        409
    );
    let bad = admin(
        &client,
        "POST",
        base.clone(),
        Some(TOKEN),
        "{\"address\": 1}",
    )
    .await;
    assert_eq!(bad.status, 400);
    let unknown = format!(
        "http://{}/api/v1/upstreams/nope/backends",
        running.admin_addr()
    );
    assert_eq!(
        admin(&client, "POST", unknown, Some(TOKEN), &body)
            .await
            .status,
        404
    );

    // The new backend takes traffic (it joins through slow start, so give it a moment).
    let proxy = proxy_addr(&running);
    let mut seen_b = false;
    for _ in 0..100 {
        if get(&client, proxy, "/").await.backend() == "b" {
            seen_b = true;
            break;
        }
    }
    assert!(seen_b, "the added backend never answered");

    // Drain a: everything goes to b.
    let a_url = format!("{base}/{}", a.addr());
    let drained = admin(
        &client,
        "PATCH",
        a_url.clone(),
        Some(TOKEN),
        "{\"drain\": true}",
    )
    .await;
    assert_eq!(drained.status, 200, "{}", drained.text());
    let tally = sequential(proxy, "/", 20).await;
    assert_eq!(tally.count("a"), 0);
    assert_eq!(tally.total, 20);
    // Re-weight b, then delete a: gone from the status once its (zero) in-flight finish.
    let b_url = format!("{base}/{}", b.addr());
    assert_eq!(
        admin(&client, "PATCH", b_url, Some(TOKEN), "{\"weight\": 5}")
            .await
            .status,
        200
    );
    assert!(
        admin(&client, "DELETE", a_url.clone(), Some(TOKEN), "")
            .await
            .status
            .is_success()
    );
    eventually(Duration::from_secs(5), "a removed", || {
        !backend_states(&running, "web").contains_key(&a.addr().to_string())
    })
    .await;
    assert_eq!(
        admin(&client, "DELETE", a_url, Some(TOKEN), "")
            .await
            .status,
        404
    );
    let status = running.proxy().status();
    assert_eq!(status.upstreams[0].backends[0].configured_weight, 5);
    stop(running).await;
}
