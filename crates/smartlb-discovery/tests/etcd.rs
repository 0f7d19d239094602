//! etcd discovery and configuration keys against a real etcd server on loopback.
//!
//! Each test starts its own etcd (Debian's `etcd-server`) with a temporary data
//! directory on free ports; without the binary the tests are skipped with a message,
//! unless `CI=true`.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

mod support;

use std::time::Duration;

use smartlb_config::{BackendConfig, DiscoveryConfig, EtcdDiscovery, UpstreamConfig};
use smartlb_discovery::{
    Change, DiscoveryHandle, DiscoveryOptions, EtcdConfigKey, start_with, watch_config_key_with,
};
use support::etcd::{Etcd, Relay, etcd_available};
use support::wait_until;

fn options() -> DiscoveryOptions {
    DiscoveryOptions::default()
        .with_retry(Duration::from_millis(50), Duration::from_millis(400))
        .with_etcd_timeout(Duration::from_secs(2))
}

fn upstream(endpoints: Vec<smartlb_config::BackendAddress>, prefix: &str) -> UpstreamConfig {
    let mut upstream = UpstreamConfig::new("web", Vec::new());
    upstream.discovery = DiscoveryConfig::Etcd(EtcdDiscovery {
        endpoints,
        prefix: prefix.to_string(),
    });
    upstream
}

fn addresses(set: &[BackendConfig]) -> Vec<String> {
    set.iter().map(|b| b.address.to_string()).collect()
}

/// The next changes, within `limit`.
async fn next_changes(handle: &mut DiscoveryHandle, limit: Duration) -> Vec<Change> {
    tokio::time::timeout(limit, handle.changed())
        .await
        .expect("no change arrived in time")
        .expect("the discovery task stopped")
}

/// Waits (bounded) until the published set has exactly `expected` addresses.
async fn wait_for_set(handle: &DiscoveryHandle, expected: &[&str], limit: Duration) {
    let mut rx = handle.subscribe();
    let reached = wait_until(&mut rx, limit, |set| addresses(set) == expected).await;
    assert!(
        reached,
        "expected {expected:?}, have {:?} (status {:?})",
        addresses(&handle.backends()),
        handle.status()
    );
}

#[tokio::test]
async fn keys_added_changed_and_removed_reach_the_stream() {
    support::logs();
    if !etcd_available("keys_added_changed_and_removed_reach_the_stream") {
        return;
    }
    let etcd = Etcd::start().await;
    etcd.put("/smartlb/web/a", r#"{"address": "127.0.0.1:9001"}"#)
        .await;
    etcd.put("/smartlb/web/bad", r#"{"address": "nowhere"}"#)
        .await;
    etcd.put("/smartlb/other/x", r#"{"address": "127.0.0.1:9100"}"#)
        .await;

    let mut handle = start_with(
        &upstream(vec![etcd.endpoint()], "/smartlb/web/"),
        &options(),
    )
    .unwrap();
    assert_eq!(handle.kind(), "etcd");
    let first = tokio::time::timeout(Duration::from_secs(5), handle.ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        addresses(&first),
        ["127.0.0.1:9001"],
        "the bad value is skipped"
    );
    let status = handle.status();
    assert!(status.loaded && status.healthy, "{status:?}");
    assert!(status.revision.is_some_and(|r| r >= 4), "{status:?}");

    // Added: within a second.
    etcd.put(
        "/smartlb/web/b",
        r#"{"address": "127.0.0.1:9002", "weight": 5}"#,
    )
    .await;
    let changes = next_changes(&mut handle, Duration::from_secs(1)).await;
    let mut b = BackendConfig::new("127.0.0.1:9002".parse().unwrap());
    b.weight = 5;
    assert_eq!(changes, vec![Change::Insert(b.clone())]);

    // A key outside the prefix changes nothing: the next change is the one inside.
    etcd.put("/smartlb/other/y", r#"{"address": "127.0.0.1:9101"}"#)
        .await;
    etcd.put(
        "/smartlb/web/b",
        r#"{"address": "127.0.0.1:9002", "weight": 2}"#,
    )
    .await;
    let changes = next_changes(&mut handle, Duration::from_secs(1)).await;
    b.weight = 2;
    assert_eq!(changes, vec![Change::Update(b.clone())]);

    // Removed: within a second.
    etcd.delete("/smartlb/web/a").await;
    let changes = next_changes(&mut handle, Duration::from_secs(1)).await;
    assert_eq!(
        changes,
        vec![Change::Remove("127.0.0.1:9001".parse().unwrap())]
    );

    // A key overwritten with a bad value counts as absent; fixing it brings it back.
    etcd.put(
        "/smartlb/web/b",
        r#"{"address": "127.0.0.1:9002", "weight": 0}"#,
    )
    .await;
    let changes = next_changes(&mut handle, Duration::from_secs(1)).await;
    assert_eq!(changes, vec![Change::Remove(b.address.clone())]);
    assert!(handle.backends().is_empty());
    etcd.put("/smartlb/web/b", r#"{"address": "127.0.0.1:9002"}"#)
        .await;
    let changes = next_changes(&mut handle, Duration::from_secs(1)).await;
    assert_eq!(
        changes,
        vec![Change::Insert(BackendConfig::new(b.address.clone()))]
    );

    // Dropping the handle stops the task; the subscription sees the channel close.
    let mut rx = handle.subscribe();
    drop(handle);
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        while rx.changed().await.is_ok() {}
    })
    .await;
    assert!(
        closed.is_ok(),
        "the task kept running after the handle was dropped"
    );
}

#[tokio::test]
async fn an_etcd_restart_loses_nothing_and_the_watch_resumes() {
    support::logs();
    if !etcd_available("an_etcd_restart_loses_nothing_and_the_watch_resumes") {
        return;
    }
    let mut etcd = Etcd::start().await;
    etcd.put("/web/1", r#"{"address": "127.0.0.1:9001"}"#).await;
    etcd.put("/web/2", r#"{"address": "127.0.0.1:9002"}"#).await;
    let mut handle = start_with(&upstream(vec![etcd.endpoint()], "/web/"), &options()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle.ready())
        .await
        .unwrap()
        .unwrap();

    // A write just before the crash may or may not reach the watcher before it: either
    // way it must be in the set once the watch resumes.
    etcd.put("/web/3", r#"{"address": "127.0.0.1:9003"}"#).await;
    etcd.kill();

    // The lost etcd is noticed and the last known set stays.
    let mut status = handle.subscribe_status();
    let noticed = wait_until(&mut status, Duration::from_secs(5), |s| !s.healthy).await;
    assert!(noticed, "{:?}", handle.status());
    assert!(handle.status().last_error.is_some());
    assert!(handle.backends().len() >= 2, "{:?}", handle.backends());

    // Back on the same data directory and port; changes made before the watcher
    // reconnects arrive through the resumed watch.
    etcd.restart().await;
    etcd.delete("/web/1").await;
    etcd.put("/web/4", r#"{"address": "127.0.0.1:9004"}"#).await;
    wait_for_set(
        &handle,
        &["127.0.0.1:9002", "127.0.0.1:9003", "127.0.0.1:9004"],
        Duration::from_secs(10),
    )
    .await;
    let healthy = wait_until(&mut status, Duration::from_secs(5), |s| s.healthy).await;
    assert!(healthy, "{:?}", handle.status());

    // And the watch keeps going afterwards.
    etcd.put("/web/5", r#"{"address": "127.0.0.1:9005"}"#).await;
    wait_for_set(
        &handle,
        &[
            "127.0.0.1:9002",
            "127.0.0.1:9003",
            "127.0.0.1:9004",
            "127.0.0.1:9005",
        ],
        Duration::from_secs(5),
    )
    .await;
}

#[tokio::test]
async fn history_compacted_while_away_is_read_again_whole() {
    support::logs();
    if !etcd_available("history_compacted_while_away_is_read_again_whole") {
        return;
    }
    let etcd = Etcd::start().await;
    let relay = Relay::start(etcd.client_port).await;
    etcd.put("/web/1", r#"{"address": "127.0.0.1:9001"}"#).await;
    etcd.put("/web/2", r#"{"address": "127.0.0.1:9002"}"#).await;
    let mut handle = start_with(&upstream(vec![relay.endpoint()], "/web/"), &options()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), handle.ready())
        .await
        .unwrap()
        .unwrap();

    relay.cut();
    let mut status = handle.subscribe_status();
    let noticed = wait_until(&mut status, Duration::from_secs(5), |s| !s.healthy).await;
    assert!(noticed, "{:?}", handle.status());

    // While the watcher is away: a delete, a write, and the history compacted past them.
    etcd.delete("/web/1").await;
    let revision = etcd.put("/web/3", r#"{"address": "127.0.0.1:9003"}"#).await;
    etcd.compact(revision).await;
    assert_eq!(
        addresses(&handle.backends()),
        ["127.0.0.1:9001", "127.0.0.1:9002"]
    );

    relay.restore();
    wait_for_set(
        &handle,
        &["127.0.0.1:9002", "127.0.0.1:9003"],
        Duration::from_secs(10),
    )
    .await;
}

#[tokio::test]
async fn a_second_endpoint_takes_over_when_the_first_is_down() {
    support::logs();
    if !etcd_available("a_second_endpoint_takes_over_when_the_first_is_down") {
        return;
    }
    let etcd = Etcd::start().await;
    etcd.put("/web/1", r#"{"address": "127.0.0.1:9001"}"#).await;
    let dead: smartlb_config::BackendAddress = format!("127.0.0.1:{}", support::etcd::free_port())
        .parse()
        .unwrap();
    let mut handle =
        start_with(&upstream(vec![dead, etcd.endpoint()], "/web/"), &options()).unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), handle.ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(addresses(&first), ["127.0.0.1:9001"]);
}

#[tokio::test]
async fn a_configuration_key_is_loaded_and_followed() {
    support::logs();
    if !etcd_available("a_configuration_key_is_loaded_and_followed") {
        return;
    }
    let etcd = Etcd::start().await;
    let source: EtcdConfigKey = format!("etcd://127.0.0.1:{}/smartlb/config", etcd.client_port)
        .parse()
        .unwrap();
    let mut watch = watch_config_key_with(&source, &options()).unwrap();

    // No key yet: nothing loaded, and the status says why.
    let mut status = watch.subscribe_status();
    let why = wait_until(&mut status, Duration::from_secs(5), |s| {
        s.last_error.is_some()
    })
    .await;
    assert!(why, "{:?}", watch.status());
    assert!(
        watch
            .status()
            .last_error
            .is_some_and(|e| e.contains("does not exist")),
        "{:?}",
        watch.status()
    );
    assert!(watch.current().is_none());

    let first_revision = etcd.put("/smartlb/config", "# one\n").await;
    let document = tokio::time::timeout(Duration::from_secs(2), watch.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(document.text, "# one\n");
    assert_eq!(document.revision, first_revision);

    let second_revision = etcd.put("/smartlb/config", "# two\n").await;
    let document = tokio::time::timeout(Duration::from_secs(2), watch.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (document.revision, document.text.as_str()),
        (second_revision, "# two\n")
    );

    // A deleted key keeps the last document; a new write comes through.
    let deleted = etcd.delete("/smartlb/config").await;
    let seen = wait_until(&mut status, Duration::from_secs(2), |s| {
        s.revision >= Some(deleted)
    })
    .await;
    assert!(seen, "{:?}", watch.status());
    assert_eq!(watch.current().map(|d| d.text), Some("# two\n".to_string()));
    let third_revision = etcd.put("/smartlb/config", "# three\n").await;
    let document = tokio::time::timeout(Duration::from_secs(2), watch.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (document.revision, document.text.as_str()),
        (third_revision, "# three\n")
    );
    assert!(watch.status().healthy);
}
