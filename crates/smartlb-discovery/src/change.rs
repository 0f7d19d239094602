//! Backend sets and the changes between two of them.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use smartlb_config::{BackendAddress, BackendConfig};

/// One difference between two backend sets, keyed by address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A backend that was not in the old set: add it (through slow start).
    Insert(BackendConfig),
    /// A backend in both sets whose weight or backup flag changed: keep its state and
    /// connections, apply the new settings.
    Update(BackendConfig),
    /// A backend that is no longer in the set: stop sending it new requests and let
    /// its in-flight requests finish.
    Remove(BackendAddress),
}

impl Change {
    /// The address the change is about.
    pub fn address(&self) -> &BackendAddress {
        match self {
            Change::Insert(b) | Change::Update(b) => &b.address,
            Change::Remove(a) => a,
        }
    }
}

/// The changes that turn `old` into `new`, ordered by address.
///
/// Backends are identified by their address; a backend whose address appears in both
/// sets with different settings is an [`Change::Update`]. Duplicate addresses within a
/// set count once (the first occurrence).
///
/// ```
/// use smartlb_config::BackendConfig;
/// use smartlb_discovery::{diff, Change};
///
/// let a = BackendConfig::new("10.0.0.1:80".parse().unwrap());
/// let b = BackendConfig::new("10.0.0.2:80".parse().unwrap());
/// let mut b3 = b.clone();
/// b3.weight = 3;
/// let c = BackendConfig::new("10.0.0.3:80".parse().unwrap());
///
/// let changes = diff(&[a.clone(), b], &[b3.clone(), c.clone()]);
/// assert_eq!(
///     changes,
///     vec![Change::Remove(a.address), Change::Update(b3), Change::Insert(c)]
/// );
/// ```
pub fn diff(old: &[BackendConfig], new: &[BackendConfig]) -> Vec<Change> {
    let old = by_address(old);
    let new = by_address(new);
    let mut changes = Vec::new();
    let mut old_iter = old.into_iter().peekable();
    let mut new_iter = new.into_iter().peekable();
    loop {
        let order = match (old_iter.peek(), new_iter.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some((o, _)), Some((n, _))) => o.cmp(n),
        };
        match order {
            Ordering::Less => {
                if let Some((address, _)) = old_iter.next() {
                    changes.push(Change::Remove(address.clone()));
                }
            }
            Ordering::Greater => {
                if let Some((_, backend)) = new_iter.next() {
                    changes.push(Change::Insert(backend.clone()));
                }
            }
            Ordering::Equal => {
                if let (Some((_, before)), Some((_, after))) = (old_iter.next(), new_iter.next())
                    && before != after
                {
                    changes.push(Change::Update(after.clone()));
                }
            }
        }
    }
    changes
}

fn by_address(set: &[BackendConfig]) -> BTreeMap<&BackendAddress, &BackendConfig> {
    let mut map = BTreeMap::new();
    for backend in set {
        map.entry(&backend.address).or_insert(backend);
    }
    map
}

/// A set in its published form: one entry per address (the first wins), sorted by
/// address, so that two equal sets compare equal.
pub(crate) fn normalize(set: impl IntoIterator<Item = BackendConfig>) -> Vec<BackendConfig> {
    let mut map: BTreeMap<BackendAddress, BackendConfig> = BTreeMap::new();
    for backend in set {
        map.entry(backend.address.clone()).or_insert(backend);
    }
    map.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(address: &str, weight: u32) -> BackendConfig {
        let mut b = BackendConfig::new(address.parse().unwrap());
        b.weight = weight;
        b
    }

    #[test]
    fn equal_sets_have_no_changes() {
        let set = vec![backend("10.0.0.1:80", 1), backend("10.0.0.2:80", 2)];
        let reversed: Vec<_> = set.iter().rev().cloned().collect();
        assert!(diff(&set, &reversed).is_empty());
        assert!(diff(&[], &[]).is_empty());
    }

    #[test]
    fn from_empty_everything_is_inserted_and_back() {
        let set = vec![backend("10.0.0.2:80", 1), backend("10.0.0.1:80", 1)];
        let changes = diff(&[], &set);
        assert_eq!(
            changes,
            vec![
                Change::Insert(set[1].clone()),
                Change::Insert(set[0].clone())
            ]
        );
        let changes = diff(&set, &[]);
        assert_eq!(
            changes
                .iter()
                .map(|c| c.address().to_string())
                .collect::<Vec<_>>(),
            ["10.0.0.1:80", "10.0.0.2:80"]
        );
        assert!(changes.iter().all(|c| matches!(c, Change::Remove(_))));
    }

    #[test]
    fn backup_flag_change_is_an_update() {
        let before = backend("10.0.0.1:80", 1);
        let mut after = before.clone();
        after.backup = true;
        assert_eq!(
            diff(&[before], &[after.clone()]),
            vec![Change::Update(after)]
        );
    }

    #[test]
    fn scheme_is_part_of_the_identity() {
        let http = backend("10.0.0.1:443", 1);
        let https = backend("https://10.0.0.1:443", 1);
        let changes = diff(std::slice::from_ref(&http), std::slice::from_ref(&https));
        assert_eq!(
            changes,
            vec![Change::Remove(http.address), Change::Insert(https)]
        );
    }

    #[test]
    fn normalize_sorts_and_keeps_the_first_duplicate() {
        let set = normalize(vec![
            backend("10.0.0.2:80", 5),
            backend("10.0.0.1:80", 1),
            backend("10.0.0.2:80", 9),
        ]);
        assert_eq!(
            set,
            vec![backend("10.0.0.1:80", 1), backend("10.0.0.2:80", 5)]
        );
    }
}
