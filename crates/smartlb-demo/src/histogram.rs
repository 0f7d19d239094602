//! A small log-linear latency histogram for percentiles.
//!
//! Values are microseconds. Below 16 µs every value has its own bucket; above, each
//! power of two is split into 16 equal buckets, so a reported percentile is within
//! about 3% of the true value (the bucket midpoint is reported), the way HdrHistogram
//! bounds its error with a fixed number of significant bits.

use std::time::Duration;

/// Linear buckets per power of two (and the number of exact buckets below 16 µs).
const SUB_BUCKETS: u64 = 16;
/// log2 of [`SUB_BUCKETS`].
const SUB_BITS: u32 = 4;
/// Buckets needed to cover every `u64` value.
const BUCKETS: usize = (SUB_BUCKETS + (64 - SUB_BITS as u64) * SUB_BUCKETS) as usize;

/// Counts of latencies in log-linear buckets.
#[derive(Debug, Clone)]
pub(crate) struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl LatencyHistogram {
    /// Counts one latency.
    pub(crate) fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(micros)] += 1;
        self.total += 1;
    }

    /// How many latencies were counted.
    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The latency at quantile `q` in `[0, 1]`, or `None` if nothing was counted.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let q = if q.is_finite() {
            q.clamp(0.0, 1.0)
        } else {
            0.5
        };
        // The rank of the wanted value, 1-based, at least the first one.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_micros(midpoint_of(index)));
            }
        }
        None
    }
}

/// The bucket that holds `micros`.
fn bucket_of(micros: u64) -> usize {
    if micros < SUB_BUCKETS {
        return micros as usize;
    }
    let exp = 63 - micros.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    let mantissa = (micros >> shift) & (SUB_BUCKETS - 1);
    (SUB_BUCKETS + u64::from(shift) * SUB_BUCKETS + mantissa) as usize
}

/// The middle of bucket `index`, in microseconds.
fn midpoint_of(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let shift = (index - SUB_BUCKETS) / SUB_BUCKETS;
    let mantissa = (index - SUB_BUCKETS) % SUB_BUCKETS;
    let low = (SUB_BUCKETS + mantissa) << shift;
    let width = 1u64 << shift;
    low.saturating_add(width / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_quantiles() {
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn buckets_cover_the_range_in_order() {
        let mut last = 0;
        for micros in [0u64, 1, 15, 16, 17, 31, 32, 1000, 1_000_000, u64::MAX] {
            let b = bucket_of(micros);
            assert!(b < BUCKETS);
            assert!(b >= last);
            last = b;
        }
    }

    #[test]
    fn quantiles_are_close() {
        let mut h = LatencyHistogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.count(), 100);
        let p50 = h.quantile(0.5).map(|d| d.as_secs_f64() * 1000.0);
        let p99 = h.quantile(0.99).map(|d| d.as_secs_f64() * 1000.0);
        let p50 = p50.unwrap_or_default();
        let p99 = p99.unwrap_or_default();
        assert!((p50 - 50.0).abs() / 50.0 < 0.04, "{p50}");
        assert!((p99 - 99.0).abs() / 99.0 < 0.04, "{p99}");
    }

    #[test]
    fn exact_below_sixteen_micros() {
        let mut h = LatencyHistogram::default();
        h.record(Duration::from_micros(7));
        assert_eq!(h.quantile(1.0), Some(Duration::from_micros(7)));
    }
}
