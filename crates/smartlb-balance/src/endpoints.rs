//! What an algorithm may read about the current endpoints.

use crate::hash::hash_u64;
use crate::time::Nanos;

/// Read access to the live state of one set of endpoints, indexed `0..len()`.
///
/// The caller implements it over its own state (atomics, a snapshot, a
/// simulator's model). Algorithms read it at every pick, so weight,
/// eligibility, load and latency changes take effect immediately without
/// rebuilding the [`Balancer`](crate::Balancer).
///
/// Only [`len`](Endpoints::len) and [`weight`](Endpoints::weight) are
/// required; the rest have defaults (all eligible, no load, no latency
/// samples, the index as identity).
pub trait Endpoints {
    /// Number of endpoints; valid indices are `0..len()`.
    fn len(&self) -> usize;

    /// Whether there are no endpoints at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Current effective weight. A weight that is not a positive finite number
    /// (`<= 0`, NaN, infinite) means "never pick", for every algorithm.
    fn weight(&self, i: usize) -> f64;

    /// Healthy and accepting new requests (not ejected, not draining).
    fn is_eligible(&self, _i: usize) -> bool {
        true
    }

    /// Requests outstanding on the endpoint now.
    fn in_flight(&self, _i: usize) -> u64 {
        0
    }

    /// Peak-EWMA latency estimate in nanoseconds, decayed to `now`
    /// (see [`PeakEwma`](crate::PeakEwma)); `None` when there are no samples yet.
    fn latency(&self, _i: usize, _now: Nanos) -> Option<f64> {
        None
    }

    /// A latency estimate that follows changes faster, for `adaptive`: a
    /// peak-EWMA with the decay
    /// [`Adaptive::LATENCY_DECAY`](crate::algorithms::Adaptive::LATENCY_DECAY)
    /// (3 s) where the caller keeps one beside the 10 s estimate of
    /// [`latency`](Endpoints::latency) that `p2c-ewma` reads. The default is
    /// [`latency`](Endpoints::latency) itself.
    fn recent_latency(&self, i: usize, now: Nanos) -> Option<f64> {
        self.latency(i, now)
    }

    /// A stable identity (for example [`hash_bytes`](crate::hash_bytes) of the
    /// address) used by the hashing algorithms, so that a key keeps its
    /// endpoint when other endpoints come and go. The default, the index
    /// itself, is only stable while no endpoint before `i` is removed:
    /// implement it when using `consistent-hash`.
    fn id(&self, i: usize) -> u64 {
        i as u64
    }
}

impl<E: Endpoints + ?Sized> Endpoints for &E {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn weight(&self, i: usize) -> f64 {
        (**self).weight(i)
    }
    fn is_eligible(&self, i: usize) -> bool {
        (**self).is_eligible(i)
    }
    fn in_flight(&self, i: usize) -> u64 {
        (**self).in_flight(i)
    }
    fn latency(&self, i: usize, now: Nanos) -> Option<f64> {
        (**self).latency(i, now)
    }
    fn recent_latency(&self, i: usize, now: Nanos) -> Option<f64> {
        (**self).recent_latency(i, now)
    }
    fn id(&self, i: usize) -> u64 {
        (**self).id(i)
    }
}

/// Turns a raw weight into a usable one: positive finite weights pass, anything
/// else becomes 0 ("never pick").
#[inline]
pub(crate) fn usable_weight(w: f64) -> f64 {
    if w > 0.0 && w.is_finite() { w } else { 0.0 }
}

/// The rule every algorithm applies: eligible and with a usable weight.
#[inline]
pub(crate) fn is_pickable(eps: &dyn Endpoints, i: usize) -> bool {
    usable_weight(eps.weight(i)) > 0.0 && eps.is_eligible(i)
}

/// One endpoint of a [`StaticEndpoints`] set.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticEndpoint {
    /// Stable identity, see [`Endpoints::id`].
    pub id: u64,
    /// Effective weight, see [`Endpoints::weight`].
    pub weight: f64,
    /// See [`Endpoints::is_eligible`].
    pub eligible: bool,
    /// See [`Endpoints::in_flight`].
    pub in_flight: u64,
    /// Latency in nanoseconds, returned as is for any `now`; see [`Endpoints::latency`].
    pub latency_ns: Option<f64>,
}

impl StaticEndpoint {
    /// An eligible, idle endpoint with the given identity and weight.
    pub fn new(id: u64, weight: f64) -> Self {
        StaticEndpoint {
            id,
            weight,
            eligible: true,
            in_flight: 0,
            latency_ns: None,
        }
    }
}

/// A ready-made [`Endpoints`] held in a `Vec`: for library users who keep
/// their own state elsewhere and hand the balancer a snapshot, and for tests
/// and examples.
///
/// ```
/// use smartlb_balance::{Endpoints, StaticEndpoints};
/// let mut eps = StaticEndpoints::from_weights([1.0, 3.0]);
/// eps.set_eligible(0, false);
/// assert_eq!(eps.len(), 2);
/// assert!(!eps.is_eligible(0));
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StaticEndpoints {
    endpoints: Vec<StaticEndpoint>,
}

impl StaticEndpoints {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// `n` eligible endpoints of weight 1.
    pub fn uniform(n: usize) -> Self {
        Self::from_weights(std::iter::repeat_n(1.0, n))
    }

    /// One eligible endpoint per weight. Identities are a hash of the
    /// position, so they are stable for a given order.
    pub fn from_weights(weights: impl IntoIterator<Item = f64>) -> Self {
        let endpoints = weights
            .into_iter()
            .enumerate()
            .map(|(i, w)| StaticEndpoint::new(hash_u64(i as u64 ^ 0x1D5E_ED00), w))
            .collect();
        StaticEndpoints { endpoints }
    }

    /// Appends an endpoint and returns its index.
    pub fn push(&mut self, endpoint: StaticEndpoint) -> usize {
        self.endpoints.push(endpoint);
        self.endpoints.len() - 1
    }

    /// Removes and returns the endpoint at `i` (later ones shift down), or
    /// `None` if `i` is out of range.
    pub fn remove(&mut self, i: usize) -> Option<StaticEndpoint> {
        (i < self.endpoints.len()).then(|| self.endpoints.remove(i))
    }

    /// The endpoints, in index order.
    pub fn as_slice(&self) -> &[StaticEndpoint] {
        &self.endpoints
    }

    /// Mutable access to one endpoint; `None` if `i` is out of range.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut StaticEndpoint> {
        self.endpoints.get_mut(i)
    }

    /// Sets the weight of endpoint `i`; ignored if out of range.
    pub fn set_weight(&mut self, i: usize, weight: f64) {
        if let Some(e) = self.endpoints.get_mut(i) {
            e.weight = weight;
        }
    }

    /// Sets the eligibility of endpoint `i`; ignored if out of range.
    pub fn set_eligible(&mut self, i: usize, eligible: bool) {
        if let Some(e) = self.endpoints.get_mut(i) {
            e.eligible = eligible;
        }
    }

    /// Sets the in-flight count of endpoint `i`; ignored if out of range.
    pub fn set_in_flight(&mut self, i: usize, in_flight: u64) {
        if let Some(e) = self.endpoints.get_mut(i) {
            e.in_flight = in_flight;
        }
    }

    /// Sets the latency estimate of endpoint `i`; ignored if out of range.
    pub fn set_latency(&mut self, i: usize, latency_ns: Option<f64>) {
        if let Some(e) = self.endpoints.get_mut(i) {
            e.latency_ns = latency_ns;
        }
    }

    /// Sets the identity of endpoint `i`; ignored if out of range.
    pub fn set_id(&mut self, i: usize, id: u64) {
        if let Some(e) = self.endpoints.get_mut(i) {
            e.id = id;
        }
    }
}

impl FromIterator<StaticEndpoint> for StaticEndpoints {
    fn from_iter<T: IntoIterator<Item = StaticEndpoint>>(iter: T) -> Self {
        StaticEndpoints {
            endpoints: iter.into_iter().collect(),
        }
    }
}

impl Endpoints for StaticEndpoints {
    #[inline]
    fn len(&self) -> usize {
        self.endpoints.len()
    }
    #[inline]
    fn weight(&self, i: usize) -> f64 {
        self.endpoints.get(i).map_or(0.0, |e| e.weight)
    }
    #[inline]
    fn is_eligible(&self, i: usize) -> bool {
        self.endpoints.get(i).is_some_and(|e| e.eligible)
    }
    #[inline]
    fn in_flight(&self, i: usize) -> u64 {
        self.endpoints.get(i).map_or(0, |e| e.in_flight)
    }
    #[inline]
    fn latency(&self, i: usize, _now: Nanos) -> Option<f64> {
        self.endpoints.get(i).and_then(|e| e.latency_ns)
    }
    #[inline]
    fn id(&self, i: usize) -> u64 {
        self.endpoints.get(i).map_or(i as u64, |e| e.id)
    }
}

/// Wraps an [`Endpoints`] and makes the listed indices ineligible: a retry
/// picks "any endpoint but the ones already tried" with the same balancer.
///
/// ```
/// use smartlb_balance::{Endpoints, Excluding, StaticEndpoints};
/// let eps = StaticEndpoints::uniform(3);
/// let tried = [1];
/// let retry = Excluding::new(&eps, &tried);
/// assert!(!retry.is_eligible(1));
/// assert!(retry.is_eligible(2));
/// ```
#[derive(Clone, Copy)]
pub struct Excluding<'a> {
    inner: &'a dyn Endpoints,
    excluded: &'a [usize],
}

impl<'a> Excluding<'a> {
    /// `inner` with every index in `excluded` treated as ineligible.
    pub fn new(inner: &'a dyn Endpoints, excluded: &'a [usize]) -> Self {
        Excluding { inner, excluded }
    }
}

impl std::fmt::Debug for Excluding<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Excluding")
            .field("len", &self.inner.len())
            .field("excluded", &self.excluded)
            .finish()
    }
}

impl Endpoints for Excluding<'_> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn weight(&self, i: usize) -> f64 {
        self.inner.weight(i)
    }
    fn is_eligible(&self, i: usize) -> bool {
        !self.excluded.contains(&i) && self.inner.is_eligible(i)
    }
    fn in_flight(&self, i: usize) -> u64 {
        self.inner.in_flight(i)
    }
    fn latency(&self, i: usize, now: Nanos) -> Option<f64> {
        self.inner.latency(i, now)
    }
    fn recent_latency(&self, i: usize, now: Nanos) -> Option<f64> {
        self.inner.recent_latency(i, now)
    }
    fn id(&self, i: usize) -> u64 {
        self.inner.id(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_weight_rejects_non_positive_and_non_finite() {
        assert_eq!(usable_weight(2.5), 2.5);
        for w in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(usable_weight(w), 0.0);
        }
    }

    #[test]
    fn static_endpoints_setters_and_out_of_range() {
        let mut eps = StaticEndpoints::uniform(2);
        eps.set_weight(1, 4.0);
        eps.set_in_flight(1, 3);
        eps.set_latency(1, Some(5.0));
        eps.set_id(1, 99);
        eps.set_eligible(0, false);
        eps.set_weight(9, 1.0); // ignored
        assert_eq!(eps.weight(1), 4.0);
        assert_eq!(eps.in_flight(1), 3);
        assert_eq!(eps.latency(1, Nanos(0)), Some(5.0));
        assert_eq!(eps.id(1), 99);
        assert!(!eps.is_eligible(0));
        assert_eq!(eps.weight(9), 0.0);
        assert!(!eps.is_eligible(9));
        assert!(eps.remove(9).is_none());
        assert_eq!(eps.remove(0).map(|e| e.weight), Some(1.0));
        assert_eq!(eps.len(), 1);
        let i = eps.push(StaticEndpoint::new(7, 2.0));
        assert_eq!(eps.as_slice()[i].id, 7);
        assert!(eps.get_mut(i).is_some());
        let collected: StaticEndpoints = eps.as_slice().iter().cloned().collect();
        assert_eq!(collected, eps);
        assert!(StaticEndpoints::new().is_empty());
    }

    #[test]
    fn ids_are_distinct_and_stable() {
        let a = StaticEndpoints::uniform(100);
        let b = StaticEndpoints::uniform(100);
        let ids: std::collections::HashSet<u64> = (0..100).map(|i| a.id(i)).collect();
        assert_eq!(ids.len(), 100);
        assert!((0..100).all(|i| a.id(i) == b.id(i)));
    }

    #[test]
    fn excluding_forwards_everything_else() {
        let mut eps = StaticEndpoints::uniform(3);
        eps.set_in_flight(0, 2);
        let ex = Excluding::new(&eps, &[2]);
        assert_eq!(ex.len(), 3);
        assert_eq!(ex.in_flight(0), 2);
        assert_eq!(ex.weight(2), 1.0);
        assert!(!ex.is_eligible(2));
        assert_eq!(ex.id(0), eps.id(0));
        assert_eq!(ex.latency(0, Nanos(0)), None);
        assert!(format!("{ex:?}").contains("excluded"));
        let by_ref: &dyn Endpoints = &&eps;
        assert_eq!(by_ref.len(), 3);
    }
}
