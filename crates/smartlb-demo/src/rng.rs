//! A tiny, lock-free pseudo-random source for latency jitter and error injection.
//!
//! The demo needs cheap, well-spread numbers, not cryptographic ones: a SplitMix64
//! sequence (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
//! OOPSLA 2014) advanced with one atomic add per draw.

use std::sync::atomic::{AtomicU64, Ordering};

/// The SplitMix64 increment (the golden ratio in 64-bit fixed point).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// A shared SplitMix64 generator; every draw is one atomic add and a few multiplies.
#[derive(Debug)]
pub(crate) struct SharedRng {
    state: AtomicU64,
}

impl SharedRng {
    /// A generator starting from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub(crate) fn next_f64(&self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seed that differs between backends and runs, from the clock and a counter.
pub(crate) fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(GAMMA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_stay_in_unit_interval_and_spread() {
        let rng = SharedRng::new(7);
        let mut low = 0;
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            if x < 0.5 {
                low += 1;
            }
        }
        assert!((4_000..6_000).contains(&low), "{low}");
    }

    #[test]
    fn same_seed_same_sequence() {
        let a = SharedRng::new(42);
        let b = SharedRng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }
}
