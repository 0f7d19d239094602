//! The failover figures of `docs/operations.md`, measured with real backend processes:
//! time to detect a killed backend (by live traffic under load, by active checks without
//! traffic), time to bring it back after a restart, and requests failed by a kill under
//! load. Ignored by default (it takes about 10 s per round); `scripts/failover` runs it:
//!
//! ```text
//! FAILOVER_ROUNDS=5 cargo test -p smartlb --test failover_figures -- --ignored --nocapture
//! ```

mod common;
mod failover_common;

use std::time::Duration;

use failover_common::{
    BackendProcess, Events, Load, comes_back, config, failures, goes_out, primaries, secs,
};

/// The configuration measured (besides the defaults: 5 consecutive failures eject for
/// 10 s, two retries within a 20 % budget).
const TABLES: &str = r#"algorithm = "round-robin"

[upstream.health]
path = "/health"
interval = "500ms"
timeout = "250ms"
healthy_threshold = 2
unhealthy_threshold = 3

[upstream.slow_start]
duration = "5s"
"#;
const INTERVAL_S: f64 = 0.5;
const RISE: f64 = 2.0;
const FALL: f64 = 3.0;

/// What one round measured.
#[derive(Debug, Default)]
struct Round {
    passive_detect: f64,
    loaded_recover: f64,
    requests: usize,
    failed: usize,
    active_detect: f64,
    idle_recover: f64,
}

async fn round() -> Round {
    let a = BackendProcess::start("a", &[]).await;
    let mut b = BackendProcess::start("b", &[]).await;
    let c = BackendProcess::start("c", &[]).await;
    let backends = primaries(&[&a, &b, &c]);
    let mut r = Round::default();

    // Under load: 8 clients (6 GET, 2 PUT with a 2 KiB body).
    let running = common::start_proxy(&config("loaded", &backends, "", TABLES)).await;
    let events = Events::collect(&running, "loaded");
    let load = Load::start(common::proxy_addr(&running), 6, 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = b.kill().await;
    let out = events
        .wait(b.addr, killed, Duration::from_secs(10), "out", goes_out)
        .await;
    r.passive_detect = secs(killed, out.at);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = b.restart().await;
    let back = events
        .wait(
            b.addr,
            restarted,
            Duration::from_secs(10),
            "back",
            comes_back,
        )
        .await;
    r.loaded_recover = secs(restarted, back.at);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let records = load.stop().await;
    r.requests = records.len();
    r.failed = failures(&records).len();
    common::stop(running).await;

    // Without traffic.
    let running = common::start_proxy(&config("idle", &backends, "", TABLES)).await;
    let events = Events::collect(&running, "idle");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = b.kill().await;
    let out = events
        .wait(b.addr, killed, Duration::from_secs(10), "out", goes_out)
        .await;
    r.active_detect = secs(killed, out.at);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarted = b.restart().await;
    let back = events
        .wait(
            b.addr,
            restarted,
            Duration::from_secs(10),
            "back",
            comes_back,
        )
        .await;
    r.idle_recover = secs(restarted, back.at);
    common::stop(running).await;
    drop((a, c));
    r
}

fn stats(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[0], values[n / 2], values[n - 1])
}

fn ms(v: f64) -> String {
    format!("{:.0} ms", v * 1e3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measures for docs/operations.md; run by scripts/failover"]
async fn failover_figures() {
    let rounds: usize = std::env::var("FAILOVER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| (1..=100).contains(n))
        .unwrap_or(5);
    let mut all = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let r = round().await;
        eprintln!("round {}: {r:?}", i + 1);
        all.push(r);
    }
    let row = |name: &str, bound: &str, values: Vec<f64>| {
        let (min, median, max) = stats(values);
        println!(
            "| {name} | {bound} | {} | {} | {} |",
            ms(min),
            ms(median),
            ms(max)
        );
    };
    println!("=== failover figures ===");
    println!(
        "{rounds} rounds; 3 backend processes (1 ms latency), round-robin; health checks every \
         500 ms (timeout 250 ms, rise 2, fall 3); outlier detection and retries at their defaults; \
         load: 8 closed-loop clients (6 GET, 2 PUT of 2 KiB); {} build.",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!();
    println!("| figure | bound | min | median | max |");
    println!("| --- | --- | --- | --- | --- |");
    row(
        "time to detect a SIGKILL under load (passive)",
        "first failed requests",
        all.iter().map(|r| r.passive_detect).collect(),
    );
    row(
        "time to detect a SIGKILL without traffic (active)",
        &format!(
            "interval × unhealthy_threshold = {}, +10 % jitter",
            ms(INTERVAL_S * FALL)
        ),
        all.iter().map(|r| r.active_detect).collect(),
    );
    row(
        "time to recover after a restart, under load",
        &format!(
            "interval × healthy_threshold = {}, +10 % jitter",
            ms(INTERVAL_S * RISE)
        ),
        all.iter().map(|r| r.loaded_recover).collect(),
    );
    row(
        "time to recover after a restart, without traffic",
        &format!(
            "interval × healthy_threshold = {}, +10 % jitter",
            ms(INTERVAL_S * RISE)
        ),
        all.iter().map(|r| r.idle_recover).collect(),
    );
    let failed: usize = all.iter().map(|r| r.failed).sum();
    let requests: usize = all.iter().map(|r| r.requests).sum();
    println!(
        "| requests failed during a kill under load | 0 | {} | {} | {} |",
        all.iter().map(|r| r.failed).min().unwrap_or(0),
        {
            let mut f: Vec<usize> = all.iter().map(|r| r.failed).collect();
            f.sort_unstable();
            f[f.len() / 2]
        },
        all.iter().map(|r| r.failed).max().unwrap_or(0),
    );
    println!();
    println!("{failed} of {requests} requests failed over all rounds.");
    println!("=== end ===");
}
