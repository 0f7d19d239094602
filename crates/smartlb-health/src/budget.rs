//! Upstream-wide limits: the ejection cap and the primary/backup tiers.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use smartlb_balance::Nanos;

/// The share of an upstream's backends the outlier detector may eject at
/// once (`max_ejection_percent`), shared by all the upstream's
/// [`BackendHealth`](crate::BackendHealth)s through an `Arc`.
///
/// An ejection that would take the number of ejected backends above
/// `floor(max_ejection_percent * backends / 100)` is not made: the detector
/// holds back rather than take the whole upstream down on a shared fault
/// (Envoy's panic threshold idea). Unlike Envoy, there is no "at least one"
/// exception: with 50 % and a single backend, that backend is never ejected.
///
/// Members join when a `BackendHealth` is built with this budget and leave
/// when it is dropped.
#[derive(Debug)]
pub struct EjectionBudget {
    max_percent: AtomicU32,
    members: AtomicUsize,
    next_id: AtomicU64,
    /// `(member id, ejected until)`, one entry per ejection not yet known to
    /// be over.
    ejected: Mutex<Vec<(u64, u64)>>,
}

/// Why an ejection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) ejected: usize,
    pub(crate) members: usize,
}

impl EjectionBudget {
    /// A budget allowing `max_ejection_percent` (clamped to 100) of the
    /// members to be ejected at once.
    pub fn new(max_ejection_percent: u32) -> Self {
        EjectionBudget {
            max_percent: AtomicU32::new(max_ejection_percent.min(100)),
            members: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            ejected: Mutex::new(Vec::new()),
        }
    }

    /// Changes the cap (on reload); current ejections are not undone.
    pub fn set_max_ejection_percent(&self, percent: u32) {
        self.max_percent.store(percent.min(100), Ordering::Relaxed);
    }

    /// The cap, in percent.
    pub fn max_ejection_percent(&self) -> u32 {
        self.max_percent.load(Ordering::Relaxed)
    }

    /// Number of backends sharing this budget.
    pub fn members(&self) -> usize {
        self.members.load(Ordering::Relaxed)
    }

    /// Number of backends ejected at `now`.
    pub fn ejected(&self, now: Nanos) -> usize {
        let mut list = self.list();
        list.retain(|(_, until)| *until > now.0);
        list.len()
    }

    /// How many backends may be ejected at once with the current members.
    pub fn max_ejected(&self) -> usize {
        let members = self.members() as u128;
        (members * u128::from(self.max_ejection_percent()) / 100) as usize
    }

    /// Whether one more ejection would be allowed at `now`.
    pub fn allows_one_more(&self, now: Nanos) -> bool {
        self.ejected(now) < self.max_ejected()
    }

    fn list(&self) -> MutexGuard<'_, Vec<(u64, u64)>> {
        self.ejected.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn join(&self) -> u64 {
        self.members.fetch_add(1, Ordering::Relaxed);
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn leave(&self, id: u64) {
        self.members.fetch_sub(1, Ordering::Relaxed);
        self.list().retain(|(member, _)| *member != id);
    }

    /// Moves the end of member `id`'s booked ejection to `at` (an ejection
    /// that ended early, or one held until active checks passed).
    pub(crate) fn release(&self, id: u64, at: Nanos) {
        for entry in self.list().iter_mut().filter(|(member, _)| *member == id) {
            entry.1 = at.0;
        }
    }

    /// Books an ejection of member `id` until `until` if the cap allows it.
    pub(crate) fn try_eject(&self, id: u64, until: Nanos, now: Nanos) -> Result<(), Refused> {
        let max = self.max_ejected();
        let mut list = self.list();
        list.retain(|(member, end)| *end > now.0 && *member != id);
        if list.len() >= max {
            return Err(Refused {
                ejected: list.len(),
                members: self.members(),
            });
        }
        list.push((id, until.0));
        Ok(())
    }
}

/// Which backends of an upstream are eligible for new requests.
///
/// Primaries serve while at least one of them is available; when none is,
/// available backups serve; when none of those is either, nothing does (the
/// proxy answers 503).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Available primaries.
    Primary,
    /// Available backups (no primary is available).
    Backup,
    /// Nothing is available.
    None,
}

/// What [`Tier`] selection needs to know of one backend (see
/// [`BackendHealth::view`](crate::BackendHealth::view)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackendView {
    /// Whether it is a backup.
    pub backup: bool,
    /// Whether it may receive new requests.
    pub available: bool,
}

impl Tier {
    /// Picks the tier for a set of backends.
    pub fn select(backends: impl IntoIterator<Item = BackendView>) -> Tier {
        let mut backup_available = false;
        for b in backends {
            if b.available {
                if !b.backup {
                    return Tier::Primary;
                }
                backup_available = true;
            }
        }
        if backup_available {
            Tier::Backup
        } else {
            Tier::None
        }
    }

    /// Whether a backend may receive new requests under this tier.
    pub fn admits(self, backend: BackendView) -> bool {
        backend.available
            && match self {
                Tier::Primary => !backend.backup,
                Tier::Backup => backend.backup,
                Tier::None => false,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(backup: bool, available: bool) -> BackendView {
        BackendView { backup, available }
    }

    #[test]
    fn tiers() {
        let set = [v(false, false), v(false, true), v(true, true)];
        let t = Tier::select(set);
        assert_eq!(t, Tier::Primary);
        let admitted: Vec<bool> = set.iter().map(|b| t.admits(*b)).collect();
        assert_eq!(admitted, vec![false, true, false]);

        let set = [v(false, false), v(true, false), v(true, true)];
        let t = Tier::select(set);
        assert_eq!(t, Tier::Backup);
        let admitted: Vec<bool> = set.iter().map(|b| t.admits(*b)).collect();
        assert_eq!(admitted, vec![false, false, true]);

        let set = [v(false, false), v(true, false)];
        assert_eq!(Tier::select(set), Tier::None);
        assert!(!Tier::None.admits(v(false, true)));
        assert_eq!(Tier::select([]), Tier::None);
    }

    #[test]
    fn budget_counts() {
        let b = EjectionBudget::new(50);
        let ids: Vec<u64> = (0..4).map(|_| b.join()).collect();
        assert_eq!(b.members(), 4);
        assert_eq!(b.max_ejected(), 2);
        assert!(b.try_eject(ids[0], Nanos(100), Nanos(0)).is_ok());
        assert!(b.try_eject(ids[1], Nanos(200), Nanos(0)).is_ok());
        assert_eq!(
            b.try_eject(ids[2], Nanos(200), Nanos(50)),
            Err(Refused {
                ejected: 2,
                members: 4
            })
        );
        assert!(!b.allows_one_more(Nanos(50)));
        // The first ejection is over at 100.
        assert_eq!(b.ejected(Nanos(100)), 1);
        assert!(b.try_eject(ids[2], Nanos(300), Nanos(100)).is_ok());
        b.leave(ids[2]);
        assert_eq!(b.members(), 3);
        assert_eq!(b.ejected(Nanos(150)), 1);
        b.set_max_ejection_percent(1000);
        assert_eq!(b.max_ejection_percent(), 100);
        assert_eq!(b.max_ejected(), 3);
    }
}
