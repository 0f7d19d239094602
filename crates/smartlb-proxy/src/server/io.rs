//! The downstream connection's I/O, counting activity for the timers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Counters shared by one connection's I/O, service and timers.
///
/// Each counter has one writer at a time (the task driving the connection), so a
/// relaxed load and store is enough: no locked instruction on the hot path.
#[derive(Debug, Default)]
pub(crate) struct ConnShared {
    reads: AtomicU64,
    writes: AtomicU64,
    heads: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

impl ConnShared {
    /// Reads that returned data.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Reads and writes that moved data.
    pub(crate) fn activity(&self) -> u64 {
        self.reads
            .load(Ordering::Relaxed)
            .wrapping_add(self.writes.load(Ordering::Relaxed))
    }

    /// Request heads received (service calls).
    pub(crate) fn heads(&self) -> u64 {
        self.heads.load(Ordering::Relaxed)
    }

    pub(crate) fn on_head(&self) {
        bump(&self.heads);
    }
}

/// Wraps a stream and counts the reads and writes that moved data.
pub(crate) struct CountingIo<T> {
    io: T,
    shared: Arc<ConnShared>,
}

impl<T> CountingIo<T> {
    pub(crate) fn new(io: T, shared: Arc<ConnShared>) -> Self {
        Self { io, shared }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CountingIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res
            && buf.filled().len() > before
        {
            bump(&this.shared.reads);
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = res
            && n > 0
        {
            bump(&this.shared.writes);
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = res
            && n > 0
        {
            bump(&this.shared.writes);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counts_reads_and_writes() {
        let (a, mut b) = tokio::io::duplex(64);
        let shared = Arc::new(ConnShared::default());
        let mut io = CountingIo::new(a, shared.clone());
        io.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(shared.activity(), 1);
        b.write_all(b"yo").await.unwrap();
        io.read_exact(&mut buf).await.unwrap();
        assert_eq!(shared.reads(), 1);
        assert_eq!(shared.activity(), 2);
        drop(b);
        // EOF moves no data and is not counted.
        assert_eq!(io.read(&mut buf).await.unwrap(), 0);
        assert_eq!(shared.reads(), 1);
        shared.on_head();
        assert_eq!(shared.heads(), 1);
    }
}
