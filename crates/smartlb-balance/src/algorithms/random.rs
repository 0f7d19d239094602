use crate::balancer::{Balancer, PickContext};
use crate::endpoints::Endpoints;
use crate::sample::{WeightCache, uniform, weighted};

/// `random`: uniformly at random among the pickable endpoints (eligible,
/// weight `> 0`); other weights are ignored.
///
/// A few random probes, then an exact one-pass choice if they all hit
/// endpoints that are not pickable.
#[derive(Debug, Default)]
pub struct Random;

impl Random {
    /// The uniform random selector (it has no state).
    pub fn new() -> Self {
        Random
    }
}

impl Balancer for Random {
    fn pick(&self, endpoints: &dyn Endpoints, ctx: &mut PickContext<'_>) -> Option<usize> {
        uniform(endpoints, ctx.rng, None)
    }
}

/// `weighted-random`: at random, each pickable endpoint with probability
/// `weight / total weight`, weights read live.
///
/// Up to 16 endpoints it does one exact pass. Above that it uses rejection
/// sampling against a cached maximum weight (a handful of probes), which is
/// exact in proportion; the cache is refreshed by a full pass on one pick in
/// 128, or at once when a probe meets a larger weight, so a weight raise is
/// fully honoured within a bounded number of picks.
#[derive(Debug, Default)]
pub struct WeightedRandom {
    cache: WeightCache,
}

impl WeightedRandom {
    /// A weighted random selector.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for WeightedRandom {
    fn pick(&self, endpoints: &dyn Endpoints, ctx: &mut PickContext<'_>) -> Option<usize> {
        weighted(endpoints, ctx.rng, &self.cache, None, &|_, w| w)
    }
}
