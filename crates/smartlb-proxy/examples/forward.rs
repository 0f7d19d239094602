//! A minimal reverse proxy over `smartlb-proxy`: every request goes to the next
//! backend in turn. Used to measure the forwarding path on its own.
//!
//! Run: `cargo run --release -p smartlb-proxy --example forward -- 127.0.0.1:8080 127.0.0.1:8081 127.0.0.1:8082`
//! (listen address first, then one or more backends; one worker thread).
//! With `FORWARD_NO_TIMERS=1` the header-read, idle and request timeouts are off
//! (`=server`: only the first two, `=client`: only the last), to measure what the
//! timers cost.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Request;
use hyper::body::Incoming;
use smartlb_proxy::{BackendClient, ClientOptions, ProxyBody, ServerOptions, serve};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: forward LISTEN BACKEND [BACKEND...]";
    let listen: SocketAddr = args.next().ok_or(usage)?.parse()?;
    let backends = args
        .map(|a| a.parse::<SocketAddr>())
        .collect::<Result<Vec<_>, _>>()?;
    if backends.is_empty() {
        return Err(usage.into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let no_timers = std::env::var("FORWARD_NO_TIMERS").unwrap_or_default();
    let mut client_opts = ClientOptions::default();
    let mut server_opts = ServerOptions::default();
    if no_timers == "1" || no_timers == "client" {
        client_opts.request_timeout = std::time::Duration::ZERO;
    }
    if no_timers == "1" || no_timers == "server" {
        server_opts.header_read_timeout = std::time::Duration::ZERO;
        server_opts.idle_timeout = std::time::Duration::ZERO;
    }
    runtime.block_on(async move {
        let clients: Arc<[BackendClient]> = backends
            .into_iter()
            .map(|b| BackendClient::new(b, client_opts.clone()))
            .collect();
        let next = Arc::new(AtomicUsize::new(0));
        let service = tower::service_fn(move |req: Request<Incoming>| {
            let i = next.fetch_add(1, Ordering::Relaxed) % clients.len();
            let client = clients[i].clone();
            async move { Ok::<_, Infallible>(client.forward(req.map(ProxyBody::from)).await) }
        });
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve(listener, service, server_opts, shutdown).await?;
        Ok(())
    })
}
