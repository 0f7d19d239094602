//! The weight controller: each backend's effective weight from its
//! configured weight, health, slow start and observed capacity.

use std::fmt;

use serde::Serialize;
use smartlb_balance::Nanos;

use crate::ewma::Ewma;
use crate::series::Sample;

/// Whether computed weights are applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightMode {
    /// Apply the computed weights (`analysis.mode = "enforce"`).
    #[default]
    Enforce,
    /// Compute and report them, but apply only configured weight × health ×
    /// slow start (`analysis.mode = "shadow"`).
    Shadow,
}

/// Parameters of the [`WeightController`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WeightConfig {
    /// Largest relative change of a backend's capacity factor per tick
    /// (`analysis.max_weight_change`, 0.25 = ±25 %).
    pub max_weight_change: f64,
    /// Enforce or shadow.
    pub mode: WeightMode,
    /// Changes smaller than this share of the factor are not made
    /// (hysteresis: no dithering around an equilibrium).
    pub deadband: f64,
    /// Exponent applied to the latency ratio `reference / latency` when
    /// moving a factor: 1 moves it by the whole ratio (before the bound).
    pub gain: f64,
    /// Latency within `reference / tolerance ..= reference × tolerance`
    /// does not move the factor (1 = any difference moves it).
    pub tolerance: f64,
    /// Ticks in a row a backend's latency must stay outside the band before
    /// its factor moves (hysteresis against short stalls).
    pub confirm_ticks: u32,
    /// Share of the way back to factor 1 made each tick, in log terms
    /// (`factor × (1 / factor)^relax`): the pull towards the configured
    /// share that latency differences have to overcome.
    pub relax: f64,
    /// Half-life, in ticks, of the latency a backend is judged by.
    pub latency_half_life: f64,
    /// Half-life, in ticks, of the error rate a backend is judged by.
    pub error_half_life: f64,
    /// Requests a backend must finish in a tick for that tick's latency to
    /// count on its own; the latency of sparser ticks is pooled (over at
    /// most 10 ticks with answers) until this many requests are behind it.
    pub min_requests: u64,
    /// Error rate above which a backend is penalised (and never rewarded).
    pub error_threshold: f64,
    /// How strongly errors cut the factor: the target is
    /// `factor × (1 − min(error_gain × error_rate, 0.9))`.
    pub error_gain: f64,
    /// Lowest capacity factor: a penalised backend keeps this share of its
    /// weight, so it keeps receiving probe traffic and its recovery is seen.
    pub min_factor: f64,
    /// Highest capacity factor.
    pub max_factor: f64,
    /// A forecast this much above the current rate (0.2 = 20 %) within the
    /// forecast horizon is a predicted surge: pools are pre-warmed.
    pub surge_threshold: f64,
}

impl Default for WeightConfig {
    fn default() -> Self {
        WeightConfig {
            max_weight_change: 0.25,
            mode: WeightMode::Enforce,
            deadband: 0.05,
            gain: 1.0,
            tolerance: 2.0,
            confirm_ticks: 3,
            relax: 0.1,
            latency_half_life: 2.0,
            error_half_life: 2.0,
            min_requests: 10,
            error_threshold: 0.01,
            error_gain: 2.0,
            min_factor: 0.05,
            max_factor: 4.0,
            surge_threshold: 0.2,
        }
    }
}

/// What the controller is told about one backend at a tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackendInput<'a> {
    /// The backend's key (its address).
    pub key: &'a str,
    /// The configured weight.
    pub configured_weight: f64,
    /// Whether health allows new requests (not down, ejected or draining).
    pub available: bool,
    /// The slow-start factor in `0..=1` (1 outside slow start).
    pub slow_start: f64,
    /// Exchanges finished in the tick.
    pub requests: u64,
    /// Failed exchanges in the tick (5xx, 429, resets, timeouts, ...).
    pub errors: u64,
    /// Typical latency of the tick in ms (the series' mean), if any.
    pub latency_ms: Option<f64>,
    /// Requests in flight at the end of the tick.
    pub in_flight: u64,
}

impl<'a> BackendInput<'a> {
    /// An input from the backend's latest [`Sample`] of an
    /// [`UpstreamSeries`](crate::UpstreamSeries), with its configured
    /// weight and health.
    pub fn from_sample(
        key: &'a str,
        sample: &Sample,
        configured_weight: f64,
        available: bool,
        slow_start: f64,
    ) -> Self {
        BackendInput {
            key,
            configured_weight,
            available,
            slow_start,
            requests: sample.requests,
            errors: sample.errors,
            latency_ms: sample.mean_ms,
            in_flight: sample.in_flight,
        }
    }
}

/// Why a weight is what it is. Each [`WeightDecision`] lists the reasons
/// that applied, in the order they were applied.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    /// The starting point: the configured weight.
    Configured {
        /// The configured weight.
        weight: f64,
    },
    /// Health takes the backend out: weight 0.
    Unavailable,
    /// The backend is ramping up after joining or recovering.
    SlowStart {
        /// The slow-start factor.
        factor: f64,
    },
    /// Its latency against the traffic-weighted latency of the upstream
    /// moved its capacity factor.
    Capacity {
        /// The capacity factor now.
        factor: f64,
        /// The backend's smoothed latency, ms.
        latency_ms: f64,
        /// Its peers' traffic-weighted mean latency, ms.
        reference_ms: f64,
    },
    /// Its error rate is above the threshold: penalised, never rewarded.
    Errors {
        /// The smoothed error rate.
        rate: f64,
    },
    /// The change was cut to `max_weight_change` for this tick.
    Limited {
        /// The factor the controller wanted.
        wanted: f64,
    },
    /// The wanted change was within the dead band: the factor was kept.
    Hold,
    /// The factor is at its floor (`min_factor`): the backend keeps a
    /// probing share.
    Floor,
    /// A predicted surge: the backend has headroom and its pool is
    /// pre-warmed.
    PreWarm {
        /// Connections to open ahead of the surge.
        connections: u32,
    },
    /// Shadow mode: the computed weight is reported, not applied.
    Shadow {
        /// The weight that enforce mode would apply.
        computed: f64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Configured { weight } => write!(f, "configured weight {weight}"),
            Reason::Unavailable => f.write_str("unavailable (health)"),
            Reason::SlowStart { factor } => write!(f, "slow start ×{factor:.2}"),
            Reason::Capacity {
                factor,
                latency_ms,
                reference_ms,
            } => write!(
                f,
                "capacity ×{factor:.2} (latency {latency_ms:.2} ms against {reference_ms:.2} ms)"
            ),
            Reason::Errors { rate } => write!(f, "error rate {:.1}% penalised", rate * 100.0),
            Reason::Limited { wanted } => write!(f, "change limited (wanted ×{wanted:.2})"),
            Reason::Hold => f.write_str("held (within dead band)"),
            Reason::Floor => f.write_str("at floor (probing share)"),
            Reason::PreWarm { connections } => {
                write!(f, "surge predicted: pre-warm {connections} connections")
            }
            Reason::Shadow { computed } => {
                write!(f, "shadow mode (would apply {computed:.3})")
            }
        }
    }
}

/// The controller's verdict on one backend for one tick.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeightDecision {
    /// The backend's key.
    pub backend: String,
    /// The weight to apply: the computed one in enforce mode; configured ×
    /// health × slow start in shadow mode.
    pub weight: f64,
    /// The weight the controller computed (what enforce mode applies).
    pub computed: f64,
    /// The capacity factor (1 = its configured share).
    pub factor: f64,
    /// Connections to open now, ahead of a predicted surge (0 usually).
    pub prewarm: u32,
    /// Why, in the order the rules applied.
    pub reasons: Vec<Reason>,
}

impl WeightDecision {
    /// The reasons as one log-friendly line.
    pub fn explain(&self) -> String {
        let parts: Vec<String> = self.reasons.iter().map(ToString::to_string).collect();
        format!("weight {:.3}: {}", self.weight, parts.join(", "))
    }
}

#[derive(Clone, Debug)]
struct State {
    key: String,
    factor: f64,
    outside: u32,
    latency: Ewma,
    errors: Ewma,
    was_available: bool,
    seen: bool,
    /// Latency of ticks with fewer than `min_requests` answers, pooled until
    /// there are enough: requests, latency × requests, ticks.
    pool: (u64, f64, u32),
}

/// Ticks a pool of sparse latency samples may span before it is started
/// afresh (older samples say little about now).
const POOL_TICKS: u32 = 10;

/// Sets each backend's effective weight once per tick:
///
/// ```text
/// weight = configured × health × slow start × capacity factor
/// ```
///
/// `health` is 0 or 1 (available or not) and `slow start` the health
/// crate's ramp factor. The **capacity factor** is what the traffic adds.
/// Every tick each backend's smoothed latency is compared with its
/// reference, the traffic-weighted mean latency of its peers. Within a
/// tolerance band (`reference / tolerance ..= reference × tolerance`, 2× by
/// default) nothing moves: fine differences are left to the balancer's live
/// cost (requests in flight, latency), which reacts per request rather than
/// per tick. Beyond it the factor moves by `(band edge / latency)^gain`: a
/// backend that departs from its peers, a gray failure or one that degrades,
/// loses share as its latency rises, long before it fails a health check,
/// until it carries what it sustains within latency comparable to its
/// peers' (its observed capacity); a clearly faster one gains share.
/// A departure must last `confirm_ticks` ticks (3) before it counts, so a
/// stall of a fraction of a second, which the live cost handles, does not
/// also cut the weight. Without such evidence the factor relaxes back
/// towards 1 (`relax`).
/// Factors are normalised to a geometric mean of 1 over the healthy
/// backends, so they say how share moves between backends.
///
/// Why a band rather than equalising latency outright: the simulator showed
/// that driving backends of different speeds to equal latency loads the
/// fast ones to saturation (median latency nearly doubled in the
/// heterogeneous scenario); see `docs/algorithms.md`.
///
/// Safeguards, each visible in the decision's [`Reason`]s:
///
/// * **Bounded moves**: the factor changes by at most `max_weight_change`
///   per tick, and changes inside the `deadband` are not made (hysteresis),
///   so weights settle instead of oscillating and independent instances do
///   not herd.
/// * **Fast failures are penalised, never rewarded**: a backend whose error
///   rate (5xx, 429, resets, timeouts) is above `error_threshold` has its
///   factor cut in proportion, and its (fast) latency can never raise it.
/// * **Probing share**: the factor never goes below `min_factor`, so a
///   penalised backend keeps some traffic and its recovery is seen.
/// * **Surge**: when the caller's forecast predicts a rate
///   `surge_threshold` above the current one, backends with headroom
///   (latency at or below their peers') get a pre-warm count of
///   connections, sized by their share of the extra load.
/// * **Shadow mode**: everything is computed and reported; the weight
///   applied is the one without the capacity factor.
///
/// Health and slow start apply as they are (a backend that goes down drops
/// to 0 at once); the bound is on what the analysis adds. Time is an input.
///
/// ```
/// use smartlb_traffic::analysis::{BackendInput, WeightConfig, WeightController};
/// use smartlb_traffic::Nanos;
/// let mut c = WeightController::new(WeightConfig::default());
/// let input = |key, latency_ms| BackendInput {
///     key, configured_weight: 1.0, available: true, slow_start: 1.0,
///     requests: 100, errors: 0, latency_ms: Some(latency_ms), in_flight: 2,
/// };
/// let mut weights = Vec::new();
/// for t in 0..30 {
///     let d = c.tick(Nanos::from_secs(t), &[input("fast", 10.0), input("slow", 40.0)], None);
///     weights = d.iter().map(|d| d.weight).collect();
/// }
/// assert!(weights[0] > 2.0 * weights[1], "{weights:?}");
/// ```
#[derive(Clone, Debug)]
pub struct WeightController {
    cfg: WeightConfig,
    states: Vec<State>,
}

impl WeightController {
    /// A controller with the given parameters.
    pub fn new(cfg: WeightConfig) -> Self {
        WeightController {
            cfg,
            states: Vec::new(),
        }
    }

    /// The parameters.
    pub fn config(&self) -> &WeightConfig {
        &self.cfg
    }

    /// Changes enforce/shadow mode from the next tick on.
    pub fn set_mode(&mut self, mode: WeightMode) {
        self.cfg.mode = mode;
    }

    /// The capacity factor of the backend under `key`, if followed.
    pub fn factor(&self, key: &str) -> Option<f64> {
        self.states.iter().find(|s| s.key == key).map(|s| s.factor)
    }

    /// Computes the weights for one tick. `surge` is the forecast growth
    /// of the request rate over the forecast horizon (`forecast / current`,
    /// e.g. 1.3), if a forecast exists. Backends not seen before start at
    /// factor 1; backends missing from `inputs` are forgotten. Decisions are
    /// in the order of `inputs`.
    pub fn tick(
        &mut self,
        _now: Nanos,
        inputs: &[BackendInput<'_>],
        surge: Option<f64>,
    ) -> Vec<WeightDecision> {
        let cfg = self.cfg;
        self.states.iter_mut().for_each(|s| s.seen = false);
        // Follow new backends and update the smoothed inputs.
        let mut idx = Vec::with_capacity(inputs.len());
        for input in inputs {
            let pos = match self.states.iter().position(|s| s.key == input.key) {
                Some(p) => p,
                None => {
                    self.states.push(State {
                        key: input.key.to_string(),
                        factor: 1.0,
                        outside: 0,
                        latency: Ewma::with_half_life(cfg.latency_half_life),
                        errors: Ewma::with_half_life(cfg.error_half_life),
                        was_available: input.available,
                        seen: false,
                        pool: (0, 0.0, 0),
                    });
                    self.states.len() - 1
                }
            };
            let s = &mut self.states[pos];
            s.seen = true;
            if input.available && !s.was_available {
                // Back from an outage: judged afresh (slow start ramps it).
                s.factor = 1.0;
                s.latency = Ewma::with_half_life(cfg.latency_half_life);
                s.pool = (0, 0.0, 0);
                s.errors = Ewma::with_half_life(cfg.error_half_life);
            }
            s.was_available = input.available;
            if input.available && input.requests > 0 {
                s.errors.update(input.errors as f64 / input.requests as f64);
            }
            if input.available
                && input.requests > 0
                && let Some(l) = input.latency_ms.filter(|l| l.is_finite() && *l >= 0.0)
            {
                if input.requests >= cfg.min_requests {
                    s.latency.update(l);
                    s.pool = (0, 0.0, 0);
                } else {
                    // A backend the live cost keeps at a probing share answers
                    // a few requests a tick: their latency is pooled over
                    // ticks, so that it is still judged (and a slow one still
                    // loses weight) rather than frozen at its last busy tick.
                    if s.pool.2 >= POOL_TICKS {
                        s.pool = (0, 0.0, 0);
                    }
                    let (n, sum, ticks) = s.pool;
                    let n = n + input.requests;
                    let sum = sum + l * input.requests as f64;
                    if n >= cfg.min_requests {
                        s.latency.update(sum / n as f64);
                        s.pool = (0, 0.0, 0);
                    } else {
                        s.pool = (n, sum, ticks + 1);
                    }
                }
            }
            idx.push(pos);
        }

        // Each backend's reference: the traffic-weighted mean latency of its
        // peers (the other available backends with a latency estimate and
        // no error penalty).
        let mut contributions: Vec<Option<(f64, f64)>> = Vec::with_capacity(inputs.len());
        let (mut num, mut den) = (0.0, 0.0);
        for (input, &pos) in inputs.iter().zip(&idx) {
            let s = &self.states[pos];
            let c = (input.available
                && !s.latency.is_empty()
                && s.errors.mean() <= cfg.error_threshold)
                .then(|| {
                    let w = (input.requests as f64).max(1.0);
                    (w * s.latency.mean(), w)
                });
            if let Some((n, d)) = c {
                num += n;
                den += d;
            }
            contributions.push(c);
        }
        let references: Vec<Option<f64>> = contributions
            .iter()
            .map(|c| {
                let (n, d) = c.map_or((num, den), |(n, d)| (num - n, den - d));
                (d > 0.0).then(|| n / d).filter(|r| *r > 0.0)
            })
            .collect();

        // What each factor should be, before normalisation.
        let mut wanted_all = Vec::with_capacity(inputs.len());
        for ((input, &pos), &reference) in inputs.iter().zip(&idx).zip(&references) {
            let s = &mut self.states[pos];
            let penalised = s.errors.mean() > cfg.error_threshold;
            // Without evidence the factor relaxes towards 1 (the configured
            // share), so a backend held low comes back once its latency no
            // longer tells it apart.
            let mut wanted = s.factor * (1.0 / s.factor).powf(cfg.relax);
            if let (Some(r), false) = (reference, s.latency.is_empty()) {
                let l = s.latency.mean().max(r * 1e-3);
                // Inside the tolerance band latency differences are left to
                // the balancer's live cost; beyond it the factor moves.
                let band = r * cfg.tolerance.max(1.0);
                let lower = r / cfg.tolerance.max(1.0);
                let outside = input.available && (l > band || l < lower);
                s.outside = if outside {
                    s.outside.saturating_add(1)
                } else {
                    0
                };
                // Only a departure that lasts `confirm_ticks` moves the
                // factor: a stall of a fraction of a second is the live
                // cost's business, a slowdown that lasts is the weight's.
                let confirmed = s.outside >= cfg.confirm_ticks.max(1);
                let mut ratio = if !confirmed {
                    1.0
                } else if l > band {
                    (band / l).powf(cfg.gain)
                } else if l < lower {
                    (lower / l).powf(cfg.gain)
                } else {
                    1.0
                };
                if penalised {
                    // A failing backend's latency says nothing good.
                    ratio = ratio.min(1.0);
                }
                wanted *= ratio;
            }
            if penalised {
                wanted *= 1.0 - (cfg.error_gain * s.errors.mean()).min(0.9);
            }
            wanted_all.push((wanted, penalised, input.available));
        }
        // Normalise so that the healthy backends' factors keep a geometric
        // mean of 1: the factors say how the share moves between backends,
        // not how big the numbers are.
        let (mut log_sum, mut n) = (0.0, 0usize);
        for &(w, penalised, available) in &wanted_all {
            if available && !penalised && w > 0.0 {
                log_sum += w.ln();
                n += 1;
            }
        }
        let scale = if n > 0 {
            (log_sum / n as f64).exp()
        } else {
            1.0
        };

        let mut decisions = Vec::with_capacity(inputs.len());
        for (((input, &pos), &(raw_wanted, penalised, _)), &reference) in
            inputs.iter().zip(&idx).zip(&wanted_all).zip(&references)
        {
            let s = &mut self.states[pos];
            let configured = if input.configured_weight.is_finite() {
                input.configured_weight.max(0.0)
            } else {
                0.0
            };
            let mut reasons = vec![Reason::Configured { weight: configured }];
            if !input.available {
                reasons.push(Reason::Unavailable);
                decisions.push(WeightDecision {
                    backend: input.key.to_string(),
                    weight: 0.0,
                    computed: 0.0,
                    factor: s.factor,
                    prewarm: 0,
                    reasons,
                });
                continue;
            }
            let slow_start = if input.slow_start.is_finite() {
                input.slow_start.clamp(0.0, 1.0)
            } else {
                1.0
            };
            if slow_start < 1.0 {
                reasons.push(Reason::SlowStart { factor: slow_start });
            }
            let error_rate = s.errors.mean();
            let mut wanted = raw_wanted / scale;
            if penalised {
                wanted = wanted.min(s.factor);
                reasons.push(Reason::Errors { rate: error_rate });
            }
            wanted = wanted.clamp(cfg.min_factor, cfg.max_factor);

            // Hysteresis, then the bound.
            let change = wanted / s.factor - 1.0;
            let max = cfg.max_weight_change.max(0.0);
            let next = if change.abs() < cfg.deadband && !penalised {
                reasons.push(Reason::Hold);
                s.factor
            } else if change.abs() > max {
                reasons.push(Reason::Limited { wanted });
                s.factor * (1.0 + max.copysign(change))
            } else {
                wanted
            };
            s.factor = next.clamp(cfg.min_factor, cfg.max_factor);
            if let Some(r) = reference
                && !s.latency.is_empty()
            {
                reasons.push(Reason::Capacity {
                    factor: s.factor,
                    latency_ms: s.latency.mean(),
                    reference_ms: r,
                });
            }
            if s.factor <= cfg.min_factor {
                reasons.push(Reason::Floor);
            }

            // Pre-warm ahead of a predicted surge, where there is headroom.
            let mut prewarm = 0;
            if let Some(growth) = surge.filter(|g| *g > 1.0 + cfg.surge_threshold)
                && !penalised
                && reference.is_none_or(|r| s.latency.mean() <= r)
            {
                let extra = (input.in_flight.max(1) as f64) * (growth - 1.0);
                prewarm = extra.ceil().min(10_000.0) as u32;
                reasons.push(Reason::PreWarm {
                    connections: prewarm,
                });
            }

            let base = configured * slow_start;
            let computed = base * s.factor;
            let weight = match cfg.mode {
                WeightMode::Enforce => computed,
                WeightMode::Shadow => {
                    reasons.push(Reason::Shadow { computed });
                    base
                }
            };
            decisions.push(WeightDecision {
                backend: input.key.to_string(),
                weight,
                computed,
                factor: s.factor,
                prewarm,
                reasons,
            });
        }
        self.states.retain(|s| s.seen);
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(key: &str, latency_ms: f64, errors: u64) -> BackendInput<'_> {
        BackendInput {
            key,
            configured_weight: 2.0,
            available: true,
            slow_start: 1.0,
            requests: 100,
            errors,
            latency_ms: Some(latency_ms),
            in_flight: 4,
        }
    }

    #[test]
    fn change_per_tick_is_bounded() {
        let mut c = WeightController::new(WeightConfig::default());
        let mut prev: Option<Vec<f64>> = None;
        for t in 0..40u64 {
            // A backend that is 20× slower for 20 ticks, then fast again.
            let slow = if t < 20 { 200.0 } else { 10.0 };
            let d = c.tick(
                Nanos::from_secs(t),
                &[
                    input("a", 10.0, 0),
                    input("b", 10.0, 0),
                    input("c", slow, 0),
                ],
                None,
            );
            let w: Vec<f64> = d.iter().map(|d| d.weight).collect();
            if let Some(p) = &prev {
                for (a, b) in p.iter().zip(&w) {
                    let change = (b / a - 1.0).abs();
                    assert!(change <= 0.25 + 1e-9, "{p:?} -> {w:?}");
                }
            }
            prev = Some(w);
        }
        // It went down and came back up towards its configured weight.
        // It went down to the floor and is on its way back up (latency no
        // longer tells it apart, so it relaxes towards its configured share).
        assert!(c.factor("c").unwrap() > 0.15, "{:?}", c.factor("c"));
    }

    #[test]
    fn a_slow_backend_with_few_answers_a_tick_is_still_judged() {
        let mut c = WeightController::new(WeightConfig::default());
        for t in 0..10u64 {
            c.tick(
                Nanos::from_secs(t),
                &[input("a", 3.0, 0), input("b", 3.0, 0), input("c", 3.0, 0)],
                None,
            );
        }
        // "c" turns 100× slower and the balancer's live cost leaves it 3 answers a
        // tick, below `min_requests`: pooled over ticks, they still count.
        let sparse = BackendInput {
            requests: 3,
            ..input("c", 300.0, 0)
        };
        for t in 10..25u64 {
            c.tick(
                Nanos::from_secs(t),
                &[input("a", 3.0, 0), input("b", 3.0, 0), sparse],
                None,
            );
        }
        let factor = c.factor("c").unwrap();
        assert!(factor < 0.3, "{factor}");
    }

    #[test]
    fn slow_backend_loses_share_and_reasons_say_why() {
        let mut c = WeightController::new(WeightConfig::default());
        let mut last = Vec::new();
        for t in 0..10u64 {
            last = c.tick(
                Nanos::from_secs(t),
                &[input("a", 10.0, 0), input("b", 30.0, 0)],
                None,
            );
        }
        assert!(last[0].weight > last[1].weight * 2.0, "{last:?}");
        assert!(
            last[1]
                .reasons
                .iter()
                .any(|r| matches!(r, Reason::Capacity { .. })),
            "{last:?}"
        );
        assert!(last[1].explain().starts_with("weight "));
    }

    #[test]
    fn fast_failures_are_penalised_never_rewarded() {
        let mut c = WeightController::new(WeightConfig::default());
        let mut d = Vec::new();
        for t in 0..20u64 {
            // "b" answers in 1 ms, but half of its answers are 5xx.
            d = c.tick(
                Nanos::from_secs(t),
                &[
                    input("a", 10.0, 0),
                    input("b", 1.0, 50),
                    input("c", 10.0, 0),
                ],
                None,
            );
            assert!(d[1].factor <= 1.0, "rewarded at tick {t}: {d:?}");
        }
        assert!(d[1].weight < 0.2 * d[0].weight, "{d:?}");
        assert!(
            d[1].reasons
                .iter()
                .any(|r| matches!(r, Reason::Errors { .. }))
        );
        // Never below the floor: it keeps a probing share.
        assert!(d[1].factor >= WeightConfig::default().min_factor);
        assert!(d[1].reasons.contains(&Reason::Floor));
    }

    #[test]
    fn hysteresis_holds_small_changes() {
        let mut c = WeightController::new(WeightConfig::default());
        for t in 0..20u64 {
            let d = c.tick(
                Nanos::from_secs(t),
                &[input("a", 10.0, 0), input("b", 15.0, 0)],
                None,
            );
            assert_eq!(d[0].factor, 1.0);
            assert!(d[1].reasons.contains(&Reason::Hold));
        }
    }

    #[test]
    fn health_slow_start_shadow_and_prewarm() {
        let mut c = WeightController::new(WeightConfig {
            mode: WeightMode::Shadow,
            ..WeightConfig::default()
        });
        let mut down = input("b", 10.0, 0);
        down.available = false;
        let mut ramping = input("c", 10.0, 0);
        ramping.slow_start = 0.5;
        let d = c.tick(
            Nanos::ZERO,
            &[input("a", 10.0, 0), down, ramping],
            Some(1.5),
        );
        assert_eq!(d[1].weight, 0.0);
        assert!(d[1].reasons.contains(&Reason::Unavailable));
        assert_eq!(d[2].weight, 1.0);
        assert!(d[2].reasons.contains(&Reason::SlowStart { factor: 0.5 }));
        assert!(
            d[0].reasons
                .iter()
                .any(|r| matches!(r, Reason::Shadow { .. }))
        );
        assert_eq!(d[0].prewarm, 2);
        assert!(d[0].reasons.contains(&Reason::PreWarm { connections: 2 }));
        // Bad input does not panic or produce NaN.
        let mut bad = input("d", f64::NAN, 0);
        bad.configured_weight = f64::NAN;
        bad.slow_start = f64::INFINITY;
        let d = c.tick(Nanos::ZERO, &[bad], None);
        assert_eq!(d[0].weight, 0.0);
        // Forgotten when missing; back from an outage starts afresh.
        c.set_mode(WeightMode::Enforce);
        assert!(c.factor("a").is_none());
        let json = serde_json::to_value(&d[0]).unwrap();
        assert_eq!(json["reasons"][0]["reason"], "configured");
    }
}
