//! The downstream server: accepts connections and hands each request to a service.

mod conn;
mod io;
mod timer;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

use crate::body::ProxyBody;
use conn::{ConnConfig, run_connection};

/// How long [`serve`] waits for aborted connections to be dropped after the grace
/// period ran out.
const ABORT_WAIT: Duration = Duration::from_secs(1);

/// Settings of the downstream server (SPEC section 3, `[server]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// The longest a client may take to send a request head, from its first byte
    /// (and the first head of a new connection, from the accept). The slowloris
    /// guard. Zero disables it.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may sit without traffic before it is
    /// closed (gracefully: never in the middle of a request). It is checked every
    /// quarter of its length, so a quiet connection closes between 1 and 1.25
    /// times it. Zero disables it.
    pub idle_timeout: Duration,
    /// The deadline of one whole exchange through the proxy. The server does not
    /// enforce it itself: it is kept here for the forwarding path to use.
    pub request_timeout: Duration,
    /// The largest request head accepted; larger heads get `431` with
    /// `x-smartlb-error: request-header-too-large`.
    pub max_header_bytes: usize,
    /// The most connections served at once; past it, new connections wait in the
    /// listener's accept queue. Must be at least 1.
    pub max_connections: usize,
    /// On shutdown, how long in-flight requests get to finish before their
    /// connections are closed.
    pub shutdown_grace: Duration,
}

impl Default for ServerOptions {
    /// The SPEC defaults: 10 s, 60 s, 30 s, 64 KiB, 10000 connections, 30 s.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            max_header_bytes: 65536,
            max_connections: 10000,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Who sent a request: inserted by [`serve`] into every request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The local address the client connected to.
    pub local: SocketAddr,
    /// The scheme the client used: `"http"` (or `"https"` behind TLS).
    pub proto: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ServerState {
    Running,
    Draining,
    Abort,
}

/// Serves HTTP/1.1 and HTTP/2 (h2c with prior knowledge) on `listener` until
/// `shutdown` resolves, handing every request to `service`.
///
/// Each connection gets `TCP_NODELAY`, the timeouts of `opts`, and upgrades
/// (WebSocket) enabled. Each request carries a [`ClientInfo`] extension. Requests
/// hyper cannot parse get hyper's own `400`; a head larger than `max_header_bytes`
/// gets `431` (see the crate documentation for the exact limits).
///
/// When `shutdown` resolves the listener is closed (new connections are refused),
/// every connection is asked to finish (HTTP/1.1: close after the current
/// response; HTTP/2: `GOAWAY`), and `serve` waits up to `shutdown_grace` for them;
/// connections still open then are closed. Tunnels of upgraded connections are not
/// waited for.
///
/// # Errors
///
/// Fails at once with [`std::io::ErrorKind::InvalidInput`] when
/// `max_connections` is 0, or when the listener's address cannot be read. Errors
/// of single connections, and accept errors, are logged and do not end the server.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    serve_inner(listener, None, service, opts, shutdown).await
}

/// Like [`serve`], speaking TLS with the settings of `tls` (read again for each new
/// connection, so [`crate::tls::ServerTls::replace`] rotates certificates without a
/// restart). HTTP/2 is chosen by ALPN (`h2`), else HTTP/1.1. The TLS handshake must end
/// within `header_read_timeout` (10 s when that is 0); [`ClientInfo::proto`] is
/// `"https"`.
///
/// # Errors
///
/// As [`serve`].
pub async fn serve_tls<S>(
    listener: TcpListener,
    tls: crate::tls::ServerTls,
    service: S,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    serve_inner(listener, Some(tls), service, opts, shutdown).await
}

/// How long a TLS handshake may take when `header_read_timeout` is 0 (off).
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn serve_inner<S>(
    listener: TcpListener,
    tls: Option<crate::tls::ServerTls>,
    service: S,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<ProxyBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    if opts.max_connections == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "max_connections must be at least 1",
        ));
    }
    let listen_addr = listener.local_addr()?;
    let permits = opts
        .max_connections
        .min(Semaphore::MAX_PERMITS)
        .min(u32::MAX as usize);
    let semaphore = Arc::new(Semaphore::new(permits));
    let (state_tx, _) = watch::channel(ServerState::Running);
    let cfg = Arc::new(conn_config(&opts));
    tokio::pin!(shutdown);

    tracing::debug!(addr = %listen_addr, "serving");
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = semaphore.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, remote) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%remote, error = %e, "cannot set TCP_NODELAY");
        }
        let local = stream.local_addr().unwrap_or(listen_addr);
        match &tls {
            None => {
                let info = ClientInfo {
                    remote,
                    local,
                    proto: "http",
                };
                tokio::spawn(run_connection(
                    stream,
                    info,
                    service.clone(),
                    cfg.clone(),
                    state_tx.subscribe(),
                    permit,
                ));
            }
            Some(tls) => {
                let acceptor = tls.acceptor();
                let handshake_timeout = if opts.header_read_timeout.is_zero() {
                    DEFAULT_HANDSHAKE_TIMEOUT
                } else {
                    opts.header_read_timeout
                };
                let service = service.clone();
                let cfg = cfg.clone();
                let state = state_tx.subscribe();
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let info = ClientInfo {
                                remote,
                                local,
                                proto: "https",
                            };
                            run_connection(stream, info, service, cfg, state, permit).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%remote, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        }
    }

    drop(listener);
    state_tx.send_replace(ServerState::Draining);
    let all = permits as u32;
    if tokio::time::timeout(opts.shutdown_grace, semaphore.acquire_many(all))
        .await
        .is_err()
    {
        tracing::info!("shutdown grace period over; closing remaining connections");
        state_tx.send_replace(ServerState::Abort);
        let _ = tokio::time::timeout(ABORT_WAIT, semaphore.acquire_many(all)).await;
    }
    tracing::debug!(addr = %listen_addr, "stopped");
    Ok(())
}

fn conn_config(opts: &ServerOptions) -> ConnConfig {
    // hyper's HTTP/1 read buffer is a hard backstop: heads larger than
    // `max_header_bytes` but within it get the proxy's labelled 431, larger ones
    // hyper's own bare 431.
    let backstop = opts.max_header_bytes.saturating_mul(2).max(8192);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(backstop)
        .keep_alive(true)
        .half_close(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(backstop.min(u32::MAX as usize) as u32);
    ConnConfig {
        builder,
        header_read_timeout: opts.header_read_timeout,
        idle_timeout: opts.idle_timeout,
        max_header_bytes: opts.max_header_bytes,
        epoch: std::time::Instant::now(),
    }
}

/// Accept errors are about one connection (or a passing shortage of file
/// descriptors): log, pause briefly on a shortage, go on.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
        tracing::debug!(error = %e, "accept");
        return;
    }
    tracing::warn!(error = %e, "accept failed; pausing");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_spec() {
        let o = ServerOptions::default();
        assert_eq!(o.header_read_timeout, Duration::from_secs(10));
        assert_eq!(o.idle_timeout, Duration::from_secs(60));
        assert_eq!(o.request_timeout, Duration::from_secs(30));
        assert_eq!(o.max_header_bytes, 65536);
        assert_eq!(o.max_connections, 10000);
        assert_eq!(o.shutdown_grace, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn zero_max_connections_is_rejected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let opts = ServerOptions {
            max_connections: 0,
            ..ServerOptions::default()
        };
        let svc = tower::service_fn(|_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(ProxyBody::empty()))
        });
        let err = serve(listener, svc, opts, std::future::pending())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
