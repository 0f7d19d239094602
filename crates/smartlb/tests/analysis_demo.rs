//! `smartlb demo` narrates the traffic analyser's decisions: while the `degrading` backend
//! slows down, the view's event list says that its latency was reported as an anomaly,
//! that its weight went down and why, and now and then how the forecast compares with
//! the actual rate. The lines come from the analyser of the running proxy, so this runs
//! the real binary through a short version of its story.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The demo's length: its story scales to it (`degrading` slows from 25% of the run to
/// about 300 ms at 80%), and the forecast is narrated every 10 s.
const DURATION: &str = "16s";

#[test]
fn the_demo_narrates_anomalies_weight_changes_and_the_forecast() {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_smartlb"))
        .args(["demo", "--duration", DURATION, "--plain"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start smartlb demo");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    // Bounded: a 16 s story; killed if it has not ended after a minute.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = reader.join().unwrap();
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");

    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    let find = |what: &str, matches: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .find(|l| matches(l))
            .copied()
            .unwrap_or_else(|| panic!("no {what} narrated:\n{stdout}"))
    };
    let anomaly = find("latency anomaly of degrading", &|l| {
        l.contains(" anomaly: degrading latency ")
    });
    assert!(anomaly.starts_with("t="), "{anomaly}");
    assert!(anomaly.contains("expected"), "{anomaly}");
    let weight = find("weight cut of degrading", &|l| {
        l.contains(" analysis: degrading loses share, weight ")
    });
    assert!(
        weight.contains("capacity ×"),
        "the weight change gives no reason: {weight}"
    );
    let forecast = find("forecast", &|l| l.contains(" forecast: "));
    assert!(forecast.contains("req/s next second"), "{forecast}");
    assert!(forecast.contains("actual"), "{forecast}");
    // Anomalies are narrated once: each line repeats only while it is among the last
    // events of successive frames, never with another time.
    let degrading_anomalies: std::collections::BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.contains(" anomaly: degrading latency "))
        .copied()
        .collect();
    assert_eq!(
        degrading_anomalies.len(),
        1,
        "the latency anomaly was narrated more than once: {degrading_anomalies:#?}"
    );
}
