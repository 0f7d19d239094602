//! DNS discovery against a DNS server the test runs on a loopback UDP port.

#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

mod support;

use std::net::IpAddr;
use std::time::Duration;

use smartlb_config::{BackendConfig, DiscoveryConfig, DnsDiscovery, DnsRecord, UpstreamConfig};
use smartlb_discovery::{
    Change, DiscoveryError, DiscoveryHandle, DiscoveryOptions, start, start_with,
};
use support::dns::{DnsServer, Mode};
use support::wait_until;

const REFRESH: Duration = Duration::from_millis(100);

fn options() -> DiscoveryOptions {
    DiscoveryOptions::default().with_dns_timeout(Duration::from_millis(200), 1)
}

fn upstream(
    server: &DnsServer,
    name: &str,
    record: DnsRecord,
    port: Option<u16>,
) -> UpstreamConfig {
    let mut upstream = UpstreamConfig::new("web", Vec::new());
    upstream.discovery = DiscoveryConfig::Dns(DnsDiscovery {
        name: name.to_string(),
        record,
        port,
        refresh: REFRESH,
        resolvers: vec![server.addr],
    });
    upstream
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

fn backend(address: &str, weight: u32, backup: bool) -> BackendConfig {
    let mut b = BackendConfig::new(address.parse().unwrap());
    b.weight = weight;
    b.backup = backup;
    b
}

async fn ready(handle: &mut DiscoveryHandle) -> Vec<BackendConfig> {
    tokio::time::timeout(Duration::from_secs(5), handle.ready())
        .await
        .expect("discovery did not load")
        .unwrap()
        .to_vec()
}

async fn next_changes(handle: &mut DiscoveryHandle) -> Vec<Change> {
    tokio::time::timeout(Duration::from_secs(5), handle.changed())
        .await
        .expect("no change arrived in time")
        .expect("the discovery task stopped")
}

#[tokio::test]
async fn a_record_changes_reach_the_stream_after_refresh() {
    support::logs();
    let server = DnsServer::start().await;
    server.set_addresses("web.test", &ips(&["127.0.0.10", "127.0.0.11"]));
    let mut handle = start_with(
        &upstream(&server, "web.test", DnsRecord::A, Some(8080)),
        &options(),
    )
    .unwrap();
    assert_eq!(handle.kind(), "dns");
    assert_eq!(
        ready(&mut handle).await,
        [
            backend("127.0.0.10:8080", 1, false),
            backend("127.0.0.11:8080", 1, false)
        ]
    );

    server.set_addresses("web.test", &ips(&["127.0.0.11", "127.0.0.12"]));
    assert_eq!(
        next_changes(&mut handle).await,
        [
            Change::Remove("127.0.0.10:8080".parse().unwrap()),
            Change::Insert(backend("127.0.0.12:8080", 1, false)),
        ]
    );
    let status = handle.status();
    assert!(
        status.loaded && status.healthy && status.updates == 2,
        "{status:?}"
    );
}

#[tokio::test]
async fn aaaa_records() {
    support::logs();
    let server = DnsServer::start().await;
    server.set_addresses("v6.test", &ips(&["::1", "127.0.0.5"]));
    let mut handle = start_with(
        &upstream(&server, "v6.test", DnsRecord::Aaaa, Some(81)),
        &options(),
    )
    .unwrap();
    assert_eq!(ready(&mut handle).await, [backend("[::1]:81", 1, false)]);
}

#[tokio::test]
async fn srv_records_give_ports_weights_and_backups() {
    support::logs();
    let server = DnsServer::start().await;
    server.set_srv(
        "_http._tcp.web.test",
        &[
            (10, 5, 8001, "a.web.test"),
            (10, 0, 8002, "b.web.test"),
            (20, 3, 8003, "c.web.test"),
        ],
    );
    server.set_addresses("a.web.test", &ips(&["127.0.0.21"]));
    server.set_addresses("b.web.test", &ips(&["127.0.0.22"]));
    server.set_addresses("c.web.test", &ips(&["127.0.0.23"]));
    let expected = [
        backend("127.0.0.21:8001", 5, false),
        backend("127.0.0.22:8002", 1, false),
        backend("127.0.0.23:8003", 3, true),
    ];

    // Targets looked up one by one.
    let mut handle = start_with(
        &upstream(&server, "_http._tcp.web.test", DnsRecord::Srv, None),
        &options(),
    )
    .unwrap();
    assert_eq!(ready(&mut handle).await, expected);

    // Targets' addresses given in the answer's additional section.
    server.set_glue(true);
    let mut glued = start_with(
        &upstream(&server, "_http._tcp.web.test", DnsRecord::Srv, None),
        &options(),
    )
    .unwrap();
    assert_eq!(ready(&mut glued).await, expected);

    // A record change reaches the stream: b is gone, c is promoted to a primary.
    server.set_srv(
        "_http._tcp.web.test",
        &[(10, 5, 8001, "a.web.test"), (10, 3, 8003, "c.web.test")],
    );
    assert_eq!(
        next_changes(&mut handle).await,
        [
            Change::Remove("127.0.0.22:8002".parse().unwrap()),
            Change::Update(backend("127.0.0.23:8003", 3, false)),
        ]
    );
}

#[tokio::test]
async fn a_failing_resolver_keeps_the_last_set() {
    support::logs();
    let server = DnsServer::start().await;
    server.set_addresses("web.test", &ips(&["127.0.0.10", "127.0.0.11"]));
    let mut handle = start_with(
        &upstream(&server, "web.test", DnsRecord::A, Some(8080)),
        &options(),
    )
    .unwrap();
    let first = ready(&mut handle).await;
    let mut status = handle.subscribe_status();

    for mode in [Mode::ServFail, Mode::Silent] {
        server.set_mode(mode);
        let failed = wait_until(&mut status, Duration::from_secs(5), |s| !s.healthy).await;
        assert!(failed, "{mode:?}: {:?}", handle.status());
        assert!(handle.status().last_error.is_some());
        assert_eq!(handle.backends().to_vec(), first, "{mode:?}");
        server.set_mode(Mode::Answer);
        let back = wait_until(&mut status, Duration::from_secs(5), |s| s.healthy).await;
        assert!(back, "{mode:?}: {:?}", handle.status());
    }

    // A name that stops existing is a failure too: the upstream is not emptied.
    server.set_addresses("web.test", &[]);
    let failed = wait_until(&mut status, Duration::from_secs(5), |s| !s.healthy).await;
    assert!(failed, "{:?}", handle.status());
    assert_eq!(handle.backends().to_vec(), first);

    // Recovery brings the new answer.
    server.set_addresses("web.test", &ips(&["127.0.0.12"]));
    let changes = next_changes(&mut handle).await;
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert!(handle.status().healthy);
    assert_eq!(
        handle.backends().to_vec(),
        [backend("127.0.0.12:8080", 1, false)]
    );
}

#[tokio::test]
async fn settings_that_cannot_be_followed_are_refused() {
    support::logs();
    let server = DnsServer::start().await;
    let error = start(&upstream(&server, "web.test", DnsRecord::A, None)).unwrap_err();
    assert!(error.to_string().contains("port"), "{error}");
    let error = start(&upstream(&server, "bad name..test", DnsRecord::A, Some(80))).unwrap_err();
    assert!(matches!(error, DiscoveryError::Invalid { .. }), "{error}");
}

#[test]
fn dns_discovery_needs_a_runtime() {
    let mut upstream = UpstreamConfig::new("web", Vec::new());
    upstream.discovery = DiscoveryConfig::Dns(DnsDiscovery {
        name: "web.test".to_string(),
        record: DnsRecord::A,
        port: Some(80),
        refresh: REFRESH,
        resolvers: vec!["127.0.0.1:53".parse().unwrap()],
    });
    assert!(matches!(start(&upstream), Err(DiscoveryError::NoRuntime)));
}
