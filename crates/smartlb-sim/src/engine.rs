//! The discrete-event engine.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use smartlb_balance::algorithms::Adaptive;
use smartlb_balance::{
    Algorithm, Balancer, DEFAULT_LATENCY_NS, Endpoints, Excluding, FastRng, Nanos, PeakEwma,
    PickContext, Rng,
};
use smartlb_health::{
    ActiveThresholds, BackendHealth, EjectionBudget, HealthConfig, OutlierConfig, SlowStartConfig,
};
use smartlb_traffic::analysis::{
    Analyzer, AnalyzerConfig, BackendInput, HoltWintersConfig, WeightConfig, WeightMode,
};
use smartlb_traffic::{
    BackendStats, FailureKind, Histogram, Outcome, OwnedInFlightGuard, SeriesConfig, UpstreamSeries,
};

use crate::report::{
    AnomalySummary, BackendReport, SimReport, StallRecovery, TimelinePoint, summarise_stalls,
};
use crate::scenario::{Fault, Scenario};

const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;
/// Latency given to the latency estimators for a failed exchange, so that
/// a backend failing fast never looks fast (as the proxy does).
const FAILURE_LATENCY_NS: u64 = SEC;
/// Time for a refused connection to be reported.
const CONNECT_REFUSED_NS: u64 = MS / 2;
/// Time for a backend with a full queue to answer 503.
const REJECT_NS: u64 = MS;
/// Network round trip added to every exchange.
const RTT_NS: u64 = MS / 5;
/// Width of the bins that per-backend shares are counted in.
pub(crate) const BIN_NS: u64 = 100 * MS;
/// Active health-check interval.
const CHECK_NS: u64 = 2 * SEC;
/// Analysis tick.
const TICK_NS: u64 = SEC;
/// Retry budget: share of requests that may be retried.
const RETRY_RATIO: f64 = 0.2;

/// How `adaptive` is set up in the simulator: the knobs its design was
/// chosen with (see `docs/algorithms.md`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveTuning {
    /// Exponent of the latency in the cost (`Adaptive::with_latency_exponent`).
    pub latency_exponent: f64,
    /// Decay window of the peak-EWMA latency estimate adaptive reads.
    pub latency_decay: Duration,
    /// Whether the weight controller's weights are used (else configured
    /// weight × slow start, as for the other algorithms).
    pub controller: bool,
    /// Probing share `(per endpoint, max)`.
    pub probe_share: (f64, f64),
    /// Weight controller parameters.
    pub weights: WeightConfig,
    /// Exponent of the load in the cost (`Adaptive::with_load_exponent`).
    pub load_exponent: f64,
    /// Candidates per comparing pick (`Adaptive::with_choices`).
    pub choices: usize,
}

impl Default for AdaptiveTuning {
    fn default() -> Self {
        AdaptiveTuning {
            latency_exponent: Adaptive::new().latency_exponent(),
            latency_decay: Adaptive::LATENCY_DECAY,
            controller: true,
            probe_share: (Adaptive::PROBE_SHARE, Adaptive::PROBE_SHARE_MAX),
            weights: WeightConfig::default(),
            load_exponent: Adaptive::new().load_exponent(),
            choices: Adaptive::new().choices(),
        }
    }
}

/// Options of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SimOptions {
    /// Run this long instead of the scenario's own duration.
    pub duration: Option<Duration>,
    /// Requests scheduled before this are not measured.
    pub warmup: Duration,
    /// The client's (and proxy's) request timeout.
    pub request_timeout: Duration,
    /// Retry once on another backend after a refused connection, a reset or
    /// a 503, within a budget of 20 % of requests (as `[upstream.retry]`).
    pub retries: bool,
    /// `analysis.mode` for `adaptive`.
    pub mode: WeightMode,
    /// How `adaptive` is set up.
    pub adaptive: AdaptiveTuning,
    /// Keep the per-second timeline (for the HTML report).
    pub timeline: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            duration: None,
            warmup: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            retries: true,
            mode: WeightMode::Enforce,
            adaptive: AdaptiveTuning::default(),
            timeline: true,
        }
    }
}

/// Why a run could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError(pub String);

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SimError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Arrival,
    Complete { b: u32, w: u32, token: u32 },
    Respond { req: u32, epoch: u32, kind: u8 },
    StallStart { b: u32, len: u64 },
    StallEnd { b: u32 },
    SetSpeed { b: u32, mult_bits: u64 },
    Crash { b: u32 },
    Recover { b: u32 },
    Tick,
    Check,
    WarmupEnd,
}

#[derive(Debug)]
struct Entry {
    t: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.t == other.t && self.seq == other.seq
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so the `BinaryHeap` pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.t, other.seq).cmp(&(self.t, self.seq))
    }
}

const KIND_CONNECT: u8 = 0;
const KIND_RESET: u8 = 1;
const KIND_REJECT: u8 = 2;

fn failure_of(kind: u8) -> FailureKind {
    match kind {
        KIND_CONNECT => FailureKind::Connect,
        KIND_RESET => FailureKind::Reset,
        _ => FailureKind::ServerError,
    }
}

#[derive(Debug, Default)]
struct Req {
    epoch: u32,
    scheduled: u64,
    attempt_start: u64,
    /// Standard normal draw behind the service time (common to every
    /// algorithm for the same seed).
    z: f64,
    backend: u32,
    tried: [usize; 2],
    tries: u8,
    guard: Option<OwnedInFlightGuard>,
    client_done: bool,
    at_server: bool,
    pending_respond: bool,
    measured: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Worker {
    req: Option<u32>,
    work_left: f64,
    anchor: u64,
    token: u32,
}

#[derive(Debug)]
struct BackendSim {
    workers: Vec<Worker>,
    queue: VecDeque<u32>,
    max_queue: usize,
    speed: f64,
    mult: f64,
    stalled: bool,
    up: bool,
    mu: f64,
    sigma: f64,
    busy: u32,
    busy_ns: f64,
    last_busy: u64,
    up_ns: u64,
    last_up_change: u64,
    free: Vec<u32>,
}

impl BackendSim {
    fn speed(&self) -> f64 {
        if self.up && !self.stalled {
            self.speed * self.mult
        } else {
            0.0
        }
    }

    fn account(&mut self, now: u64) {
        self.busy_ns += f64::from(self.busy) * now.saturating_sub(self.last_busy) as f64;
        self.last_busy = now;
        if self.up {
            self.up_ns += now.saturating_sub(self.last_up_change);
        }
        self.last_up_change = now;
    }

    /// Service demand in ns at speed 1 for a request with normal draw `z`.
    fn demand(&self, z: f64) -> f64 {
        (self.mu + self.sigma * z).exp()
    }
}

/// The balancer's view of the simulated endpoints.
struct View<'a> {
    weights: &'a [f64],
    health: &'a [BackendHealth],
    stats: &'a [Arc<BackendStats>],
    ewma: &'a [PeakEwma],
    now: u64,
}

impl Endpoints for View<'_> {
    fn len(&self) -> usize {
        self.weights.len()
    }
    /// As the proxy's endpoints: the weight set at the last tick (configured,
    /// times the analysis factor for `adaptive`) times the health's live
    /// factor (0 when unavailable, the slow-start ramp).
    fn weight(&self, i: usize) -> f64 {
        let factor = self
            .health
            .get(i)
            .map_or(0.0, |h| h.weight_factor(Nanos(self.now)));
        self.weights.get(i).copied().unwrap_or(0.0) * factor
    }
    fn is_eligible(&self, i: usize) -> bool {
        self.health
            .get(i)
            .is_some_and(|h| h.is_available(Nanos(self.now)))
    }
    fn in_flight(&self, i: usize) -> u64 {
        self.stats.get(i).map_or(0, |s| s.in_flight())
    }
    fn latency(&self, i: usize, now: Nanos) -> Option<f64> {
        self.ewma.get(i).and_then(|e| e.get(now))
    }
}

struct Sim<'s> {
    scenario: &'s Scenario,
    opts: SimOptions,
    algorithm: Algorithm,
    uses_controller: bool,
    now: u64,
    end: u64,
    warmup: u64,
    timeout: u64,
    seq: u64,
    heap: BinaryHeap<Entry>,
    reqs: Vec<Req>,
    free_reqs: Vec<u32>,
    backends: Vec<BackendSim>,
    keys: Vec<String>,
    stats: Vec<Arc<BackendStats>>,
    ewma: Vec<PeakEwma>,
    health: Vec<BackendHealth>,
    weights: Vec<f64>,
    series: UpstreamSeries,
    analyzer: Analyzer,
    balancer: Box<dyn Balancer>,
    rng_pick: FastRng,
    rng_arrival: FastRng,
    rate_max: f64,
    timeouts: VecDeque<(u64, u32, u32)>,
    retry_tokens: f64,
    // Results.
    latency: Histogram,
    second: Histogram,
    requests: u64,
    errors: u64,
    retries: u64,
    ejections: Vec<u32>,
    dispatched: Vec<u64>,
    backend_errors: Vec<u64>,
    bins: Vec<u32>,
    stalls: Vec<(usize, u64, u64)>,
    timeline: Vec<TimelinePoint>,
    second_dispatch: Vec<u64>,
    anomalies: AnomalySummary,
}

/// Runs `scenario` with `algorithm` and `seed`.
///
/// # Errors
///
/// A scenario that does not validate ([`Scenario::validate`]).
pub fn run(
    scenario: &Scenario,
    algorithm: Algorithm,
    seed: u64,
    options: &SimOptions,
) -> Result<SimReport, SimError> {
    scenario.validate().map_err(SimError)?;
    let duration = options.duration.unwrap_or(scenario.duration);
    if duration > Duration::from_secs(30 * 24 * 3600) {
        return Err(SimError("at most 30 simulated days".into()));
    }
    let series_cfg =
        SeriesConfig::new(Duration::from_secs(1), duration.max(Duration::from_secs(1)))
            .map_err(|e| SimError(e.to_string()))?;
    let mut sim = Sim::new(scenario, algorithm, seed, *options, series_cfg);
    sim.run_to_end();
    Ok(sim.report(seed))
}

/// The health handling of every simulated upstream: `smartlb-health`'s state
/// machine with the configuration file's defaults (5 consecutive failures
/// eject for 10 s, doubling up to 5 min, at most 50 % ejected; active checks
/// with 3 failures to go down and 2 passes to come back; a 30 s linear slow
/// start from 10 %), as the proxy sets it up.
fn health_config() -> HealthConfig {
    HealthConfig {
        active: Some(ActiveThresholds::default()),
        outlier: Some(OutlierConfig::default()),
        slow_start: Some(SlowStartConfig::linear(Duration::from_secs(30))),
    }
}

fn secs_ns(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        (s * 1e9).min(1e18) as u64
    } else {
        0
    }
}

/// A standard normal draw (Box-Muller, one of the pair).
fn normal(rng: &mut FastRng) -> f64 {
    let u1 = rng.next_f64().max(1e-300);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn exponential(rng: &mut FastRng, mean: f64) -> f64 {
    -mean * (1.0 - rng.next_f64()).ln()
}

impl<'s> Sim<'s> {
    fn new(
        scenario: &'s Scenario,
        algorithm: Algorithm,
        seed: u64,
        opts: SimOptions,
        series_cfg: SeriesConfig,
    ) -> Self {
        let duration = opts.duration.unwrap_or(scenario.duration);
        let end = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX / 4);
        let n = scenario.backends.len();
        let backends: Vec<BackendSim> = scenario
            .backends
            .iter()
            .map(|m| {
                let mean_ns = m.service.mean_ms * 1e6;
                let sigma2 = (1.0 + m.service.cv * m.service.cv).ln();
                BackendSim {
                    workers: vec![Worker::default(); m.workers as usize],
                    queue: VecDeque::new(),
                    max_queue: m.max_queue as usize,
                    speed: m.speed,
                    mult: 1.0,
                    stalled: false,
                    up: true,
                    mu: mean_ns.ln() - sigma2 / 2.0,
                    sigma: sigma2.sqrt(),
                    busy: 0,
                    busy_ns: 0.0,
                    last_busy: 0,
                    up_ns: 0,
                    last_up_change: 0,
                    free: (0..m.workers).rev().collect(),
                }
            })
            .collect();
        let keys: Vec<String> = (0..n).map(|i| format!("backend-{i}")).collect();
        let stats: Vec<Arc<BackendStats>> = (0..n).map(|_| Arc::new(BackendStats::new())).collect();
        let is_adaptive = algorithm == Algorithm::Adaptive;
        let decay = if is_adaptive {
            opts.adaptive.latency_decay
        } else {
            smartlb_balance::DEFAULT_DECAY
        };
        let ewma = (0..n)
            .map(|_| PeakEwma::new(decay, DEFAULT_LATENCY_NS))
            .collect();
        let mut series = UpstreamSeries::new(series_cfg, Nanos::ZERO);
        for (k, s) in keys.iter().zip(&stats) {
            series.add_backend(k.clone(), Arc::clone(s), Nanos::ZERO);
        }
        let mut weights_cfg = opts.adaptive.weights;
        weights_cfg.mode = opts.mode;
        let analyzer = Analyzer::new(AnalyzerConfig {
            season: scenario.season,
            forecast: HoltWintersConfig::default(),
            weights: weights_cfg,
            ..AnalyzerConfig::default()
        });
        let balancer: Box<dyn Balancer> = if is_adaptive {
            let (per, max) = opts.adaptive.probe_share;
            Box::new(
                Adaptive::new()
                    .with_latency_exponent(opts.adaptive.latency_exponent)
                    .with_probe_share(per, max)
                    .with_load_exponent(opts.adaptive.load_exponent)
                    .with_choices(opts.adaptive.choices),
            )
        } else {
            algorithm.build(&smartlb_balance::StaticEndpoints::from_weights(
                scenario.backends.iter().map(|b| b.weight),
            ))
        };
        let mut master = FastRng::seed(seed);
        let rng_arrival = master.fork();
        let mut rng_fault = master.fork();
        let rng_pick = master.fork();
        let bins_len = (end / BIN_NS + 2) as usize * n;
        let mut sim = Sim {
            scenario,
            opts,
            algorithm,
            uses_controller: is_adaptive && opts.adaptive.controller,
            now: 0,
            end,
            warmup: u64::try_from(opts.warmup.as_nanos()).unwrap_or(u64::MAX),
            timeout: u64::try_from(opts.request_timeout.as_nanos())
                .unwrap_or(u64::MAX / 4)
                .max(MS),
            seq: 0,
            heap: BinaryHeap::new(),
            reqs: Vec::new(),
            free_reqs: Vec::new(),
            backends,
            keys,
            stats,
            ewma,
            health: {
                let budget = Arc::new(EjectionBudget::new(
                    OutlierConfig::default().max_ejection_percent,
                ));
                (0..n)
                    .map(|_| BackendHealth::new(&health_config(), budget.clone()))
                    .collect()
            },
            weights: scenario.backends.iter().map(|b| b.weight).collect(),
            series,
            analyzer,
            balancer,
            rng_pick,
            rng_arrival,
            rate_max: scenario.arrivals.max_rate(),
            timeouts: VecDeque::new(),
            retry_tokens: 10.0,
            latency: Histogram::new(),
            second: Histogram::new(),
            requests: 0,
            errors: 0,
            retries: 0,
            ejections: vec![0; n],
            dispatched: vec![0; n],
            backend_errors: vec![0; n],
            bins: vec![0; bins_len.min(1 << 26)],
            stalls: Vec::new(),
            timeline: Vec::new(),
            second_dispatch: vec![0; n],
            anomalies: AnomalySummary::default(),
        };
        sim.schedule_faults(&mut rng_fault);
        sim.push(0, Ev::Arrival);
        sim.push(TICK_NS, Ev::Tick);
        sim.push(CHECK_NS, Ev::Check);
        sim.push(sim.warmup.min(end), Ev::WarmupEnd);
        sim
    }

    fn push(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Entry {
            t,
            seq: self.seq,
            ev,
        });
    }

    fn schedule_faults(&mut self, rng: &mut FastRng) {
        let end = self.end;
        for fault in &self.scenario.faults {
            match fault {
                Fault::Crash {
                    backend,
                    at_s,
                    until_s,
                } => {
                    let b = *backend as u32;
                    self.push_fault(secs_ns(*at_s), Ev::Crash { b });
                    self.push_fault(secs_ns(*until_s), Ev::Recover { b });
                }
                Fault::Degrade {
                    backend,
                    from_s,
                    to_s,
                    factor,
                } => {
                    let (from, to) = (secs_ns(*from_s), secs_ns(*to_s).max(secs_ns(*from_s)));
                    let mut t = from;
                    while t <= to && t <= end {
                        let f = if to > from {
                            (t - from) as f64 / (to - from) as f64
                        } else {
                            1.0
                        };
                        let mult = 1.0 + (factor - 1.0) * f;
                        self.push_fault(
                            t,
                            Ev::SetSpeed {
                                b: *backend as u32,
                                mult_bits: mult.max(1e-3).to_bits(),
                            },
                        );
                        t += SEC;
                    }
                }
                Fault::Stalls {
                    backends,
                    mean_interval_s,
                    min_ms,
                    max_ms,
                } => {
                    for &b in backends {
                        let mut t = 0u64;
                        // Bounded: each stall moves time forward by at least 1 ms.
                        for _ in 0..10_000_000 {
                            t += secs_ns(exponential(rng, mean_interval_s.max(0.01))).max(MS);
                            if t >= end {
                                break;
                            }
                            let len_ms = min_ms + (max_ms - min_ms).max(0.0) * rng.next_f64();
                            let len = secs_ns(len_ms / 1e3).max(1);
                            self.push_fault(t, Ev::StallStart { b: b as u32, len });
                            self.stalls.push((b, t, t + len));
                            t += len;
                        }
                    }
                }
                Fault::Antagonist {
                    backends,
                    every_min_ms,
                    every_max_ms,
                    low,
                    high,
                } => {
                    for &b in backends {
                        let mut t = 0u64;
                        for _ in 0..100_000_000 {
                            let mult = low + (high - low) * rng.next_f64();
                            self.push_fault(
                                t,
                                Ev::SetSpeed {
                                    b: b as u32,
                                    mult_bits: mult.max(1e-3).to_bits(),
                                },
                            );
                            let gap = every_min_ms
                                + (every_max_ms - every_min_ms).max(0.0) * rng.next_f64();
                            t += secs_ns(gap / 1e3).max(MS);
                            if t >= end {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    fn push_fault(&mut self, t: u64, ev: Ev) {
        if t <= self.end {
            self.push(t, ev);
        }
    }

    fn run_to_end(&mut self) {
        let hard_stop = self.end.saturating_add(self.timeout).saturating_add(SEC);
        loop {
            let next_heap = self.heap.peek().map(|e| e.t);
            let next_timeout = self.timeouts.front().map(|t| t.0);
            let take_timeout = match (next_heap, next_timeout) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(h), Some(d)) => d <= h,
            };
            if take_timeout {
                let Some((deadline, req, epoch)) = self.timeouts.pop_front() else {
                    break;
                };
                if deadline > hard_stop {
                    break;
                }
                self.now = self.now.max(deadline);
                self.on_timeout(req, epoch);
                continue;
            }
            let Some(entry) = self.heap.pop() else {
                break;
            };
            if entry.t > hard_stop {
                break;
            }
            self.now = self.now.max(entry.t);
            self.handle(entry.ev);
        }
        let now = self.now;
        for b in &mut self.backends {
            b.account(now.min(self.end));
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Arrival => self.on_arrival(),
            Ev::Complete { b, w, token } => self.on_complete(b as usize, w as usize, token),
            Ev::Respond { req, epoch, kind } => self.on_respond(req, epoch, kind),
            Ev::StallStart { b, len } => {
                self.change_speed(b as usize, |s| s.stalled = true);
                self.push(self.now + len, Ev::StallEnd { b });
            }
            Ev::StallEnd { b } => self.change_speed(b as usize, |s| s.stalled = false),
            Ev::SetSpeed { b, mult_bits } => {
                self.change_speed(b as usize, |s| s.mult = f64::from_bits(mult_bits));
            }
            Ev::Crash { b } => self.on_crash(b as usize),
            Ev::Recover { b } => {
                let now = self.now;
                if let Some(s) = self.backends.get_mut(b as usize) {
                    s.account(now);
                }
                self.change_speed(b as usize, |s| s.up = true);
            }
            Ev::Tick => self.on_tick(),
            Ev::Check => self.on_check(),
            Ev::WarmupEnd => {
                let now = self.now;
                for b in &mut self.backends {
                    b.account(now);
                    b.busy_ns = 0.0;
                    b.up_ns = 0;
                }
            }
        }
    }

    fn alloc_req(&mut self) -> u32 {
        if let Some(i) = self.free_reqs.pop() {
            i
        } else {
            self.reqs.push(Req::default());
            (self.reqs.len() - 1) as u32
        }
    }

    fn maybe_free(&mut self, req: u32) {
        let r = &mut self.reqs[req as usize];
        if r.client_done && !r.at_server && !r.pending_respond {
            r.epoch = r.epoch.wrapping_add(1);
            r.guard = None;
            self.free_reqs.push(req);
        }
    }

    fn on_arrival(&mut self) {
        let now = self.now;
        let z = normal(&mut self.rng_arrival);
        let id = self.alloc_req();
        let measured = now >= self.warmup;
        {
            let r = &mut self.reqs[id as usize];
            r.scheduled = now;
            r.z = z;
            r.tries = 0;
            r.client_done = false;
            r.at_server = false;
            r.pending_respond = false;
            r.measured = measured;
        }
        let epoch = self.reqs[id as usize].epoch;
        self.timeouts.push_back((now + self.timeout, id, epoch));
        self.retry_tokens = (self.retry_tokens + RETRY_RATIO).min(100.0);
        self.dispatch(id);
        // Next arrival: thinning of a Poisson process at the peak rate.
        if self.rate_max > 0.0 {
            let mut t = now as f64 / 1e9;
            let end = self.end as f64 / 1e9;
            for _ in 0..1_000_000 {
                t += exponential(&mut self.rng_arrival, 1.0 / self.rate_max);
                if t >= end {
                    return;
                }
                let accept = self.scenario.arrivals.rate_at(t) / self.rate_max;
                if self.rng_arrival.next_f64() < accept {
                    self.push((t * 1e9) as u64, Ev::Arrival);
                    return;
                }
            }
        }
    }

    fn dispatch(&mut self, id: u32) {
        let now = self.now;
        let (tried, tries) = {
            let r = &self.reqs[id as usize];
            (r.tried, r.tries as usize)
        };
        let view = View {
            weights: &self.weights,
            health: &self.health,
            stats: &self.stats,
            ewma: &self.ewma,
            now,
        };
        let excluded = &tried[..tries.min(2)];
        let ex = Excluding::new(&view, excluded);
        let mut ctx = PickContext::new(Nanos(now), &mut self.rng_pick);
        let Some(b) = self.balancer.pick(&ex, &mut ctx) else {
            // No backend: the proxy answers 503 at once.
            self.finish_client(id, false);
            return;
        };
        let epoch = self.reqs[id as usize].epoch;
        {
            let r = &mut self.reqs[id as usize];
            r.backend = b as u32;
            r.attempt_start = now;
            r.guard = Some(self.stats[b].start_owned());
            if let Some(slot) = r.tried.get_mut(tries) {
                *slot = b;
            }
            r.tries = r.tries.saturating_add(1);
        }
        self.dispatched[b] += 1;
        self.second_dispatch[b] += 1;
        let n = self.backends.len();
        if let Some(c) = self.bins.get_mut((now / BIN_NS) as usize * n + b) {
            *c = c.saturating_add(1);
        }
        let backend = &mut self.backends[b];
        if !backend.up {
            self.reqs[id as usize].pending_respond = true;
            self.push(
                now + CONNECT_REFUSED_NS,
                Ev::Respond {
                    req: id,
                    epoch,
                    kind: KIND_CONNECT,
                },
            );
        } else if let Some(w) = backend.free.pop() {
            self.start(b, w as usize, id);
        } else if backend.queue.len() < backend.max_queue {
            backend.queue.push_back(id);
            self.reqs[id as usize].at_server = true;
        } else {
            self.reqs[id as usize].pending_respond = true;
            self.push(
                now + REJECT_NS,
                Ev::Respond {
                    req: id,
                    epoch,
                    kind: KIND_REJECT,
                },
            );
        }
    }

    fn start(&mut self, b: usize, w: usize, id: u32) {
        let now = self.now;
        let z = self.reqs[id as usize].z;
        self.reqs[id as usize].at_server = true;
        let backend = &mut self.backends[b];
        backend.account(now);
        backend.busy += 1;
        let demand = backend.demand(z);
        let speed = backend.speed();
        let worker = &mut backend.workers[w];
        worker.req = Some(id);
        worker.work_left = demand;
        worker.anchor = now;
        worker.token = worker.token.wrapping_add(1);
        let token = worker.token;
        if speed > 0.0 {
            let t = now + (demand / speed).ceil() as u64;
            self.push(
                t,
                Ev::Complete {
                    b: b as u32,
                    w: w as u32,
                    token,
                },
            );
        }
    }

    fn change_speed(&mut self, b: usize, f: impl FnOnce(&mut BackendSim)) {
        let now = self.now;
        let Some(backend) = self.backends.get_mut(b) else {
            return;
        };
        let old = backend.speed();
        f(backend);
        let new = backend.speed();
        if old == new {
            return;
        }
        let mut pushes = Vec::new();
        for (w, worker) in backend.workers.iter_mut().enumerate() {
            if worker.req.is_none() {
                continue;
            }
            if old > 0.0 {
                worker.work_left =
                    (worker.work_left - now.saturating_sub(worker.anchor) as f64 * old).max(0.0);
            }
            worker.anchor = now;
            worker.token = worker.token.wrapping_add(1);
            if new > 0.0 {
                pushes.push((
                    now + (worker.work_left / new).ceil() as u64,
                    Ev::Complete {
                        b: b as u32,
                        w: w as u32,
                        token: worker.token,
                    },
                ));
            }
        }
        for (t, ev) in pushes {
            self.push(t, ev);
        }
    }

    fn on_complete(&mut self, b: usize, w: usize, token: u32) {
        let now = self.now;
        let Some(backend) = self.backends.get_mut(b) else {
            return;
        };
        let Some(worker) = backend.workers.get_mut(w) else {
            return;
        };
        if worker.token != token {
            return;
        }
        let Some(id) = worker.req.take() else {
            return;
        };
        backend.account(now);
        backend.busy = backend.busy.saturating_sub(1);
        backend.free.push(w as u32);
        self.reqs[id as usize].at_server = false;
        if !self.reqs[id as usize].client_done {
            self.end_attempt(id, Outcome::Success);
            self.finish_client(id, true);
        }
        self.maybe_free(id);
        // The worker takes the next waiting request.
        let backend = &mut self.backends[b];
        if let Some(next) = backend.queue.pop_front()
            && let Some(w) = backend.free.pop()
        {
            self.start(b, w as usize, next);
        }
    }

    fn on_respond(&mut self, id: u32, epoch: u32, kind: u8) {
        if self.reqs.get(id as usize).is_none_or(|r| r.epoch != epoch) {
            return;
        }
        self.reqs[id as usize].pending_respond = false;
        if self.reqs[id as usize].client_done {
            self.maybe_free(id);
            return;
        }
        let kind = failure_of(kind);
        self.end_attempt(id, Outcome::Failure(kind));
        let r = &self.reqs[id as usize];
        if self.opts.retries && r.tries < 2 && self.retry_tokens >= 1.0 {
            self.retry_tokens -= 1.0;
            self.retries += 1;
            self.dispatch(id);
        } else {
            self.finish_client(id, false);
            self.maybe_free(id);
        }
    }

    fn on_timeout(&mut self, id: u32, epoch: u32) {
        if self.reqs.get(id as usize).is_none_or(|r| r.epoch != epoch) {
            return;
        }
        if self.reqs[id as usize].client_done {
            return;
        }
        if self.reqs[id as usize].guard.is_some() {
            self.end_attempt(id, Outcome::Failure(FailureKind::Timeout));
        }
        self.finish_client(id, false);
        self.maybe_free(id);
    }

    fn on_crash(&mut self, b: usize) {
        let now = self.now;
        let Some(backend) = self.backends.get_mut(b) else {
            return;
        };
        backend.account(now);
        let mut victims: Vec<u32> = backend.queue.drain(..).collect();
        for (w, worker) in backend.workers.iter_mut().enumerate() {
            if let Some(id) = worker.req.take() {
                victims.push(id);
                worker.token = worker.token.wrapping_add(1);
                backend.free.push(w as u32);
            }
        }
        backend.busy = 0;
        self.change_speed(b, |s| s.up = false);
        for id in victims {
            let r = &mut self.reqs[id as usize];
            r.at_server = false;
            if r.client_done {
                self.maybe_free(id);
                continue;
            }
            r.pending_respond = true;
            let epoch = r.epoch;
            self.push(
                now,
                Ev::Respond {
                    req: id,
                    epoch,
                    kind: KIND_RESET,
                },
            );
        }
    }

    /// Ends the current attempt of `id` on its backend: statistics, latency
    /// estimate and health, as the proxy records them.
    fn end_attempt(&mut self, id: u32, outcome: Outcome) {
        let now = self.now;
        let r = &mut self.reqs[id as usize];
        let b = r.backend as usize;
        let latency = now.saturating_sub(r.attempt_start) + RTT_NS;
        if let Some(g) = r.guard.take() {
            g.finish(outcome, Duration::from_nanos(latency));
        }
        let observed = if outcome.is_failure() {
            latency.max(FAILURE_LATENCY_NS)
        } else {
            latency
        };
        if let Some(e) = self.ewma.get(b) {
            e.observe(observed as f64, Nanos(now));
        }
        if outcome.is_failure() {
            self.backend_errors[b] += 1;
        }
        if let Some(t) = self.health[b].record(outcome, Nanos(now))
            && !t.to.is_available()
        {
            self.ejections[b] += 1;
        }
    }

    fn finish_client(&mut self, id: u32, ok: bool) {
        let now = self.now;
        let r = &mut self.reqs[id as usize];
        r.client_done = true;
        if !r.measured {
            return;
        }
        let latency = now.saturating_sub(r.scheduled) + RTT_NS;
        self.latency.record_ns(latency);
        self.second.record_ns(latency);
        self.requests += 1;
        if !ok {
            self.errors += 1;
        }
    }

    fn on_check(&mut self) {
        let now = self.now;
        for (h, b) in self.health.iter().zip(&self.backends) {
            h.record_check(b.up, Nanos(now));
        }
        if now + CHECK_NS <= self.end {
            self.push(now + CHECK_NS, Ev::Check);
        }
    }

    fn on_tick(&mut self) {
        let now = self.now;
        for h in &self.health {
            h.poll(Nanos(now));
        }
        self.series.tick(Nanos(now));
        let total_rps = self.series.total_samples().last().map_or(0.0, |s| s.rps);
        let samples: Vec<_> = self
            .keys
            .iter()
            .map(|k| {
                self.series
                    .backend_samples(k)
                    .and_then(|s| s.last())
                    .copied()
            })
            .collect();
        let inputs: Vec<BackendInput<'_>> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let configured = self.scenario.backends[i].weight;
                let available = self.health[i].is_available(Nanos(now));
                let slow = self.health[i].weight_factor(Nanos(now));
                match &samples[i] {
                    Some(s) => BackendInput::from_sample(k, s, configured, available, slow),
                    None => BackendInput {
                        key: k,
                        configured_weight: configured,
                        available,
                        slow_start: slow,
                        requests: 0,
                        errors: 0,
                        latency_ms: None,
                        in_flight: 0,
                    },
                }
            })
            .collect();
        let report = self.analyzer.tick(Nanos(now), total_rps, &inputs);
        for a in &report.anomalies {
            self.anomalies.add(a);
        }
        for (i, d) in report.weights.iter().enumerate() {
            // As the proxy: health and slow start are applied live (see
            // `View::weight`), the analysis factor once a tick.
            let configured = self.scenario.backends[i].weight;
            self.weights[i] = if self.uses_controller && self.opts.mode == WeightMode::Enforce {
                configured * d.factor
            } else {
                configured
            };
        }
        if self.opts.timeline {
            let total: u64 = self.second_dispatch.iter().sum();
            let shares = self
                .second_dispatch
                .iter()
                .map(|&c| {
                    if total > 0 {
                        c as f64 / total as f64
                    } else {
                        0.0
                    }
                })
                .collect();
            self.timeline.push(TimelinePoint {
                t_s: now as f64 / 1e9,
                rps: total_rps,
                forecast_rps: report.forecast.next_rps,
                p50_ms: self.second.quantile_ns(0.5).map(|v| v as f64 / 1e6),
                p99_ms: self.second.quantile_ns(0.99).map(|v| v as f64 / 1e6),
                shares,
                weights: self.weights.clone(),
            });
        }
        self.second.clear();
        self.second_dispatch.iter_mut().for_each(|c| *c = 0);
        if now + TICK_NS <= self.end {
            self.push(now + TICK_NS, Ev::Tick);
        }
    }

    fn report(&self, seed: u64) -> SimReport {
        let q = |p: f64| self.latency.quantile_ns(p).map_or(0.0, |v| v as f64 / 1e6);
        let n = self.backends.len();
        let measured_ns = self.end.saturating_sub(self.warmup).max(1) as f64;
        let total_dispatched: u64 = self.dispatched.iter().sum();
        let backends: Vec<BackendReport> = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let capacity = b.workers.len() as f64 * measured_ns;
                BackendReport {
                    backend: self.keys[i].clone(),
                    speed: self.scenario.backends[i].speed,
                    share: if total_dispatched > 0 {
                        self.dispatched[i] as f64 / total_dispatched as f64
                    } else {
                        0.0
                    },
                    utilisation: if capacity > 0.0 {
                        b.busy_ns / capacity
                    } else {
                        0.0
                    },
                    requests: self.dispatched[i],
                    errors: self.backend_errors[i],
                    ejections: self.ejections[i],
                }
            })
            .collect();
        let utils: Vec<f64> = backends.iter().map(|b| b.utilisation).collect();
        let mean = utils.iter().sum::<f64>() / n.max(1) as f64;
        let max = utils.iter().copied().fold(0.0, f64::max);
        let stall_recovery: Option<StallRecovery> = (!self.stalls.is_empty())
            .then(|| summarise_stalls(&self.stalls, &self.bins, n, self.warmup, self.end));
        SimReport {
            scenario: self.scenario.name.clone(),
            algorithm: self.algorithm.as_str().to_string(),
            seed,
            duration_s: self.end as f64 / 1e9,
            utilisation: self.scenario.utilisation(),
            requests: self.requests,
            errors: self.errors,
            error_rate: if self.requests > 0 {
                self.errors as f64 / self.requests as f64
            } else {
                0.0
            },
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            mean_ms: self.latency.mean().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            max_over_mean_utilisation: if mean > 0.0 { max / mean } else { 0.0 },
            retries: self.retries,
            backends,
            stall_recovery,
            anomalies: self.anomalies.clone(),
            forecast_error: self.analyzer.forecaster().error(),
            timeline: self.timeline.clone(),
        }
    }
}
