//! Each balancing algorithm's distribution, measured through the real proxy: three demo
//! backends on loopback, one configuration per algorithm, requests counted by the
//! `x-backend` header of the answers.

mod common;

use std::net::SocketAddr;

use common::{Tally, backend, client, concurrent, get_with, one_upstream, proxy_addr, sequential};
use smartlb_demo::DemoBackend;

/// Three fast backends named a, b, c.
async fn three_backends() -> [DemoBackend; 3] {
    [
        backend("a", 0).await,
        backend("b", 0).await,
        backend("c", 0).await,
    ]
}

fn addrs(backends: &[DemoBackend], weights: &[u32]) -> Vec<(SocketAddr, u32)> {
    backends
        .iter()
        .zip(weights)
        .map(|(b, w)| (b.addr(), *w))
        .collect()
}

fn assert_near(tally: &Tally, name: &str, expected: f64, tolerance: f64) {
    let share = tally.share(name);
    assert!(
        (share - expected).abs() <= tolerance,
        "{name}: share {share:.3}, expected {expected:.3} ± {tolerance}: {tally:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_is_exactly_even_for_sequential_requests() {
    let backends = three_backends().await;
    let running = common::start_proxy(&one_upstream(
        "round-robin",
        &addrs(&backends, &[1, 1, 1]),
        "",
    ))
    .await;
    let tally = sequential(proxy_addr(&running), "/", 300).await;
    eprintln!("{tally:?}");
    for name in ["a", "b", "c"] {
        let n = tally.count(name);
        assert!((99..=101).contains(&n), "{name}: {n}: {tally:?}");
    }
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_the_weights() {
    let backends = three_backends().await;
    let running = common::start_proxy(&one_upstream(
        "weighted-round-robin",
        &addrs(&backends, &[1, 2, 3]),
        "",
    ))
    .await;
    let tally = sequential(proxy_addr(&running), "/", 300).await;
    eprintln!("{tally:?}");
    // Smooth weighted round-robin is exact over every full cycle of 6 picks.
    for (name, expected) in [("a", 50), ("b", 100), ("c", 150)] {
        let n = tally.count(name);
        assert!(n.abs_diff(expected) <= 2, "{name}: {n}: {tally:?}");
    }
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_spreads_evenly() {
    let backends = three_backends().await;
    let running =
        common::start_proxy(&one_upstream("random", &addrs(&backends, &[1, 5, 1]), "")).await;
    let tally = concurrent(proxy_addr(&running), "/", 4, 150).await;
    eprintln!("{tally:?}");
    assert_eq!(tally.total, 600);
    // Weights are ignored; 600 uniform draws: σ ≈ 0.019 per share, tolerance ≈ 5σ.
    for name in ["a", "b", "c"] {
        assert_near(&tally, name, 1.0 / 3.0, 0.1);
    }
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_random_follows_the_weights() {
    let backends = three_backends().await;
    let running = common::start_proxy(&one_upstream(
        "weighted-random",
        &addrs(&backends, &[1, 2, 3]),
        "",
    ))
    .await;
    let tally = concurrent(proxy_addr(&running), "/", 4, 150).await;
    eprintln!("{tally:?}");
    assert_eq!(tally.total, 600);
    // σ ≤ 0.021 per share at 600 draws; tolerance ≈ 4.5σ.
    assert_near(&tally, "a", 1.0 / 6.0, 0.09);
    assert_near(&tally, "b", 2.0 / 6.0, 0.09);
    assert_near(&tally, "c", 3.0 / 6.0, 0.09);
    assert!(tally.count("a") < tally.count("c"), "{tally:?}");
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_requests_uses_every_backend() {
    let backends = [
        backend("a", 2).await,
        backend("b", 2).await,
        backend("c", 2).await,
    ];
    let running = common::start_proxy(&one_upstream(
        "least-requests",
        &addrs(&backends, &[1, 1, 1]),
        "",
    ))
    .await;
    let tally = concurrent(proxy_addr(&running), "/", 6, 50).await;
    eprintln!("{tally:?}");
    assert_eq!(tally.total, 300);
    for name in ["a", "b", "c"] {
        assert!(
            tally.share(name) > 0.15,
            "{name} is starved by least-requests: {tally:?}"
        );
    }
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_ewma_avoids_the_slow_backend() {
    let backends = [
        backend("slow", 50).await,
        backend("fast1", 1).await,
        backend("fast2", 1).await,
    ];
    let running =
        common::start_proxy(&one_upstream("p2c-ewma", &addrs(&backends, &[1, 1, 1]), "")).await;
    let tally = concurrent(proxy_addr(&running), "/", 4, 60).await;
    eprintln!("{tally:?}");
    assert_eq!(tally.total, 240);
    let slow = tally.count("slow");
    // An even spread would give the slow backend 80; its 50 ms peak-EWMA cost loses every
    // pairing against a 1 ms backend once it has been measured.
    assert!(slow < 30, "slow backend got {slow}: {tally:?}");
    assert!(
        tally.count("fast1") > slow && tally.count("fast2") > slow,
        "{tally:?}"
    );
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_keeps_each_key_on_one_backend() {
    let backends = three_backends().await;
    let running = common::start_proxy(&one_upstream(
        "consistent-hash",
        &addrs(&backends, &[1, 1, 1]),
        r#"hash_key = "header:x-user""#,
    ))
    .await;
    let addr = proxy_addr(&running);
    let client = client();
    let mut owner = std::collections::BTreeMap::new();
    let mut spread = Tally::default();
    for round in 0..4 {
        for user in 0..40 {
            let key = format!("user-{user}");
            let answer = get_with(&client, addr, "/", &[("x-user", &key)]).await;
            spread.add(&answer);
            let backend = answer.backend().to_string();
            match owner.get(&key) {
                None => {
                    owner.insert(key, backend);
                }
                Some(first) => assert_eq!(
                    first, &backend,
                    "key {key} moved from {first} to {backend} in round {round}"
                ),
            }
        }
    }
    // Forty keys over three backends: every backend owns some.
    let mut owners = Tally::default();
    for backend in owner.values() {
        *owners.by_backend.entry(backend.clone()).or_default() += 1;
        owners.total += 1;
    }
    for name in ["a", "b", "c"] {
        assert!(
            owners.count(name) >= 3,
            "{name} owns too few keys: {owners:?}"
        );
    }
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_sends_one_client_to_one_backend() {
    let backends = three_backends().await;
    let running =
        common::start_proxy(&one_upstream("ip-hash", &addrs(&backends, &[1, 1, 1]), "")).await;
    // Several connections (each worker has its own client), one client address.
    let tally = concurrent(proxy_addr(&running), "/", 3, 40).await;
    eprintln!("{tally:?}");
    assert_eq!(tally.total, 120);
    assert_eq!(
        tally.by_backend.len(),
        1,
        "one client IP went to several backends: {tally:?}"
    );
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_spreads_and_favours_fast_backends() {
    let backends = [
        backend("slow", 50).await,
        backend("fast1", 1).await,
        backend("fast2", 1).await,
    ];
    let running =
        common::start_proxy(&one_upstream("adaptive", &addrs(&backends, &[1, 1, 1]), "")).await;
    let tally = concurrent(proxy_addr(&running), "/", 4, 60).await;
    eprintln!("{tally:?}");
    assert_eq!(tally.total, 240);
    let slow = tally.count("slow");
    assert!(slow < 40, "slow backend got {slow}: {tally:?}");
    for fast in ["fast1", "fast2"] {
        assert!(
            tally.count(fast) > 2 * slow.max(5),
            "{fast} not favoured over slow: {tally:?}"
        );
    }
    common::stop(running).await;
}
