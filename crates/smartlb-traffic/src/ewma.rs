//! Exponentially weighted moving averages.

use std::sync::atomic::{AtomicU64, Ordering};

/// Smallest accepted smoothing factor.
const MIN_ALPHA: f64 = 1e-6;

/// An exponentially weighted moving average with an exponentially weighted
/// variance, updated one sample at a time (Finch, "Incremental calculation of
/// weighted mean and variance", 2009):
///
/// ```text
/// d = x - mean;  mean += alpha * d;  var = (1 - alpha) * (var + alpha * d * d)
/// ```
///
/// The first sample becomes the mean (variance 0). Used by the analyser to
/// smooth per-second series and to tell how far a new value departs from the
/// usual (`(x - mean) / std_dev`).
///
/// ```
/// use smartlb_traffic::Ewma;
/// let mut e = Ewma::new(0.5);
/// e.update(10.0);
/// e.update(20.0);
/// assert_eq!(e.mean(), 15.0);
/// assert_eq!(e.variance(), 25.0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ewma {
    alpha: f64,
    mean: f64,
    var: f64,
    samples: u64,
}

impl Ewma {
    /// An empty average with smoothing factor `alpha`, the weight of each new
    /// sample. It is clamped into `[1e-6, 1]`; NaN means 1 (no smoothing).
    pub fn new(alpha: f64) -> Self {
        let alpha = if alpha.is_nan() {
            1.0
        } else {
            alpha.clamp(MIN_ALPHA, 1.0)
        };
        Ewma {
            alpha,
            mean: 0.0,
            var: 0.0,
            samples: 0,
        }
    }

    /// An average whose samples lose half their weight after `samples` newer
    /// ones: `alpha = 1 - 2^(-1/samples)`.
    pub fn with_half_life(samples: f64) -> Self {
        Ewma::new(1.0 - (-std::f64::consts::LN_2 / samples).exp())
    }

    /// The smoothing factor.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Adds a sample. Non-finite samples are ignored.
    pub fn update(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.samples == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let d = x - self.mean;
            let incr = self.alpha * d;
            self.mean += incr;
            self.var = (1.0 - self.alpha) * (self.var + d * incr);
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// The smoothed mean (0 before the first sample).
    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The smoothed variance (0 before the second sample).
    pub fn variance(&self) -> f64 {
        self.var
    }

    /// The square root of [`variance`](Ewma::variance).
    pub fn std_dev(&self) -> f64 {
        self.var.sqrt()
    }

    /// How many samples were taken.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Whether no sample was taken yet.
    pub fn is_empty(&self) -> bool {
        self.samples == 0
    }

    /// How many standard deviations `x` lies from the mean; `None` while the
    /// variance is zero (too little history to judge).
    pub fn z_score(&self, x: f64) -> Option<f64> {
        let sd = self.std_dev();
        (sd > 0.0 && sd.is_finite()).then(|| (x - self.mean) / sd)
    }
}

/// "No sample yet" marker (a NaN bit pattern that `f64::to_bits` of a
/// finite latency never produces).
const EMPTY: u64 = u64::MAX;

/// A lock-free per-sample EWMA for the request path: the mean (as `f64`
/// bits) in one atomic, updated with a compare-and-swap loop.
#[derive(Debug)]
pub(crate) struct AtomicEwma {
    bits: AtomicU64,
    alpha: f64,
}

impl AtomicEwma {
    pub(crate) fn new(alpha: f64) -> Self {
        AtomicEwma {
            bits: AtomicU64::new(EMPTY),
            alpha: Ewma::new(alpha).alpha(),
        }
    }

    /// Blends `x` in. With `only_up`, `x` is blended in only if it is above
    /// the current mean (failures may raise the estimate, never lower it).
    #[inline]
    pub(crate) fn update(&self, x: f64, only_up: bool) {
        let mut current = self.bits.load(Ordering::Relaxed);
        loop {
            let next = if current == EMPTY {
                x
            } else {
                let mean = f64::from_bits(current);
                if only_up && x <= mean {
                    return;
                }
                mean + self.alpha * (x - mean)
            };
            match self.bits.compare_exchange_weak(
                current,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    #[inline]
    pub(crate) fn get(&self) -> Option<f64> {
        let bits = self.bits.load(Ordering::Relaxed);
        (bits != EMPTY).then(|| f64::from_bits(bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_variance_converge() {
        let mut e = Ewma::new(0.1);
        assert!(e.is_empty());
        for i in 0..2000 {
            e.update(if i % 2 == 0 { 9.0 } else { 11.0 });
        }
        assert!((e.mean() - 10.0).abs() < 0.2, "{}", e.mean());
        assert!((e.variance() - 1.0).abs() < 0.2, "{}", e.variance());
        let z = e.z_score(20.0).unwrap();
        assert!(z > 8.0, "{z}");
        e.update(f64::NAN);
        e.update(f64::INFINITY);
        assert_eq!(e.samples(), 2000);
    }

    #[test]
    fn alpha_is_clamped() {
        assert_eq!(Ewma::new(f64::NAN).alpha(), 1.0);
        assert_eq!(Ewma::new(7.0).alpha(), 1.0);
        assert_eq!(Ewma::new(-1.0).alpha(), MIN_ALPHA);
        let h = Ewma::with_half_life(1.0);
        assert!((h.alpha() - 0.5).abs() < 1e-12);
        assert_eq!(Ewma::new(0.3).z_score(1.0), None);
    }

    #[test]
    fn atomic_ewma() {
        let e = AtomicEwma::new(0.5);
        assert_eq!(e.get(), None);
        e.update(3.0, true);
        assert_eq!(e.get(), Some(3.0));
        e.update(1.0, true);
        assert_eq!(e.get(), Some(3.0));
        e.update(1.0, false);
        assert_eq!(e.get(), Some(2.0));
        e.update(6.0, true);
        assert_eq!(e.get(), Some(4.0));
    }
}
