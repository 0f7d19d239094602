//! Backends discovered from a real etcd server reach the running proxy: keys added and
//! removed change where requests go within about a second.
#![allow(clippy::unwrap_used, dead_code, reason = "tests fail loudly")]

mod common;
#[path = "../../smartlb-discovery/tests/support/etcd.rs"]
mod etcd;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_keys_add_and_remove_backends_of_a_running_proxy() {
    if !etcd::etcd_available("etcd_keys_add_and_remove_backends_of_a_running_proxy") {
        return;
    }
    let server = etcd::Etcd::start().await;
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    server
        .put(
            "/smartlb/web/a",
            &format!("{{\"address\": \"{}\"}}", a.addr()),
        )
        .await;
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[log]
access_log = false
[[upstream]]
name = "web"
algorithm = "round-robin"
[upstream.discovery]
kind = "etcd"
endpoints = ["http://{}"]
prefix = "/smartlb/web/"
[upstream.slow_start]
duration = "0s"
"#,
        server.endpoint()
    );
    let running = start_proxy(&config).await;
    let proxy = proxy_addr(&running);
    assert_eq!(sequential(proxy, "/", 4).await.count("a"), 4);

    // Add b by key: it takes traffic within a second or so.
    server
        .put(
            "/smartlb/web/b",
            &format!("{{\"address\": \"{}\", \"weight\": 1}}", b.addr()),
        )
        .await;
    let started = Instant::now();
    loop {
        if sequential(proxy, "/", 4).await.count("b") > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "b never took traffic"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("added backend took traffic after {:?}", started.elapsed());

    // Remove a by key: it stops receiving requests.
    server.delete("/smartlb/web/a").await;
    let started = Instant::now();
    loop {
        if sequential(proxy, "/", 6).await.count("a") == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a kept taking traffic"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("removed backend stopped after {:?}", started.elapsed());
    stop(running).await;
}
