//! smartlb's traffic simulator: the real balancing and analysis code run in
//! virtual time against modelled backends, seeded and deterministic.
//!
//! Comparing load-balancing algorithms on real machines is slow and noisy;
//! comparing them in a model is fast and repeatable, provided the model runs
//! the code that ships. This crate is a discrete-event simulation in the
//! style of the classic queueing-network simulators: an event queue ordered
//! by virtual time drives
//!
//! * **open-loop arrivals**: a Poisson process whose rate may follow a
//!   daily-like sine and surge. Requests are sent at their scheduled time
//!   whatever the state of the system, and latency is measured from that
//!   time, so queueing shows in the numbers (no coordinated omission);
//! * **modelled backends** ([`BackendModel`]): `workers` requests served at
//!   once with log-normal service times divided by a speed, an accept queue,
//!   503 when it is full; and **faults** ([`Fault`]): crashes, slow
//!   degradation, garbage-collection-like stalls, capacity redrawn by a
//!   noisy neighbour;
//! * **the proxy's side**, from the real crates: every pick is made by a
//!   `smartlb-balance` selector over the live endpoint state (weights,
//!   health, requests in flight from `smartlb-traffic`'s `BackendStats`,
//!   `PeakEwma` latency); every exchange is recorded in `BackendStats`; each
//!   simulated second `UpstreamSeries::tick` and the
//!   [`Analyzer`](smartlb_traffic::analysis::Analyzer) (forecast, anomalies,
//!   weight controller) run, and `adaptive` uses the weights it sets.
//!   Health is `smartlb-health`'s `BackendHealth` state machine, as in the
//!   proxy (outlier ejection with its shared budget, active checks, slow
//!   start), with the configuration defaults; it and retries (once, on
//!   another backend, within a 20 % budget) are the same for every
//!   algorithm.
//!
//! Every random draw comes from generators seeded from the run's seed, and
//! the arrivals and service demands come from their own stream, so all
//! algorithms face the same requests: the same seed gives the same numbers.
//!
//! The named scenarios of SPEC section 7 are [`ScenarioName`]s;
//! [`run`] returns a [`SimReport`] (p50/p99/p99.9 latency, error rate, how
//! evenly backends were used, stall recovery, anomalies, a per-second
//! timeline), and [`render_table`], [`render_json`] and [`render_html`]
//! present a set of reports.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smartlb_balance::Algorithm;
//! use smartlb_sim::{ScenarioName, SimOptions, run};
//!
//! let scenario = ScenarioName::Heterogeneous.build();
//! let options = SimOptions {
//!     duration: Some(Duration::from_secs(3)),
//!     warmup: Duration::from_secs(1),
//!     ..SimOptions::default()
//! };
//! let a = run(&scenario, Algorithm::Adaptive, 7, &options)?;
//! let b = run(&scenario, Algorithm::Adaptive, 7, &options)?;
//! assert_eq!(a, b); // deterministic
//! assert!(a.requests > 1000);
//! assert!(a.p50_ms > 0.0 && a.p50_ms <= a.p99_ms);
//! println!("{}", smartlb_sim::render_table(&[a]));
//! # Ok::<(), smartlb_sim::SimError>(())
//! ```

pub mod cli;
mod engine;
mod report;
mod scenario;

pub use engine::{AdaptiveTuning, SimError, SimOptions, run};
pub use report::{
    AnomalySummary, BackendReport, SimReport, StallRecovery, TimelinePoint, render_html,
    render_json, render_table,
};
pub use scenario::{
    Arrivals, BackendModel, Fault, Scenario, ScenarioName, ServiceTime, UnknownScenario,
};

/// The algorithms compared by default: round-robin, least-requests,
/// p2c-ewma and adaptive.
pub const DEFAULT_ALGORITHMS: [smartlb_balance::Algorithm; 4] = [
    smartlb_balance::Algorithm::RoundRobin,
    smartlb_balance::Algorithm::LeastRequests,
    smartlb_balance::Algorithm::P2cEwma,
    smartlb_balance::Algorithm::Adaptive,
];

/// Runs every scenario with every algorithm for each seed, in that order.
///
/// # Errors
///
/// The first run that fails (see [`run`]).
pub fn run_matrix(
    scenarios: &[Scenario],
    algorithms: &[smartlb_balance::Algorithm],
    seeds: &[u64],
    options: &SimOptions,
) -> Result<Vec<SimReport>, SimError> {
    let mut out = Vec::with_capacity(scenarios.len() * algorithms.len() * seeds.len());
    for scenario in scenarios {
        for &algorithm in algorithms {
            for &seed in seeds {
                out.push(run(scenario, algorithm, seed, options)?);
            }
        }
    }
    Ok(out)
}

/// Averages reports of the same scenario and algorithm over their seeds:
/// latencies, error rate, utilisation spread and stall recovery are the
/// means of the per-seed figures; counts are summed; the timeline and
/// per-backend figures are the first seed's. The seed of an average is the
/// first seed. Order follows the first appearance of each pair.
pub fn average(reports: &[SimReport]) -> Vec<SimReport> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in reports {
        let k = (r.scenario.as_str(), r.algorithm.as_str());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .filter_map(|(s, a)| {
            let group: Vec<&SimReport> = reports
                .iter()
                .filter(|r| r.scenario == s && r.algorithm == a)
                .collect();
            let first = (*group.first()?).clone();
            let n = group.len() as f64;
            let mean = |f: &dyn Fn(&SimReport) -> f64| group.iter().map(|r| f(r)).sum::<f64>() / n;
            let stalls: Vec<StallRecovery> =
                group.iter().filter_map(|r| r.stall_recovery).collect();
            let stall_recovery = (!stalls.is_empty()).then(|| {
                let m = stalls.len() as f64;
                StallRecovery {
                    stalls: stalls.iter().map(|s| s.stalls).sum(),
                    mean_s: stalls.iter().map(|s| s.mean_s).sum::<f64>() / m,
                    p90_s: stalls.iter().map(|s| s.p90_s).sum::<f64>() / m,
                    max_s: stalls.iter().map(|s| s.max_s).fold(0.0, f64::max),
                    within_2s: stalls.iter().map(|s| s.within_2s).sum::<f64>() / m,
                }
            });
            Some(SimReport {
                requests: group.iter().map(|r| r.requests).sum(),
                errors: group.iter().map(|r| r.errors).sum(),
                retries: group.iter().map(|r| r.retries).sum(),
                error_rate: mean(&|r| r.error_rate),
                p50_ms: mean(&|r| r.p50_ms),
                p99_ms: mean(&|r| r.p99_ms),
                p999_ms: mean(&|r| r.p999_ms),
                mean_ms: mean(&|r| r.mean_ms),
                max_over_mean_utilisation: mean(&|r| r.max_over_mean_utilisation),
                stall_recovery,
                ..first
            })
        })
        .collect()
}
