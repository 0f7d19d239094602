//! Deterministic scenario tests of each algorithm's behaviour.

use std::sync::Arc;

use smartlb_balance::algorithms::{
    Adaptive, ConsistentHash, IpHash, LeastRequests, P2cEwma, RoundRobin, WeightedRoundRobin,
};
use smartlb_balance::{
    Algorithm, Balancer, Endpoints, Excluding, FastRng, Nanos, PeakEwma, PickContext,
    StaticEndpoints, hash_bytes,
};

fn pick(b: &dyn Balancer, eps: &dyn Endpoints, rng: &mut FastRng) -> Option<usize> {
    b.pick(eps, &mut PickContext::new(Nanos(0), rng))
}

fn pick_hashed(b: &dyn Balancer, eps: &dyn Endpoints, rng: &mut FastRng, h: u64) -> Option<usize> {
    b.pick(eps, &mut PickContext::new(Nanos(0), rng).with_hash(h))
}

fn counts(b: &dyn Balancer, eps: &dyn Endpoints, picks: usize, seed: u64) -> Vec<usize> {
    let mut rng = FastRng::seed(seed);
    let mut c = vec![0; eps.len()];
    for _ in 0..picks {
        if let Some(i) = pick(b, eps, &mut rng) {
            c[i] += 1;
        }
    }
    c
}

#[test]
fn empty_and_all_ineligible_give_none() {
    let empty = StaticEndpoints::new();
    let mut down = StaticEndpoints::from_weights([1.0, 2.0, 3.0]);
    (0..3).for_each(|i| down.set_eligible(i, false));
    let zero = StaticEndpoints::from_weights([0.0, 0.0, -2.0]);
    let mut rng = FastRng::seed(1);
    for algorithm in Algorithm::ALL {
        for eps in [&empty, &down, &zero] {
            let b = algorithm.build(eps);
            for h in 0..20 {
                assert_eq!(pick(&*b, eps, &mut rng), None, "{algorithm}");
                assert_eq!(pick_hashed(&*b, eps, &mut rng, h), None, "{algorithm}");
            }
        }
    }
}

#[test]
fn a_single_pickable_endpoint_always_wins() {
    let mut eps = StaticEndpoints::from_weights([1.0, 5.0, 1.0, 0.0]);
    eps.set_eligible(0, false);
    eps.set_eligible(1, false);
    let mut rng = FastRng::seed(2);
    for algorithm in Algorithm::ALL {
        let b = algorithm.build(&eps);
        for h in 0..50 {
            assert_eq!(pick_hashed(&*b, &eps, &mut rng, h), Some(2), "{algorithm}");
        }
    }
}

/// Fixed seed, 10k picks: shares within 4 standard errors
/// (sqrt(p(1-p)/10k), at most 2 pp) for the random algorithms, 0.1 pp for
/// smooth WRR.
#[test]
fn shares_over_10k_picks_with_a_fixed_seed() {
    let weights = [1.0, 2.0, 3.0, 4.0];
    let eps = StaticEndpoints::from_weights(weights);
    for algorithm in [
        Algorithm::WeightedRoundRobin,
        Algorithm::WeightedRandom,
        Algorithm::LeastRequests,
    ] {
        let c = counts(&*algorithm.build(&eps), &eps, 10_000, 7);
        for (i, &w) in weights.iter().enumerate() {
            let p = w / 10.0;
            let share = c[i] as f64 / 10_000.0;
            let tolerance = if algorithm == Algorithm::WeightedRoundRobin {
                0.001
            } else {
                4.0 * (p * (1.0 - p) / 10_000.0).sqrt()
            };
            assert!((share - p).abs() <= tolerance, "{algorithm} {c:?}");
        }
    }
}

#[test]
fn unweighted_algorithms_spread_evenly_and_skip_weight_zero() {
    let eps = StaticEndpoints::from_weights([1.0, 9.0, 0.0, 3.0]);
    for algorithm in [Algorithm::RoundRobin, Algorithm::Random, Algorithm::P2cEwma] {
        let c = counts(&*algorithm.build(&eps), &eps, 9_000, 3);
        assert_eq!(c[2], 0, "{algorithm}");
        for i in [0, 1, 3] {
            assert!((2_700..3_300).contains(&c[i]), "{algorithm} {c:?}");
        }
    }
}

#[test]
fn round_robin_goes_in_order_and_skips() {
    let mut eps = StaticEndpoints::uniform(4);
    let rr = RoundRobin::new();
    let mut rng = FastRng::seed(0);
    let seq: Vec<_> = (0..8).filter_map(|_| pick(&rr, &eps, &mut rng)).collect();
    assert_eq!(seq, [0, 1, 2, 3, 0, 1, 2, 3]);
    eps.set_eligible(1, false);
    let seq: Vec<_> = (0..4).filter_map(|_| pick(&rr, &eps, &mut rng)).collect();
    assert_eq!(seq, [0, 2, 3, 0]);
}

#[test]
fn smooth_wrr_matches_nginx_and_follows_live_weights() {
    let mut eps = StaticEndpoints::from_weights([5.0, 1.0, 1.0]);
    let wrr = WeightedRoundRobin::new(3);
    let mut rng = FastRng::seed(0);
    let seq: Vec<_> = (0..7).filter_map(|_| pick(&wrr, &eps, &mut rng)).collect();
    assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
    // A weight change applies from the next pick: now 1:1:1 shares.
    eps.set_weight(0, 1.0);
    let c = counts(&wrr, &eps, 3_000, 0);
    assert!(c.iter().all(|&x| (990..=1010).contains(&x)), "{c:?}");
    // Draining endpoint 2: its share goes to the others at once.
    eps.set_eligible(2, false);
    let c = counts(&wrr, &eps, 1_000, 0);
    assert_eq!(c[2], 0);
    assert!((495..=505).contains(&c[0]), "{c:?}");
}

#[test]
fn smooth_wrr_is_exact_across_threads() {
    let eps = Arc::new(StaticEndpoints::from_weights([1.0, 2.0, 3.0, 4.0]));
    let b: Arc<dyn Balancer> = Arc::from(Algorithm::WeightedRoundRobin.build(&*eps));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (eps, b) = (eps.clone(), b.clone());
            std::thread::spawn(move || counts(&*b, &*eps, 2_500, t))
        })
        .collect();
    let mut total = [0usize; 4];
    for h in handles {
        for (i, c) in h.join().expect("thread").into_iter().enumerate() {
            total[i] += c;
        }
    }
    // 10k picks in all, serialised by the selector's lock: exact shares.
    assert_eq!(total, [1_000, 2_000, 3_000, 4_000]);
}

#[test]
fn least_requests_prefers_idle_endpoints_without_herding() {
    // One snapshot, never updated: every pick sees the same counts, as many
    // concurrent picks would. Two choices keep them spread.
    let mut eps = StaticEndpoints::uniform(10);
    for i in 0..10 {
        eps.set_in_flight(i, i as u64);
    }
    let c = counts(&LeastRequests::new(), &eps, 10_000, 4);
    let busiest_share = *c.iter().max().unwrap_or(&0) as f64 / 10_000.0;
    assert!(busiest_share < 0.25, "herding: {c:?}");
    assert_eq!(c[9], 0, "the busiest endpoint never wins a comparison");
    assert!(c[0] > c[5] && c[5] > c[8], "{c:?}");

    // Picks that stay in flight: load stays level.
    let mut eps = StaticEndpoints::uniform(8);
    let lr = LeastRequests::new();
    let mut rng = FastRng::seed(5);
    for _ in 0..800 {
        let i = pick(&lr, &eps, &mut rng).expect("pickable");
        let load = eps.in_flight(i);
        eps.set_in_flight(i, load + 1);
    }
    let loads: Vec<u64> = (0..8).map(|i| eps.in_flight(i)).collect();
    let spread = loads.iter().max().unwrap_or(&0) - loads.iter().min().unwrap_or(&0);
    assert!(spread <= 4, "{loads:?}");
}

#[test]
fn least_requests_with_weights_discounts_load() {
    // Weights 1 and 3; endpoint 1 carries 5 requests: scores 1/1 vs 3/6.
    let mut eps = StaticEndpoints::from_weights([1.0, 3.0]);
    eps.set_in_flight(1, 5);
    let c = counts(&LeastRequests::new(), &eps, 30_000, 6);
    let share0 = c[0] as f64 / 30_000.0;
    assert!((share0 - 2.0 / 3.0).abs() < 0.02, "{c:?}");
    // Bias 0 ignores load: back to 1:3.
    let c = counts(&LeastRequests::with_bias(0.0), &eps, 30_000, 6);
    assert!((c[0] as f64 / 30_000.0 - 0.25).abs() < 0.02, "{c:?}");
    assert_eq!(LeastRequests::with_bias(f64::NAN).bias(), 1.0);
}

#[test]
fn least_requests_notices_weights_becoming_unequal() {
    // 40 endpoints: above the scan limit, so the equal-weight decision comes
    // from the cache and must be corrected once weights diverge.
    let mut eps = StaticEndpoints::uniform(40);
    let lr = LeastRequests::new();
    let _ = counts(&lr, &eps, 1_000, 8);
    eps.set_weight(0, 39.0);
    let c = counts(&lr, &eps, 20_000, 9);
    let share0 = c[0] as f64 / 20_000.0;
    assert!((share0 - 0.5).abs() < 0.03, "share {share0}");
}

#[test]
fn p2c_ewma_prefers_fast_endpoints_and_prices_unknown_ones() {
    let mut eps = StaticEndpoints::uniform(3);
    eps.set_latency(0, Some(1e6)); // 1 ms
    eps.set_latency(1, Some(100e6)); // 100 ms
    // Endpoint 2 has no samples: costs the 30 ms default.
    let c = counts(&P2cEwma::new(), &eps, 9_000, 10);
    // 0 wins both its comparisons; 2 wins against 1 only; 1 never wins.
    assert_eq!(c[1], 0, "{c:?}");
    assert!((5_800..6_200).contains(&c[0]), "{c:?}");
    // With a default above 100 ms the unknown endpoint loses to both.
    let c = counts(&P2cEwma::with_default_latency(500e6), &eps, 9_000, 10);
    assert_eq!(c[2], 0, "{c:?}");
    // Load multiplies latency: 1 ms × 200 in flight loses to 100 ms × 1.
    eps.set_in_flight(0, 199);
    eps.set_latency(2, Some(1e9));
    let c = counts(&P2cEwma::new(), &eps, 9_000, 10);
    assert!(c[1] > c[0], "{c:?}");
    assert_eq!(
        P2cEwma::with_default_latency(-1.0).default_latency_ns(),
        30e6
    );
}

#[test]
fn adaptive_uses_weight_latency_and_load() {
    // Equal latency and load: the weights decide (sampling and cost both).
    let eps = StaticEndpoints::from_weights([1.0, 1.0, 4.0]);
    let c = counts(&Adaptive::new(), &eps, 12_000, 11);
    assert!(c[2] > c[0] * 3 && c[2] > c[1] * 3, "{c:?}");
    // A slow heavy endpoint loses most of its comparisons.
    let mut eps = StaticEndpoints::from_weights([1.0, 1.0, 4.0]);
    eps.set_latency(0, Some(1e6));
    eps.set_latency(1, Some(1e6));
    eps.set_latency(2, Some(50e6));
    let c = counts(&Adaptive::new(), &eps, 12_000, 11);
    assert!(c[2] < c[0] && c[2] < c[1], "{c:?}");
    assert_eq!(
        Adaptive::with_default_latency(f64::INFINITY).default_latency_ns(),
        30e6
    );
}

/// Four equal endpoints whose latency the caller's view reports; one is
/// 100× slower than the others.
struct LatencyView {
    latency_ns: [f64; 4],
}

impl Endpoints for LatencyView {
    fn len(&self) -> usize {
        4
    }
    fn weight(&self, _i: usize) -> f64 {
        1.0
    }
    fn latency(&self, i: usize, _now: Nanos) -> Option<f64> {
        self.latency_ns.get(i).copied()
    }
}

#[test]
fn adaptive_gives_a_much_slower_endpoint_a_small_probing_share() {
    let eps = LatencyView {
        latency_ns: [1e6, 1e6, 1e6, 100e6],
    };
    let picks = 100_000;
    let c = counts(&Adaptive::new(), &eps, picks, 21);
    // The slow endpoint wins no comparison: it gets its 1% probing share
    // (standard deviation about 0.03 pp), never the 0% of plain P2C.
    let slow = c[3] as f64 / picks as f64;
    assert!((0.008..=0.012).contains(&slow), "{c:?}");
    assert!(c[..3].iter().all(|&x| x > 32_000), "{c:?}");
    let c = counts(&Adaptive::new().with_probe_share(0.0, 0.0), &eps, picks, 21);
    assert_eq!(c[3], 0, "{c:?}");
    // p2c-ewma stays the plain reference: the slow endpoint starves.
    assert_eq!(counts(&P2cEwma::new(), &eps, picks, 21)[3], 0);
}

/// One endpoint of a live view with a peak-EWMA latency estimate.
struct Live {
    latency: PeakEwma,
}

struct LiveView(Vec<Live>);

impl Endpoints for LiveView {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn weight(&self, _i: usize) -> f64 {
        1.0
    }
    fn latency(&self, i: usize, now: Nanos) -> Option<f64> {
        self.0.get(i).and_then(|e| e.latency.get(now))
    }
}

#[test]
fn adaptive_keeps_sampling_a_penalised_endpoint_every_second() {
    // 1000 picks per virtual second for 20 s; endpoint 3 serves in 100 ms
    // for the first 10 s, then recovers to 1 ms like the others.
    let view = LiveView(
        (0..4)
            .map(|_| Live {
                latency: PeakEwma::default(),
            })
            .collect(),
    );
    let b = Adaptive::new();
    let mut rng = FastRng::seed(22);
    let mut per_second = [0u32; 20];
    for k in 0..20_000u64 {
        let now = Nanos(k * 1_000_000);
        let i = b
            .pick(&view, &mut PickContext::new(now, &mut rng))
            .expect("pickable");
        let service = if i == 3 && k < 10_000 { 100e6 } else { 1e6 };
        view.0[i].latency.observe(service, now);
        if i == 3 {
            per_second[(k / 1000) as usize] += 1;
        }
    }
    // About 10 probes a second (1% of 1000), in every second: the recovery
    // at 10 s is sampled at once.
    assert!(per_second.iter().all(|&c| c >= 2), "{per_second:?}");
    assert!(per_second[..10].iter().all(|&c| c <= 30), "{per_second:?}");
    assert!(
        view.0[3]
            .latency
            .get(Nanos(20_000_000_000))
            .is_some_and(|l| l < 100e6)
    );
}

#[test]
fn consistent_hash_falls_back_deterministically_and_recovers() {
    let mut eps = StaticEndpoints::from_weights([1.0, 1.0, 2.0, 1.0, 1.0]);
    let ch = ConsistentHash::build(&eps);
    let mut rng = FastRng::seed(12);
    let keys: Vec<u64> = (0..5_000)
        .map(|k| hash_bytes(format!("user-{k}").as_bytes()))
        .collect();
    let home: Vec<_> = keys
        .iter()
        .map(|&h| pick_hashed(&ch, &eps, &mut rng, h))
        .collect();
    // Stable across picks and across a rebuild of the same membership.
    let rebuilt = ConsistentHash::build(&eps);
    for (&h, &home_i) in keys.iter().zip(&home) {
        assert_eq!(pick_hashed(&rebuilt, &eps, &mut rng, h), home_i);
    }
    // Weight 2 gets about twice the keys.
    let on2 = home.iter().filter(|&&i| i == Some(2)).count() as f64 / 5_000.0;
    assert!((on2 - 2.0 / 6.0).abs() < 0.03, "{on2}");

    eps.set_eligible(2, false);
    let mut spread = [0usize; 5];
    for (&h, &home_i) in keys.iter().zip(&home) {
        let now = pick_hashed(&ch, &eps, &mut rng, h);
        assert_ne!(now, Some(2));
        if home_i == Some(2) {
            spread[now.unwrap_or(2)] += 1;
            // Same answer every time while the state is the same.
            assert_eq!(pick_hashed(&ch, &eps, &mut rng, h), now);
        } else {
            assert_eq!(now, home_i, "a key of a healthy endpoint moved");
        }
    }
    // The displaced keys spread over all the others.
    assert!(
        spread.iter().enumerate().all(|(i, &c)| i == 2 || c > 100),
        "{spread:?}"
    );

    eps.set_eligible(2, true);
    for (&h, &home_i) in keys.iter().zip(&home) {
        assert_eq!(pick_hashed(&ch, &eps, &mut rng, h), home_i);
    }
}

#[test]
fn consistent_hash_at_1000_endpoints() {
    let eps = StaticEndpoints::uniform(1000);
    let ch = ConsistentHash::build(&eps);
    assert!(ch.table_len() >= 100_000);
    let mut rng = FastRng::seed(13);
    let mut hit = vec![false; 1000];
    for k in 0..20_000u64 {
        if let Some(i) = pick_hashed(&ch, &eps, &mut rng, k) {
            hit[i] = true;
        }
    }
    assert!(hit.iter().filter(|&&h| h).count() > 990);
}

#[test]
fn ip_hash_moves_only_the_keys_of_an_ineligible_endpoint() {
    let mut eps = StaticEndpoints::uniform(6);
    let ip = IpHash::build(&eps);
    let mut rng = FastRng::seed(14);
    let clients: Vec<u64> = (0..3_000u32)
        .map(|k| hash_bytes(&[10, 0, (k >> 8) as u8, k as u8]))
        .collect();
    let home: Vec<_> = clients
        .iter()
        .map(|&h| pick_hashed(&ip, &eps, &mut rng, h))
        .collect();
    eps.set_eligible(4, false);
    for (&h, &home_i) in clients.iter().zip(&home) {
        let now = pick_hashed(&ip, &eps, &mut rng, h);
        assert_ne!(now, Some(4));
        if home_i != Some(4) {
            assert_eq!(now, home_i);
        }
    }
}

#[test]
fn hashing_without_a_key_is_random_among_pickable() {
    let mut eps = StaticEndpoints::uniform(4);
    eps.set_eligible(3, false);
    for algorithm in [Algorithm::ConsistentHash, Algorithm::IpHash] {
        let c = counts(&*algorithm.build(&eps), &eps, 6_000, 15);
        assert_eq!(c[3], 0);
        assert!(c[..3].iter().all(|&x| (1_800..2_200).contains(&x)), "{c:?}");
    }
}

#[test]
fn excluding_steers_retries_elsewhere() {
    let eps = StaticEndpoints::uniform(3);
    let mut rng = FastRng::seed(16);
    for algorithm in Algorithm::ALL {
        let b = algorithm.build(&eps);
        for h in 0..30 {
            let first = pick_hashed(&*b, &eps, &mut rng, h).expect("pickable");
            let tried = [first];
            let retry_eps = Excluding::new(&eps, &tried);
            let second = pick_hashed(&*b, &retry_eps, &mut rng, h).expect("pickable");
            assert_ne!(first, second, "{algorithm}");
        }
    }
}

#[test]
fn selectors_tolerate_membership_changes_without_rebuild() {
    let small = StaticEndpoints::uniform(2);
    let large = StaticEndpoints::uniform(50);
    let mut rng = FastRng::seed(17);
    for algorithm in Algorithm::ALL {
        let b = algorithm.build(&small);
        for h in 0..100 {
            assert!(pick_hashed(&*b, &large, &mut rng, h).is_some_and(|i| i < 50));
        }
        let b = algorithm.build(&large);
        for h in 0..100 {
            assert!(pick_hashed(&*b, &small, &mut rng, h).is_some_and(|i| i < 2));
        }
    }
}
