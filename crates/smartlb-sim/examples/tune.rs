//! Runs the scenarios with `adaptive` variants, for tuning by measurement.
//!
//! `cargo run --release -p smartlb-sim --example tune -- [SCENARIOS] [SEEDS] [DURATION_S]`
//! with tuning from the environment: `EXP` (latency exponent), `DECAY_MS`
//! (adaptive's latency decay), `CONTROLLER` (0/1), `LOADEXP` (load exponent),
//! `CHOICES` (candidates per pick), `ALGOS` (comma list).

use std::time::Duration;

use smartlb_balance::Algorithm;
use smartlb_sim::{ScenarioName, SimOptions, average, render_table, run_matrix};

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenarios: Vec<_> = match args.first().map(String::as_str) {
        None | Some("all") => ScenarioName::ALL.iter().map(|s| s.build()).collect(),
        Some(list) => list
            .split(',')
            .map(|s| s.parse::<ScenarioName>().map(|n| n.build()))
            .collect::<Result<_, _>>()?,
    };
    let seeds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let mut options = SimOptions {
        timeline: std::env::var("VERBOSE").is_ok(),
        ..SimOptions::default()
    };
    if let Some(d) = args.get(2).and_then(|s| s.parse::<u64>().ok()) {
        options.duration = Some(Duration::from_secs(d));
    }
    if let Some(e) = env_f64("EXP") {
        options.adaptive.latency_exponent = e;
    }
    if let Some(d) = env_f64("DECAY_MS") {
        options.adaptive.latency_decay = Duration::from_millis(d as u64);
    }
    if let Some(c) = env_f64("CONTROLLER") {
        options.adaptive.controller = c != 0.0;
    }
    if let Some(g) = env_f64("GAIN") {
        options.adaptive.weights.gain = g;
    }
    if let Some(t) = env_f64("TOL") {
        options.adaptive.weights.tolerance = t;
    }
    if let Some(m) = env_f64("MINF") {
        options.adaptive.weights.min_factor = m;
    }
    if let Some(q) = env_f64("LOADEXP") {
        options.adaptive.load_exponent = q;
    }
    if let Some(k) = env_f64("CHOICES") {
        options.adaptive.choices = k as usize;
    }
    if let Some(p) = env_f64("PROBE") {
        options.adaptive.probe_share = (p, p * 10.0);
    }
    let algorithms: Vec<Algorithm> = match std::env::var("ALGOS") {
        Ok(list) => list
            .split(',')
            .map(|a| a.parse::<Algorithm>())
            .collect::<Result<_, _>>()?,
        Err(_) => smartlb_sim::DEFAULT_ALGORITHMS.to_vec(),
    };
    let seeds: Vec<u64> = (1..=seeds).collect();
    let started = std::time::Instant::now();
    let reports = run_matrix(&scenarios, &algorithms, &seeds, &options)?;
    eprintln!("{} runs in {:.1?}", reports.len(), started.elapsed());
    print!("{}", render_table(&average(&reports)));
    // Stall recovery over every seed: mean and share within 2 s weighted by
    // the stalls judged, the longest of all.
    for algorithm in &algorithms {
        let (mut stalls, mut mean, mut within, mut max) = (0usize, 0.0, 0.0, 0.0f64);
        for r in reports.iter().filter(|r| r.algorithm == algorithm.as_str()) {
            if let Some(s) = &r.stall_recovery {
                stalls += s.stalls;
                mean += s.mean_s * s.stalls as f64;
                within += s.within_2s * s.stalls as f64;
                max = max.max(s.max_s);
            }
        }
        if stalls > 0 {
            println!(
                "stall recovery {}: {stalls} stalls, mean {:.2} s, {:.1} % within 2 s, longest {:.1} s",
                algorithm.as_str(),
                mean / stalls as f64,
                within * 100.0 / stalls as f64,
                max
            );
        }
    }
    if std::env::var("VERBOSE").is_ok() {
        for r in &reports {
            println!("{} {} seed {}", r.scenario, r.algorithm, r.seed);
            for b in &r.backends {
                println!(
                    "  {} speed {:.2} share {:.3} util {:.3} errors {} ejections {}",
                    b.backend, b.speed, b.share, b.utilisation, b.errors, b.ejections
                );
            }
            if let Some(last) = r.timeline.last() {
                println!("  final weights {:?}", last.weights);
            }
            println!("  anomalies {:?}", r.anomalies.by_kind);
        }
    }
    Ok(())
}
