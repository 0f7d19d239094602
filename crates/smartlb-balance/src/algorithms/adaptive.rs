use crate::balancer::{Balancer, PickContext};
use crate::endpoints::{Endpoints, usable_weight};
use crate::ewma::DEFAULT_LATENCY_NS;
use crate::sample::{WeightCache, uniform, weighted};

/// `adaptive`: weighted power of three choices on a damped latency cost that
/// weighs load harder than latency, with a probing share. Its parameters were
/// chosen by measurement in the simulator (`smartlb simulate`, see
/// `docs/algorithms.md`).
///
/// # The pick
///
/// 1. **Probe.** With probability
///    `p = min(len × probe_share, probe_share_max)` (1% per endpoint, at
///    most 10% in all, by default; `len` is [`Endpoints::len`]) the pick is
///    uniform among the pickable endpoints and nothing else is looked at.
/// 2. **Compare.** Otherwise three distinct pickable endpoints (two when only
///    two are pickable; [`Adaptive::with_choices`] sets 2 to 4) are drawn at
///    random in proportion to their live effective weight (the weights the
///    traffic analyser sets), and the one with the lowest
///    `latency^e × (in_flight + 1)^q / weight` wins (the first drawn on ties),
///    where `latency` is the recent peak-EWMA estimate or the 30 ms default
///    without samples, `e` is 0.375 and `q` 1.5 by default. Weights thus act
///    twice: they decide who is considered, and they discount the cost of
///    endpoints trusted with more capacity. In the simulator a third candidate
///    lowered p99 by about 3 % and `q = 1.5` the median by 4 to 6 % against two
///    candidates and `q = 1`.
///
/// # Why the damped latency
///
/// `p2c-ewma` multiplies the whole latency estimate by the load. A
/// peak-EWMA estimate jumps on one slow response and takes tens of seconds
/// to come down, so after a short stall a backend is avoided long after it
/// recovered, and its peers take its load. With the exponent the cost
/// still prefers the faster of two endpoints, but requests in flight, which
/// follow a stall or a slowdown per request and recover as soon as the
/// queue drains, carry most of the decision; slow drifts are the weight
/// controller's job. In the simulator, exponents from 0.25 to 0.5 gave the
/// lowest median latencies and 1 (the full latency) the highest, with p99
/// about equal; 0.375 is the smallest that still makes latency outweigh
/// weight where it must (an endpoint 50× slower loses to one with a quarter
/// of its weight, as `50^0.375 ≈ 4.3 > 4`). The estimate itself should
/// decay faster than `p2c-ewma`'s: [`Adaptive::LATENCY_DECAY`] (3 s).
///
/// # Why the probe
///
/// Without step 1 an endpoint that is much slower than its peers loses every
/// comparison and receives no traffic at all; with no traffic it produces no
/// latency samples, so its recovery is only noticed once its estimate has
/// decayed, tens of seconds with a 10 s window. The probe gives every
/// pickable endpoint, whatever its weight and cost, at least
/// `p / pickable ≥ min(probe_share, probe_share_max / len)` of the picks:
/// with the defaults 1% each up to 10 endpoints, 0.5% each at 20, and never
/// more than 10% of all picks spent on probing. A fixed total (say 2.5%)
/// would be simpler but leaves only 0.125% per endpoint at 20 endpoints;
/// a per-endpoint share without the cap would spend a quarter or more of
/// all picks on probing in large pools. Probes are ordinary picks: their
/// requests are served, so the share is also the most traffic a penalised
/// endpoint is forced to take.
///
/// The probe keeps samples coming (about one request a second for every
/// 100 requests a second through a pool of up to 10 endpoints), so whatever
/// watches them, such as the traffic analyser's per-second series, sees a
/// recovery within seconds. How fast the latency estimate read here follows
/// is set by the estimator: a peak-EWMA with a 10 s window takes 40 to
/// 46 s to come down from 100× its peers' latency to 2×, whether samples
/// arrive or not (`10 s × ln 99` with samples at the peers' latency,
/// `10 s × ln 50` decaying without any). That window is one of the
/// parameters the simulator tunes.
///
/// Weight 0, ineligibility and an empty set behave as for every algorithm:
/// such endpoints are never picked, probe or not, and the pick is `None`
/// when nothing is pickable. The probe decision uses the caller's random
/// source, so picks stay reproducible under a fixed seed.
///
/// The spec's other refinements live with the callers: failures must be fed
/// to the latency estimate as slow (never fast), and weights come from the
/// traffic analyser's weight controller, which moves them boundedly per tick
/// and penalises failing backends.
#[derive(Debug)]
pub struct Adaptive {
    default_ns: f64,
    latency_exponent: f64,
    probe_share: f64,
    probe_share_max: f64,
    load_exponent: f64,
    choices: usize,
    cache: WeightCache,
}

impl Adaptive {
    /// Default share of picks, per endpoint, that probe uniformly: 1%.
    pub const PROBE_SHARE: f64 = 0.01;

    /// Default cap on the total share of probing picks: 10%.
    pub const PROBE_SHARE_MAX: f64 = 0.10;

    /// Decay window of the peak-EWMA latency estimate that callers should
    /// feed `adaptive` through [`Endpoints::recent_latency`] (which falls
    /// back to [`Endpoints::latency`]): 3 s, rather than the
    /// 10 s that `p2c-ewma` reads, so a backend's estimate comes back down
    /// within seconds of a stall or a recovery (chosen in the simulator).
    pub const LATENCY_DECAY: std::time::Duration = std::time::Duration::from_secs(3);

    /// Default exponent of the latency in the cost: 0.375 (see the type
    /// docs).
    pub const LATENCY_EXPONENT: f64 = 0.375;

    /// Default exponent of the load (`in_flight + 1`) in the cost: 1.5 (see the
    /// type docs).
    pub const LOAD_EXPONENT: f64 = 1.5;

    /// Default number of candidates compared per pick: 3 (see the type docs).
    pub const CHOICES: usize = 3;

    /// With the 30 ms default latency and the default probing share.
    pub fn new() -> Self {
        Self::with_default_latency(DEFAULT_LATENCY_NS)
    }

    /// With a custom latency (in ns) for endpoints without samples.
    /// A value that is not finite and non-negative falls back to 30 ms.
    pub fn with_default_latency(default_ns: f64) -> Self {
        let default_ns = if default_ns.is_finite() && default_ns >= 0.0 {
            default_ns
        } else {
            DEFAULT_LATENCY_NS
        };
        Adaptive {
            default_ns,
            latency_exponent: Self::LATENCY_EXPONENT,
            probe_share: Self::PROBE_SHARE,
            probe_share_max: Self::PROBE_SHARE_MAX,
            load_exponent: Self::LOAD_EXPONENT,
            choices: Self::CHOICES,
            cache: WeightCache::default(),
        }
    }

    /// Sets the probing share: `per_endpoint` of the picks for each endpoint,
    /// at most `max` of all picks (see the type docs). Both are fractions in
    /// `0..=1`; values outside are clamped, NaN keeps the default. `0` turns
    /// probing off (the endpoint-starving behaviour of plain weighted P2C).
    pub fn with_probe_share(mut self, per_endpoint: f64, max: f64) -> Self {
        let fraction = |x: f64, default: f64| {
            if x.is_nan() {
                default
            } else {
                x.clamp(0.0, 1.0)
            }
        };
        self.probe_share = fraction(per_endpoint, Self::PROBE_SHARE);
        self.probe_share_max = fraction(max, Self::PROBE_SHARE_MAX);
        self
    }

    /// Sets the exponent `e` of the latency in the cost
    /// `latency^e × (in_flight + 1) / weight`: 1 weighs latency fully, 0
    /// ignores it (weighted least-requests), values between damp it. Clamped
    /// into `0..=4`; NaN keeps the default.
    pub fn with_latency_exponent(mut self, e: f64) -> Self {
        self.latency_exponent = if e.is_nan() {
            Self::LATENCY_EXPONENT
        } else {
            e.clamp(0.0, 4.0)
        };
        self
    }

    /// The exponent of the latency in the cost.
    pub fn latency_exponent(&self) -> f64 {
        self.latency_exponent
    }

    /// Sets the exponent `q` of the load in the cost
    /// `latency^e × (in_flight + 1)^q / weight`: 1 by default; above 1
    /// requests in flight weigh more than latency and weight. Clamped into
    /// `0..=4`; NaN keeps the default.
    pub fn with_load_exponent(mut self, q: f64) -> Self {
        self.load_exponent = if q.is_nan() { 1.0 } else { q.clamp(0.0, 4.0) };
        self
    }

    /// The exponent of the load in the cost.
    pub fn load_exponent(&self) -> f64 {
        self.load_exponent
    }

    /// Sets how many distinct candidates a comparing pick draws (2 by
    /// default, the power of two choices); clamped into `2..=4`.
    pub fn with_choices(mut self, k: usize) -> Self {
        self.choices = k.clamp(2, 4);
        self
    }

    /// How many candidates a comparing pick draws.
    pub fn choices(&self) -> usize {
        self.choices
    }

    /// The latency used for endpoints without samples, in ns.
    pub fn default_latency_ns(&self) -> f64 {
        self.default_ns
    }

    /// The probing share as `(per_endpoint, max)`.
    pub fn probe_share(&self) -> (f64, f64) {
        (self.probe_share, self.probe_share_max)
    }

    /// Probability that a pick over `len` endpoints is a uniform probe:
    /// `min(len × per_endpoint, max)`.
    pub fn probe_probability(&self, len: usize) -> f64 {
        (len as f64 * self.probe_share).min(self.probe_share_max)
    }

    fn cost(&self, endpoints: &dyn Endpoints, i: usize, ctx: &PickContext<'_>) -> f64 {
        let w = usable_weight(endpoints.weight(i));
        if w <= 0.0 {
            return f64::INFINITY;
        }
        let load = endpoints.in_flight(i) as f64 + 1.0;
        let load = if self.load_exponent == 1.0 {
            load
        } else {
            load.powf(self.load_exponent)
        };
        let latency = match endpoints.recent_latency(i, ctx.now) {
            Some(l) if l >= 0.0 => l,
            _ => self.default_ns,
        };
        let e = self.latency_exponent;
        let latency = if e == 1.0 {
            latency
        } else if e == 0.0 {
            1.0
        } else {
            latency.powf(e)
        };
        latency * load / w
    }
}

impl Default for Adaptive {
    fn default() -> Self {
        Self::new()
    }
}

impl Balancer for Adaptive {
    fn pick(&self, endpoints: &dyn Endpoints, ctx: &mut PickContext<'_>) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        let probe = self.probe_probability(n);
        if probe > 0.0 && ctx.rng.next_f64() < probe {
            return uniform(endpoints, ctx.rng, None);
        }
        let by_weight = |_: usize, w: f64| w;
        let a = weighted(endpoints, ctx.rng, &self.cache, None, &by_weight)?;
        let Some(b) = weighted(endpoints, ctx.rng, &self.cache, Some(a), &by_weight) else {
            return Some(a);
        };
        let (ca, cb) = (self.cost(endpoints, a, ctx), self.cost(endpoints, b, ctx));
        let (mut best, mut best_cost) = if cb < ca { (b, cb) } else { (a, ca) };
        let mut drawn = [a, b, usize::MAX, usize::MAX];
        for k in 2..self.choices {
            let seen = drawn;
            let others = |i: usize, w: f64| if seen.contains(&i) { 0.0 } else { w };
            let Some(c) = weighted(endpoints, ctx.rng, &self.cache, Some(a), &others) else {
                break;
            };
            if seen.contains(&c) {
                break;
            }
            if let Some(slot) = drawn.get_mut(k) {
                *slot = c;
            }
            let cc = self.cost(endpoints, c, ctx);
            if cc < best_cost {
                (best, best_cost) = (c, cc);
            }
        }
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::StaticEndpoints;
    use crate::rng::FastRng;
    use crate::time::Nanos;

    #[test]
    fn probe_probability_is_per_endpoint_and_capped() {
        let a = Adaptive::new();
        assert_eq!(a.probe_share(), (0.01, 0.10));
        assert_eq!(a.probe_probability(0), 0.0);
        assert!((a.probe_probability(4) - 0.04).abs() < 1e-12);
        assert!((a.probe_probability(10) - 0.10).abs() < 1e-12);
        assert_eq!(a.probe_probability(1000), 0.10);
        // Per endpoint: at least 0.5% up to 20 endpoints.
        for n in 1..=20 {
            assert!(a.probe_probability(n) / n as f64 >= 0.005 - 1e-12, "{n}");
        }
    }

    #[test]
    fn probe_share_is_validated() {
        let a = Adaptive::new().with_probe_share(-1.0, 7.0);
        assert_eq!(a.probe_share(), (0.0, 1.0));
        assert_eq!(a.probe_probability(50), 0.0);
        let a = Adaptive::new().with_probe_share(f64::NAN, f64::NAN);
        assert_eq!(a.probe_share(), (0.01, 0.10));
        let a = Adaptive::with_default_latency(1e6).with_probe_share(0.5, 0.25);
        assert_eq!(a.probe_probability(3), 0.25);
        assert_eq!(a.default_latency_ns(), 1e6);
    }

    #[test]
    fn more_choices_find_the_least_loaded() {
        let mut eps = StaticEndpoints::uniform(3);
        for (i, load) in [(0, 10), (1, 0), (2, 5)] {
            eps.set_in_flight(i, load);
        }
        let count = |b: &Adaptive| {
            let mut rng = FastRng::seed(7);
            (0..3000)
                .filter(|_| b.pick(&eps, &mut PickContext::new(Nanos(0), &mut rng)) == Some(1))
                .count()
        };
        assert_eq!(Adaptive::new().choices(), Adaptive::CHOICES);
        let two = Adaptive::new().with_probe_share(0.0, 0.0).with_choices(2);
        assert_eq!(two.choices(), 2);
        // Two of three: the idle endpoint is among them two times in three.
        let share = count(&two) as f64 / 3000.0;
        assert!((share - 2.0 / 3.0).abs() < 0.05, "{share}");
        // Three of three always see it.
        let three = Adaptive::new().with_probe_share(0.0, 0.0).with_choices(3);
        assert_eq!(count(&three), 3000);
        assert_eq!(Adaptive::new().with_choices(0).choices(), 2);
        assert_eq!(Adaptive::new().with_choices(9).choices(), 4);
        // More choices than endpoints: all of them, once each.
        let mut two_eps = StaticEndpoints::uniform(2);
        two_eps.set_in_flight(0, 3);
        let four = Adaptive::new().with_probe_share(0.0, 0.0).with_choices(4);
        let mut rng = FastRng::seed(1);
        for _ in 0..100 {
            assert_eq!(
                four.pick(&two_eps, &mut PickContext::new(Nanos(0), &mut rng)),
                Some(1)
            );
        }
    }

    #[test]
    fn load_exponent_weighs_requests_in_flight() {
        let a = Adaptive::new();
        assert_eq!(a.load_exponent(), Adaptive::LOAD_EXPONENT);
        assert_eq!(a.with_load_exponent(f64::NAN).load_exponent(), 1.0);
        assert_eq!(Adaptive::new().with_load_exponent(9.0).load_exponent(), 4.0);
        // Endpoint 0: weight 2, 3 in flight; endpoint 1: weight 1, idle. With q = 1.5
        // the costs are 8/2 = 4 against 1; with q = 0 (load ignored) 0.5 against 1.
        let mut eps = StaticEndpoints::from_weights([2.0, 1.0]);
        eps.set_in_flight(0, 3);
        let pick = |b: Adaptive| {
            let b = b.with_probe_share(0.0, 0.0);
            let mut rng = FastRng::seed(3);
            b.pick(&eps, &mut PickContext::new(Nanos(0), &mut rng))
        };
        assert_eq!(pick(Adaptive::new()), Some(1));
        assert_eq!(pick(Adaptive::new().with_load_exponent(0.0)), Some(0));
    }

    #[test]
    fn latency_is_damped_by_the_exponent() {
        let a = Adaptive::new().with_probe_share(0.0, 0.0);
        assert_eq!(a.latency_exponent(), 0.375);
        let pick = |b: &Adaptive, eps: &StaticEndpoints| {
            let mut rng = FastRng::seed(3);
            b.pick(eps, &mut PickContext::new(Nanos(0), &mut rng))
        };
        // Weight 2 and 5× the latency: the damped latency (5^0.375 ≈ 1.8)
        // does not outweigh the weight; the full latency does.
        let mut eps = StaticEndpoints::from_weights([1.0, 2.0]);
        eps.set_latency(0, Some(1e6));
        eps.set_latency(1, Some(5e6));
        assert_eq!(pick(&a, &eps), Some(1));
        assert_eq!(pick(&a.with_latency_exponent(1.0), &eps), Some(0));
        // Exponent 0: latency ignored, load over weight decides.
        let a0 = Adaptive::new()
            .with_probe_share(0.0, 0.0)
            .with_latency_exponent(0.0);
        eps.set_latency(1, Some(1e9));
        assert_eq!(pick(&a0, &eps), Some(1));
        eps.set_in_flight(1, 4);
        assert_eq!(pick(&a0, &eps), Some(0));
        assert_eq!(
            Adaptive::new()
                .with_latency_exponent(f64::NAN)
                .latency_exponent(),
            0.375
        );
        assert_eq!(
            Adaptive::new()
                .with_latency_exponent(9.0)
                .latency_exponent(),
            4.0
        );
    }

    #[test]
    fn without_probing_a_slow_endpoint_starves() {
        let mut eps = StaticEndpoints::uniform(4);
        for i in 0..3 {
            eps.set_latency(i, Some(1e6));
        }
        eps.set_latency(3, Some(100e6));
        let count_slow = |b: &Adaptive| {
            let mut rng = FastRng::seed(9);
            (0..20_000)
                .filter(|_| b.pick(&eps, &mut PickContext::new(Nanos(0), &mut rng)) == Some(3))
                .count()
        };
        assert_eq!(count_slow(&Adaptive::new().with_probe_share(0.0, 0.0)), 0);
        // Expected 1% of 20k, standard deviation about 14.
        let slow = count_slow(&Adaptive::new());
        assert!((140..=260).contains(&slow), "{slow}");
    }
}
