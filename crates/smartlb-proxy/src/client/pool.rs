//! One backend's idle keep-alive connections.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::connect::Conn;

/// The reaper runs every `idle_timeout / TICKS_PER_TIMEOUT`...
const TICKS_PER_TIMEOUT: u32 = 4;
/// ...and drops a connection idle for this many of its ticks: between 1 and 1.25
/// idle timeouts. Counting ticks spares a clock read on every return.
const TICKS_TO_EXPIRE: u64 = TICKS_PER_TIMEOUT as u64 + 1;

/// Idle connections of one backend, most recently used last (LIFO reuse keeps
/// the fewest connections warm). The lock is held only for a push or a pop.
pub(crate) struct Pool {
    idle: Mutex<VecDeque<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    /// Reaper ticks so far.
    epoch: AtomicU64,
}

struct Idle {
    conn: Conn,
    /// The reaper tick during which the connection became idle.
    since: u64,
}

impl Pool {
    pub(crate) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(VecDeque::new()),
            max_idle,
            idle_timeout,
            epoch: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        // The critical sections cannot panic half-way; a poisoned lock still
        // holds a consistent queue.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently returned connection that is not known to be closed.
    pub(crate) fn pop(&self) -> Option<Conn> {
        loop {
            let idle = self.lock().pop_back()?;
            if !idle.conn.tx.is_closed() {
                return Some(idle.conn);
            }
        }
    }

    /// Returns a connection whose last exchange is complete.
    pub(crate) fn push(&self, conn: Conn) {
        if self.max_idle == 0 || self.idle_timeout.is_zero() || conn.tx.is_closed() {
            return;
        }
        let since = self.epoch.load(Ordering::Relaxed);
        let evicted = {
            let mut idle = self.lock();
            let evicted = if idle.len() >= self.max_idle {
                idle.pop_front()
            } else {
                None
            };
            idle.push_back(Idle { conn, since });
            evicted
        };
        // Dropping a connection's sender closes it; done outside the lock.
        drop(evicted);
    }

    /// One reaper tick: drops connections idle for longer than the idle timeout.
    /// They sit at the front (returns push at the back); closed ones elsewhere
    /// are skipped when popped.
    pub(crate) fn tick(&self) -> usize {
        let now = self.epoch.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let mut evicted = Vec::new();
        {
            let mut idle = self.lock();
            while let Some(front) = idle.front() {
                if !front.conn.tx.is_closed() && now.wrapping_sub(front.since) < TICKS_TO_EXPIRE {
                    break;
                }
                evicted.extend(idle.pop_front());
            }
        }
        evicted.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(crate) fn room(&self) -> usize {
        if self.idle_timeout.is_zero() {
            return 0;
        }
        self.max_idle.saturating_sub(self.len())
    }

    /// How often the reaper should call [`tick`](Self::tick).
    pub(crate) fn tick_interval(&self) -> Duration {
        self.idle_timeout / TICKS_PER_TIMEOUT
    }
}

/// Hands a connection back to its pool once its response body was read.
pub(crate) struct PoolReturn {
    conn: Conn,
    pool: Arc<Pool>,
}

impl PoolReturn {
    pub(crate) fn new(conn: Conn, pool: Arc<Pool>) -> Self {
        Self { conn, pool }
    }

    pub(crate) fn release(self) {
        self.pool.push(self.conn);
    }
}

/// Periodically drops expired idle connections; ends with the pool.
pub(crate) async fn reap(pool: Weak<Pool>, every: Duration) {
    let every = every.max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let n = pool.tick();
        if n > 0 {
            tracing::trace!(evicted = n, "expired idle backend connections");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;

    /// A sender whose connection task runs on an in-memory pipe; dropping the
    /// returned handle's task closes it.
    async fn sender() -> (Conn, tokio::task::JoinHandle<()>) {
        let (a, _b) = tokio::io::duplex(1024);
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(a))
            .await
            .unwrap();
        let task = tokio::spawn(async move {
            let _keep_peer_open = _b;
            let _ = conn.await;
        });
        (Conn::new(tx), task)
    }

    #[tokio::test]
    async fn caps_idle_connections() {
        let pool = Pool::new(2, Duration::from_secs(60));
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let (tx, task) = sender().await;
            tasks.push(task);
            pool.push(tx);
        }
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.room(), 0);
        assert!(pool.pop().is_some());
        assert_eq!(pool.room(), 1);
    }

    #[tokio::test]
    async fn expires_after_a_timeout_of_ticks() {
        let pool = Pool::new(4, Duration::from_secs(60));
        assert_eq!(pool.tick_interval(), Duration::from_secs(15));
        let (tx, _task) = sender().await;
        pool.push(tx);
        for _ in 0..TICKS_TO_EXPIRE - 1 {
            assert_eq!(pool.tick(), 0);
        }
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.tick(), 1);
        assert_eq!(pool.len(), 0);
    }

    #[tokio::test]
    async fn closed_connections_are_skipped() {
        let pool = Pool::new(4, Duration::from_secs(60));
        let (tx, task) = sender().await;
        pool.push(tx);
        task.abort();
        let _ = task.await;
        assert!(pool.pop().is_none());
    }

    #[tokio::test]
    async fn disabled_pool_keeps_nothing() {
        let (tx, _task) = sender().await;
        let pool = Pool::new(0, Duration::from_secs(60));
        pool.push(tx);
        assert_eq!(pool.len(), 0);
        let (tx, _task) = sender().await;
        let pool = Pool::new(4, Duration::ZERO);
        pool.push(tx);
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.room(), 0);
    }
}
