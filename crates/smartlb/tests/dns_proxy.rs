//! DNS discovery through the running proxy, against a DNS server the test runs on a
//! loopback UDP port: when the record changes, traffic reaches the new backend after the
//! next `refresh`, and the old one stops receiving requests.
#![allow(clippy::unwrap_used, dead_code, reason = "tests fail loudly")]

mod common;
#[path = "../../smartlb-discovery/tests/support/dns.rs"]
mod dns;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_srv_record_moves_traffic_to_the_new_backend() {
    let server = dns::DnsServer::start().await;
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    let owner = "_http._tcp.web.test";
    server.set_addresses("a.web.test", &["127.0.0.1".parse().unwrap()]);
    server.set_addresses("b.web.test", &["127.0.0.1".parse().unwrap()]);
    server.set_srv(owner, &[(10, 1, a.addr().port(), "a.web.test")]);
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
kind = "dns"
name = "{owner}"
record = "SRV"
refresh = "200ms"
resolvers = ["{}"]
[upstream.slow_start]
duration = "0s"
"#,
        server.addr
    );
    let running = start_proxy(&config).await;
    let proxy = proxy_addr(&running);
    assert_eq!(sequential(proxy, "/", 4).await.count("a"), 4);

    // The record now names b: b takes the traffic, a drains away.
    server.set_srv(owner, &[(10, 1, b.addr().port(), "b.web.test")]);
    let started = Instant::now();
    loop {
        let tally = sequential(proxy, "/", 4).await;
        if tally.count("b") == 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "b never took all the traffic: {tally:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("the new record took effect after {:?}", started.elapsed());
    let states = backend_states(&running, "web");
    assert!(
        !states.contains_key(&a.addr().to_string()) || states[&a.addr().to_string()] == "draining",
        "{states:?}"
    );

    // Both records: both serve.
    server.set_srv(
        owner,
        &[
            (10, 1, a.addr().port(), "a.web.test"),
            (10, 1, b.addr().port(), "b.web.test"),
        ],
    );
    let started = Instant::now();
    loop {
        let tally = sequential(proxy, "/", 6).await;
        if tally.count("a") > 0 && tally.count("b") > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a never came back: {tally:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop(running).await;
}

/// A reload that turns a static upstream into a DNS one starts the source and applies its
/// first answer as a diff; turning it back stops the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_an_upstream_between_static_and_dns() {
    let server = dns::DnsServer::start().await;
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    let owner = "_http._tcp.api.test";
    server.set_addresses("b.api.test", &["127.0.0.1".parse().unwrap()]);
    server.set_srv(owner, &[(10, 1, b.addr().port(), "b.api.test")]);
    let head = "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\
                [[upstream]]\nname = \"web\"\nalgorithm = \"round-robin\"\n";
    let fixed = format!(
        "{head}backends = [\"{}\"]\n[upstream.slow_start]\nduration = \"0s\"\n",
        a.addr()
    );
    let discovered = format!(
        "{head}[upstream.discovery]\nkind = \"dns\"\nname = \"{owner}\"\nrecord = \"SRV\"\n\
         refresh = \"200ms\"\nresolvers = [\"{}\"]\n[upstream.slow_start]\nduration = \"0s\"\n",
        server.addr
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smartlb.toml");
    std::fs::write(&path, &fixed).unwrap();
    let running = start_proxy(&fixed).await;
    running.proxy().set_config_source(&path);
    let proxy = proxy_addr(&running);
    assert_eq!(sequential(proxy, "/", 4).await.count("a"), 4);

    std::fs::write(&path, &discovered).unwrap();
    let changes = running.proxy().reload().unwrap();
    assert!(
        changes.iter().any(|c| c.contains("source restarted")),
        "{changes:?}"
    );
    let started = Instant::now();
    loop {
        if sequential(proxy, "/", 4).await.count("b") == 4 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the DNS answer was not applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    std::fs::write(&path, &fixed).unwrap();
    let changes = running.proxy().reload().unwrap();
    assert!(
        changes.iter().any(|c| c.contains("discovery stopped")),
        "{changes:?}"
    );
    assert_eq!(sequential(proxy, "/", 4).await.count("a"), 4);
    // The source is stopped: a record change no longer reaches the proxy.
    server.set_srv(owner, &[]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sequential(proxy, "/", 4).await.count("a"), 4);
    stop(running).await;
}
