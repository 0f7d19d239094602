//! Pure endpoint-selection algorithms for a load balancer: given a set of
//! endpoints and what is known about them right now, choose the one that
//! should receive the next request.
//!
//! No async runtime, no I/O, no dependencies: the crate works on plain data
//! that the caller exposes, with time and randomness passed in, so the same
//! code runs in the `smartlb` proxy, in an embedding service and in a
//! deterministic simulator, and can be tested and benchmarked on its own.
//!
//! # The model
//!
//! * [`Endpoints`] is what an algorithm may read about the endpoints, indexed
//!   `0..len()`: effective weight, eligibility (healthy, not draining),
//!   requests in flight, peak-EWMA latency and a stable identity. The caller
//!   implements it over its own live state; [`StaticEndpoints`] is a ready
//!   `Vec`-backed one.
//! * A [`Balancer`] is built by [`Algorithm::build`] for one membership and
//!   rebuilt only when endpoints join or leave. Weight, eligibility, load and
//!   latency changes are read live at every [`Balancer::pick`], which takes
//!   `&self` and may run on many threads at once.
//! * [`PickContext`] carries the per-pick inputs: the time ([`Nanos`]), a
//!   random source ([`Rng`], e.g. [`FastRng`]) and, for the hashing
//!   algorithms, the request key's hash ([`hash_bytes`]).
//!
//! Rules every algorithm follows: an endpoint is *pickable* when it is
//! eligible and its weight is a positive finite number (a weight of 0 means
//! "never pick" even for the algorithms that otherwise ignore weights); a
//! pick returns a pickable index or `None` when there is none; the work per
//! pick is bounded (a few random probes, at most a couple of passes over the
//! endpoints, never an open loop).
//!
//! # The algorithms
//!
//! | name | how it chooses | source |
//! | --- | --- | --- |
//! | `round-robin` | each endpoint in turn, skipping those not pickable | classic |
//! | `weighted-round-robin` | smooth weighted round-robin: exact shares, interleaved | NGINX `ngx_http_upstream_get_peer` |
//! | `random` | uniform among the pickable | classic |
//! | `weighted-random` | random in proportion to weight | classic |
//! | `least-requests` | power of two choices on in-flight requests; with unequal weights, random in proportion to `weight / (in_flight + 1)^bias` | Envoy's least-request balancer; Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing" (2001) |
//! | `p2c-ewma` | power of two choices on `latency × (in_flight + 1)` with peak-EWMA latency, 30 ms for unknown endpoints | Finagle's and tower's / linkerd's peak-EWMA balancer ([`PeakEwma`]) |
//! | `consistent-hash` | Maglev lookup table of the request key, weighted | Eisenbud et al., "Maglev", NSDI 2016 |
//! | `ip-hash` | client address hash on the cumulative weight line | NGINX `ip_hash` |
//! | `adaptive` | first version: weighted power of two choices on `latency × (in_flight + 1) / weight`, plus a uniform probing share (1% of picks per endpoint, at most 10% in all) so no endpoint is starved | this project, tuned in its simulator |
//!
//! The hashing algorithms fall back to uniform random among the pickable
//! endpoints when [`PickContext::hash`] is `None`. Details, parameters and
//! trade-offs are on each type in [`algorithms`].
//!
//! # Example
//!
//! ```
//! use smartlb_balance::{Algorithm, Endpoints, FastRng, Nanos, PickContext, StaticEndpoints};
//!
//! // Three backends, the second with three times the weight; the third is down.
//! let mut endpoints = StaticEndpoints::from_weights([1.0, 3.0, 1.0]);
//! endpoints.set_eligible(2, false);
//!
//! let balancer = Algorithm::WeightedRoundRobin.build(&endpoints);
//! let mut rng = FastRng::seed(42);
//! let mut counts = [0; 3];
//! for _ in 0..400 {
//!     let mut ctx = PickContext::new(Nanos(0), &mut rng);
//!     if let Some(i) = balancer.pick(&endpoints, &mut ctx) {
//!         counts[i] += 1;
//!     }
//! }
//! assert_eq!(counts, [100, 300, 0]);
//!
//! // Names as in the configuration file.
//! let algorithm: Algorithm = "p2c-ewma".parse()?;
//! assert_eq!(algorithm, Algorithm::P2cEwma);
//! # Ok::<(), smartlb_balance::ParseAlgorithmError>(())
//! ```

pub mod algorithms;
mod balancer;
mod endpoints;
mod ewma;
mod hash;
mod rng;
mod sample;
mod time;

pub use balancer::{Algorithm, Balancer, ParseAlgorithmError, PickContext};
pub use endpoints::{Endpoints, Excluding, StaticEndpoint, StaticEndpoints};
pub use ewma::{DEFAULT_DECAY, DEFAULT_LATENCY_NS, PeakEwma};
pub use hash::{hash_bytes, hash_u64};
pub use rng::{FastRng, Rng};
pub use time::Nanos;
