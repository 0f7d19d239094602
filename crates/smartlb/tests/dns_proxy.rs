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
