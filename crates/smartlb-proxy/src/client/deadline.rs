//! The request timeout, kept coarsely: one task per backend counts ticks and times
//! out the exchanges that have been waiting too many of them.
//!
//! A tokio timer per exchange costs a clock read and an insertion into (and a
//! removal from) the timer wheel on every request. Here an exchange only records
//! the current tick in its connection's [`Watch`] and clears it when the response
//! head arrives; the [`sweep`] task, every `request_timeout / TICKS`, marks the
//! exchanges that started at least `TICKS + 1` ticks ago as timed out and wakes
//! them. A timeout therefore fires between 1 and 1.125 request timeouts after the
//! request was handed over, never earlier.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;

/// Ticks per request timeout.
const TICKS: u64 = 8;

/// No exchange in flight.
const IDLE: u64 = 0;
/// The exchange in flight was timed out.
const TIMED_OUT: u64 = 1;
/// `IN_FLIGHT | tick << 2`: an exchange in flight since `tick`.
const IN_FLIGHT: u64 = 2;

/// The exchange state of one backend connection, shared by the exchange in flight
/// and the sweeper.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    state: AtomicU64,
    waker: AtomicWaker,
}

impl Watch {
    /// Marks an exchange as in flight since `tick`.
    pub(crate) fn begin(&self, tick: u64) {
        self.state.store(IN_FLIGHT | tick << 2, Ordering::Release);
    }

    /// Ends the exchange in flight; `false` when the sweeper timed it out first.
    pub(crate) fn end(&self) -> bool {
        self.state.swap(IDLE, Ordering::AcqRel) != TIMED_OUT
    }

    fn timed_out(&self) -> bool {
        self.state.load(Ordering::Acquire) == TIMED_OUT
    }

    /// Whether the exchange in flight was timed out; if not, `cx` is woken when it
    /// is.
    pub(crate) fn poll_timed_out(&self, cx: &mut Context<'_>) -> bool {
        self.waker.register(cx.waker());
        self.timed_out()
    }

    /// Times out the exchange in flight if it began `ticks` ticks before `now` or
    /// earlier. Returns whether it did.
    fn expire(&self, now: u64, ticks: u64) -> bool {
        let state = self.state.load(Ordering::Acquire);
        if state & IN_FLIGHT == 0 || now.wrapping_sub(state >> 2) < ticks {
            return false;
        }
        if self
            .state
            .compare_exchange(state, TIMED_OUT, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.waker.wake();
        true
    }
}

/// The connections of one backend whose exchanges are watched, and the tick count.
#[derive(Debug)]
pub(crate) struct Deadlines {
    now: AtomicU64,
    every: Duration,
    watches: Mutex<Vec<Weak<Watch>>>,
}

impl Deadlines {
    /// Deadlines for `request_timeout`; `None` when it is zero (no timeout).
    pub(crate) fn new(request_timeout: Duration) -> Option<Self> {
        if request_timeout.is_zero() {
            return None;
        }
        Some(Self {
            now: AtomicU64::new(0),
            every: (request_timeout / TICKS as u32).max(Duration::from_micros(100)),
            watches: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Weak<Watch>>> {
        // The critical sections cannot panic half-way.
        self.watches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current tick.
    pub(crate) fn now(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    /// Watches the exchanges of a new connection.
    pub(crate) fn register(&self, watch: &Arc<Watch>) {
        self.lock().push(Arc::downgrade(watch));
    }

    /// Advances one tick and times out the exchanges that began `TICKS + 1` ticks
    /// ago or earlier; forgets the connections that are gone. Returns how many
    /// exchanges were timed out.
    pub(crate) fn tick(&self) -> usize {
        let now = self.now.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let mut expired = 0;
        self.lock().retain(|weak| match weak.upgrade() {
            Some(watch) => {
                if watch.expire(now, TICKS + 1) {
                    expired += 1;
                }
                true
            }
            None => false,
        });
        expired
    }
}

/// Ticks `deadlines` until it is dropped.
pub(crate) async fn sweep(deadlines: Weak<Deadlines>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(deadlines) = deadlines.upgrade() else {
            return;
        };
        let n = deadlines.tick();
        if n > 0 {
            tracing::trace!(expired = n, "backend exchanges timed out");
        }
    }
}

impl Deadlines {
    /// How often [`sweep`] should tick.
    pub(crate) fn every(&self) -> Duration {
        self.every
    }
}

pin_project! {
    /// Waits for `fut` (an exchange in flight on the connection of `watch`) unless
    /// the sweeper times it out first: `None` then.
    pub(crate) struct Watched<'a, F> {
        #[pin]
        fut: F,
        watch: &'a Watch,
    }
}

impl<'a, F> Watched<'a, F> {
    pub(crate) fn new(fut: F, watch: &'a Watch) -> Self {
        Self { fut, watch }
    }
}

impl<F: Future> Future for Watched<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.fut.poll(cx) {
            return Poll::Ready(Some(out));
        }
        if this.watch.poll_timed_out(cx) {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeout_has_no_deadlines() {
        assert!(Deadlines::new(Duration::ZERO).is_none());
        let d = Deadlines::new(Duration::from_secs(8)).unwrap();
        assert_eq!(d.every(), Duration::from_secs(1));
    }

    #[test]
    fn an_exchange_times_out_after_ticks_plus_one() {
        let d = Deadlines::new(Duration::from_secs(8)).unwrap();
        let watch = Arc::new(Watch::default());
        d.register(&watch);
        watch.begin(d.now());
        for _ in 0..TICKS {
            assert_eq!(d.tick(), 0);
        }
        assert_eq!(d.tick(), 1);
        assert!(watch.timed_out());
        assert!(!watch.end(), "the sweeper won");
        // Once ended, nothing is in flight.
        assert_eq!(d.tick(), 0);
    }

    #[test]
    fn an_ended_exchange_is_not_timed_out() {
        let d = Deadlines::new(Duration::from_secs(8)).unwrap();
        let watch = Arc::new(Watch::default());
        d.register(&watch);
        for _ in 0..3 {
            d.tick();
        }
        watch.begin(d.now());
        assert!(watch.end());
        for _ in 0..2 * TICKS {
            assert_eq!(d.tick(), 0);
        }
    }

    #[test]
    fn dropped_connections_are_forgotten() {
        let d = Deadlines::new(Duration::from_secs(8)).unwrap();
        let watch = Arc::new(Watch::default());
        d.register(&watch);
        assert_eq!(d.lock().len(), 1);
        drop(watch);
        d.tick();
        assert_eq!(d.lock().len(), 0);
    }

    #[tokio::test]
    async fn watched_future_ends_when_timed_out() {
        let d = Deadlines::new(Duration::from_secs(8)).unwrap();
        let watch = Arc::new(Watch::default());
        d.register(&watch);
        watch.begin(d.now());
        let pending = std::future::pending::<()>();
        let mut watched = std::pin::pin!(Watched::new(pending, &watch));
        assert!(futures_util::FutureExt::now_or_never(watched.as_mut()).is_none());
        for _ in 0..=TICKS {
            d.tick();
        }
        let res = tokio::time::timeout(Duration::from_secs(5), watched).await;
        assert_eq!(res.ok(), Some(None));
    }
}
