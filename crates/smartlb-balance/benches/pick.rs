//! Cost of one pick for every algorithm at 3, 100 and 1000 endpoints, plus
//! the peak-EWMA and hashing helpers. Run with
//! `cargo bench -p smartlb-balance --bench pick`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use smartlb_balance::{
    Algorithm, FastRng, Nanos, PeakEwma, PickContext, Rng, StaticEndpoints, hash_bytes,
};

/// Mixed weights (1 to 4), a little load, latencies on most endpoints and
/// one endpoint in twenty ineligible: a realistic live state.
fn endpoints(n: usize) -> StaticEndpoints {
    let mut eps = StaticEndpoints::from_weights((0..n).map(|i| 1.0 + (i % 4) as f64));
    for i in 0..n {
        eps.set_in_flight(i, (i as u64 * 7) % 5);
        eps.set_latency(i, (i % 3 != 0).then_some(1e6 + 1e5 * (i % 11) as f64));
        if n > 3 && i % 20 == 7 {
            eps.set_eligible(i, false);
        }
    }
    eps
}

fn bench_picks(c: &mut Criterion) {
    for n in [3usize, 100, 1000] {
        let eps = endpoints(n);
        let mut group = c.benchmark_group(format!("pick/{n}"));
        group
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        for algorithm in Algorithm::ALL {
            let balancer = algorithm.build(&eps);
            let mut rng = FastRng::seed(1);
            let mut key = 0u64;
            group.bench_with_input(
                BenchmarkId::from_parameter(algorithm),
                &algorithm,
                |b, _| {
                    b.iter(|| {
                        key = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
                        let mut ctx = PickContext::new(Nanos(key), &mut rng).with_hash(key);
                        black_box(balancer.pick(black_box(&eps), &mut ctx))
                    })
                },
            );
        }
        group.finish();
    }
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for n in [3usize, 1000] {
        let eps = endpoints(n);
        group.bench_with_input(BenchmarkId::new("consistent-hash", n), &n, |b, _| {
            b.iter(|| black_box(Algorithm::ConsistentHash.build(black_box(&eps))))
        });
    }
    group.finish();
}

fn bench_helpers(c: &mut Criterion) {
    let mut group = c.benchmark_group("helpers");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let ewma = PeakEwma::default();
    let mut t = 0u64;
    let mut rng = FastRng::seed(2);
    group.bench_function("peak-ewma/observe", |b| {
        b.iter(|| {
            t += 100_000;
            ewma.observe(black_box(1e6 + (rng.next_u64() % 1000) as f64), Nanos(t));
        })
    });
    group.bench_function("peak-ewma/get", |b| {
        b.iter(|| black_box(ewma.get(black_box(Nanos(t)))))
    });
    group.bench_function("hash-bytes/16", |b| {
        b.iter(|| black_box(hash_bytes(black_box(b"203.0.113.7:4431"))))
    });
    group.bench_function("fast-rng/next-u64", |b| {
        b.iter(|| black_box(rng.next_u64()))
    });
    group.finish();
}

criterion_group!(benches, bench_picks, bench_build, bench_helpers);
criterion_main!(benches);
