use std::sync::Mutex;

use crate::balancer::{Balancer, PickContext};
use crate::endpoints::{Endpoints, usable_weight};

/// `weighted-round-robin`: NGINX's smooth weighted round-robin
/// (`ngx_http_upstream_get_peer`).
///
/// Each endpoint keeps a `current` value. At each pick, every pickable
/// endpoint adds its live weight to `current`; the one with the largest
/// `current` (the first on ties) is chosen and the total weight is
/// subtracted from it. With weights 5, 1, 1 the sequence is
/// `a a b a c a a`: exact shares over each cycle, interleaved rather than in
/// bursts. Endpoints that are not pickable take no part (their `current` is
/// kept for when they return). Weight changes apply at the next pick.
///
/// The `current` values are shared mutable state, kept behind a mutex held
/// for one pass over the endpoints: a pick costs `O(n)`, as in NGINX (tens
/// of nanoseconds for a handful of endpoints, microseconds for a thousand,
/// where `weighted-random` or `least-requests` are the cheaper choice).
#[derive(Debug)]
pub struct WeightedRoundRobin {
    current: Mutex<Vec<f64>>,
}

impl WeightedRoundRobin {
    /// A selector for `n` endpoints (the length adapts if it differs at a pick).
    pub fn new(n: usize) -> Self {
        WeightedRoundRobin {
            current: Mutex::new(vec![0.0; n]),
        }
    }
}

impl Default for WeightedRoundRobin {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Balancer for WeightedRoundRobin {
    fn pick(&self, endpoints: &dyn Endpoints, _ctx: &mut PickContext<'_>) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        // A panic elsewhere while holding the lock cannot leave the values
        // invalid in a way that matters: keep going with them.
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.len() != n {
            current.resize(n, 0.0);
        }
        let mut total = 0.0;
        let mut best: Option<usize> = None;
        let mut best_value = f64::NEG_INFINITY;
        for (i, cur) in current.iter_mut().enumerate() {
            let w = usable_weight(endpoints.weight(i));
            if w <= 0.0 || !endpoints.is_eligible(i) {
                continue;
            }
            *cur += w;
            total += w;
            if best.is_none() || *cur > best_value {
                best = Some(i);
                best_value = *cur;
            }
        }
        let chosen = best?;
        current[chosen] -= total;
        if !current[chosen].is_finite() {
            // Only absurd weights (near f64::MAX) can get here: start afresh.
            current.iter_mut().for_each(|c| *c = 0.0);
        }
        Some(chosen)
    }
}
