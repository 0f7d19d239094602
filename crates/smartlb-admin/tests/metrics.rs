//! `GET /metrics` over real HTTP, checked by `promtool check metrics`.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Fake, Running, get};
use smartlb_admin::AdminServer;
use smartlb_admin::metrics::{self, BackendMetrics, CheckResult, ReloadResult, UpstreamMetrics};

/// Runs `promtool check metrics` on `text`; `None` when promtool is not installed (and
/// CI is not set).
fn promtool(text: &str) -> Option<(bool, String)> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("promtool is required when CI=true (apt-get install prometheus)");
            }
            eprintln!(
                "skipping the promtool check: promtool is not installed (apt-get install prometheus)"
            );
            return None;
        }
        Err(error) => panic!("promtool could not start: {error}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some((out.status.success(), report))
}

#[tokio::test]
async fn metrics_endpoint_passes_promtool() {
    let handle = metrics::install().unwrap();
    // Installing twice hands back the same recorder.
    metrics::install().unwrap();

    let web = UpstreamMetrics::new("web");
    let backends: Vec<BackendMetrics> = ["127.0.0.1:8081", "[::1]:8082"]
        .iter()
        .map(|b| BackendMetrics::new("web", b))
        .collect();
    for (i, b) in backends.iter().enumerate() {
        for n in 0..50u32 {
            let code = if n % 10 == 0 { 503 } else { 200 };
            b.record_request(code, 0.0003 * f64::from(n + 1) * (i + 1) as f64);
        }
        b.set_up(i == 0);
        b.set_effective_weight(1.5 * (i + 1) as f64);
        b.set_in_flight(3);
        b.health_check(CheckResult::Success);
        b.health_check(CheckResult::Failure);
    }
    backends[1].ejection();
    backends[1].retire();
    web.retry();
    web.forecast_rps(123.5);
    web.anomaly("rate-spike");
    metrics::record_request("api", "10.0.0.1:80", 404, 0.02);
    metrics::set_backend_up("api", "10.0.0.1:80", true);
    metrics::set_effective_weight("api", "10.0.0.1:80", 1.0);
    metrics::set_in_flight("api", "10.0.0.1:80", 0);
    metrics::health_check("api", "10.0.0.1:80", CheckResult::Timeout);
    metrics::ejection("api", "10.0.0.1:80");
    metrics::retry("api");
    metrics::forecast_rps("api", 4.0);
    metrics::anomaly("api", "latency");
    metrics::config_reload(ReloadResult::Success);
    metrics::config_reload(ReloadResult::Failure);

    // The server picks up the installed recorder by itself.
    let server = Running::start(AdminServer::new(Fake::new())).await;
    let answer = get(server.addr, "/metrics").await;
    server.stop().await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = answer.body;
    // The same series as the handle renders (the order of families may differ).
    let sorted = |t: &str| {
        let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    assert_eq!(sorted(&text), sorted(&handle.render()));

    // Every metric of SPEC section 6 is there, described and typed.
    for (name, kind) in [
        ("smartlb_requests_total", "counter"),
        ("smartlb_request_duration_seconds", "histogram"),
        ("smartlb_backend_up", "gauge"),
        ("smartlb_backend_effective_weight", "gauge"),
        ("smartlb_backend_in_flight", "gauge"),
        ("smartlb_health_checks_total", "counter"),
        ("smartlb_ejections_total", "counter"),
        ("smartlb_retries_total", "counter"),
        ("smartlb_traffic_forecast_rps", "gauge"),
        ("smartlb_traffic_anomalies_total", "counter"),
        ("smartlb_config_reloads_total", "counter"),
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no help for {name}:\n{text}"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "no type for {name}:\n{text}"
        );
    }
    for line in [
        r#"smartlb_requests_total{upstream="web",backend="127.0.0.1:8081",code="200"} 45"#,
        r#"smartlb_requests_total{upstream="web",backend="127.0.0.1:8081",code="503"} 5"#,
        r#"smartlb_request_duration_seconds_bucket{upstream="web",backend="127.0.0.1:8081",le="0.0005"} 1"#,
        r#"smartlb_request_duration_seconds_bucket{upstream="web",backend="127.0.0.1:8081",le="30"} 50"#,
        r#"smartlb_request_duration_seconds_count{upstream="web",backend="[::1]:8082"} 50"#,
        r#"smartlb_backend_up{upstream="web",backend="127.0.0.1:8081"} 1"#,
        r#"smartlb_backend_up{upstream="web",backend="[::1]:8082"} 0"#,
        r#"smartlb_backend_effective_weight{upstream="web",backend="127.0.0.1:8081"} 1.5"#,
        r#"smartlb_health_checks_total{upstream="web",backend="127.0.0.1:8081",result="failure"} 1"#,
        r#"smartlb_ejections_total{upstream="web",backend="[::1]:8082"} 1"#,
        r#"smartlb_retries_total{upstream="web"} 1"#,
        r#"smartlb_traffic_forecast_rps{upstream="web"} 123.5"#,
        r#"smartlb_traffic_anomalies_total{upstream="web",kind="rate-spike"} 1"#,
        r#"smartlb_config_reloads_total{result="success"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line} in:\n{text}"
        );
    }

    if let Some((ok, report)) = promtool(&text) {
        assert!(
            ok,
            "promtool check metrics failed:\n{report}\n--- exposition ---\n{text}"
        );
    }
}
