//! The selector trait, its per-pick inputs and the algorithm catalogue.

use std::fmt;
use std::str::FromStr;

use crate::algorithms::{
    Adaptive, ConsistentHash, IpHash, LeastRequests, P2cEwma, Random, RoundRobin, WeightedRandom,
    WeightedRoundRobin,
};
use crate::endpoints::Endpoints;
use crate::rng::Rng;
use crate::time::Nanos;

/// Per-pick inputs supplied by the caller: the time, the random source and,
/// for the hashing algorithms, the request key's hash.
pub struct PickContext<'a> {
    /// The current time (virtual time in a simulator).
    pub now: Nanos,
    /// Random source; a fixed seed makes picks reproducible.
    pub rng: &'a mut dyn Rng,
    /// Hash of the request key for `consistent-hash` (header, cookie, ...)
    /// and `ip-hash` (client address); see [`hash_bytes`](crate::hash_bytes).
    pub hash: Option<u64>,
}

impl<'a> PickContext<'a> {
    /// A context without a request key hash.
    pub fn new(now: Nanos, rng: &'a mut dyn Rng) -> Self {
        PickContext {
            now,
            rng,
            hash: None,
        }
    }

    /// Sets the request key hash.
    pub fn with_hash(mut self, hash: u64) -> Self {
        self.hash = Some(hash);
        self
    }
}

impl fmt::Debug for PickContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PickContext")
            .field("now", &self.now)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// A selector built for one membership of endpoints.
///
/// It is rebuilt (cheaply) when endpoints are added or removed, never for
/// weight, eligibility or load changes: those are read live from
/// [`Endpoints`] at every pick. `pick` takes `&self` and may be called from
/// many threads at once.
///
/// Guarantees of every implementation in this crate: the result is `None`
/// or an index `< endpoints.len()` that is eligible and has a usable
/// (positive, finite) weight at the time it was checked; `None` exactly when
/// no endpoint qualifies; work per pick is bounded (a few random probes and
/// at most a couple of passes over the endpoints).
pub trait Balancer: Send + Sync + fmt::Debug {
    /// Chooses an endpoint index, or `None` when none can take the request.
    fn pick(&self, endpoints: &dyn Endpoints, ctx: &mut PickContext<'_>) -> Option<usize>;
}

impl<B: Balancer + ?Sized> Balancer for Box<B> {
    fn pick(&self, endpoints: &dyn Endpoints, ctx: &mut PickContext<'_>) -> Option<usize> {
        (**self).pick(endpoints, ctx)
    }
}

impl<B: Balancer + ?Sized> Balancer for std::sync::Arc<B> {
    fn pick(&self, endpoints: &dyn Endpoints, ctx: &mut PickContext<'_>) -> Option<usize> {
        (**self).pick(endpoints, ctx)
    }
}

/// The selection algorithms, by their configuration names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `round-robin`: each endpoint in turn, skipping those not pickable.
    RoundRobin,
    /// `weighted-round-robin`: NGINX's smooth weighted round-robin.
    WeightedRoundRobin,
    /// `random`: uniform among the pickable endpoints.
    Random,
    /// `weighted-random`: random in proportion to weight.
    WeightedRandom,
    /// `least-requests`: Envoy's least-request (power of two choices on
    /// in-flight requests, or weight / (in-flight + 1) sampling).
    LeastRequests,
    /// `p2c-ewma`: power of two choices on peak-EWMA latency × load.
    P2cEwma,
    /// `consistent-hash`: Maglev hashing of the request key.
    ConsistentHash,
    /// `ip-hash`: weighted hashing of the client address.
    IpHash,
    /// `adaptive`: weighted power of two choices on latency × load / weight,
    /// with a small uniform probing share.
    Adaptive,
}

impl Algorithm {
    /// Every algorithm, in documentation order.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::Random,
        Algorithm::WeightedRandom,
        Algorithm::LeastRequests,
        Algorithm::P2cEwma,
        Algorithm::ConsistentHash,
        Algorithm::IpHash,
        Algorithm::Adaptive,
    ];

    /// The configuration name (kebab-case), e.g. `"p2c-ewma"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round-robin",
            Algorithm::WeightedRoundRobin => "weighted-round-robin",
            Algorithm::Random => "random",
            Algorithm::WeightedRandom => "weighted-random",
            Algorithm::LeastRequests => "least-requests",
            Algorithm::P2cEwma => "p2c-ewma",
            Algorithm::ConsistentHash => "consistent-hash",
            Algorithm::IpHash => "ip-hash",
            Algorithm::Adaptive => "adaptive",
        }
    }

    /// Whether the algorithm uses [`PickContext::hash`] (without one it
    /// falls back to uniform random among the pickable endpoints).
    pub const fn uses_hash(self) -> bool {
        matches!(self, Algorithm::ConsistentHash | Algorithm::IpHash)
    }

    /// Whether the algorithm reads [`Endpoints::latency`].
    pub const fn uses_latency(self) -> bool {
        matches!(self, Algorithm::P2cEwma | Algorithm::Adaptive)
    }

    /// Whether configured weights change the share an endpoint receives.
    /// For the others a weight only has to be positive for the endpoint to
    /// be pickable.
    pub const fn honours_weights(self) -> bool {
        !matches!(
            self,
            Algorithm::RoundRobin | Algorithm::Random | Algorithm::P2cEwma
        )
    }

    /// Builds a selector for the current membership of `endpoints`, with the
    /// defaults of each algorithm. Only the hashing algorithms look at the
    /// endpoints here (identities and weights, for their tables); the others
    /// read everything live at each pick.
    pub fn build(self, endpoints: &dyn Endpoints) -> Box<dyn Balancer> {
        match self {
            Algorithm::RoundRobin => Box::new(RoundRobin::new()),
            Algorithm::WeightedRoundRobin => Box::new(WeightedRoundRobin::new(endpoints.len())),
            Algorithm::Random => Box::new(Random::new()),
            Algorithm::WeightedRandom => Box::new(WeightedRandom::new()),
            Algorithm::LeastRequests => Box::new(LeastRequests::new()),
            Algorithm::P2cEwma => Box::new(P2cEwma::new()),
            Algorithm::ConsistentHash => Box::new(ConsistentHash::build(endpoints)),
            Algorithm::IpHash => Box::new(IpHash::build(endpoints)),
            Algorithm::Adaptive => Box::new(Adaptive::new()),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown algorithm name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseAlgorithmError {
    input: String,
}

impl ParseAlgorithmError {
    /// The name that was not recognised.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for ParseAlgorithmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown algorithm {:?}; valid names are: ", self.input)?;
        for (k, a) in Algorithm::ALL.iter().enumerate() {
            if k > 0 {
                f.write_str(", ")?;
            }
            f.write_str(a.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseAlgorithmError {}

impl FromStr for Algorithm {
    type Err = ParseAlgorithmError;

    /// Parses a configuration name exactly as [`Algorithm::as_str`] writes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| ParseAlgorithmError {
                input: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::StaticEndpoints;
    use crate::rng::FastRng;

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
            assert_eq!(a.to_string(), a.as_str());
        }
    }

    #[test]
    fn unknown_name_lists_valid_ones() {
        let err = "least-request".parse::<Algorithm>().err();
        let err = err.map(|e| (e.input().to_owned(), e.to_string()));
        let (input, msg) = err.unwrap_or_default();
        assert_eq!(input, "least-request");
        assert!(msg.contains("\"least-request\""), "{msg}");
        for a in Algorithm::ALL {
            assert!(msg.contains(a.as_str()), "{msg}");
        }
        assert!("".parse::<Algorithm>().is_err());
        assert!("Round-Robin".parse::<Algorithm>().is_err());
    }

    #[test]
    fn flags() {
        assert!(Algorithm::ConsistentHash.uses_hash());
        assert!(!Algorithm::Adaptive.uses_hash());
        assert!(Algorithm::P2cEwma.uses_latency());
        assert!(!Algorithm::Random.honours_weights());
        assert!(Algorithm::LeastRequests.honours_weights());
    }

    #[test]
    fn boxed_and_shared_balancers_pick() {
        let eps = StaticEndpoints::uniform(2);
        let mut rng = FastRng::seed(1);
        for a in Algorithm::ALL {
            let b = a.build(&eps);
            let shared: std::sync::Arc<dyn Balancer> = std::sync::Arc::from(a.build(&eps));
            let mut ctx = PickContext::new(Nanos(0), &mut rng).with_hash(5);
            assert!(b.pick(&eps, &mut ctx).is_some());
            assert!(shared.pick(&eps, &mut ctx).is_some());
            assert!(format!("{ctx:?}").contains("hash"));
        }
    }
}
