//! smartlb: a smart HTTP load balancer, as a library.
//!
//! This crate composes the smartlb building blocks into a working proxy:
//!
//! - [`Proxy`] routes each request by host and path prefix to an [`Upstream`];
//! - an [`Upstream`] picks a backend with an algorithm of [`smartlb_balance`], reading
//!   each backend's live load, latency and health; forwards over that backend's pooled
//!   connections ([`smartlb_proxy::BackendClient`]); records the outcome into
//!   [`smartlb_traffic`] statistics and [`smartlb_health`] outlier detection; and retries
//!   on another backend when that is safe and the retry budget allows;
//! - [`start`] / [`run`] serve a configuration: listeners, admin API, health checks;
//! - [`Proxy::reload`] (and [`run_file`] on SIGHUP, on file change and through the admin
//!   API) applies a changed configuration in place: backends, upstreams, routes,
//!   listeners and timeouts, keeping what did not change (pools, health, statistics).
//!
//! Both [`Proxy`] and [`Upstream`] are tower `Service<http::Request<B>>`s, so they mount in
//! an axum router or any hyper server. [`Balance`] balances over services of your own.
//!
//! ```text
//!  client ──▶ smartlb_proxy::serve ──▶ Proxy (Router) ──▶ Upstream ──pick──▶ Endpoint
//!                                                           │  retry       │ BackendClient
//!                                                           ◀──────────────┘ (pooled h1)
//! ```
//!
//! # Example
//!
//! Serve a configuration on loopback and stop it again:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = smartlb_config::parse_str(
//!     r#"
//!     [server]
//!     listen = "127.0.0.1:0"
//!     [admin]
//!     listen = "127.0.0.1:0"
//!     [[upstream]]
//!     name = "web"
//!     algorithm = "round-robin"
//!     backends = ["127.0.0.1:9"]
//!     "#,
//!     "inline.toml",
//!     &|_| None,
//! )?;
//! let running = smartlb::start(&config).await?;
//! println!("proxy on {:?}", running.listen_addrs());
//! running.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod admin;
mod background;
pub mod balance;
pub mod cache;
pub mod clock;
pub mod demo;
mod discovery;
mod endpoint;
mod error;
mod health_options;
pub mod logging;
mod proxy;
pub mod ratelimit;
mod reload;
mod retry;
mod router;
pub mod runtime;
mod server;
mod set;
mod split;
mod tls;
mod upstream;

pub use balance::{Balance, BalanceError};
pub use endpoint::Endpoint;
pub use error::{BuildError, RunError};
pub use proxy::{Proxy, ProxyService, RequestIds};
pub use reload::{ConfigWatcher, EtcdConfigError, ReloadError, WATCH_DEBOUNCE, run_etcd};
pub use retry::{RetryPolicy, is_idempotent};
pub use router::Router;
pub use server::{Running, run, run_file, server_options, start, start_with};
pub use set::EndpointSet;
pub use smartlb_health::HealthEvent;
pub use upstream::{
    Backend, MembershipError, REPLAY_BODY_LIMIT, Served, Upstream, UpstreamBuilder,
};

pub use smartlb_balance as algorithms;
pub use smartlb_config as config;
pub use smartlb_health::HealthConfig;

/// Formats an error with its chain of causes: `outer: cause: root cause`.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
