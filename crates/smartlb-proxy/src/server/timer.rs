//! The timer given to hyper's HTTP/1 server: it tells an idle keep-alive
//! connection from a slow request head.
//!
//! hyper starts its header-read timer as soon as a connection waits for a request
//! head, so with a plain timer an idle keep-alive connection would be closed after
//! `header_read_timeout`. This timer lets the wait last `idle_timeout` while no byte
//! has arrived, and gives the head `header_read_timeout` from its first byte.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use pin_project_lite::pin_project;

use super::io::ConnShared;

/// Far enough to mean "never" for a disabled timeout.
const NEVER: Duration = Duration::from_secs(60 * 60 * 24 * 365);

#[derive(Clone, Debug)]
pub(crate) struct HeadTimer {
    shared: Arc<ConnShared>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

impl HeadTimer {
    pub(crate) fn new(
        shared: Arc<ConnShared>,
        header_read_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            shared,
            header_read_timeout,
            idle_timeout: if idle_timeout.is_zero() {
                NEVER
            } else {
                idle_timeout
            },
        }
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        Box::pin(PlainSleep {
            inner: tokio::time::sleep(duration),
        })
    }

    /// hyper calls this when a connection starts waiting for a request head.
    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let now = tokio::time::Instant::now();
        Box::pin(HeadSleep {
            inner: tokio::time::sleep_until(now + self.idle_timeout),
            shared: self.shared.clone(),
            reads_at_start: self.shared.reads(),
            saw_bytes: false,
            header_read_timeout: self.header_read_timeout,
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        *sleep = self.sleep_until(new_deadline);
    }
}

pin_project! {
    struct PlainSleep {
        #[pin]
        inner: tokio::time::Sleep,
    }
}

impl Future for PlainSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().inner.poll(cx)
    }
}

impl Sleep for PlainSleep {}

pin_project! {
    /// Fires `idle_timeout` after the wait began while no byte has arrived, or
    /// `header_read_timeout` after the first byte of the head.
    struct HeadSleep {
        #[pin]
        inner: tokio::time::Sleep,
        shared: Arc<ConnShared>,
        reads_at_start: u64,
        saw_bytes: bool,
        header_read_timeout: Duration,
    }
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        // hyper polls this right after every read that left the head incomplete.
        if !*this.saw_bytes && this.shared.reads() != *this.reads_at_start {
            *this.saw_bytes = true;
            let deadline = tokio::time::Instant::now() + *this.header_read_timeout;
            this.inner.as_mut().reset(deadline);
        }
        this.inner.poll(cx)
    }
}

impl Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::io::CountingIo;
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_wait_lasts_idle_timeout() {
        let shared = Arc::new(ConnShared::default());
        let timer = HeadTimer::new(shared, Duration::from_secs(1), Duration::from_secs(10));
        let start = tokio::time::Instant::now();
        timer.sleep_until(Instant::now()).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn head_gets_header_timeout_from_first_byte() {
        let shared = Arc::new(ConnShared::default());
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = CountingIo::new(a, shared.clone());
        let timer = HeadTimer::new(shared, Duration::from_secs(1), Duration::from_secs(10));
        let start = tokio::time::Instant::now();
        let mut sleep = timer.sleep_until(Instant::now());
        // Nothing yet: still waiting after 3 s.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(sleep.as_mut().now_or_never().is_none());
        // A first byte arrives at 3 s; the head then has 1 s.
        b.write_all(b"G").await.unwrap();
        let mut buf = [0u8; 1];
        io.read_exact(&mut buf).await.unwrap();
        assert!(sleep.as_mut().now_or_never().is_none());
        sleep.await;
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_idle_means_no_idle_close() {
        let shared = Arc::new(ConnShared::default());
        let timer = HeadTimer::new(shared, Duration::from_secs(1), Duration::ZERO);
        let sleep = timer.sleep_until(Instant::now());
        let res = tokio::time::timeout(Duration::from_secs(3600), sleep).await;
        assert!(res.is_err());
    }
}
