//! Traffic analysis with real processes: three `smartlb demo-backend` processes behind a
//! `smartlb run` process. One backend starts answering 300 ms slower mid-run (a control
//! command to its process): under `adaptive` its share of the answers falls below 15%
//! within 10 s, while round-robin keeps sending it about a third. The latency anomaly is
//! logged once (in the proxy's JSON log), counted once in the metrics, listed by the
//! traffic API with the weight decision that explains the cut, and the status API shows
//! the backend's lowered effective weight.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;
mod failover_common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use failover_common::{BIN, BackendProcess, serial};
use smartlb_demo::{LoadGenerator, LoadOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `smartlb run` process, killed when dropped, whose JSON log lines are collected.
struct ProxyProcess {
    _child: Child,
    proxy: SocketAddr,
    admin: SocketAddr,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
    _file: TempFile,
}

/// A configuration file removed when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl ProxyProcess {
    /// Starts `smartlb run` over `backends` with `algorithm`, and waits for its
    /// `smartlb is serving` line (at most 10 s).
    async fn start(algorithm: &str, backends: &[SocketAddr]) -> Self {
        let list = backends
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            r#"[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[log]
level = "info"
format = "json"
access_log = false

[[upstream]]
name = "web"
algorithm = "{algorithm}"
backends = [{list}]
"#
        );
        let path = std::env::temp_dir().join(format!(
            "smartlb-itest-analysis-{}-{algorithm}.toml",
            std::process::id()
        ));
        std::fs::write(&path, config).unwrap();
        let file = TempFile(path);
        let mut child = Command::new(BIN)
            .arg("run")
            .arg("-c")
            .arg(&file.0)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start smartlb run");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<(SocketAddr, SocketAddr)>();
        {
            let log = log.clone();
            tokio::spawn(async move {
                let mut tx = Some(tx);
                // Bounded by the process: the loop ends with its standard error.
                while let Ok(Some(line)) = lines.next_line().await {
                    let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                        eprintln!("smartlb (not JSON): {line}");
                        continue;
                    };
                    if let Some(addrs) = serving(&value)
                        && let Some(tx) = tx.take()
                    {
                        let _ = tx.send(addrs);
                    }
                    log.lock().unwrap().push(value);
                }
            });
        }
        let (proxy, admin) = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("smartlb serves within 10 s")
            .expect("smartlb exited before serving");
        Self {
            _child: child,
            proxy,
            admin,
            log,
            _file: file,
        }
    }

    /// The `traffic anomaly` log lines so far.
    fn anomalies_logged(&self) -> Vec<serde_json::Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("traffic anomaly"))
            })
            .cloned()
            .collect()
    }

    /// `GET path` on the admin API, as JSON.
    async fn admin_json(&self, path: &str) -> serde_json::Value {
        let answer = common::get(&common::client(), self.admin, path).await;
        assert_eq!(answer.status, http::StatusCode::OK, "{path}");
        serde_json::from_slice(&answer.body).unwrap()
    }

    /// `GET /metrics` on the admin API.
    async fn metrics(&self) -> String {
        let answer = common::get(&common::client(), self.admin, "/metrics").await;
        String::from_utf8_lossy(&answer.body).into_owned()
    }
}

/// The proxy and admin addresses of a `smartlb is serving` log line.
fn serving(line: &serde_json::Value) -> Option<(SocketAddr, SocketAddr)> {
    let fields = &line["fields"];
    if fields["message"].as_str()? != "smartlb is serving" {
        return None;
    }
    let listen = fields["listen"].as_str()?;
    let first = listen
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .next()?;
    Some((
        first.trim().parse().ok()?,
        fields["admin"].as_str()?.parse().ok()?,
    ))
}

/// What one run measured.
struct Run {
    /// The slow backend's share of the answers from 4 s to 10 s after it slowed down.
    share: f64,
    proxy: ProxyProcess,
    slow: SocketAddr,
    /// `GET /api/v1/status` at the end of the window.
    status: serde_json::Value,
    /// `GET /api/v1/traffic` at the end of the window.
    traffic: serde_json::Value,
    /// `GET /metrics` at the end of the window.
    metrics: String,
}

/// Three backend processes (`a`, `b`, `c`, 1 ms each) behind a `smartlb run` process with
/// `algorithm`, under 150 req/s; after 6 s (past the analyser's warm-up) `c` is told to
/// answer in 300 ms.
async fn run(algorithm: &str) -> Run {
    let a = BackendProcess::start("a", &[]).await;
    let b = BackendProcess::start("b", &[]).await;
    let mut c = BackendProcess::start("c", &[]).await;
    let proxy = ProxyProcess::start(algorithm, &[a.addr, b.addr, c.addr]).await;
    let load = LoadGenerator::start(
        proxy.proxy,
        LoadOptions::default().with_rate(150.0).with_concurrency(64),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    c.control("latency 300ms").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _ = load.take_interval();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let share = load.take_interval().share("c");
    // Read while the load runs: the weights are those the traffic justifies now.
    let status = proxy.admin_json("/api/v1/status").await;
    let traffic = proxy.admin_json("/api/v1/traffic").await;
    let metrics = proxy.metrics().await;
    let totals = load.stop().await;
    assert_eq!(totals.errors, 0, "{totals:?}");
    eprintln!("{algorithm}: the slow backend's share {share:.3}");
    Run {
        share,
        proxy,
        slow: c.addr,
        status,
        traffic,
        metrics,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_moves_load_off_a_slow_backend_process_and_reports_it_once() {
    let _serial = serial().await;
    let Run {
        share,
        proxy,
        slow,
        status,
        traffic,
        metrics,
    } = run("adaptive").await;
    assert!(
        share < 0.15,
        "under adaptive the slow backend kept {share:.3} of the answers"
    );
    let slow = slow.to_string();

    // Logged once: one latency anomaly line for the slow backend, none for the others.
    let logged = proxy.anomalies_logged();
    let about_slow: Vec<_> = logged
        .iter()
        .filter(|l| {
            l["fields"]["kind"] == "latency"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&slow))
        })
        .collect();
    assert_eq!(
        about_slow.len(),
        1,
        "the anomaly was not logged exactly once: {logged:#?}"
    );
    assert_eq!(about_slow[0]["level"], "WARN");

    // Counted once in the metrics.
    let counted: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("smartlb_traffic_anomalies_total")
                && l.contains("upstream=\"web\"")
                && l.contains("kind=\"latency\"")
        })
        .collect();
    assert_eq!(counted.len(), 1, "{metrics}");
    let count: f64 = counted[0]
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(count >= 1.0, "no latency anomaly counted: {}", counted[0]);

    // The status output shows it too.
    let in_status: Vec<_> = status["upstreams"][0]["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "latency" && a["backend"] == slow.as_str())
        .collect();
    assert_eq!(in_status.len(), 1, "{status:#}");

    // The traffic API lists it, and explains the slow backend's weight.
    let upstream = &traffic["upstreams"][0];
    assert_eq!(upstream["analysis"], "enforce");
    let listed: Vec<_> = upstream["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "latency" && a["backend"] == slow.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "{upstream:#}");
    let decision = upstream["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == slow.as_str())
        .map(|b| b["weight"].clone())
        .unwrap();
    eprintln!("the slow backend's weight decision: {decision:#}");
    let reason = decision["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("capacity"),
        "the slow backend's weight is not explained by its capacity: {decision:#}"
    );

    // The status API shows its effective weight lowered below its peers'.
    let backends = status["upstreams"][0]["backends"].as_array().unwrap();
    let weight = |addr: &str| {
        backends
            .iter()
            .find(|b| b["address"] == addr)
            .and_then(|b| b["effective_weight"].as_f64())
            .unwrap()
    };
    let slow_weight = weight(&slow);
    for b in backends.iter().filter(|b| b["address"] != slow.as_str()) {
        let other = b["effective_weight"].as_f64().unwrap();
        assert!(
            slow_weight < other * 0.8,
            "the slow backend's effective weight {slow_weight} is not below {other}: {status:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_keeps_a_third_on_a_slow_backend_process() {
    let _serial = serial().await;
    let Run { share, .. } = run("round-robin").await;
    assert!(
        (0.25..0.42).contains(&share),
        "round-robin gave the slow backend {share:.3}"
    );
}
