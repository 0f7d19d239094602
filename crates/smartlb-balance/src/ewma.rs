//! Peak-EWMA latency estimation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::time::Nanos;

/// Default decay window of [`PeakEwma`]: 10 seconds, as in tower and linkerd.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// Default cost, in nanoseconds, of an endpoint without latency samples:
/// 30 ms, tower's and linkerd's default RTT.
pub const DEFAULT_LATENCY_NS: f64 = 30_000_000.0;

/// Time is stored in units of 2^16 ns (about 65.5 µs) in 32 bits.
const TIME_SHIFT: u32 = 16;
/// State word meaning "no sample yet".
const EMPTY: u64 = u64::MAX;
/// Upper clamp for samples, in ns (about 11.6 days): keeps the f32 finite.
const MAX_SAMPLE_NS: f64 = 1e15;
/// Attempts of the compare-and-swap loop before a sample is dropped.
const MAX_CAS_ATTEMPTS: usize = 64;

/// A peak-sensitive exponentially weighted moving average of latency, as in
/// Finagle's and tower's `PeakEwma` (the load metric linkerd balances on).
///
/// * A sample above the current estimate replaces it at once (the "peak"):
///   a backend that slows down is noticed on the first slow response.
/// * A sample below it is blended in with weight `1 - exp(-elapsed/decay)`,
///   where `elapsed` is the time since the previous update, so the estimate
///   follows a fast backend down smoothly and independently of request rate.
/// * Without new samples the estimate decays towards zero
///   ([`get`](PeakEwma::get) applies the decay up to `now`), so an endpoint
///   that has been avoided for a while becomes attractive again and is
///   re-probed.
///
/// Until the first sample there is no estimate: [`get`](PeakEwma::get)
/// returns `None` and [`cost`](PeakEwma::cost) returns the configured default
/// (30 ms unless set). The first sample is taken as the estimate as is.
///
/// Lock-free: the estimate (as `f32`) and the time of the last update (in
/// units of 2^16 ns, 32 bits) are packed in one `AtomicU64` and updated with
/// a compare-and-swap loop. Time is passed in by the caller. The 32-bit time
/// wraps after about 3.2 days: an estimate left without any sample for a
/// multiple of that can read as less decayed than it should until its next
/// sample. A time earlier than the last update counts as no time passing.
///
/// ```
/// use smartlb_balance::{Nanos, PeakEwma};
/// use std::time::Duration;
/// let ewma = PeakEwma::new(Duration::from_secs(10), 30e6);
/// assert_eq!(ewma.get(Nanos(0)), None);
/// ewma.observe(5e6, Nanos::from_secs(1));
/// ewma.observe(50e6, Nanos::from_secs(2)); // peak: taken at once
/// assert!((ewma.get(Nanos::from_secs(2)).unwrap_or(0.0) - 50e6).abs() < 1e3);
/// ```
pub struct PeakEwma {
    state: AtomicU64,
    decay_ns: f64,
    default_ns: f64,
}

impl PeakEwma {
    /// An estimator with the given decay window and the cost used before the
    /// first sample (in ns). A zero decay means "only the latest sample
    /// counts"; a default that is not a finite non-negative number falls back
    /// to [`DEFAULT_LATENCY_NS`].
    pub fn new(decay: Duration, default_ns: f64) -> Self {
        let default_ns = if default_ns.is_finite() && default_ns >= 0.0 {
            default_ns
        } else {
            DEFAULT_LATENCY_NS
        };
        PeakEwma {
            state: AtomicU64::new(EMPTY),
            decay_ns: decay.as_nanos() as f64,
            default_ns,
        }
    }

    /// The decay window.
    pub fn decay(&self) -> Duration {
        Duration::from_nanos(self.decay_ns as u64)
    }

    /// The cost reported before the first sample, in ns.
    pub fn default_ns(&self) -> f64 {
        self.default_ns
    }

    /// Records a round-trip time of `rtt_ns` nanoseconds that ended at `now`.
    ///
    /// NaN samples are ignored; negative ones count as 0 and huge ones are
    /// clamped. Under extreme contention (64 failed compare-and-swaps in a
    /// row) the sample is dropped rather than spinning.
    pub fn observe(&self, rtt_ns: f64, now: Nanos) {
        if rtt_ns.is_nan() {
            return;
        }
        let rtt = rtt_ns.clamp(0.0, MAX_SAMPLE_NS);
        let now_units = time_units(now);
        let mut current = self.state.load(Ordering::Acquire);
        for _ in 0..MAX_CAS_ATTEMPTS {
            let next = if current == EMPTY {
                pack(rtt, now_units)
            } else {
                let (estimate, at) = unpack(current);
                let (elapsed_ns, time) = elapsed(at, now_units);
                let estimate = if rtt > estimate {
                    rtt
                } else {
                    let keep = self.keep(elapsed_ns);
                    estimate * keep + rtt * (1.0 - keep)
                };
                pack(estimate, time)
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// The estimate decayed to `now`, in ns; `None` before the first sample.
    pub fn get(&self, now: Nanos) -> Option<f64> {
        let current = self.state.load(Ordering::Acquire);
        if current == EMPTY {
            return None;
        }
        let (estimate, at) = unpack(current);
        let (elapsed_ns, _) = elapsed(at, time_units(now));
        Some(estimate * self.keep(elapsed_ns))
    }

    /// [`get`](PeakEwma::get), or the default cost before the first sample.
    pub fn cost(&self, now: Nanos) -> f64 {
        self.get(now).unwrap_or(self.default_ns)
    }

    /// Forgets every sample (back to "no estimate").
    pub fn reset(&self) {
        self.state.store(EMPTY, Ordering::Release);
    }

    /// Share of the old estimate that survives `elapsed_ns`.
    #[inline]
    fn keep(&self, elapsed_ns: f64) -> f64 {
        if elapsed_ns <= 0.0 {
            1.0
        } else if self.decay_ns <= 0.0 {
            0.0
        } else {
            (-elapsed_ns / self.decay_ns).exp()
        }
    }
}

impl Default for PeakEwma {
    /// 10 s decay, 30 ms default cost.
    fn default() -> Self {
        PeakEwma::new(DEFAULT_DECAY, DEFAULT_LATENCY_NS)
    }
}

impl std::fmt::Debug for PeakEwma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.state.load(Ordering::Acquire);
        let last = (current != EMPTY).then(|| unpack(current).0);
        f.debug_struct("PeakEwma")
            .field("last_estimate_ns", &last)
            .field("decay", &self.decay())
            .field("default_ns", &self.default_ns)
            .finish()
    }
}

#[inline]
fn time_units(now: Nanos) -> u32 {
    (now.0 >> TIME_SHIFT) as u32
}

/// Elapsed ns from `at` to `now` (both in wrapped units) and the time to store.
#[inline]
fn elapsed(at: u32, now: u32) -> (f64, u32) {
    let delta = now.wrapping_sub(at) as i32;
    if delta <= 0 {
        (0.0, at)
    } else {
        ((f64::from(delta)) * f64::from(1u32 << TIME_SHIFT), now)
    }
}

#[inline]
fn pack(estimate: f64, time: u32) -> u64 {
    let bits = (estimate as f32).to_bits();
    let packed = (u64::from(bits) << 32) | u64::from(time);
    // f32 bits of a finite non-negative number never start with 0xFFFF_FFFF,
    // so a packed state cannot collide with EMPTY.
    debug_assert_ne!(packed, EMPTY);
    packed
}

#[inline]
fn unpack(state: u64) -> (f64, u32) {
    (
        f64::from(f32::from_bits((state >> 32) as u32)),
        state as u32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-4 * b.abs().max(1.0)
    }

    #[test]
    fn empty_until_first_sample() {
        let e = PeakEwma::default();
        assert_eq!(e.get(Nanos(0)), None);
        assert_eq!(e.cost(Nanos(0)), DEFAULT_LATENCY_NS);
        e.observe(1e6, Nanos::from_secs(1));
        assert!(close(e.get(Nanos::from_secs(1)).unwrap_or(0.0), 1e6));
        e.reset();
        assert_eq!(e.get(Nanos::from_secs(1)), None);
    }

    #[test]
    fn peaks_jump_and_valleys_blend() {
        let e = PeakEwma::new(Duration::from_secs(10), 30e6);
        let t0 = Nanos::from_secs(100);
        e.observe(10e6, t0);
        e.observe(40e6, t0); // peak: immediate
        assert!(close(e.cost(t0), 40e6));
        // A low sample 1 s later: keep = exp(-0.1).
        let t1 = Nanos::from_secs(101);
        e.observe(0.0, t1);
        let keep = (-0.1f64).exp();
        assert!(close(e.cost(t1), 40e6 * keep), "{}", e.cost(t1));
        // A low sample at the same instant changes nothing.
        e.observe(0.0, t1);
        assert!(close(e.cost(t1), 40e6 * keep));
    }

    #[test]
    fn decays_towards_zero_without_samples() {
        let e = PeakEwma::new(Duration::from_secs(10), 30e6);
        e.observe(20e6, Nanos::from_secs(0));
        let later = e.cost(Nanos::from_secs(10));
        assert!(close(later, 20e6 * (-1.0f64).exp()), "{later}");
        assert!(e.cost(Nanos::from_secs(600)) < 1.0);
    }

    #[test]
    fn time_going_backwards_counts_as_no_time() {
        let e = PeakEwma::default();
        e.observe(20e6, Nanos::from_secs(50));
        assert!(close(e.cost(Nanos::from_secs(40)), 20e6));
        e.observe(10e6, Nanos::from_secs(40));
        assert!(close(e.cost(Nanos::from_secs(50)), 20e6));
    }

    #[test]
    fn bad_samples_and_settings() {
        let e = PeakEwma::new(Duration::ZERO, f64::NAN);
        assert_eq!(e.default_ns(), DEFAULT_LATENCY_NS);
        e.observe(f64::NAN, Nanos(0));
        assert_eq!(e.get(Nanos(0)), None);
        e.observe(-5.0, Nanos(0));
        assert_eq!(e.get(Nanos(0)), Some(0.0));
        e.observe(f64::INFINITY, Nanos(0));
        assert!(close(e.cost(Nanos(0)), MAX_SAMPLE_NS));
        // Zero decay: only the latest sample counts, and it vanishes at once.
        e.observe(3e6, Nanos::from_secs(1));
        assert_eq!(e.get(Nanos::from_secs(2)), Some(0.0));
        assert_eq!(e.decay(), Duration::ZERO);
        assert!(format!("{e:?}").contains("PeakEwma"));
    }

    #[test]
    fn concurrent_observers_do_not_lose_the_peak() {
        let e = std::sync::Arc::new(PeakEwma::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let e = e.clone();
                std::thread::spawn(move || {
                    for k in 0..1000u64 {
                        let v = if k == 500 + t { 99e6 } else { 1e6 };
                        e.observe(v, Nanos::from_secs(1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // All samples share one instant, so the peak must still be there.
        assert!(close(e.cost(Nanos::from_secs(1)), 99e6));
    }
}
