use super::latency_cost;
use crate::balancer::{Balancer, PickContext};
use crate::endpoints::Endpoints;
use crate::ewma::DEFAULT_LATENCY_NS;
use crate::sample::uniform_pair;

/// `p2c-ewma`: the power of two choices (Mitzenmacher) on peak-EWMA cost,
/// as tower's and linkerd's `p2c` balancer over `PeakEwma` load.
///
/// Two distinct pickable endpoints are drawn uniformly at random; the one
/// with the lower cost `latency × (in_flight + 1)` wins (the first drawn on
/// ties). `latency` is [`Endpoints::latency`] (see
/// [`PeakEwma`](crate::PeakEwma)); an endpoint without samples costs the
/// default latency (30 ms, as tower's default RTT) so that new endpoints are
/// tried but not flooded. Weights only decide pickability (`> 0`).
#[derive(Debug)]
pub struct P2cEwma {
    default_ns: f64,
}

impl P2cEwma {
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
        P2cEwma { default_ns }
    }

    /// The latency used for endpoints without samples, in ns.
    pub fn default_latency_ns(&self) -> f64 {
        self.default_ns
    }

    fn cost(&self, endpoints: &dyn Endpoints, i: usize, ctx: &PickContext<'_>) -> f64 {
        latency_cost(
            endpoints.latency(i, ctx.now),
            self.default_ns,
            endpoints.in_flight(i),
        )
    }
}

impl Default for P2cEwma {
    fn default() -> Self {
        Self::new()
    }
}

impl Balancer for P2cEwma {
    fn pick(&self, endpoints: &dyn Endpoints, ctx: &mut PickContext<'_>) -> Option<usize> {
        let (a, b) = uniform_pair(endpoints, ctx.rng)?;
        let Some(b) = b else { return Some(a) };
        let (ca, cb) = (self.cost(endpoints, a, ctx), self.cost(endpoints, b, ctx));
        Some(if cb < ca { b } else { a })
    }
}
