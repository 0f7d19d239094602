//! Sampling helpers shared by the algorithms. Every function here does a
//! bounded amount of work: a few random probes, then at most one pass over
//! the endpoints.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::endpoints::{Endpoints, is_pickable, usable_weight};
use crate::rng::Rng;

/// At or below this many endpoints the weighted helpers always scan: a scan
/// is as cheap as probing, and exact.
pub(crate) const SCAN_LIMIT: usize = 16;

/// Above [`SCAN_LIMIT`], one pick in this many refreshes the cached weight
/// bounds with a full scan, so a stale bound lasts a bounded number of picks.
pub(crate) const REFRESH_ONE_IN: u64 = 128;

/// Most random probes a pick makes before it falls back to a scan.
const MAX_PROBES: usize = 64;

/// Random probes worth making before a scan of `n` endpoints: a probe costs
/// about as much as two endpoints of a scan.
#[inline]
fn probes(n: usize) -> usize {
    (n / 2).clamp(4, MAX_PROBES)
}

/// A uniform index in `0..n` other than `exclude`. Needs `n >= 2` when
/// `exclude` is within range, `n >= 1` otherwise.
#[inline]
fn draw_index(rng: &mut dyn Rng, n: usize, exclude: Option<usize>) -> usize {
    match exclude {
        Some(x) if x < n => {
            let r = rng.below(n as u64 - 1) as usize;
            r + usize::from(r >= x)
        }
        _ => rng.below(n as u64) as usize,
    }
}

/// Whether `exclude` leaves no index at all to draw from.
#[inline]
fn nothing_left(n: usize, exclude: Option<usize>) -> bool {
    n == 0 || (n == 1 && exclude == Some(0))
}

/// A pickable endpoint other than `exclude`, uniformly at random.
pub(crate) fn uniform(
    eps: &dyn Endpoints,
    rng: &mut dyn Rng,
    exclude: Option<usize>,
) -> Option<usize> {
    let n = eps.len();
    if nothing_left(n, exclude) {
        return None;
    }
    for _ in 0..probes(n) {
        let i = draw_index(rng, n, exclude);
        if is_pickable(eps, i) {
            return Some(i);
        }
    }
    uniform_scan(eps, rng, exclude)
}

/// One pass, reservoir sampling: uniform over the pickable endpoints other
/// than `exclude`.
fn uniform_scan(eps: &dyn Endpoints, rng: &mut dyn Rng, exclude: Option<usize>) -> Option<usize> {
    let mut seen = 0u64;
    let mut chosen = None;
    for i in 0..eps.len() {
        if Some(i) == exclude || !is_pickable(eps, i) {
            continue;
        }
        seen += 1;
        if rng.below(seen) == 0 {
            chosen = Some(i);
        }
    }
    chosen
}

/// Two distinct pickable endpoints drawn uniformly (the second among those
/// left), or one if only one is pickable, or none.
pub(crate) fn uniform_pair(
    eps: &dyn Endpoints,
    rng: &mut dyn Rng,
) -> Option<(usize, Option<usize>)> {
    let first = uniform(eps, rng, None)?;
    Some((first, uniform(eps, rng, Some(first))))
}

/// Cached lower and upper bounds of the usable weights of the pickable
/// endpoints, as `f64` bits. A hint only: stale values cost accuracy for at
/// most a bounded number of picks, never correctness of the
/// "never pick an ineligible endpoint" rule.
#[derive(Default)]
pub(crate) struct WeightCache {
    min: AtomicU64,
    max: AtomicU64,
}

impl WeightCache {
    /// `(min, max)`; `(0, 0)` until the first scan.
    #[inline]
    pub(crate) fn get(&self) -> (f64, f64) {
        (
            f64::from_bits(self.min.load(Ordering::Relaxed)),
            f64::from_bits(self.max.load(Ordering::Relaxed)),
        )
    }

    /// Stores new bounds; writes only what changed, so the cache line stays
    /// shared between threads while weights are stable.
    #[inline]
    pub(crate) fn set(&self, min: f64, max: f64) {
        for (slot, value) in [(&self.min, min), (&self.max, max)] {
            let bits = value.to_bits();
            if slot.load(Ordering::Relaxed) != bits {
                slot.store(bits, Ordering::Relaxed);
            }
        }
    }

    /// Scans all endpoints, stores and returns the bounds; `None` when no
    /// endpoint is pickable.
    pub(crate) fn refresh(&self, eps: &dyn Endpoints) -> Option<(f64, f64)> {
        let mut min = f64::INFINITY;
        let mut max = 0.0f64;
        for i in 0..eps.len() {
            let w = usable_weight(eps.weight(i));
            if w > 0.0 && eps.is_eligible(i) {
                min = min.min(w);
                max = max.max(w);
            }
        }
        if max > 0.0 {
            self.set(min, max);
            Some((min, max))
        } else {
            self.set(0.0, 0.0);
            None
        }
    }
}

impl std::fmt::Debug for WeightCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (min, max) = self.get();
        f.debug_struct("WeightCache")
            .field("min", &min)
            .field("max", &max)
            .finish()
    }
}

/// A pickable endpoint other than `exclude`, chosen with probability
/// proportional to `score(i, w)`, where `w` is its usable weight and the
/// score must lie in `0..=w` (it is clamped there).
///
/// Above [`SCAN_LIMIT`] endpoints it uses rejection sampling against the
/// cached maximum weight (a few probes, each exact in proportion), and falls
/// back to one scan (exact, weighted reservoir sampling) when the probes fail
/// or the cache is found stale. The scan refreshes the cache.
pub(crate) fn weighted(
    eps: &dyn Endpoints,
    rng: &mut dyn Rng,
    cache: &WeightCache,
    exclude: Option<usize>,
    score: &dyn Fn(usize, f64) -> f64,
) -> Option<usize> {
    let n = eps.len();
    if nothing_left(n, exclude) {
        return None;
    }
    if n > SCAN_LIMIT && rng.below(REFRESH_ONE_IN) != 0 {
        let (_, bound) = cache.get();
        if bound > 0.0 {
            for _ in 0..probes(n) {
                let i = draw_index(rng, n, exclude);
                let w = usable_weight(eps.weight(i));
                if w <= 0.0 || !eps.is_eligible(i) {
                    continue;
                }
                if w > bound {
                    // The cached bound is stale: go exact, which refreshes it.
                    break;
                }
                let s = clamp_score(score(i, w), w);
                if rng.next_f64() * bound < s {
                    return Some(i);
                }
            }
        }
    }
    weighted_scan(eps, rng, cache, exclude, score)
}

#[inline]
fn clamp_score(s: f64, w: f64) -> f64 {
    if s > 0.0 { s.min(w) } else { 0.0 }
}

/// One pass: weighted reservoir sampling (Chao's procedure) over the
/// pickable endpoints other than `exclude`; refreshes `cache` on the way.
/// If every candidate scores 0, picks uniformly among them.
fn weighted_scan(
    eps: &dyn Endpoints,
    rng: &mut dyn Rng,
    cache: &WeightCache,
    exclude: Option<usize>,
    score: &dyn Fn(usize, f64) -> f64,
) -> Option<usize> {
    let mut min = f64::INFINITY;
    let mut max = 0.0f64;
    let mut total = 0.0f64;
    let mut chosen = None;
    let mut zero_seen = 0u64;
    let mut zero_chosen = None;
    for i in 0..eps.len() {
        let w = usable_weight(eps.weight(i));
        if w <= 0.0 || !eps.is_eligible(i) {
            continue;
        }
        min = min.min(w);
        max = max.max(w);
        if Some(i) == exclude {
            continue;
        }
        let s = clamp_score(score(i, w), w);
        if s > 0.0 {
            total += s;
            if rng.next_f64() * total < s {
                chosen = Some(i);
            }
        } else {
            zero_seen += 1;
            if rng.below(zero_seen) == 0 {
                zero_chosen = Some(i);
            }
        }
    }
    if max > 0.0 {
        cache.set(min, max);
    } else {
        cache.set(0.0, 0.0);
    }
    chosen.or(zero_chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::StaticEndpoints;
    use crate::rng::FastRng;

    #[test]
    fn draw_index_skips_the_excluded_one() {
        let mut rng = FastRng::seed(1);
        for _ in 0..1000 {
            let i = draw_index(&mut rng, 5, Some(2));
            assert!(i < 5 && i != 2);
        }
        assert_eq!(draw_index(&mut rng, 2, Some(0)), 1);
        assert_eq!(draw_index(&mut rng, 2, Some(1)), 0);
        assert!(draw_index(&mut rng, 3, Some(7)) < 3);
    }

    #[test]
    fn uniform_handles_edges() {
        let mut rng = FastRng::seed(2);
        let empty = StaticEndpoints::new();
        assert_eq!(uniform(&empty, &mut rng, None), None);
        let one = StaticEndpoints::uniform(1);
        assert_eq!(uniform(&one, &mut rng, None), Some(0));
        assert_eq!(uniform(&one, &mut rng, Some(0)), None);
        assert_eq!(uniform_pair(&one, &mut rng), Some((0, None)));
        let mut many = StaticEndpoints::uniform(100);
        for i in 0..100 {
            many.set_eligible(i, i == 63);
        }
        assert_eq!(uniform(&many, &mut rng, None), Some(63));
        assert_eq!(uniform(&many, &mut rng, Some(63)), None);
    }

    #[test]
    fn weighted_handles_edges_and_zero_scores() {
        let mut rng = FastRng::seed(3);
        let cache = WeightCache::default();
        let eps = StaticEndpoints::from_weights([1.0, 2.0, 0.0]);
        let zero = |_: usize, _: f64| 0.0;
        let mut seen = [0u32; 3];
        for _ in 0..1000 {
            let i = weighted(&eps, &mut rng, &cache, None, &zero);
            seen[i.unwrap_or(2)] += 1;
        }
        assert!(seen[0] > 300 && seen[1] > 300 && seen[2] == 0, "{seen:?}");
        assert_eq!(cache.get(), (1.0, 2.0));
        let none = StaticEndpoints::from_weights([0.0, -1.0]);
        assert_eq!(weighted(&none, &mut rng, &cache, None, &|_, w| w), None);
        assert_eq!(cache.get(), (0.0, 0.0));
        assert_eq!(cache.refresh(&none), None);
        assert!(format!("{cache:?}").contains("max"));
    }

    #[test]
    fn stale_bound_is_detected_and_refreshed() {
        let mut rng = FastRng::seed(4);
        let cache = WeightCache::default();
        let mut eps = StaticEndpoints::uniform(40);
        cache.refresh(&eps);
        eps.set_weight(5, 1000.0);
        // Endpoint 5 now holds ~96% of the weight. Within a few hundred picks
        // the stale bound must have been noticed and 5 must dominate.
        let mut hits = 0;
        for _ in 0..2000 {
            if weighted(&eps, &mut rng, &cache, None, &|_, w| w) == Some(5) {
                hits += 1;
            }
        }
        assert_eq!(cache.get().1, 1000.0);
        assert!(hits > 1700, "{hits}");
    }
}
