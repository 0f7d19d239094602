//! Failover with real backend processes on loopback (the hidden `smartlb demo-backend`
//! command): SIGKILL under load, detection by live traffic and by active checks, return
//! through slow start, health-check-only failures, black holes, the ejection cap, backups,
//! and the fast 503 when nothing can serve. Each transition is logged once.
//!
//! Timing bounds are generous (a loaded two-core machine); the measured values are
//! printed, and `scripts/failover` reports them properly.

mod common;
mod failover_common;

use std::time::Duration;

use failover_common::{
    BackendProcess, Events, Load, assert_logged_once, capture_logs, comes_back, config, failures,
    goes_out, primaries, secs, serial, shares, to,
};
use http::StatusCode;
use smartlb::clock::{self, Nanos};
use smartlb_health::HealthState;

/// Health checks of the tests: every 200 ms (± 10 % jitter).
const INTERVAL: f64 = 0.2;
/// Scheduling slack allowed on top of a computed bound.
const SLACK: f64 = 0.5;

/// Whether a bound of `n` check intervals (with jitter) plus slack holds.
fn within_checks(measured: f64, n: u32) -> bool {
    measured <= f64::from(n) * INTERVAL * 1.1 + SLACK
}

fn health_table(rise: u32, fall: u32, timeout_ms: u64) -> String {
    format!(
        r#"
[upstream.health]
path = "/health"
interval = "200ms"
timeout = "{timeout_ms}ms"
healthy_threshold = {rise}
unhealthy_threshold = {fall}
"#
    )
}

fn backend_health(
    running: &smartlb::Running,
    upstream: &str,
    addr: std::net::SocketAddr,
) -> std::sync::Arc<smartlb_health::BackendHealth> {
    let set = running
        .proxy()
        .upstream(upstream)
        .expect("upstream")
        .endpoints();
    set.endpoints()
        .iter()
        .find(|e| e.address() == addr.to_string())
        .expect("backend")
        .health()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_costs_nothing_and_the_backend_returns_through_slow_start() {
    let _serial = serial().await;
    capture_logs();
    let a = BackendProcess::start("a", &[]).await;
    let mut b = BackendProcess::start("b", &[]).await;
    let c = BackendProcess::start("c", &[]).await;
    let upstream = "kill";
    let tables = format!(
        r#"algorithm = "weighted-round-robin"
{}
[upstream.outlier]
consecutive_failures = 3

[upstream.slow_start]
duration = "3s"
"#,
        health_table(2, 2, 150)
    );
    let running =
        common::start_proxy(&config(upstream, &primaries(&[&a, &b, &c]), "", &tables)).await;
    let events = Events::collect(&running, upstream);
    // Six clients GET, two PUT a 2 KiB body (replayed when retried after sending).
    let load = Load::start(common::proxy_addr(&running), 6, 2);

    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed = b.kill().await;
    let out = events
        .wait(
            b.addr,
            killed,
            Duration::from_secs(5),
            "b taken out",
            goes_out,
        )
        .await;
    let detect = secs(killed, out.at);

    // The active checks see it down too; it stays down for 1.5 s.
    let health = backend_health(&running, upstream, b.addr);
    common::eventually(Duration::from_secs(3), "checks fail on b", || {
        health.is_check_failing()
    })
    .await;
    let down_for = Duration::from_millis(1500)
        .saturating_sub(Duration::from_nanos(clock::now().saturating_since(killed)));
    tokio::time::sleep(down_for).await;

    let restarted = b.restart().await;
    let back = events
        .wait(
            b.addr,
            restarted,
            Duration::from_secs(5),
            "b back",
            comes_back,
        )
        .await;
    let recover = secs(restarted, back.at);
    let ramp = Duration::from_secs(3);
    events
        .wait(
            b.addr,
            back.at,
            ramp + Duration::from_secs(2),
            "slow start complete",
            to(HealthState::Healthy),
        )
        .await;
    let records = load.stop().await;
    let lost = failures(&records);

    // The ramp, in thirds of the slow-start window.
    let third = Nanos(ramp.as_nanos() as u64 / 3);
    let window = |i: u64| {
        let from = back.at + Duration::from_nanos(third.0 * i);
        shares(&records, from, from + Duration::from_nanos(third.0))
    };
    let share = |(by, total): &(std::collections::BTreeMap<String, usize>, usize)| {
        by.get("b").copied().unwrap_or(0) as f64 / (*total).max(1) as f64
    };
    let (first, last) = (window(0), window(2));
    eprintln!(
        "kill under load: {} requests, {} failed; detected in {:.0} ms ({}); back {:.0} ms after \
         the restart ({}); share of b in the first third of the ramp {:.3} ({:?}), in the last \
         third {:.3} ({:?})",
        records.len(),
        lost.len(),
        detect * 1e3,
        out.transition,
        recover * 1e3,
        back.transition,
        share(&first),
        first,
        share(&last),
        last,
    );

    assert!(lost.is_empty(), "failed requests: {lost:#?}");
    assert!(records.len() > 300, "too little load: {}", records.len());
    assert!(detect <= 1.0, "passive detection took {detect:.3} s");
    assert!(
        out.transition.reason.contains("consecutive failures"),
        "{}",
        out.transition
    );
    assert!(
        within_checks(recover, 2),
        "back {recover:.3} s after the restart"
    );
    assert!(
        back.transition.reason.contains("passing health checks"),
        "{}",
        back.transition
    );
    assert_eq!(back.transition.to, HealthState::SlowStart);
    assert!(
        first.1 > 30 && last.1 > 30,
        "too few requests to measure shares: {first:?} {last:?}"
    );
    assert!(
        share(&first) < 0.2 && share(&last) > 0.2 && share(&last) > 2.0 * share(&first),
        "no ramp: first third {:.3}, last third {:.3}",
        share(&first),
        share(&last)
    );
    // Nobody else moved; b's story is logged once per transition.
    for other in [a.addr, c.addr] {
        assert!(events.of(other).is_empty(), "{:?}", events.of(other));
    }
    assert_logged_once(upstream, b.addr, &events.of(b.addr));
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_traffic_active_checks_take_a_killed_backend_out_and_back() {
    let _serial = serial().await;
    capture_logs();
    let a = BackendProcess::start("a", &[]).await;
    let mut b = BackendProcess::start("b", &[]).await;
    let c = BackendProcess::start("c", &[]).await;
    let upstream = "idle";
    let tables = format!(
        "{}\n[upstream.slow_start]\nduration = \"0s\"\n",
        health_table(2, 3, 150)
    );
    let running =
        common::start_proxy(&config(upstream, &primaries(&[&a, &b, &c]), "", &tables)).await;
    let events = Events::collect(&running, upstream);
    // Let a few checks pass first.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed = b.kill().await;
    let out = events
        .wait(
            b.addr,
            killed,
            Duration::from_secs(5),
            "b taken out",
            goes_out,
        )
        .await;
    let detect = secs(killed, out.at);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = b.restart().await;
    let back = events
        .wait(
            b.addr,
            restarted,
            Duration::from_secs(5),
            "b back",
            comes_back,
        )
        .await;
    let recover = secs(restarted, back.at);
    eprintln!(
        "no traffic: detected in {:.0} ms ({}); back {:.0} ms after the restart ({})",
        detect * 1e3,
        out.transition,
        recover * 1e3,
        back.transition
    );
    assert_eq!(
        out.transition.to_string(),
        "healthy -> unhealthy: 3 consecutive failing health checks"
    );
    assert!(within_checks(detect, 3), "detected after {detect:.3} s");
    assert_eq!(
        back.transition.to_string(),
        "unhealthy -> healthy: 2 consecutive passing health checks"
    );
    assert!(within_checks(recover, 2), "back after {recover:.3} s");
    let answer = common::get(&common::client(), common::proxy_addr(&running), "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_logged_once(upstream, b.addr, &events.of(b.addr));
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_failing_its_health_check_is_taken_out_while_still_serving() {
    let _serial = serial().await;
    capture_logs();
    let a = BackendProcess::start("a", &[]).await;
    let mut b = BackendProcess::start("b", &[]).await;
    let upstream = "hc";
    let tables = format!(
        "algorithm = \"round-robin\"\n{}\n[upstream.slow_start]\nduration = \"0s\"\n",
        health_table(2, 2, 150)
    );
    let running = common::start_proxy(&config(upstream, &primaries(&[&a, &b]), "", &tables)).await;
    let events = Events::collect(&running, upstream);
    let load = Load::start_paced(common::proxy_addr(&running), 2, 0, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(400)).await;

    b.control("health-failing on").await;
    let failing = clock::now();
    let out = events
        .wait(b.addr, failing, Duration::from_secs(5), "b out", goes_out)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.control("health-failing off").await;
    let passing = clock::now();
    let back = events
        .wait(
            b.addr,
            passing,
            Duration::from_secs(5),
            "b back",
            comes_back,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = load.stop().await;

    let (while_out, total_out) = shares(&records, out.at + Duration::from_millis(50), passing);
    let (after, _) = shares(&records, back.at + Duration::from_millis(50), clock::now());
    eprintln!(
        "health failing: out after {:.0} ms, back after {:.0} ms; while out {while_out:?}",
        secs(failing, out.at) * 1e3,
        secs(passing, back.at) * 1e3
    );
    assert!(failures(&records).is_empty(), "{:#?}", failures(&records));
    assert_eq!(
        out.transition.to_string(),
        "healthy -> unhealthy: 2 consecutive failing health checks"
    );
    assert!(within_checks(secs(failing, out.at), 2));
    assert!(total_out > 20, "too little load while b was out");
    assert_eq!(while_out.get("b"), None, "b got traffic while out");
    assert!(after.contains_key("b"), "b got no traffic once back");
    assert_logged_once(upstream, b.addr, &events.of(b.addr));
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_backend_is_detected_through_timeouts() {
    let _serial = serial().await;
    capture_logs();
    let a = BackendProcess::start("a", &[]).await;
    let mut b = BackendProcess::start("b", &[]).await;
    let c = BackendProcess::start("c", &[]).await;
    let backends = primaries(&[&a, &b, &c]);

    // Under load, without active checks: request timeouts eject it, and the timed-out
    // GETs are retried elsewhere.
    let upstream = "hole";
    let tables = "algorithm = \"round-robin\"\n\n[upstream.outlier]\nconsecutive_failures = 3\n";
    let server = "request_timeout = \"300ms\"";
    let running = common::start_proxy(&config(upstream, &backends, server, tables)).await;
    let events = Events::collect(&running, upstream);
    let load = Load::start(common::proxy_addr(&running), 8, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.control("blackhole on").await;
    let holed = clock::now();
    let out = events
        .wait(b.addr, holed, Duration::from_secs(5), "b out", goes_out)
        .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let records = load.stop().await;
    let slowest = records
        .iter()
        .map(|r| secs(r.sent, r.at))
        .fold(0.0f64, f64::max);
    eprintln!(
        "black hole under load: ejected after {:.0} ms ({}); {} requests, {} failed, slowest \
         {:.0} ms",
        secs(holed, out.at) * 1e3,
        out.transition,
        records.len(),
        failures(&records).len(),
        slowest * 1e3
    );
    assert!(
        out.transition.reason.contains("(last: timeout)"),
        "{}",
        out.transition
    );
    assert!(failures(&records).is_empty(), "{:#?}", failures(&records));
    assert_logged_once(upstream, b.addr, &events.of(b.addr));
    common::stop(running).await;

    // Without traffic: the active checks time out.
    let upstream = "hole-idle";
    let running =
        common::start_proxy(&config(upstream, &backends, "", &health_table(2, 2, 100))).await;
    let events = Events::collect(&running, upstream);
    let started = clock::now();
    let out = events
        .wait(b.addr, started, Duration::from_secs(5), "b out", goes_out)
        .await;
    eprintln!(
        "black hole without traffic: out after {:.0} ms",
        secs(started, out.at) * 1e3
    );
    assert_eq!(
        out.transition.to_string(),
        "healthy -> unhealthy: 2 consecutive failing health checks"
    );
    b.control("blackhole off").await;
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_half_the_backends_failing_the_ejection_cap_holds() {
    let _serial = serial().await;
    let a = BackendProcess::start("a", &[]).await;
    let b = BackendProcess::start("b", &[]).await;
    let c = BackendProcess::start("c", &["--error-rate", "1"]).await;
    let d = BackendProcess::start("d", &["--error-rate", "1"]).await;
    let upstream = "cap";
    // 25 % of four backends: one at a time.
    let tables = r#"algorithm = "round-robin"

[upstream.outlier]
consecutive_failures = 3
base_ejection_time = "500ms"
max_ejection_percent = 25
"#;
    let running =
        common::start_proxy(&config(upstream, &primaries(&[&a, &b, &c, &d]), "", tables)).await;
    let events = Events::collect(&running, upstream);
    let load = Load::start(common::proxy_addr(&running), 8, 0);
    let set = running
        .proxy()
        .upstream(upstream)
        .expect("upstream")
        .endpoints();
    let mut most = 0;
    let mut samples = 0;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let now = clock::now();
        let ejected = set
            .endpoints()
            .iter()
            .filter(|e| e.state(now) == HealthState::Ejected)
            .count();
        most = most.max(ejected);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let records = load.stop().await;
    let ejections: Vec<_> = events
        .all()
        .into_iter()
        .filter(|e| e.transition.to == HealthState::Ejected)
        .collect();
    let suppressed: u64 = set
        .endpoints()
        .iter()
        .map(|e| e.health().ejections_suppressed())
        .sum();
    eprintln!(
        "ejection cap: at most {most} ejected over {samples} samples; {} ejections, {suppressed} \
         held back; {} requests, {} answered 5xx",
        ejections.len(),
        records.len(),
        failures(&records).len()
    );
    assert_eq!(most, 1, "the cap of one ejection did not hold");
    assert!(!ejections.is_empty());
    assert!(suppressed > 0, "the cap never held an ejection back");
    let failing = [c.addr.to_string(), d.addr.to_string()];
    assert!(
        ejections
            .iter()
            .all(|e| failing.contains(&e.backend.to_string())),
        "{ejections:#?}"
    );
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_take_over_when_every_primary_is_down_and_step_back() {
    let _serial = serial().await;
    capture_logs();
    let mut p1 = BackendProcess::start("p1", &[]).await;
    let mut p2 = BackendProcess::start("p2", &[]).await;
    let bk = BackendProcess::start("bk", &[]).await;
    let upstream = "backup";
    let tables = format!(
        "{}\n[upstream.slow_start]\nduration = \"0s\"\n",
        health_table(2, 2, 150)
    );
    let backends = [(p1.addr, false), (p2.addr, false), (bk.addr, true)];
    let running = common::start_proxy(&config(upstream, &backends, "", &tables)).await;
    let events = Events::collect(&running, upstream);
    let load = Load::start_paced(common::proxy_addr(&running), 2, 0, Duration::from_millis(2));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let killed = p1.kill().await;
    p2.kill().await;
    let out1 = events
        .wait(p1.addr, killed, Duration::from_secs(5), "p1 out", goes_out)
        .await;
    let out2 = events
        .wait(p2.addr, killed, Duration::from_secs(5), "p2 out", goes_out)
        .await;
    let switched = out1.at.max(out2.at);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = p1.restart().await;
    let back = events
        .wait(
            p1.addr,
            restarted,
            Duration::from_secs(5),
            "p1 back",
            comes_back,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let records = load.stop().await;

    let (before, _) = shares(&records, Nanos::ZERO, killed);
    let (on_backup, n_backup) = shares(&records, switched + Duration::from_millis(50), restarted);
    let (stepped_back, n_back) =
        shares(&records, back.at + Duration::from_millis(50), clock::now());
    let lost = failures(&records);
    eprintln!(
        "backups: primaries out {:.0} ms after the kill; p1 back {:.0} ms after its restart; \
         before {before:?}, on backup {on_backup:?}, after {stepped_back:?}; {} failed (all \
         while the primaries were being detected)",
        secs(killed, switched) * 1e3,
        secs(restarted, back.at) * 1e3,
        lost.len()
    );
    assert_eq!(
        before.get("bk"),
        None,
        "the backup served while primaries were up"
    );
    assert!(
        n_backup > 20 && on_backup.get("bk") == Some(&n_backup),
        "{on_backup:?}"
    );
    assert!(
        n_back > 20 && stepped_back.get("p1") == Some(&n_back),
        "{stepped_back:?}"
    );
    // Requests may fail only while the dead primaries were being detected.
    assert!(
        lost.iter()
            .all(|r| r.at >= killed && r.at <= switched + Duration::from_millis(50)),
        "{lost:#?}"
    );
    assert!(events.of(bk.addr).is_empty(), "{:?}", events.of(bk.addr));
    assert_logged_once(upstream, p1.addr, &events.of(p1.addr));
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_down_or_draining_answers_503_at_once() {
    let _serial = serial().await;
    let mut a = BackendProcess::start("a", &[]).await;
    let mut b = BackendProcess::start("b", &[]).await;
    let upstream = "down";
    let tables = format!(
        "{}\n[upstream.slow_start]\nduration = \"0s\"\n",
        health_table(1, 2, 150)
    );
    let running = common::start_proxy(&config(upstream, &primaries(&[&a, &b]), "", &tables)).await;
    let events = Events::collect(&running, upstream);
    let proxy = common::proxy_addr(&running);
    let client = common::client();

    let check_503 = |what: &'static str| {
        let client = client.clone();
        async move {
            let mut slowest = Duration::ZERO;
            for _ in 0..5 {
                let started = tokio::time::Instant::now();
                let answer = common::get(&client, proxy, "/").await;
                slowest = slowest.max(started.elapsed());
                assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{what}");
                assert_eq!(answer.header("x-smartlb-error"), "no-healthy-backend");
                assert_eq!(answer.header("retry-after"), "1");
            }
            eprintln!("{what}: slowest 503 of 5 in {slowest:?}");
            assert!(slowest < Duration::from_millis(100), "{what}: {slowest:?}");
        }
    };

    let killed = a.kill().await;
    b.kill().await;
    for addr in [a.addr, b.addr] {
        events
            .wait(addr, killed, Duration::from_secs(5), "down", goes_out)
            .await;
    }
    check_503("every backend down").await;

    let restarted = a.restart().await;
    b.restart().await;
    for addr in [a.addr, b.addr] {
        events
            .wait(addr, restarted, Duration::from_secs(5), "back", comes_back)
            .await;
    }
    assert_eq!(
        common::get(&client, proxy, "/").await.status,
        StatusCode::OK
    );

    let web = running
        .proxy()
        .upstream(upstream)
        .expect("upstream")
        .clone();
    for addr in [a.addr, b.addr] {
        assert_eq!(web.set_draining(&addr.to_string(), true), Some(true));
    }
    assert_eq!(web.set_draining("127.0.0.1:1", true), None);
    check_503("every backend draining").await;
    for addr in [a.addr, b.addr] {
        assert_eq!(web.set_draining(&addr.to_string(), false), Some(true));
    }
    assert_eq!(
        common::get(&client, proxy, "/").await.status,
        StatusCode::OK
    );
    let drained = events.of(a.addr);
    let n = drained.len();
    assert!(n >= 2, "{drained:?}");
    assert_eq!(
        drained[n - 2].transition.to_string(),
        "healthy -> draining: drain requested"
    );
    assert_eq!(
        drained[n - 1].transition.to_string(),
        "draining -> healthy: drain cancelled"
    );
    common::stop(running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_ejections_and_slow_start_as_they_happen() {
    let _serial = serial().await;
    let output = tokio::process::Command::new(failover_common::BIN)
        .args(["demo", "--duration", "9s", "--plain"])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the demo ends within 60 s")
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("flaky: healthy → ejected (") && stdout.contains("consecutive failures"),
        "no ejection shown:\n{stdout}"
    );
    assert!(
        stdout.contains("→ slow-start ("),
        "no return through slow start shown:\n{stdout}"
    );
}
