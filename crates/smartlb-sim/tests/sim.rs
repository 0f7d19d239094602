//! The simulator end to end: determinism, every scenario with every default
//! algorithm, the JSON shape and the HTML report.

use std::time::Duration;

use smartlb_balance::Algorithm;
use smartlb_sim::cli::{SimulateArgs, simulate};
use smartlb_sim::{
    DEFAULT_ALGORITHMS, Scenario, ScenarioName, SimOptions, average, render_html, render_json,
    render_table, run,
};

/// The scenario with an eighth of its traffic and one worker per backend
/// (same utilisation), so that debug builds run it quickly.
fn small(name: ScenarioName) -> Scenario {
    let mut s = name.build();
    for b in &mut s.backends {
        b.workers = 1;
    }
    s.arrivals.rps /= 8.0;
    s
}

fn options(secs: u64) -> SimOptions {
    SimOptions {
        duration: Some(Duration::from_secs(secs)),
        warmup: Duration::from_secs(2),
        ..SimOptions::default()
    }
}

#[test]
fn same_seed_same_numbers() {
    let s = small(ScenarioName::Stalls);
    for algorithm in [Algorithm::Adaptive, Algorithm::P2cEwma] {
        let a = run(&s, algorithm, 42, &options(40)).unwrap();
        let b = run(&s, algorithm, 42, &options(40)).unwrap();
        assert_eq!(a, b, "{algorithm}");
        assert_eq!(render_json(std::slice::from_ref(&a)), render_json(&[b]));
        let c = run(&s, algorithm, 43, &options(40)).unwrap();
        assert_ne!(a.requests, c.requests, "another seed, other arrivals");
    }
}

#[test]
fn every_scenario_runs_with_every_default_algorithm() {
    for name in ScenarioName::ALL {
        let s = small(name);
        let secs = if name == ScenarioName::CrashRecover {
            170
        } else {
            30
        };
        for algorithm in DEFAULT_ALGORITHMS {
            let r = run(&s, algorithm, 1, &options(secs)).unwrap();
            let what = format!("{name} {algorithm}: {r:?}");
            assert!(r.requests > 1000, "{what}");
            assert!(r.p50_ms > 0.0, "{what}");
            assert!(r.p50_ms <= r.p99_ms && r.p99_ms <= r.p999_ms, "{what}");
            assert!((0.0..=1.0).contains(&r.error_rate), "{what}");
            assert!(r.max_over_mean_utilisation >= 1.0 - 1e-9, "{what}");
            assert_eq!(r.backends.len(), 6);
            let shares: f64 = r.backends.iter().map(|b| b.share).sum();
            assert!((shares - 1.0).abs() < 1e-9, "{what}");
            assert_eq!(r.timeline.len(), secs as usize);
            if name == ScenarioName::Stalls {
                assert!(r.stall_recovery.is_some_and(|s| s.stalls > 0), "{what}");
            }
            if name == ScenarioName::CrashRecover {
                // The crash was seen: attempts on backend 2 failed.
                assert!(r.backends[2].errors > 0, "{what}");
            }
        }
    }
}

#[test]
fn json_has_the_documented_fields() {
    let s = small(ScenarioName::Heterogeneous);
    let reports: Vec<_> = [Algorithm::RoundRobin, Algorithm::Adaptive]
        .into_iter()
        .map(|a| run(&s, a, 3, &options(10)).unwrap())
        .collect();
    let json: serde_json::Value = serde_json::from_str(&render_json(&reports)).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert_eq!(row["scenario"], "heterogeneous");
        for key in [
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "error_rate",
            "max_over_mean_utilisation",
        ] {
            assert!(row[key].is_number(), "{key} in {row}");
        }
        assert!(row.get("timeline").is_none());
    }
    assert_eq!(rows[0]["algorithm"], "round-robin");
    assert_eq!(rows[1]["algorithm"], "adaptive");
    let table = render_table(&reports);
    assert!(table.contains("heterogeneous") && table.contains("adaptive"));
    let html = render_html(&reports);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg") && html.contains("share of attempts: adaptive"));
    assert!(!html.contains("<script src"), "self-contained");
}

#[test]
fn seeds_are_averaged() {
    let s = small(ScenarioName::Antagonist);
    let runs: Vec<_> = [5, 6]
        .into_iter()
        .map(|seed| run(&s, Algorithm::LeastRequests, seed, &options(10)).unwrap())
        .collect();
    let avg = average(&runs);
    assert_eq!(avg.len(), 1);
    assert_eq!(avg[0].requests, runs[0].requests + runs[1].requests);
    assert!((avg[0].p99_ms - (runs[0].p99_ms + runs[1].p99_ms) / 2.0).abs() < 1e-9);
}

#[test]
fn the_command_writes_json_and_html() {
    let dir = std::env::temp_dir().join(format!("smartlb-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("report.html");
    let args = SimulateArgs {
        scenario: "surge".into(),
        algorithms: vec!["p2c-ewma".into(), "adaptive".into()],
        format: "json".into(),
        out: Some(out.clone()),
        duration: Some(Duration::from_secs(12)),
        ..SimulateArgs::default()
    };
    let output = simulate(&args).unwrap();
    let json: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(2));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("surge"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_scenarios_are_rejected() {
    let mut s = small(ScenarioName::Degrading);
    s.backends[0].speed = 0.0;
    assert!(run(&s, Algorithm::Adaptive, 1, &options(1)).is_err());
    let mut s = small(ScenarioName::Degrading);
    s.backends.clear();
    let e = run(&s, Algorithm::Adaptive, 1, &options(1)).unwrap_err();
    assert!(e.to_string().contains("at least one backend"));
}
