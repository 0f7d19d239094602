use crate::balancer::{Balancer, PickContext};
use crate::endpoints::{Endpoints, usable_weight};
use crate::sample::{REFRESH_ONE_IN, SCAN_LIMIT, WeightCache, uniform_pair, weighted};

/// `least-requests`: Envoy's least-request load balancer.
///
/// * When all pickable endpoints have the same weight: the power of two
///   choices (Mitzenmacher) on in-flight requests. Two distinct endpoints
///   are drawn at random and the one with fewer requests outstanding wins
///   (the first drawn on ties). Because the candidates are random, many
///   concurrent picks that see the same counts do not all land on the one
///   least-loaded endpoint.
/// * Otherwise: a random choice in proportion to
///   `weight / (in_flight + 1)^bias` (Envoy's `active_request_bias`, 1.0 by
///   default), so weights set the share when idle and load pulls it down.
///
/// With no load at all both reduce to shares proportional to weight.
/// Whether weights are all equal is checked exactly up to 16 endpoints and
/// from a cached min/max above that (refreshed on one pick in 128 and
/// whenever a candidate's weight contradicts it).
#[derive(Debug)]
pub struct LeastRequests {
    bias: f64,
    cache: WeightCache,
}

impl LeastRequests {
    /// Envoy's default: bias 1.0.
    pub fn new() -> Self {
        Self::with_bias(1.0)
    }

    /// A custom `active_request_bias`: 0 ignores load in the weighted case
    /// (plain weighted random); larger values favour idle endpoints more.
    /// Negative or non-finite values are taken as 1.0.
    pub fn with_bias(bias: f64) -> Self {
        let bias = if bias.is_finite() && bias >= 0.0 {
            bias
        } else {
            1.0
        };
        LeastRequests {
            bias,
            cache: WeightCache::default(),
        }
    }

    /// The active-request bias in use.
    pub fn bias(&self) -> f64 {
        self.bias
    }

    #[inline]
    fn score(&self, w: f64, in_flight: u64) -> f64 {
        let load = in_flight as f64 + 1.0;
        if self.bias == 1.0 {
            w / load
        } else if self.bias == 0.0 {
            w
        } else {
            w / load.powf(self.bias)
        }
    }
}

impl Default for LeastRequests {
    fn default() -> Self {
        Self::new()
    }
}

impl Balancer for LeastRequests {
    fn pick(&self, endpoints: &dyn Endpoints, ctx: &mut PickContext<'_>) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        let (min, max) = if n <= SCAN_LIMIT || ctx.rng.below(REFRESH_ONE_IN) == 0 {
            self.cache.refresh(endpoints)?
        } else {
            let bounds = self.cache.get();
            if bounds.1 > 0.0 {
                bounds
            } else {
                self.cache.refresh(endpoints)?
            }
        };
        if min == max {
            let (a, b) = uniform_pair(endpoints, ctx.rng)?;
            let Some(b) = b else { return Some(a) };
            let (wa, wb) = (
                usable_weight(endpoints.weight(a)),
                usable_weight(endpoints.weight(b)),
            );
            if wa != max || wb != max {
                // Weights changed since the cache was filled.
                self.cache.refresh(endpoints);
            }
            // Equal weights: compares in-flight counts. If the weights turned
            // out unequal, load per unit of weight is the sensible measure.
            let (la, lb) = (
                endpoints.in_flight(a) as f64 + 1.0,
                endpoints.in_flight(b) as f64 + 1.0,
            );
            return Some(if lb * wa < la * wb { b } else { a });
        }
        weighted(endpoints, ctx.rng, &self.cache, None, &|i, w| {
            self.score(w, endpoints.in_flight(i))
        })
    }
}
