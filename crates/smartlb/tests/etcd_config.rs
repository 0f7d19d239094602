//! The whole configuration from an etcd key: two `smartlb run --config etcd://...`
//! processes follow one key and converge on each version; an invalid version is refused
//! by both while they keep serving the last good one.
#![allow(clippy::unwrap_used, dead_code, reason = "tests fail loudly")]

mod common;
#[path = "../../smartlb-discovery/tests/support/etcd.rs"]
mod etcd;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Instance {
    child: Child,
    admin: std::net::SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(url: &str) -> Instance {
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", etcd::free_port()).parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_smartlb"))
        .args(["run", "--config", url])
        .env("ADMIN_ADDR", admin.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Instance { child, admin }
}

fn config(backends: &[std::net::SocketAddr]) -> String {
    let list = backends
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"${{ADMIN_ADDR}}\"\n[[upstream]]\nname = \"web\"\nbackends = [{list}]\n"
    )
}

/// Polls the instance's status until `check` holds (at most 10 s).
async fn converge(instance: &Instance, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let client = client();
    let started = Instant::now();
    loop {
        let req = http::Request::get(format!("http://{}/api/v1/status", instance.admin))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        if let Ok(Ok(resp)) =
            tokio::time::timeout(Duration::from_secs(1), client.request(req)).await
        {
            use http_body_util::BodyExt;
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body)
                && check(&json)
            {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "instance never reached: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_follow_one_configuration_key() {
    if !etcd::etcd_available("two_instances_follow_one_configuration_key") {
        return;
    }
    let server = etcd::Etcd::start().await;
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    let r1 = server.put("/smartlb/config", &config(&[a.addr()])).await;
    let url = format!("etcd://{}/smartlb/config", server.endpoint().authority());
    let instances = [spawn(&url), spawn(&url)];
    for instance in &instances {
        converge(instance, "revision 1", |s| {
            s["config"]["revision"] == r1
                && s["upstreams"][0]["backends"].as_array().unwrap().len() == 1
        })
        .await;
    }
    let r2 = server
        .put("/smartlb/config", &config(&[a.addr(), b.addr()]))
        .await;
    for instance in &instances {
        converge(instance, "revision 2 with two backends", |s| {
            s["config"]["revision"] == r2
                && s["upstreams"][0]["backends"].as_array().unwrap().len() == 2
        })
        .await;
    }
    server
        .put("/smartlb/config", "[server]\nlisten = 42\n")
        .await;
    for instance in &instances {
        converge(instance, "the invalid version refused", |s| {
            s["config"]["rejected"] == 1 && s["config"]["revision"] == r2
        })
        .await;
    }
}
