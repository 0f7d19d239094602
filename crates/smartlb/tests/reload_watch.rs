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
