//! The timer given to hyper's HTTP/1 server: it tells an idle keep-alive
//! connection from a slow request head.
//!
//! hyper starts its header-read timer as soon as a connection waits for a request
//! head, so with a plain timer an idle keep-alive connection would be closed after
//! `header_read_timeout`. This timer gives the head `header_read_timeout` from its
//! first byte, and leaves a wait without any byte to the connection's own idle
//! watchdog.
//!
//! hyper asks for a new timer before every request head. In the common case the
//! whole head arrives in one read and the timer is never consulted, so it costs no
//! clock read and no entry in tokio's timer wheel: both happen only once a partial
//! head has arrived.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use pin_project_lite::pin_project;

use super::io::ConnShared;

#[derive(Clone, Debug)]
pub(crate) struct HeadTimer {
    shared: Arc<ConnShared>,
    header_read_timeout: Duration,
    /// What [`Timer::now`] answers: hyper only uses it to compute the deadline it
    /// hands to [`Timer::sleep_until`], which ignores it.
    epoch: Instant,
}

impl HeadTimer {
    pub(crate) fn new(
        shared: Arc<ConnShared>,
        header_read_timeout: Duration,
        epoch: Instant,
    ) -> Self {
        Self {
            shared,
            header_read_timeout,
            epoch,
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
        Box::pin(HeadSleep {
            inner: None,
            shared: self.shared.clone(),
            reads_at_start: self.shared.reads(),
            header_read_timeout: self.header_read_timeout,
        })
    }

    fn now(&self) -> Instant {
        self.epoch
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
    /// Fires `header_read_timeout` after the first byte of the head; never while
    /// no byte has arrived (the idle watchdog closes such a connection).
    struct HeadSleep {
        #[pin]
        inner: Option<tokio::time::Sleep>,
        shared: Arc<ConnShared>,
        reads_at_start: u64,
        header_read_timeout: Duration,
    }
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        // hyper polls this right after every read that left the head incomplete.
        if this.inner.is_none() {
            if this.shared.reads() == *this.reads_at_start {
                return Poll::Pending;
            }
            let deadline = tokio::time::Instant::now() + *this.header_read_timeout;
            this.inner.set(Some(tokio::time::sleep_until(deadline)));
        }
        match this.inner.as_pin_mut() {
            Some(sleep) => sleep.poll(cx),
            None => Poll::Pending,
        }
    }
}

impl Sleep for HeadSleep {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::io::CountingIo;
    use futures_util::FutureExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn timer(shared: Arc<ConnShared>) -> HeadTimer {
        HeadTimer::new(shared, Duration::from_secs(1), Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn wait_without_bytes_never_fires() {
        let shared = Arc::new(ConnShared::default());
        let sleep = timer(shared).sleep_until(Instant::now());
        let res = tokio::time::timeout(Duration::from_secs(3600), sleep).await;
        assert!(res.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn head_gets_header_timeout_from_first_byte() {
        let shared = Arc::new(ConnShared::default());
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = CountingIo::new(a, shared.clone());
        let timer = timer(shared);
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

    #[test]
    fn now_is_the_fixed_epoch() {
        let epoch = Instant::now();
        let timer = HeadTimer::new(
            Arc::new(ConnShared::default()),
            Duration::from_secs(1),
            epoch,
        );
        assert_eq!(timer.now(), epoch);
    }
}
