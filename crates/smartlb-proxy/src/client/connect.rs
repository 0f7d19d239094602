//! Opening connections to a backend.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::deadline::{Deadlines, Watch};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::tls::ClientTls;

/// An open HTTP/1.1 connection to a backend: the sender of its requests, and the
/// state through which the request timeout watches its exchanges.
pub(crate) struct Conn {
    pub(crate) tx: SendRequest<ProxyBody>,
    pub(crate) watch: Arc<Watch>,
}

impl Conn {
    pub(crate) fn new(tx: SendRequest<ProxyBody>) -> Self {
        Self {
            tx,
            watch: Arc::new(Watch::default()),
        }
    }
}

/// Where a backend is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Addr(SocketAddr),
    /// `host:port`, resolved at each connect.
    Name(Arc<str>),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(a) => a.fmt(f),
            Target::Name(n) => f.write_str(n),
        }
    }
}

/// Opens a TCP connection with `TCP_NODELAY`, within `timeout` (zero: none).
pub(crate) async fn connect_tcp(
    target: &Target,
    timeout: Duration,
) -> Result<TcpStream, ProxyError> {
    let connect = async {
        match target {
            Target::Addr(addr) => TcpStream::connect(*addr).await,
            Target::Name(name) => TcpStream::connect(&**name).await,
        }
    };
    let stream = if timeout.is_zero() {
        connect.await
    } else {
        match tokio::time::timeout(timeout, connect).await {
            Ok(res) => res,
            Err(_) => return Err(ProxyError::connect_timeout()),
        }
    }
    .map_err(ProxyError::connect)?;
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%target, error = %e, "cannot set TCP_NODELAY");
    }
    Ok(stream)
}

/// Counts a backend's open HTTP connections; the guard lives in the task driving
/// the connection.
pub(crate) struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    pub(crate) fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Opens an HTTP/1.1 connection (over TLS when `tls` is given; the TLS handshake
/// shares `timeout` with the TCP connect) and spawns the task that drives it. Its
/// exchanges are watched by `deadlines`, when given.
pub(crate) async fn connect_http1(
    target: &Target,
    timeout: Duration,
    tls: Option<&ClientTls>,
    open: &Arc<AtomicUsize>,
    upgrades: bool,
    deadlines: Option<&Deadlines>,
) -> Result<Conn, ProxyError> {
    let started = tokio::time::Instant::now();
    let stream = connect_tcp(target, timeout).await?;
    let tx = match tls {
        None => start_http1(stream, target, open, upgrades).await?,
        Some(tls) => {
            let stream = tls_handshake(tls, stream, timeout, started).await?;
            start_http1(stream, target, open, upgrades).await?
        }
    };
    let conn = Conn::new(tx);
    if let Some(deadlines) = deadlines {
        deadlines.register(&conn.watch);
    }
    Ok(conn)
}

/// The TLS handshake over a new TCP connection, within what is left of the connect
/// `timeout` (zero: none) counted from `started`; its failure is a connect failure.
pub(crate) async fn tls_handshake(
    tls: &ClientTls,
    stream: TcpStream,
    timeout: Duration,
    started: tokio::time::Instant,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProxyError> {
    let handshake = tls.connector().connect(tls.server_name().clone(), stream);
    if timeout.is_zero() {
        return handshake.await.map_err(ProxyError::connect);
    }
    let left = timeout.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, handshake).await {
        Ok(res) => res.map_err(ProxyError::connect),
        Err(_) => Err(ProxyError::connect_timeout()),
    }
}

/// The HTTP/1.1 handshake over `io`, and the task driving the connection.
async fn start_http1<I>(
    io: I,
    target: &Target,
    open: &Arc<AtomicUsize>,
    upgrades: bool,
) -> Result<SendRequest<ProxyBody>, ProxyError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, conn) = http1::Builder::new()
        .handshake::<_, ProxyBody>(TokioIo::new(io))
        .await
        .map_err(ProxyError::handshake)?;
    let guard = OpenGuard::new(open.clone());
    let target = target.clone();
    if upgrades {
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%target, error = %e, "backend connection ended with an error");
            }
        });
    } else {
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = conn.await {
                tracing::debug!(%target, error = %e, "backend connection ended with an error");
            }
        });
    }
    Ok(tx)
}
