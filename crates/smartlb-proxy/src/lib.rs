//! The HTTP forwarding machinery of smartlb: a downstream server, a per-backend
//! upstream client with its own keep-alive pool, and the header hygiene a reverse
//! proxy owes both sides. No balancing happens here: a balancer composes over the
//! per-backend services this crate provides.
//!
//! # One request's path
//!
//! ```text
//!  client ──TCP──▶ serve()                       one task per connection
//!                   │  HTTP/1.1 or h2c (prior knowledge), TCP_NODELAY,
//!                   │  header-read / idle timeouts, 431 on a large head,
//!                   │  ClientInfo inserted into the request's extensions
//!                   ▼
//!              your Service (router, balancer, ...) picks a backend
//!                   │
//!                   ▼
//!              BackendClient::send()             no extra task per request
//!                   │  prepare_request (once): hop-by-hop headers removed,
//!                   │  X-Forwarded-For/-Proto/-Host and Via added,
//!                   │  origin-form URI, Host kept (or taken from :authority)
//!                   │  idle pooled HTTP/1.1 connection (LIFO), or a new one
//!                   ▼
//!  backend ◀──TCP── hyper::client::conn::http1 ── response head ──▶ hop-by-hop
//!                   headers removed, Via added; body streams back and returns
//!                   the connection to the pool at its last byte
//! ```
//!
//! Failures become a [`ProxyError`] that says whether the request reached the
//! backend and, when it did not, gives the request back for another backend:
//!
//! | cause                 | status | `x-smartlb-error`          |
//! |-----------------------|--------|----------------------------|
//! | connect refused/timed out | 502 | `backend-unreachable`     |
//! | connection closed mid-exchange | 502 | `backend-reset`      |
//! | invalid response      | 502    | `backend-protocol`         |
//! | no response head in time | 504 | `backend-timeout`          |
//! | request head too large | 431   | `request-header-too-large` |
//!
//! Upgrade requests (WebSocket) are tunnelled: the backend's `101` is relayed and
//! a task copies bytes both ways between the two upgraded connections.
//!
//! # Limits worth knowing
//!
//! - Requests hyper cannot parse get hyper's own `400`, and heads beyond twice
//!   `max_header_bytes` (at least 8 KiB) hyper's own `431`; those two lack the
//!   `x-smartlb-error` header. Heads between `max_header_bytes` and that backstop
//!   get the proxy's labelled `431`.
//! - Upstream connections are HTTP/1.1. Tunnels of upgraded connections are not
//!   subject to the idle timeout, nor waited for by a graceful shutdown.
//!
//! # Example
//!
//! A backend and a proxy in front of it, both on loopback:
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use hyper::body::Incoming;
//! use smartlb_proxy::{serve, BackendClient, ClientOptions, ProxyBody, ServerOptions};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! // A backend that names the client it saw.
//! let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let backend_addr = backend.local_addr()?;
//! let hello = tower::service_fn(|req: Request<Incoming>| async move {
//!     let xff = req.headers()["x-forwarded-for"].to_str().unwrap_or("").to_owned();
//!     Ok::<_, Infallible>(Response::new(ProxyBody::from(format!("hello {xff}"))))
//! });
//! tokio::spawn(serve(backend, hello, ServerOptions::default(), std::future::pending()));
//!
//! // The proxy: every request goes to that one backend.
//! let client = BackendClient::new(backend_addr, ClientOptions::default());
//! let forward = tower::service_fn(move |req: Request<Incoming>| {
//!     let client = client.clone();
//!     async move { Ok::<_, Infallible>(client.forward(req.map(ProxyBody::from)).await) }
//! });
//! let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let proxy_addr = proxy.local_addr()?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(serve(proxy, forward, ServerOptions::default(), async {
//!     let _ = stopped.await;
//! }));
//!
//! let mut conn = tokio::net::TcpStream::connect(proxy_addr).await?;
//! conn.write_all(b"GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n").await?;
//! let mut answer = String::new();
//! conn.read_to_string(&mut answer).await?;
//! assert!(answer.starts_with("HTTP/1.1 200 OK"));
//! assert!(answer.contains("via: 1.1 smartlb"));
//! assert!(answer.ends_with("hello 127.0.0.1"));
//!
//! let _ = stop.send(());
//! server.await.expect("server task")?;
//! # Ok(())
//! # }
//! ```

mod body;
mod client;
mod error;
mod headers;
mod response;
mod server;
pub mod tls;

pub use body::{BoxError, ProxyBody};
pub use client::{AddrError, BackendClient, ClientOptions, ResponseFuture};
pub use error::{ProxyError, Side};
pub use headers::{
    Stripped, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, is_prepared,
    is_upgrade_request, prepare_request, prepare_response, strip_hop_by_hop,
};
pub use response::{X_SMARTLB_ERROR, cause, error_response};
pub use server::{ClientInfo, ServerOptions, serve, serve_tls};
