//! Log-linear latency histograms: a lock-free recorder and plain snapshots.
//!
//! Values are nanoseconds. Below 32 ns every value has its own bucket; above,
//! each power of two `[2^k, 2^(k+1))` is split into 32 equal sub-buckets, so a
//! bucket is at most 1/32 of its lower bound wide. Quantiles report the
//! bucket's midpoint, hence a relative error of at most 1/64 (about 1.6 %).
//! This is the bucketing of HdrHistogram (Gil Tene) with 5 bits of
//! sub-bucket precision; like DDSketch it gives a relative-error guarantee,
//! and like both it is mergeable by adding bucket counts. Values above
//! [`MAX_TRACKED`] (100 s) are counted in the last bucket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-bucket precision in bits.
const PRECISION_BITS: u32 = 5;
/// Sub-buckets per power of two.
const SUB: u64 = 1 << PRECISION_BITS;

/// The largest value told apart from larger ones: 100 s, in nanoseconds.
pub const MAX_TRACKED: u64 = 100_000_000_000;

/// Number of buckets.
pub const BUCKETS: usize = bucket_index(MAX_TRACKED) + 1;

/// The bucket that holds `ns` (values above [`MAX_TRACKED`] go to the last one).
#[inline]
pub const fn bucket_index(ns: u64) -> usize {
    let v = if ns > MAX_TRACKED { MAX_TRACKED } else { ns };
    if v < SUB {
        v as usize
    } else {
        let k = 63 - v.leading_zeros();
        let shift = k - PRECISION_BITS;
        ((k - PRECISION_BITS + 1) as u64 * SUB + ((v >> shift) - SUB)) as usize
    }
}

/// The half-open value range `[lo, hi)` of bucket `index`, in nanoseconds.
pub const fn bucket_range(index: usize) -> (u64, u64) {
    let i = index as u64;
    if i < SUB {
        (i, i + 1)
    } else {
        let group = i / SUB;
        let sub = i % SUB;
        let shift = group - 1;
        let lo = (SUB + sub) << shift;
        (lo, lo + (1 << shift))
    }
}

/// The value reported for bucket `index`: its midpoint.
#[inline]
const fn bucket_value(index: usize) -> u64 {
    let (lo, hi) = bucket_range(index);
    lo + (hi - lo - 1) / 2
}

#[inline]
fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A latency histogram that many threads record into at once, without a lock
/// (one relaxed `fetch_add` per bucket hit plus one for the sum).
///
/// Read it with [`snapshot`](AtomicHistogram::snapshot); the snapshot is not
/// an atomic cut across buckets, which is fine for statistics taken while
/// traffic flows (a concurrent sample shows up in this or the next snapshot).
pub struct AtomicHistogram {
    buckets: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    /// An empty histogram (about 8 KiB).
    pub fn new() -> Self {
        AtomicHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one latency.
    #[inline]
    pub fn record(&self, latency: Duration) {
        self.record_ns(duration_ns(latency));
    }

    /// Records one value in nanoseconds.
    #[inline]
    pub fn record_ns(&self, ns: u64) {
        if let Some(bucket) = self.buckets.get(bucket_index(ns)) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// A copy of the current counts.
    pub fn snapshot(&self) -> Histogram {
        let mut h = Histogram::new();
        self.snapshot_into(&mut h);
        h
    }

    /// Overwrites `into` with the current counts, reusing its allocation.
    pub fn snapshot_into(&self, into: &mut Histogram) {
        let mut count = 0u64;
        for (dst, src) in into.counts.iter_mut().zip(self.buckets.iter()) {
            *dst = src.load(Ordering::Relaxed);
            count = count.wrapping_add(*dst);
        }
        into.count = count;
        into.sum_ns = self.sum_ns.load(Ordering::Relaxed);
    }
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for AtomicHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicHistogram")
            .field("sum_ns", &self.sum_ns.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A plain (single-owner) latency histogram: the snapshot type, and the one
/// to merge, subtract and query.
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    sum_ns: u64,
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            sum_ns: 0,
        }
    }

    /// Records one latency.
    #[inline]
    pub fn record(&mut self, latency: Duration) {
        self.record_ns(duration_ns(latency));
    }

    /// Records one value in nanoseconds.
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        if let Some(c) = self.counts.get_mut(bucket_index(ns)) {
            *c = c.wrapping_add(1);
            self.count = self.count.wrapping_add(1);
            self.sum_ns = self.sum_ns.wrapping_add(ns);
        }
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sum of the recorded values (exact, not bucketed), in nanoseconds.
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns
    }

    /// Exact mean of the recorded values, or `None` if empty.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_nanos(self.sum_ns / self.count))
    }

    /// Adds every count of `other` to `self`: the result is what recording
    /// both streams into one histogram would have given.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.wrapping_add(*b);
        }
        self.count = self.count.wrapping_add(other.count);
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
    }

    /// What was recorded after `earlier` (an older snapshot of the same
    /// recorder): bucket-wise `self - earlier`, saturating at zero.
    pub fn delta_since(&self, earlier: &Histogram) -> Histogram {
        let mut out = Histogram::new();
        let mut count = 0u64;
        for ((o, a), b) in out
            .counts
            .iter_mut()
            .zip(self.counts.iter())
            .zip(earlier.counts.iter())
        {
            *o = a.saturating_sub(*b);
            count = count.wrapping_add(*o);
        }
        out.count = count;
        out.sum_ns = self.sum_ns.saturating_sub(earlier.sum_ns);
        out
    }

    /// Empties the histogram.
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.count = 0;
        self.sum_ns = 0;
    }

    /// The `q`-quantile (`q` in `[0, 1]`, clamped), within about 1.6 % of
    /// the exact order statistic `sorted[ceil(q * n) - 1]`; `None` if empty
    /// or `q` is NaN.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.quantile_ns(q).map(Duration::from_nanos)
    }

    /// [`quantile`](Histogram::quantile) in nanoseconds.
    pub fn quantile_ns(&self, q: f64) -> Option<u64> {
        if self.count == 0 || q.is_nan() {
            return None;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen = seen.wrapping_add(*c);
            if seen >= rank {
                return Some(bucket_value(i));
            }
        }
        None
    }

    /// The non-empty buckets, as a compact copy.
    pub fn to_sparse(&self) -> SparseHistogram {
        SparseHistogram {
            entries: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, c)| **c > 0)
                .map(|(i, c)| (i as u32, *c))
                .collect(),
            sum_ns: self.sum_ns,
        }
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("sum_ns", &self.sum_ns)
            .finish_non_exhaustive()
    }
}

/// A histogram stored as its non-empty buckets only: a second of traffic
/// usually touches a few dozen buckets, so recent windows are kept this way.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SparseHistogram {
    entries: Vec<(u32, u64)>,
    sum_ns: u64,
}

impl SparseHistogram {
    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.entries.iter().map(|(_, c)| *c).sum()
    }

    /// Adds these counts to a dense histogram.
    pub fn add_to(&self, into: &mut Histogram) {
        for (i, c) in &self.entries {
            if let Some(slot) = into.counts.get_mut(*i as usize) {
                *slot = slot.wrapping_add(*c);
                into.count = into.count.wrapping_add(*c);
            }
        }
        into.sum_ns = into.sum_ns.wrapping_add(self.sum_ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_contiguous_and_cover_the_range() {
        assert_eq!(bucket_range(0), (0, 1));
        for i in 1..BUCKETS {
            assert_eq!(bucket_range(i - 1).1, bucket_range(i).0, "bucket {i}");
        }
        for i in 0..BUCKETS {
            let (lo, hi) = bucket_range(i);
            assert_eq!(bucket_index(lo), i);
            if i + 1 < BUCKETS {
                assert_eq!(bucket_index(hi - 1), i);
            }
            // Width at most 1/32 of the lower bound above the linear part.
            if lo >= SUB {
                assert!((hi - lo) * SUB <= lo, "bucket {i}: {lo}..{hi}");
            }
        }
        assert_eq!(bucket_index(u64::MAX), BUCKETS - 1);
        let (lo, hi) = bucket_range(BUCKETS - 1);
        assert!(lo <= MAX_TRACKED && MAX_TRACKED < hi);
        const { assert!(BUCKETS < 1100) };
    }

    #[test]
    fn empty_and_degenerate_queries() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.mean(), None);
        h.record(Duration::from_micros(100));
        assert_eq!(h.quantile(f64::NAN), None);
        let v = h.quantile_ns(0.5).unwrap();
        assert!((v as f64 - 100_000.0).abs() / 100_000.0 < 0.016);
        assert_eq!(h.quantile(-1.0), h.quantile(2.0));
        assert_eq!(h.mean(), Some(Duration::from_micros(100)));
        h.record(Duration::from_secs(1000));
        assert_eq!(h.count(), 2);
        let top = h.quantile_ns(1.0).unwrap();
        // Clamped to 100 s.
        assert!(
            (top as f64 / MAX_TRACKED as f64 - 1.0).abs() < 0.016,
            "{top}"
        );
        h.clear();
        assert!(h.is_empty());
    }

    #[test]
    fn atomic_snapshot_and_delta() {
        let a = AtomicHistogram::new();
        a.record(Duration::from_millis(1));
        let first = a.snapshot();
        a.record(Duration::from_millis(5));
        a.record(Duration::from_millis(5));
        let second = a.snapshot();
        let d = second.delta_since(&first);
        assert_eq!(d.count(), 2);
        assert_eq!(d.sum_ns(), 10_000_000);
        let p50 = d.quantile_ns(0.5).unwrap();
        assert!((p50 as f64 / 5e6 - 1.0).abs() < 0.016);
        let mut reused = Histogram::new();
        a.snapshot_into(&mut reused);
        assert_eq!(reused, second);
    }

    #[test]
    fn sparse_round_trip() {
        let mut h = Histogram::new();
        for v in [5u64, 5, 700, 40_000, 1_000_000_000] {
            h.record_ns(v);
        }
        let s = h.to_sparse();
        assert_eq!(s.count(), 5);
        let mut back = Histogram::new();
        s.add_to(&mut back);
        assert_eq!(back, h);
    }

    fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
        let n = sorted.len() as u64;
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        sorted[(rank - 1) as usize]
    }

    proptest! {
        #[test]
        fn quantiles_within_relative_error(
            // Log-uniform between 1 µs and 100 s.
            exps in proptest::collection::vec(3.0f64..11.0, 1..400),
            q in 0.0f64..=1.0,
        ) {
            let values: Vec<u64> = exps.iter().map(|e| 10f64.powf(*e) as u64).collect();
            let mut h = Histogram::new();
            for v in &values {
                h.record_ns(*v);
            }
            let mut sorted = values.clone();
            sorted.sort_unstable();
            for q in [q, 0.5, 0.9, 0.99, 0.999, 0.0, 1.0] {
                let exact = exact_quantile(&sorted, q) as f64;
                let est = h.quantile_ns(q).unwrap() as f64;
                prop_assert!((est - exact).abs() / exact <= 1.0 / 64.0 + 1e-9,
                    "q={q} exact={exact} est={est}");
            }
        }

        #[test]
        fn merge_equals_combined_recording(
            a in proptest::collection::vec(0u64..200_000_000_000, 0..200),
            b in proptest::collection::vec(0u64..200_000_000_000, 0..200),
        ) {
            let mut ha = Histogram::new();
            let mut hb = Histogram::new();
            let mut both = Histogram::new();
            let atomic = AtomicHistogram::new();
            for v in &a { ha.record_ns(*v); both.record_ns(*v); atomic.record_ns(*v); }
            for v in &b { hb.record_ns(*v); both.record_ns(*v); atomic.record_ns(*v); }
            let mut merged = ha.clone();
            merged.merge(&hb);
            prop_assert_eq!(&merged, &both);
            prop_assert_eq!(&atomic.snapshot(), &both);
            prop_assert_eq!(&both.delta_since(&ha), &hb);
        }
    }
}
