//! The algorithm implementations. [`Algorithm::build`](crate::Algorithm::build)
//! builds them with their defaults; construct them here directly to change
//! a parameter (the least-requests bias, the default latency cost).

mod adaptive;
mod hashing;
mod least_requests;
mod p2c_ewma;
mod random;
mod round_robin;
mod weighted_round_robin;

pub use adaptive::Adaptive;
pub use hashing::{ConsistentHash, IpHash};
pub use least_requests::LeastRequests;
pub use p2c_ewma::P2cEwma;
pub use random::{Random, WeightedRandom};
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

/// Cost of an endpoint from its latency estimate (or `default_ns` without
/// one) and its load. Bad estimates (NaN, negative) count as the default.
#[inline]
pub(crate) fn latency_cost(latency: Option<f64>, default_ns: f64, in_flight: u64) -> f64 {
    let latency = match latency {
        Some(l) if l >= 0.0 => l,
        _ => default_ns,
    };
    latency * (in_flight as f64 + 1.0)
}
