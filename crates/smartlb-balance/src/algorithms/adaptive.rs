use super::latency_cost;
use crate::balancer::{Balancer, PickContext};
use crate::endpoints::{Endpoints, usable_weight};
use crate::ewma::DEFAULT_LATENCY_NS;
use crate::sample::{WeightCache, weighted};

/// `adaptive`, first version: weighted power of two choices.
///
/// Two distinct pickable endpoints are drawn at random in proportion to
/// their live effective weight (the weights the traffic analyser sets), and
/// the one with the lower `latency × (in_flight + 1) / weight` wins, where
/// `latency` is the peak-EWMA estimate or the 30 ms default without
/// samples. Weights thus act twice: they decide who is considered, and they
/// discount the cost of endpoints trusted with more capacity.
///
/// This is the starting point that the simulator (`smartlb simulate`) is
/// used to tune; the spec's refinements (failure-aware latency, probing
/// share, bounded weight moves) live partly in how callers feed weights and
/// latencies and may move here as the algorithm evolves.
#[derive(Debug)]
pub struct Adaptive {
    default_ns: f64,
    cache: WeightCache,
}

impl Adaptive {
    /// With the 30 ms default latency.
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
            cache: WeightCache::default(),
        }
    }

    /// The latency used for endpoints without samples, in ns.
    pub fn default_latency_ns(&self) -> f64 {
        self.default_ns
    }

    fn cost(&self, endpoints: &dyn Endpoints, i: usize, ctx: &PickContext<'_>) -> f64 {
        let w = usable_weight(endpoints.weight(i));
        if w <= 0.0 {
            return f64::INFINITY;
        }
        latency_cost(
            endpoints.latency(i, ctx.now),
            self.default_ns,
            endpoints.in_flight(i),
        ) / w
    }
}

impl Default for Adaptive {
    fn default() -> Self {
        Self::new()
    }
}

impl Balancer for Adaptive {
    fn pick(&self, endpoints: &dyn Endpoints, ctx: &mut PickContext<'_>) -> Option<usize> {
        let by_weight = |_: usize, w: f64| w;
        let a = weighted(endpoints, ctx.rng, &self.cache, None, &by_weight)?;
        let Some(b) = weighted(endpoints, ctx.rng, &self.cache, Some(a), &by_weight) else {
            return Some(a);
        };
        let (ca, cb) = (self.cost(endpoints, a, ctx), self.cost(endpoints, b, ctx));
        Some(if cb < ca { b } else { a })
    }
}
