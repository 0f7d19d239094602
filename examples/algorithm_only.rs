// Run with: cargo run -p smartlb-examples --example algorithm_only
//
//! The selection algorithms alone: no runtime, no network. Four backends of
//! different speeds and weights sit behind a small `Endpoints` implementation
//! over plain `Vec` state; each algorithm serves the same stream of requests
//! in virtual time and the program prints how it spread them.

use std::time::Duration;

use smartlb_balance::{
    Algorithm, Endpoints, FastRng, Nanos, PeakEwma, PickContext, Rng, hash_bytes,
};

/// One backend as the caller sees it.
struct Backend {
    address: &'static str,
    weight: f64,
    healthy: bool,
    /// Mean service time in nanoseconds (the model of this backend).
    service_ns: f64,
    /// When each of its outstanding requests finishes (virtual time).
    outstanding: Vec<u64>,
    latency: PeakEwma,
}

/// The caller's state, exposed to the algorithms through `Endpoints`.
struct Pool {
    backends: Vec<Backend>,
}

impl Endpoints for Pool {
    fn len(&self) -> usize {
        self.backends.len()
    }
    fn weight(&self, i: usize) -> f64 {
        self.backends[i].weight
    }
    fn is_eligible(&self, i: usize) -> bool {
        self.backends[i].healthy
    }
    fn in_flight(&self, i: usize) -> u64 {
        self.backends[i].outstanding.len() as u64
    }
    fn latency(&self, i: usize, now: Nanos) -> Option<f64> {
        self.backends[i].latency.get(now)
    }
    fn id(&self, i: usize) -> u64 {
        hash_bytes(self.backends[i].address.as_bytes())
    }
}

fn pool() -> Pool {
    let backend = |address, weight, service_ms: f64| Backend {
        address,
        weight,
        healthy: true,
        service_ns: service_ms * 1e6,
        outstanding: Vec::new(),
        latency: PeakEwma::new(Duration::from_secs(10), 30e6),
    };
    Pool {
        backends: vec![
            backend("10.0.0.1:8080", 1.0, 4.0),
            backend("10.0.0.2:8080", 1.0, 4.0),
            backend("10.0.0.3:8080", 2.0, 2.0),
            backend("10.0.0.4:8080", 1.0, 12.0),
        ],
    }
}

/// Sends `requests` requests, one every 3 ms of virtual time, and returns how
/// many each backend received and the mean latency.
fn run(algorithm: Algorithm, requests: u64, rng: &mut FastRng) -> (Vec<u64>, f64) {
    let mut pool = pool();
    let balancer = algorithm.build(&pool);
    let mut counts = vec![0u64; pool.len()];
    let mut total_latency = 0.0;
    for k in 0..requests {
        let now = k * 3_000_000;
        // Complete what has finished by now, feeding the latency estimators.
        for b in &mut pool.backends {
            b.outstanding.retain(|&done| done > now);
        }
        // Half-way through, the fast backend goes down.
        pool.backends[2].healthy = k < requests / 2;

        let user = format!("user-{}", rng.below(500));
        let mut ctx = PickContext::new(Nanos(now), rng).with_hash(hash_bytes(user.as_bytes()));
        let Some(i) = balancer.pick(&pool, &mut ctx) else {
            continue;
        };
        counts[i] += 1;
        let b = &mut pool.backends[i];
        // Service time grows by half for each request already queued.
        let latency = b.service_ns * (1.0 + b.outstanding.len() as f64 * 0.5);
        b.outstanding.push(now + latency as u64);
        b.latency.observe(latency, Nanos(now + latency as u64));
        total_latency += latency;
    }
    (counts, total_latency / requests as f64 / 1e6)
}

fn main() {
    let requests = 10_000;
    let mut rng = FastRng::seed(2024);
    let addresses: Vec<&str> = pool().backends.iter().map(|b| b.address).collect();
    println!(
        "{requests} requests, one every 3 ms; weights 1, 1, 2, 1; service 4, 4, 2, 12 ms, \
         slower as queues grow; {} goes down half-way\n",
        addresses[2]
    );
    print!("{:<22}", "algorithm");
    for a in &addresses {
        print!("{a:>15}");
    }
    println!("{:>14}", "mean latency");
    for algorithm in [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::Random,
        Algorithm::WeightedRandom,
        Algorithm::LeastRequests,
        Algorithm::P2cEwma,
        Algorithm::ConsistentHash,
        Algorithm::IpHash,
        Algorithm::Adaptive,
    ] {
        let (counts, mean_ms) = run(algorithm, requests, &mut rng);
        print!("{:<22}", algorithm.as_str());
        for c in counts {
            print!("{:>14.1}%", c as f64 * 100.0 / requests as f64);
        }
        println!("{mean_ms:>11.1} ms");
    }
}
