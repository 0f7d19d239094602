use crate::balancer::{Balancer, PickContext};
use crate::endpoints::{Endpoints, is_pickable, usable_weight};
use crate::hash::{hash_u64, reduce};
use crate::sample::uniform;

/// How many times a key is rehashed when it lands on an endpoint that is not
/// pickable, before the deterministic scan.
const REHASHES: u64 = 4;
/// Smallest Maglev table (a prime).
const MIN_TABLE: usize = 65_537;
/// Table slots per endpoint aimed for (the Maglev paper uses M ≥ 100·N).
const SLOTS_PER_ENDPOINT: usize = 100;
/// Table size above which only [`MIN_SLOTS_PER_ENDPOINT`] slots per endpoint
/// are kept, to bound memory (16 MiB of `u32`).
const MAX_TABLE: usize = 1 << 22;
/// Slots per endpoint kept for very large memberships.
const MIN_SLOTS_PER_ENDPOINT: usize = 10;
/// Marks an unfilled slot while building.
const EMPTY: u32 = u32::MAX;

/// Build-time weights of the hashing algorithms: usable weights as they are,
/// and anything not usable (`<= 0`, NaN, infinite) as the mean of the usable
/// ones (1 if there is none). Such endpoints are not picked while their live
/// weight stays unusable, but they keep their share of the key space so
/// that keys come back to them when it is restored.
fn build_weights(endpoints: &dyn Endpoints) -> Vec<f64> {
    let raw: Vec<f64> = (0..endpoints.len())
        .map(|i| usable_weight(endpoints.weight(i)))
        .collect();
    let usable: Vec<f64> = raw.iter().copied().filter(|&w| w > 0.0).collect();
    let fill = if usable.is_empty() {
        1.0
    } else {
        usable.iter().sum::<f64>() / usable.len() as f64
    };
    raw.into_iter()
        .map(|w| if w > 0.0 { w } else { fill })
        .collect()
}

/// The `attempt`-th rehash of a key: the same key always walks the same
/// sequence.
#[inline]
fn rehash(key: u64, attempt: u64) -> u64 {
    hash_u64(key ^ attempt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// First pickable endpoint at or after `start` (cyclically).
fn scan_from(endpoints: &dyn Endpoints, start: usize) -> Option<usize> {
    let n = endpoints.len();
    if n == 0 {
        return None;
    }
    let start = start % n;
    (start..n)
        .chain(0..start)
        .find(|&i| is_pickable(endpoints, i))
}

fn is_prime(m: usize) -> bool {
    if m < 2 {
        return false;
    }
    if m.is_multiple_of(2) {
        return m == 2;
    }
    let mut d = 3;
    while d * d <= m {
        if m.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

fn next_prime(mut m: usize) -> usize {
    while !is_prime(m) {
        m += 1;
    }
    m
}

/// The Maglev table size for `n` endpoints: the smallest prime at least
/// `max(65537, 100·n)`, with the 100 per endpoint relaxed to 10 above 2^22
/// slots to bound memory.
pub(crate) fn table_size(n: usize) -> usize {
    let target = n
        .saturating_mul(SLOTS_PER_ENDPOINT)
        .clamp(MIN_TABLE, MAX_TABLE)
        .max(n.saturating_mul(MIN_SLOTS_PER_ENDPOINT));
    next_prime(target)
}

/// `consistent-hash`: Maglev hashing (Eisenbud et al., "Maglev: A Fast and
/// Reliable Software Network Load Balancer", NSDI 2016), weighted.
///
/// [`build`](ConsistentHash::build) fills a lookup table of prime size
/// `M ≥ max(65537, 100·n)`: each endpoint walks its own permutation of the
/// slots (offset and skip derived from its [`Endpoints::id`]) and claims the
/// next free slot in turn, endpoints of higher build-time weight taking
/// proportionally more turns. A pick is one table lookup of the mixed key
/// hash: keys spread evenly, in proportion to weight, and when an endpoint
/// joins or leaves only about its share of keys move.
///
/// Weights are those seen at build time (the table is rebuilt only when
/// membership changes); a weight that is not usable at build time counts as
/// the mean of the others, so the endpoint keeps its keys for when its live
/// weight becomes positive again. Eligibility is read live: a key whose endpoint is not
/// pickable is rehashed up to 4 times through the table (so its keys spread
/// over the others in proportion), then falls to the next pickable endpoint
/// after it by index. The result is deterministic for a given key and state,
/// and keys of other endpoints do not move.
///
/// Without [`PickContext::hash`] a pick is uniform random among the
/// pickable endpoints.
pub struct ConsistentHash {
    table: Vec<u32>,
    n: usize,
}

impl ConsistentHash {
    /// Builds the table for the current membership of `endpoints`.
    pub fn build(endpoints: &dyn Endpoints) -> Self {
        let n = endpoints.len().min(EMPTY as usize - 1);
        if n == 0 {
            return ConsistentHash {
                table: Vec::new(),
                n: 0,
            };
        }
        let weights = build_weights(endpoints);
        let max_weight = weights.iter().copied().fold(0.0f64, f64::max);
        let m = table_size(n);
        let m64 = m as u64;
        // Permutation of endpoint i: slot(j) = (offset + j·skip) mod M, which
        // visits every slot because M is prime and 1 ≤ skip < M.
        let mut offset = Vec::with_capacity(n);
        let mut skip = Vec::with_capacity(n);
        for i in 0..n {
            let id = endpoints.id(i);
            offset.push(hash_u64(id ^ 0x6F66_6673_6574) % m64);
            skip.push(hash_u64(id ^ 0x736B_6970) % (m64 - 1) + 1);
        }
        let share: Vec<f64> = weights[..n].iter().map(|w| w / max_weight).collect();
        let mut position = offset;
        let mut claimed = vec![0u64; n];
        let mut table = vec![EMPTY; m];
        let mut filled = 0usize;
        let mut round = 0u64;
        // Each round the heaviest endpoint claims one slot, so at most M
        // rounds; each claim walks its permutation to a free slot, which
        // exists while filled < M.
        'fill: while filled < m {
            round += 1;
            for i in 0..n {
                if claimed[i] as f64 >= round as f64 * share[i] {
                    continue;
                }
                loop {
                    let slot = position[i] as usize;
                    position[i] += skip[i];
                    if position[i] >= m64 {
                        position[i] -= m64;
                    }
                    if table[slot] == EMPTY {
                        table[slot] = i as u32;
                        break;
                    }
                }
                claimed[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        ConsistentHash { table, n }
    }

    /// Number of slots in the lookup table (0 for an empty membership).
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// The endpoint the table gives `hash` to, ignoring eligibility; `None`
    /// for an empty membership.
    pub fn owner(&self, hash: u64) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[reduce(hash_u64(hash), self.table.len())] as usize)
    }
}

impl std::fmt::Debug for ConsistentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsistentHash")
            .field("endpoints", &self.n)
            .field("table_len", &self.table.len())
            .finish()
    }
}

impl Balancer for ConsistentHash {
    fn pick(&self, endpoints: &dyn Endpoints, ctx: &mut PickContext<'_>) -> Option<usize> {
        let Some(hash) = ctx.hash else {
            return uniform(endpoints, ctx.rng, None);
        };
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        if self.table.is_empty() {
            return scan_from(endpoints, reduce(hash_u64(hash), n));
        }
        let m = self.table.len();
        let mut key = hash_u64(hash);
        let first = self.table[reduce(key, m)] as usize;
        if first < n && is_pickable(endpoints, first) {
            return Some(first);
        }
        for attempt in 1..=REHASHES {
            key = rehash(key, attempt);
            let i = self.table[reduce(key, m)] as usize;
            if i < n && is_pickable(endpoints, i) {
                return Some(i);
            }
        }
        scan_from(endpoints, first + 1)
    }
}

/// `ip-hash`: the client address hash (from [`PickContext::hash`]) mapped
/// onto the endpoints in proportion to their build-time weights, like
/// NGINX's `ip_hash`.
///
/// The key hash is mixed and placed on the cumulative weight line built at
/// [`build`](IpHash::build) (binary search, `O(log n)`), so a client keeps
/// its endpoint while membership and eligibility stay the same. A client
/// whose endpoint is not pickable is rehashed up to 4 times, then goes to
/// the next pickable endpoint by index; other clients do not move. Unlike
/// `consistent-hash`, a membership change remaps many clients: choose it
/// for cheap, memory-free stickiness, and `consistent-hash` for minimal
/// disruption.
///
/// Without [`PickContext::hash`] a pick is uniform random among the
/// pickable endpoints.
#[derive(Debug)]
pub struct IpHash {
    cumulative: Vec<f64>,
}

impl IpHash {
    /// Builds the weight line for the current membership of `endpoints`.
    pub fn build(endpoints: &dyn Endpoints) -> Self {
        let mut total = 0.0;
        let cumulative = build_weights(endpoints)
            .into_iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        IpHash { cumulative }
    }

    fn locate(&self, key: u64) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let point = (key >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * total;
        self.cumulative
            .partition_point(|&c| c <= point)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

impl Balancer for IpHash {
    fn pick(&self, endpoints: &dyn Endpoints, ctx: &mut PickContext<'_>) -> Option<usize> {
        let Some(hash) = ctx.hash else {
            return uniform(endpoints, ctx.rng, None);
        };
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        if self.cumulative.is_empty() {
            return scan_from(endpoints, reduce(hash_u64(hash), n));
        }
        let mut key = hash_u64(hash);
        let first = self.locate(key);
        if first < n && is_pickable(endpoints, first) {
            return Some(first);
        }
        for attempt in 1..=REHASHES {
            key = rehash(key, attempt);
            let i = self.locate(key);
            if i < n && is_pickable(endpoints, i) {
                return Some(i);
            }
        }
        scan_from(endpoints, first + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::StaticEndpoints;
    use crate::rng::FastRng;
    use crate::time::Nanos;

    #[test]
    fn primes_and_table_sizes() {
        assert!(is_prime(65_537));
        assert!(!is_prime(65_535));
        assert!(!is_prime(1) && is_prime(2) && !is_prime(9));
        assert_eq!(table_size(0), 65_537);
        assert_eq!(table_size(3), 65_537);
        assert_eq!(table_size(1000), 100_003);
        let big = table_size(1_000_000);
        assert!(big >= 10_000_000 && is_prime(big));
    }

    #[test]
    fn build_weights_fill_unusable_with_the_mean() {
        let eps = StaticEndpoints::from_weights([2.0, 0.0, 4.0, f64::NAN]);
        assert_eq!(build_weights(&eps), vec![2.0, 3.0, 4.0, 3.0]);
        let none = StaticEndpoints::from_weights([0.0, -1.0]);
        assert_eq!(build_weights(&none), vec![1.0, 1.0]);
    }

    #[test]
    fn maglev_table_shares_follow_weights() {
        let eps = StaticEndpoints::from_weights([1.0, 2.0, 3.0, 4.0]);
        let ch = ConsistentHash::build(&eps);
        let mut counts = [0usize; 4];
        for &slot in &ch.table {
            counts[slot as usize] += 1;
        }
        let m = ch.table_len() as f64;
        for (i, &c) in counts.iter().enumerate() {
            let expected = (i as f64 + 1.0) / 10.0;
            assert!((c as f64 / m - expected).abs() < 0.002, "{counts:?}");
        }
        assert!(format!("{ch:?}").contains("table_len"));
    }

    #[test]
    fn empty_and_out_of_sync_memberships() {
        let empty = StaticEndpoints::new();
        let ch = ConsistentHash::build(&empty);
        let ip = IpHash::build(&empty);
        let mut rng = FastRng::seed(1);
        let mut ctx = PickContext::new(Nanos(0), &mut rng).with_hash(42);
        assert_eq!(ch.pick(&empty, &mut ctx), None);
        assert_eq!(ip.pick(&empty, &mut ctx), None);
        assert_eq!(ch.owner(42), None);
        // Built for nothing, asked about three: still picks something valid.
        let three = StaticEndpoints::uniform(3);
        assert!(ch.pick(&three, &mut ctx).is_some_and(|i| i < 3));
        assert!(ip.pick(&three, &mut ctx).is_some_and(|i| i < 3));
        // Built for three, asked about one: never an index out of range.
        let ch3 = ConsistentHash::build(&three);
        let ip3 = IpHash::build(&three);
        let one = StaticEndpoints::uniform(1);
        for h in 0..100 {
            ctx.hash = Some(h);
            assert_eq!(ch3.pick(&one, &mut ctx), Some(0));
            assert_eq!(ip3.pick(&one, &mut ctx), Some(0));
        }
    }

    #[test]
    fn ip_hash_is_stable_and_weighted() {
        let eps = StaticEndpoints::from_weights([1.0, 3.0]);
        let ip = IpHash::build(&eps);
        let mut rng = FastRng::seed(1);
        let mut counts = [0u32; 2];
        for h in 0..20_000u64 {
            let mut ctx = PickContext::new(Nanos(0), &mut rng).with_hash(h);
            let a = ip.pick(&eps, &mut ctx);
            let b = ip.pick(&eps, &mut ctx);
            assert_eq!(a, b);
            counts[a.unwrap_or(0)] += 1;
        }
        // Expected 5000 / 15000; sigma about 61.
        assert!((4700..5300).contains(&counts[0]), "{counts:?}");
    }
}
