//! The access log of the real binary: one JSON line per request naming the client, method,
//! host, path, status, upstream, backend, bytes, duration, retries and request id; and no
//! line at all when `log.access_log = false`.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use smartlb_demo::{DemoBackend, DemoBackendOptions};

const BIN: &str = env!("CARGO_BIN_EXE_smartlb");

/// A running `smartlb run` whose standard error (JSON log lines) is read on a thread.
struct Process {
    child: Child,
    lines: mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
    _dir: tempfile::TempDir,
}

impl Process {
    fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("smartlb.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(BIN)
            .args(["run", "-c"])
            .arg(&path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "raw": line }));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    /// Waits (at most 20 s) for a line matching `pred` and returns it.
    fn wait_for(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        if let Some(found) = self.seen.iter().find(|v| pred(v)) {
            return found.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(value) => {
                    self.seen.push(value.clone());
                    if pred(&value) {
                        return value;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no log line {what}; saw {:#?}", self.seen);
    }

    /// Every line logged up to now.
    fn drain(&mut self) -> &[serde_json::Value] {
        while let Ok(value) = self.lines.try_recv() {
            self.seen.push(value);
        }
        &self.seen
    }

    /// The proxy's listening address, from its start-up line.
    fn listen_addr(&mut self) -> SocketAddr {
        let line = self.wait_for("saying where it serves", |v| {
            message(v) == "smartlb is serving"
        });
        let listen = line["fields"]["listen"].as_str().unwrap().to_owned();
        let first = listen
            .trim_start_matches('[')
            .split([',', ']'])
            .next()
            .unwrap()
            .trim()
            .to_owned();
        first.parse().unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn message(v: &serde_json::Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or("")
}

fn is_access(v: &serde_json::Value) -> bool {
    v["target"].as_str() == Some("smartlb::access")
}

fn config(backends: &[SocketAddr], access_log: bool) -> String {
    let list = backends
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[server]
listen = "127.0.0.1:0"
workers = 1

[admin]
listen = "127.0.0.1:0"

[log]
format = "json"
access_log = {access_log}

[[upstream]]
name = "web"
algorithm = "round-robin"
backends = [{list}]

[upstream.retry]
attempts = 1
on = ["500", "503"]
budget_ratio = 1.0
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_name_backend_retries_and_request_id() {
    let good = backend("good", 0).await;
    let failing = DemoBackend::start(
        "failing",
        DemoBackendOptions::default().with_error_rate(1.0),
    )
    .await
    .unwrap();
    let mut process = Process::start(&config(&[good.addr(), failing.addr()], true));
    let proxy = process.listen_addr();
    let client = client();
    // Round-robin sends every other request to the failing backend first; each of those
    // is retried on the good one.
    for i in 0..6 {
        let id = format!("trace-{i}");
        let answer = get_with(&client, proxy, "/items?page=2", &[("x-request-id", &id)]).await;
        assert_eq!(answer.status, 200, "{i}");
        assert_eq!(answer.header("x-request-id"), id);
    }
    let made = get(&client, proxy, "/other").await;
    let made_id = made.header("x-request-id").to_owned();
    assert_eq!(made_id.len(), 16, "{made_id}");

    let line = process.wait_for("for trace-5", |v| {
        is_access(v) && v["fields"]["request_id"] == "trace-5"
    });
    let fields = &line["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["path"], "/items");
    assert_eq!(fields["host"], proxy.to_string());
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["upstream"], "web");
    assert_eq!(fields["backend"], good.addr().to_string());
    assert!(
        fields["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{fields}"
    );
    assert!(fields["bytes"].as_u64().is_some(), "{fields}");
    assert!(fields["duration_ms"].as_f64().is_some(), "{fields}");
    assert!(fields["retries"].as_u64().is_some(), "{fields}");

    process.wait_for("for the generated id", |v| {
        is_access(v) && v["fields"]["request_id"] == made_id.as_str()
    });
    let access: Vec<serde_json::Value> = process
        .drain()
        .iter()
        .filter(|v| is_access(v))
        .cloned()
        .collect();
    assert_eq!(access.len(), 7, "one line per request: {access:#?}");
    let retried = access
        .iter()
        .filter(|v| v["fields"]["retries"] == 1)
        .count();
    assert!(
        retried >= 2,
        "the failing backend's requests were retried: {access:#?}"
    );
    for v in &access {
        assert_eq!(v["fields"]["backend"], good.addr().to_string(), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_can_be_turned_off() {
    let good = backend("good", 0).await;
    let mut process = Process::start(&config(&[good.addr()], false));
    let proxy = process.listen_addr();
    let client = client();
    for _ in 0..5 {
        assert_eq!(get(&client, proxy, "/").await.status, 200);
    }
    // The request-id header still comes back without the access log.
    let answer = get_with(&client, proxy, "/", &[("x-request-id", "quiet")]).await;
    assert_eq!(answer.header("x-request-id"), "quiet");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let access = process.drain().iter().filter(|v| is_access(v)).count();
    assert_eq!(access, 0);
}
