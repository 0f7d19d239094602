//! The load generator against real loopback backends.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use smartlb_demo::{DemoBackend, DemoBackendOptions, Latency, LoadGenerator, LoadOptions};

#[tokio::test]
async fn reaches_about_its_target_rate_and_counts_by_backend() {
    let backend = DemoBackend::start(
        "solo",
        DemoBackendOptions::default().with_latency(Latency::from_millis(2, 1)),
    )
    .await
    .unwrap();
    let started = Instant::now();
    let load =
        LoadGenerator::start(backend.addr(), LoadOptions::default().with_rate(200.0)).unwrap();
    assert_eq!(load.target(), backend.addr());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let interval = load.take_interval();
    let totals = load.stop().await;
    let elapsed = started.elapsed().as_secs_f64();

    // Open loop: the schedule alone decides how many requests are sent.
    let sent = totals.requests + totals.dropped;
    assert!(sent >= 100, "sent {sent} in {elapsed:.2}s");
    assert!(
        sent as f64 <= 200.0 * elapsed + 1.0,
        "sent {sent} in {elapsed:.2}s"
    );
    assert_eq!(totals.errors, 0, "{totals:?}");
    assert_eq!(totals.successes, totals.requests);
    assert_eq!(totals.by_backend.len(), 1);
    assert_eq!(totals.by_backend["solo"].requests, totals.requests);
    assert_eq!(totals.unattributed, 0);
    assert!(totals.p50.is_some() && totals.p99 >= totals.p50);
    assert!(
        totals.p50 >= Some(Duration::from_millis(2)),
        "{:?}",
        totals.p50
    );
    assert_eq!(totals.target_rate, 200.0);
    assert!(interval.window >= Duration::from_secs(1));
    assert!(interval.rate() > 50.0, "{}", interval.rate());
    assert!((totals.share("solo") - 1.0).abs() < 1e-9);
    // The backend saw the same requests, on a handful of kept-alive connections.
    assert_eq!(backend.requests(), totals.requests);
    assert!(backend.connections() <= 64, "{}", backend.connections());
}

#[tokio::test]
async fn counts_5xx_answers_as_errors() {
    let backend = DemoBackend::start("broken", DemoBackendOptions::default().with_error_rate(1.0))
        .await
        .unwrap();
    let load =
        LoadGenerator::start(backend.addr(), LoadOptions::default().with_rate(100.0)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let totals = load.stop().await;
    assert!(totals.requests > 0);
    assert_eq!(totals.errors, totals.requests);
    assert_eq!(totals.status_5xx, totals.requests);
    assert_eq!(totals.by_backend["broken"].errors, totals.requests);
    assert_eq!(totals.error_ratio(), 1.0);
}

#[tokio::test]
async fn counts_refused_connections() {
    // A port that was just free: nothing listens there.
    let closed: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let load = LoadGenerator::start(closed, LoadOptions::default().with_rate(100.0)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let totals = load.stop().await;
    assert!(totals.requests > 0);
    assert_eq!(totals.connect_errors, totals.requests);
    assert_eq!(totals.successes, 0);
}

#[tokio::test]
async fn slow_backend_times_out_and_excess_sends_are_dropped() {
    let backend = DemoBackend::start("hole", DemoBackendOptions::default())
        .await
        .unwrap();
    backend.blackhole(true);
    let options = LoadOptions::default()
        .with_rate(100.0)
        .with_concurrency(2)
        .with_timeout(Duration::from_millis(200));
    let load = LoadGenerator::start(backend.addr(), options).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let totals = load.stop().await;
    assert!(totals.timeouts > 0, "{totals:?}");
    assert_eq!(totals.errors, totals.timeouts);
    assert!(totals.dropped > 0, "{totals:?}");
    assert!(backend.connections() >= 1);
}

#[tokio::test]
async fn stops_when_the_backend_crashes_midway() {
    let backend = DemoBackend::start("flaky", DemoBackendOptions::default())
        .await
        .unwrap();
    let load =
        LoadGenerator::start(backend.addr(), LoadOptions::default().with_rate(200.0)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    backend.crash();
    tokio::time::sleep(Duration::from_millis(200)).await;
    backend.recover().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let totals = tokio::time::timeout(Duration::from_secs(10), load.stop())
        .await
        .expect("stop is bounded");
    assert!(totals.successes > 0);
    assert!(
        totals.connect_errors + totals.transport_errors > 0,
        "{totals:?}"
    );
}

#[tokio::test]
async fn invalid_options_fail_to_start() {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert!(LoadGenerator::start(addr, LoadOptions::default().with_rate(-1.0)).is_err());
    assert!(LoadGenerator::start(addr, LoadOptions::default().with_concurrency(0)).is_err());
    assert!(
        LoadGenerator::start(addr, LoadOptions::default().with_timeout(Duration::ZERO)).is_err()
    );
}
