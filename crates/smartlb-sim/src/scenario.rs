//! Scenarios: modelled backends, arrivals and faults.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

/// A backend's service-time distribution at speed 1: log-normal with the
/// given mean and coefficient of variation (standard deviation / mean).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ServiceTime {
    /// Mean service time, ms.
    pub mean_ms: f64,
    /// Coefficient of variation (0 = constant).
    pub cv: f64,
}

/// One modelled backend: `workers` requests served at once, each taking a
/// service time divided by the current speed; up to `max_queue` more wait
/// in its accept queue, and beyond that it answers 503 at once.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BackendModel {
    /// Requests served concurrently.
    pub workers: u32,
    /// Service time at speed 1.
    pub service: ServiceTime,
    /// Speed factor (2 = twice as fast).
    pub speed: f64,
    /// Requests that may wait beyond the busy workers.
    pub max_queue: u32,
    /// Configured weight.
    pub weight: f64,
}

impl BackendModel {
    /// Requests per second the backend sustains at its speed.
    pub fn capacity_rps(&self) -> f64 {
        f64::from(self.workers) * self.speed * 1000.0 / self.service.mean_ms
    }
}

/// A fault or change of capacity over time.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    /// The backend is down (connections refused, in-flight requests reset)
    /// from `at_s` to `until_s`.
    Crash {
        /// Backend index.
        backend: usize,
        /// Start, seconds.
        at_s: f64,
        /// End, seconds.
        until_s: f64,
    },
    /// The backend's speed moves linearly from its own to `speed × factor`
    /// between `from_s` and `to_s`, then stays.
    Degrade {
        /// Backend index.
        backend: usize,
        /// Start, seconds.
        from_s: f64,
        /// End, seconds.
        to_s: f64,
        /// Speed multiplier reached at `to_s`.
        factor: f64,
    },
    /// Every backend in `backends` pauses (a garbage-collection-like stall:
    /// nothing progresses, requests wait) for a duration drawn uniformly in
    /// `min_ms..max_ms`, at exponentially distributed intervals of mean
    /// `mean_interval_s`.
    Stalls {
        /// Backend indices.
        backends: Vec<usize>,
        /// Mean time between two stalls of one backend, seconds.
        mean_interval_s: f64,
        /// Shortest stall, ms.
        min_ms: f64,
        /// Longest stall, ms.
        max_ms: f64,
    },
    /// Every backend in `backends` has its speed redrawn uniformly in
    /// `low..high` (times its own) every `every_min_ms..every_max_ms`: a
    /// noisy neighbour takes and gives back capacity.
    Antagonist {
        /// Backend indices.
        backends: Vec<usize>,
        /// Shortest interval between redraws, ms.
        every_min_ms: f64,
        /// Longest interval between redraws, ms.
        every_max_ms: f64,
        /// Lowest speed multiplier.
        low: f64,
        /// Highest speed multiplier.
        high: f64,
    },
}

/// The open-loop arrival process: Poisson with a rate that may follow a
/// daily-like sine and jump in a surge.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Arrivals {
    /// Mean rate, requests/s.
    pub rps: f64,
    /// Relative amplitude of the sine (0.3 = ±30 %), 0 for none.
    pub diurnal_amplitude: f64,
    /// Period of the sine, seconds.
    pub diurnal_period_s: f64,
    /// A surge: `(start s, duration s, multiplier)`.
    pub surge: Option<(f64, f64, f64)>,
}

impl Arrivals {
    /// The rate at `t` seconds.
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut r = self.rps;
        if self.diurnal_amplitude != 0.0 && self.diurnal_period_s > 0.0 {
            let phase = 2.0 * std::f64::consts::PI * t / self.diurnal_period_s;
            r *= 1.0 + self.diurnal_amplitude * phase.sin();
        }
        if let Some((start, len, factor)) = self.surge
            && t >= start
            && t < start + len
        {
            r *= factor;
        }
        r.max(0.0)
    }

    /// An upper bound of the rate over the run.
    pub fn max_rate(&self) -> f64 {
        let surge = self.surge.map_or(1.0, |(_, _, f)| f.max(1.0));
        self.rps * (1.0 + self.diurnal_amplitude.abs()) * surge
    }
}

/// The named scenarios of SPEC section 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioName {
    /// Backends of different speeds, equal configured weights.
    Heterogeneous,
    /// One backend slows down over minutes.
    Degrading,
    /// One backend crashes and comes back.
    CrashRecover,
    /// A daily-like pattern with a sudden surge.
    Surge,
    /// Short garbage-collection-like pauses on every backend.
    Stalls,
    /// Some backends' capacity redrawn every few hundred milliseconds.
    Antagonist,
}

impl ScenarioName {
    /// Every scenario, in documentation order.
    pub const ALL: [ScenarioName; 6] = [
        ScenarioName::Heterogeneous,
        ScenarioName::Degrading,
        ScenarioName::CrashRecover,
        ScenarioName::Surge,
        ScenarioName::Stalls,
        ScenarioName::Antagonist,
    ];

    /// The command-line name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ScenarioName::Heterogeneous => "heterogeneous",
            ScenarioName::Degrading => "degrading",
            ScenarioName::CrashRecover => "crash-recover",
            ScenarioName::Surge => "surge",
            ScenarioName::Stalls => "stalls",
            ScenarioName::Antagonist => "antagonist",
        }
    }

    /// The scenario itself.
    pub fn build(self) -> Scenario {
        Scenario::named(self)
    }
}

impl fmt::Display for ScenarioName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown scenario name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownScenario(pub String);

impl fmt::Display for UnknownScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown scenario {:?}; valid names are: ", self.0)?;
        let names: Vec<&str> = ScenarioName::ALL.iter().map(|s| s.as_str()).collect();
        write!(f, "{}, all", names.join(", "))
    }
}

impl std::error::Error for UnknownScenario {}

impl FromStr for ScenarioName {
    type Err = UnknownScenario;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScenarioName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| UnknownScenario(s.to_string()))
    }
}

/// Everything a run simulates: backends, arrivals, faults and length.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    /// The name (free text for custom scenarios).
    pub name: String,
    /// One line on what it shows.
    pub description: String,
    /// Simulated length.
    pub duration: Duration,
    /// The backends.
    pub backends: Vec<BackendModel>,
    /// The arrival process.
    pub arrivals: Arrivals,
    /// Faults and capacity changes.
    pub faults: Vec<Fault>,
    /// Seasonal period given to the analyser (`analysis.season`).
    pub season: Option<Duration>,
}

/// Mean service time of the modelled backends at speed 1, ms.
const SERVICE_MS: f64 = 10.0;
/// Coefficient of variation of the service time.
const SERVICE_CV: f64 = 1.0;
/// Workers per backend.
const WORKERS: u32 = 8;
/// Accept-queue length per backend.
const MAX_QUEUE: u32 = 512;

fn backend(speed: f64) -> BackendModel {
    BackendModel {
        workers: WORKERS,
        service: ServiceTime {
            mean_ms: SERVICE_MS,
            cv: SERVICE_CV,
        },
        speed,
        max_queue: MAX_QUEUE,
        weight: 1.0,
    }
}

impl Scenario {
    /// The named scenario. Six backends of 8 workers with log-normal service
    /// times (mean 10 ms at speed 1, coefficient of variation 1), so a
    /// speed-1 backend sustains 800 requests/s; arrivals are set to a
    /// utilisation of the total capacity given for each scenario.
    pub fn named(name: ScenarioName) -> Scenario {
        let secs = |s: u64| Duration::from_secs(s);
        match name {
            ScenarioName::Heterogeneous => {
                let backends: Vec<_> = [2.0, 1.5, 1.0, 1.0, 0.5, 0.5]
                    .into_iter()
                    .map(backend)
                    .collect();
                Scenario::at_utilisation(
                    "heterogeneous",
                    "six backends of speeds 2, 1.5, 1, 1, 0.5, 0.5 with equal configured weights; ρ = 0.85",
                    secs(300),
                    backends,
                    0.85,
                    Vec::new(),
                )
            }
            ScenarioName::Degrading => Scenario::at_utilisation(
                "degrading",
                "six equal backends; backend 0 slows to 40% of its speed between 60 s and 240 s; ρ = 0.85 of the initial capacity",
                secs(300),
                vec![backend(1.0); 6],
                0.85,
                vec![Fault::Degrade {
                    backend: 0,
                    from_s: 60.0,
                    to_s: 240.0,
                    factor: 0.4,
                }],
            ),
            ScenarioName::CrashRecover => Scenario::at_utilisation(
                "crash-recover",
                "six equal backends; backend 2 is down from 90 s to 150 s; ρ = 0.75 (0.9 of the five left)",
                secs(300),
                vec![backend(1.0); 6],
                0.75,
                vec![Fault::Crash {
                    backend: 2,
                    at_s: 90.0,
                    until_s: 150.0,
                }],
            ),
            ScenarioName::Surge => {
                let mut s = Scenario::at_utilisation(
                    "surge",
                    "six equal backends; a ±25% sine of 120 s around ρ = 0.6, and a 1.5× surge for 20 s at 175 s",
                    secs(300),
                    vec![backend(1.0); 6],
                    0.6,
                    Vec::new(),
                );
                s.arrivals.diurnal_amplitude = 0.25;
                s.arrivals.diurnal_period_s = 120.0;
                s.arrivals.surge = Some((175.0, 20.0, 1.5));
                s.season = Some(Duration::from_secs(120));
                s
            }
            ScenarioName::Stalls => Scenario::at_utilisation(
                "stalls",
                "six equal backends, each pausing for 100-500 ms about every 15 s; ρ = 0.85",
                secs(300),
                vec![backend(1.0); 6],
                0.85,
                vec![Fault::Stalls {
                    backends: (0..6).collect(),
                    mean_interval_s: 15.0,
                    min_ms: 100.0,
                    max_ms: 500.0,
                }],
            ),
            ScenarioName::Antagonist => {
                let (low, high) = (0.3, 1.0);
                let mut s = Scenario::at_utilisation(
                    "antagonist",
                    "six equal backends; backends 0-2 have their speed redrawn in 0.3-1.0 every 200-500 ms; ρ = 0.85 of the mean capacity",
                    secs(300),
                    vec![backend(1.0); 6],
                    0.85,
                    vec![Fault::Antagonist {
                        backends: vec![0, 1, 2],
                        every_min_ms: 200.0,
                        every_max_ms: 500.0,
                        low,
                        high,
                    }],
                );
                // Utilisation against the mean capacity under the antagonist.
                let mean: f64 = 3.0 * (low + high) / 2.0 + 3.0;
                s.arrivals.rps = 0.85 * mean * s.backends[0].capacity_rps();
                s
            }
        }
    }

    fn at_utilisation(
        name: &str,
        description: &str,
        duration: Duration,
        backends: Vec<BackendModel>,
        rho: f64,
        faults: Vec<Fault>,
    ) -> Scenario {
        let capacity: f64 = backends.iter().map(BackendModel::capacity_rps).sum();
        Scenario {
            name: name.to_string(),
            description: description.to_string(),
            duration,
            backends,
            arrivals: Arrivals {
                rps: rho * capacity,
                diurnal_amplitude: 0.0,
                diurnal_period_s: 0.0,
                surge: None,
            },
            faults,
            season: None,
        }
    }

    /// Total capacity of the backends at their own speed, requests/s.
    pub fn capacity_rps(&self) -> f64 {
        self.backends.iter().map(BackendModel::capacity_rps).sum()
    }

    /// Mean arrival rate over the nominal capacity.
    pub fn utilisation(&self) -> f64 {
        let c = self.capacity_rps();
        if c > 0.0 { self.arrivals.rps / c } else { 0.0 }
    }

    /// Checks the scenario can be run: at least one backend, positive
    /// speeds, workers and service times, backends of faults in range.
    pub fn validate(&self) -> Result<(), String> {
        if self.backends.is_empty() {
            return Err("a scenario needs at least one backend".into());
        }
        if self.backends.len() > 4096 {
            return Err("at most 4096 backends".into());
        }
        for (i, b) in self.backends.iter().enumerate() {
            if b.workers == 0 || b.workers > 100_000 {
                return Err(format!("backend {i}: workers must be in 1..=100000"));
            }
            if !(b.speed.is_finite() && b.speed > 0.0) {
                return Err(format!("backend {i}: speed must be positive"));
            }
            if !(b.service.mean_ms.is_finite() && b.service.mean_ms > 0.0) {
                return Err(format!("backend {i}: mean service time must be positive"));
            }
            if !(b.service.cv.is_finite() && b.service.cv >= 0.0) {
                return Err(format!("backend {i}: cv must be non-negative"));
            }
        }
        if !(self.arrivals.rps.is_finite() && self.arrivals.rps >= 0.0) {
            return Err("arrival rate must be non-negative".into());
        }
        if self.arrivals.max_rate() > 10_000_000.0 {
            return Err("arrival rate above 10 million requests/s".into());
        }
        let n = self.backends.len();
        for f in &self.faults {
            let ok = match f {
                Fault::Crash { backend, .. } | Fault::Degrade { backend, .. } => *backend < n,
                Fault::Stalls { backends, .. } | Fault::Antagonist { backends, .. } => {
                    backends.iter().all(|b| *b < n)
                }
            };
            if !ok {
                return Err("a fault names a backend that does not exist".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_scenarios_are_valid() {
        for n in ScenarioName::ALL {
            assert_eq!(n.as_str().parse::<ScenarioName>(), Ok(n));
            let s = n.build();
            assert_eq!(s.name, n.as_str());
            s.validate().unwrap();
            assert!(s.utilisation() > 0.5, "{n}: {}", s.utilisation());
        }
        let e = "nope".parse::<ScenarioName>().unwrap_err();
        assert!(e.to_string().contains("heterogeneous"), "{e}");
    }

    #[test]
    fn arrival_rate_shape() {
        let a = Arrivals {
            rps: 100.0,
            diurnal_amplitude: 0.5,
            diurnal_period_s: 40.0,
            surge: Some((100.0, 10.0, 2.0)),
        };
        assert!((a.rate_at(10.0) - 150.0).abs() < 1e-9);
        assert!((a.rate_at(30.0) - 50.0).abs() < 1e-9);
        assert!((a.rate_at(100.0) - 200.0).abs() < 1e-9);
        assert_eq!(a.max_rate(), 300.0);
    }
}
