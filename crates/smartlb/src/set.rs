//! A membership of endpoints together with the selector built for it.

use std::cell::RefCell;
use std::sync::Arc;

use smartlb_balance::{Algorithm, Balancer, FastRng, Nanos, PickContext};

use crate::endpoint::{Endpoint, View};

thread_local! {
    // One generator per thread: picks never contend on a shared random source.
    static RNG: RefCell<FastRng> = RefCell::new(FastRng::seed(thread_seed()));
}

fn thread_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::clock::now().0);
    h.finish()
}

/// The endpoints of one upstream and the selector built over them.
///
/// Immutable once built: a membership change builds a new set and swaps it in
/// atomically, so the request path never takes a lock to read it.
#[derive(Debug)]
pub struct EndpointSet<S> {
    algorithm: Algorithm,
    endpoints: Vec<Arc<Endpoint<S>>>,
    balancer: Box<dyn Balancer>,
}

impl<S> EndpointSet<S> {
    /// Builds the selector for `endpoints` with `algorithm`.
    pub fn new(algorithm: Algorithm, endpoints: Vec<Arc<Endpoint<S>>>) -> Self {
        let balancer = {
            let view = View::new(&endpoints, crate::clock::now(), &[]);
            algorithm.build(&view)
        };
        Self {
            algorithm,
            endpoints,
            balancer,
        }
    }

    /// The algorithm the selector runs.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The endpoints, in configuration order.
    pub fn endpoints(&self) -> &[Arc<Endpoint<S>>] {
        &self.endpoints
    }

    /// Picks an endpoint for a request at `now`, skipping the ids in `exclude` (endpoints
    /// already tried for this request). `hash` is the request's key for hashing algorithms.
    pub fn pick(
        &self,
        now: Nanos,
        hash: Option<u64>,
        exclude: &[u64],
    ) -> Option<&Arc<Endpoint<S>>> {
        let view = View::new(&self.endpoints, now, exclude);
        let index = RNG.with(|rng| {
            let mut rng = rng.borrow_mut();
            let mut ctx = PickContext {
                now,
                rng: &mut *rng,
                hash,
            };
            self.balancer.pick(&view, &mut ctx)
        })?;
        self.endpoints.get(index)
    }
}

/// Runs `f` with this thread's random generator.
pub(crate) fn with_rng<T>(f: impl FnOnce(&mut FastRng) -> T) -> T {
    RNG.with(|rng| f(&mut rng.borrow_mut()))
}
