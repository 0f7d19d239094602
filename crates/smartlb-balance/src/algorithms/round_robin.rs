use std::sync::atomic::{AtomicUsize, Ordering};

use crate::balancer::{Balancer, PickContext};
use crate::endpoints::{Endpoints, is_pickable};

/// `round-robin`: endpoints in index order, one after the other.
///
/// A shared atomic counter gives the starting index of each pick; endpoints
/// that are not pickable (ineligible, or weight `<= 0`) are skipped by
/// scanning forward, at most one full turn, and the counter is moved past
/// the skipped ones so that the next endpoint does not take their turns too:
/// the pickable endpoints share evenly. Weights are otherwise ignored.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// A round-robin starting at index 0.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, endpoints: &dyn Endpoints, _ctx: &mut PickContext<'_>) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        if is_pickable(endpoints, start) {
            return Some(start);
        }
        let skipped = (1..n).find(|&k| is_pickable(endpoints, (start + k) % n))?;
        // The next pick starts after the chosen endpoint.
        self.next.fetch_add(skipped, Ordering::Relaxed);
        Some((start + skipped) % n)
    }
}
