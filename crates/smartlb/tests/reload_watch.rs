//! Reload on file change: an edit written by rename (as editors do) is applied within a
//! few seconds; an invalid edit is refused and counted while the running configuration
//! keeps serving; the next valid edit is applied.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Writes `text` next to `path` and renames it over `path`.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn config(backends: &[SocketAddr]) -> String {
    let list = backends
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\
         [[upstream]]\nname = \"web\"\nalgorithm = \"round-robin\"\nbackends = [{list}]\n\
         [upstream.slow_start]\nduration = \"0s\"\n"
    )
}

/// Waits (at most 5 s) until `check` holds on the proxy's status; returns how long it took.
async fn until(
    running: &smartlb::Running,
    what: &str,
    check: impl Fn(&smartlb_admin::StatusReport) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        if check(&running.proxy().status()) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not reached: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn backends(status: &smartlb_admin::StatusReport) -> usize {
    status.upstreams[0].backends.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_are_applied_and_invalid_ones_refused() {
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smartlb.toml");
    std::fs::write(&path, config(&[a.addr()])).unwrap();
    let config_value = smartlb::config::load_file(&path).unwrap();
    let running = within(
        Duration::from_secs(10),
        "start",
        smartlb::start(&config_value),
    )
    .await
    .unwrap();
    running.proxy().set_config_source(&path);
    let _watcher = running.proxy().watch_config().unwrap();
    let proxy = proxy_addr(&running);

    // An edit by rename adds b.
    replace(&path, &config(&[a.addr(), b.addr()]));
    let took = until(&running, "b added", |s| backends(s) == 2).await;
    eprintln!("the edit was applied after {took:?}");
    let tally = sequential(proxy, "/", 6).await;
    assert_eq!(tally.count("b"), 3, "{tally:?}");

    // An invalid edit is refused and counted; the proxy keeps serving a and b.
    replace(&path, "[server]\nlisten = 8080\n");
    until(&running, "the invalid edit refused", |s| {
        s.config.as_ref().is_some_and(|c| c.rejected == 1)
    })
    .await;
    let metrics = get(&client(), running.admin_addr(), "/metrics")
        .await
        .text();
    assert!(
        metrics.contains("smartlb_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    let tally = sequential(proxy, "/", 6).await;
    assert_eq!(tally.count("a"), 3, "{tally:?}");
    assert_eq!(tally.count("b"), 3, "{tally:?}");

    // A plain write (not a rename) of a valid file is applied too: b is removed.
    std::fs::write(&path, config(&[a.addr()])).unwrap();
    until(&running, "b removed", |s| {
        backends(s) == 1 && s.config.as_ref().is_some_and(|c| c.applied >= 3)
    })
    .await;
    assert_eq!(sequential(proxy, "/", 4).await.count("a"), 4);
    stop(running).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child process when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `smartlb run -c FILE` follows edits of FILE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smartlb_run_follows_its_file() {
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smartlb.toml");
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let with_admin = |text: String| {
        text.replace(
            "[admin]\nlisten = \"127.0.0.1:0\"",
            &format!("[admin]\nlisten = \"{admin}\""),
        )
    };
    std::fs::write(&path, with_admin(config(&[a.addr()]))).unwrap();
    let _child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_smartlb"))
            .args(["run", "-c"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = client();
    let backends_now = async || -> Option<usize> {
        let req = http::Request::get(format!("http://{admin}/api/v1/status"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(1), client.request(req))
            .await
            .ok()?
            .ok()?;
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).ok()?;
        json["upstreams"][0]["backends"].as_array().map(Vec::len)
    };
    let started = Instant::now();
    while backends_now().await != Some(1) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "smartlb run did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replace(&path, &with_admin(config(&[a.addr(), b.addr()])));
    let started = Instant::now();
    while backends_now().await != Some(2) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the edit was not applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A file reached through a `..data` link that is swapped, as a Kubernetes ConfigMap
/// volume updates it, is followed.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_data_link_is_followed() {
    use std::os::unix::fs::symlink;
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("..v1")).unwrap();
    std::fs::write(root.join("..v1/smartlb.toml"), config(&[a.addr()])).unwrap();
    symlink("..v1", root.join("..data")).unwrap();
    symlink("..data/smartlb.toml", root.join("smartlb.toml")).unwrap();
    let path = root.join("smartlb.toml");
    let config_value = smartlb::config::load_file(&path).unwrap();
    let running = within(
        Duration::from_secs(10),
        "start",
        smartlb::start(&config_value),
    )
    .await
    .unwrap();
    running.proxy().set_config_source(&path);
    let _watcher = running.proxy().watch_config().unwrap();

    std::fs::create_dir(root.join("..v2")).unwrap();
    std::fs::write(
        root.join("..v2/smartlb.toml"),
        config(&[a.addr(), b.addr()]),
    )
    .unwrap();
    symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    until(&running, "b added", |s| backends(s) == 2).await;
    stop(running).await;
}
