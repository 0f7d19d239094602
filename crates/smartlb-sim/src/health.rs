//! A small model of smartlb's health handling, the same for every
//! algorithm: passive outlier ejection, active checks and slow start, with
//! the defaults of the configuration file.

/// Consecutive failures (connect, reset, timeout, 5xx) that eject.
const CONSECUTIVE_FAILURES: u32 = 5;
/// First ejection, ns (doubles on each repeat).
const BASE_EJECTION_NS: u64 = 10_000_000_000;
/// Longest ejection, ns.
const MAX_EJECTION_NS: u64 = 300_000_000_000;
/// Failed checks in a row that take a backend out.
pub(crate) const UNHEALTHY_THRESHOLD: u32 = 3;
/// Passed checks in a row that bring it back.
pub(crate) const HEALTHY_THRESHOLD: u32 = 2;
/// Slow-start ramp, ns.
const SLOW_START_NS: u64 = 30_000_000_000;
/// Lowest slow-start factor.
const SLOW_START_MIN: f64 = 0.1;
/// Largest share of backends ejected at once.
const MAX_EJECTION_PERCENT: usize = 50;

#[derive(Clone, Debug, Default)]
pub(crate) struct Health {
    consecutive: u32,
    ejected_until: Option<u64>,
    ejections: u32,
    check_fail: u32,
    check_pass: u32,
    down: bool,
    ramp_from: Option<u64>,
}

impl Health {
    /// Whether new requests may go to the backend at `now`.
    pub(crate) fn available(&self, now: u64) -> bool {
        !self.down && self.ejected_until.is_none_or(|t| now >= t)
    }

    /// Slow-start factor at `now` (1 outside a ramp).
    pub(crate) fn slow_start(&self, now: u64) -> f64 {
        match self.ramp_from {
            Some(from) if now < from.saturating_add(SLOW_START_NS) => {
                let f = now.saturating_sub(from) as f64 / SLOW_START_NS as f64;
                f.max(SLOW_START_MIN)
            }
            _ => 1.0,
        }
    }

    /// Ends an ejection whose time is up (starting the ramp).
    pub(crate) fn poll(&mut self, now: u64) {
        if let Some(t) = self.ejected_until
            && now >= t
        {
            self.ejected_until = None;
            self.consecutive = 0;
            if !self.down {
                self.ramp_from = Some(t);
            }
        }
    }

    pub(crate) fn success(&mut self) {
        self.consecutive = 0;
    }

    /// A failure counted by the outlier detector; `ejected_now` is the
    /// number of backends of the upstream ejected at this moment and `n`
    /// their count.
    pub(crate) fn failure(&mut self, now: u64, ejected_now: usize, n: usize) -> bool {
        self.consecutive = self.consecutive.saturating_add(1);
        if self.consecutive < CONSECUTIVE_FAILURES || self.ejected_until.is_some() {
            return false;
        }
        if (ejected_now + 1) * 100 > MAX_EJECTION_PERCENT * n {
            return false;
        }
        let shift = self.ejections.min(10);
        let time = BASE_EJECTION_NS
            .saturating_mul(1 << shift)
            .min(MAX_EJECTION_NS);
        self.ejections = self.ejections.saturating_add(1);
        self.ejected_until = Some(now.saturating_add(time));
        self.consecutive = 0;
        true
    }

    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected_until.is_some()
    }

    /// One active check; returns true when the state changed.
    pub(crate) fn check(&mut self, passed: bool, now: u64) -> bool {
        if passed {
            self.check_fail = 0;
            self.check_pass = self.check_pass.saturating_add(1);
            if self.down && self.check_pass >= HEALTHY_THRESHOLD {
                self.down = false;
                // A restart seen by the checks ends an ejection at once.
                self.ejected_until = None;
                self.consecutive = 0;
                self.ramp_from = Some(now);
                return true;
            }
        } else {
            self.check_pass = 0;
            self.check_fail = self.check_fail.saturating_add(1);
            if !self.down && self.check_fail >= UNHEALTHY_THRESHOLD {
                self.down = true;
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn ejection_and_ramp() {
        let mut h = Health::default();
        for _ in 0..4 {
            assert!(!h.failure(0, 0, 6));
        }
        assert!(h.failure(0, 0, 6));
        assert!(!h.available(5 * S));
        h.poll(10 * S);
        assert!(h.available(10 * S));
        assert_eq!(h.slow_start(10 * S), SLOW_START_MIN);
        assert!((h.slow_start(25 * S) - 0.5).abs() < 1e-9);
        assert_eq!(h.slow_start(40 * S), 1.0);
        // The panic threshold holds ejections back.
        let mut g = Health::default();
        for _ in 0..5 {
            assert!(!g.failure(0, 3, 6));
        }
    }

    #[test]
    fn checks_take_out_and_bring_back() {
        let mut h = Health::default();
        assert!(!h.check(false, 0));
        assert!(!h.check(false, 2 * S));
        assert!(h.check(false, 4 * S));
        assert!(!h.available(4 * S));
        assert!(!h.check(true, 6 * S));
        assert!(h.check(true, 8 * S));
        assert!(h.available(8 * S));
        assert!(h.slow_start(8 * S) < 1.0);
    }
}
