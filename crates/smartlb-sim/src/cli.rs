//! What `smartlb simulate` does, so that the binary only parses flags.

use std::path::PathBuf;
use std::time::Duration;

use smartlb_balance::Algorithm;

use crate::engine::{SimOptions, run};
use crate::report::{SimReport, render_html, render_json, render_table};
use crate::scenario::{Scenario, ScenarioName};
use crate::{DEFAULT_ALGORITHMS, average};

/// The arguments of `smartlb simulate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulateArgs {
    /// A scenario name or `all`.
    pub scenario: String,
    /// Algorithm names; empty for the default four.
    pub algorithms: Vec<String>,
    /// The (first) seed.
    pub seed: u64,
    /// How many seeds, from `seed` on, to average over (at least 1).
    pub seeds: u64,
    /// `table` or `json`.
    pub format: String,
    /// Where to write the HTML report, if anywhere.
    pub out: Option<PathBuf>,
    /// Run each scenario this long instead of its own duration.
    pub duration: Option<Duration>,
}

impl Default for SimulateArgs {
    fn default() -> Self {
        SimulateArgs {
            scenario: "all".into(),
            algorithms: Vec::new(),
            seed: 1,
            seeds: 1,
            format: "table".into(),
            out: None,
            duration: None,
        }
    }
}

/// Why `simulate` failed.
#[derive(Debug)]
pub enum SimulateError {
    /// Bad arguments (exit code 2).
    Usage(String),
    /// A run or writing the report failed (exit code 1).
    Failed(String),
}

impl SimulateError {
    /// The process exit code: 2 for bad usage, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            SimulateError::Usage(_) => 2,
            SimulateError::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for SimulateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimulateError::Usage(m) | SimulateError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for SimulateError {}

/// What `simulate` produced: the text for standard output and the reports.
#[derive(Clone, Debug)]
pub struct SimulateOutput {
    /// The table or the JSON.
    pub stdout: String,
    /// The (seed-averaged) reports, in table order.
    pub reports: Vec<SimReport>,
}

/// Runs `smartlb simulate`: every selected scenario with every selected
/// algorithm for each seed, averaged over the seeds; renders the table or
/// the JSON, and writes the HTML report to `out` when asked.
///
/// # Errors
///
/// [`SimulateError::Usage`] for an unknown scenario, algorithm or format,
/// or zero seeds; [`SimulateError::Failed`] when the report cannot be
/// written.
pub fn simulate(args: &SimulateArgs) -> Result<SimulateOutput, SimulateError> {
    let scenarios: Vec<Scenario> = if args.scenario == "all" {
        ScenarioName::ALL.iter().map(|s| s.build()).collect()
    } else {
        let name: ScenarioName = args
            .scenario
            .parse()
            .map_err(|e: crate::UnknownScenario| SimulateError::Usage(e.to_string()))?;
        vec![name.build()]
    };
    let algorithms: Vec<Algorithm> = if args.algorithms.is_empty() {
        DEFAULT_ALGORITHMS.to_vec()
    } else {
        args.algorithms
            .iter()
            .map(|a| a.trim().parse::<Algorithm>())
            .collect::<Result<_, _>>()
            .map_err(|e| SimulateError::Usage(e.to_string()))?
    };
    let json = match args.format.as_str() {
        "table" => false,
        "json" => true,
        other => {
            return Err(SimulateError::Usage(format!(
                "unknown format {other:?}; valid formats are: table, json"
            )));
        }
    };
    if args.seeds == 0 || args.seeds > 1000 {
        return Err(SimulateError::Usage("--seeds must be in 1..=1000".into()));
    }
    let options = SimOptions {
        duration: args.duration,
        timeline: args.out.is_some(),
        ..SimOptions::default()
    };
    let seeds: Vec<u64> = (0..args.seeds).map(|k| args.seed.wrapping_add(k)).collect();
    let mut all = Vec::new();
    for scenario in &scenarios {
        for &algorithm in &algorithms {
            for &seed in &seeds {
                all.push(
                    run(scenario, algorithm, seed, &options)
                        .map_err(|e| SimulateError::Usage(e.to_string()))?,
                );
            }
        }
    }
    let reports = average(&all);
    if let Some(path) = &args.out {
        std::fs::write(path, render_html(&reports))
            .map_err(|e| SimulateError::Failed(format!("cannot write {}: {e}", path.display())))?;
    }
    let stdout = if json {
        let mut s = render_json(&reports);
        s.push('\n');
        s
    } else {
        let mut s = render_table(&reports);
        if args.seeds > 1 {
            s.push_str(&format!(
                "\n(means over seeds {}..={})\n",
                args.seed,
                args.seed.wrapping_add(args.seeds - 1)
            ));
        }
        s
    };
    Ok(SimulateOutput { stdout, reports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_are_usage_errors() {
        let bad = |f: fn(&mut SimulateArgs)| {
            let mut a = SimulateArgs::default();
            f(&mut a);
            let e = simulate(&a).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
            e.to_string()
        };
        assert!(bad(|a| a.scenario = "nope".into()).contains("unknown scenario"));
        assert!(bad(|a| a.algorithms = vec!["fastest".into()]).contains("unknown algorithm"));
        assert!(bad(|a| a.format = "xml".into()).contains("unknown format"));
        assert!(bad(|a| a.seeds = 0).contains("--seeds"));
    }
}
