//! The admin side of smartlb: a small HTTP server, separate from the proxy's listeners,
//! that tells operators what the balancer is doing.
//!
//! This crate knows nothing about balancing: whoever runs the proxy implements
//! [`AdminSource`] over its live state, and [`serve`] answers on the admin address:
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /healthz` | `200 ok` while the process runs |
//! | `GET /readyz` | `200` once every upstream has a healthy backend, else `503` |
//! | `GET /api/v1/status` | JSON [`StatusReport`]: per upstream, per backend state and counters |
//!
//! Other paths answer `404` with a JSON error body, other methods `405`.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use smartlb_admin::{AdminSource, StatusReport};
//!
//! struct Idle;
//! impl AdminSource for Idle {
//!     fn status(&self) -> StatusReport {
//!         StatusReport { version: "0.1.0".into(), uptime_seconds: 0.0, upstreams: vec![] }
//!     }
//!     fn ready(&self) -> bool { true }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let source: Arc<dyn AdminSource> = Arc::new(Idle);
//! // Serve until the shutdown future resolves (here: at once).
//! smartlb_admin::serve(listener, source, async {}).await?;
//! # Ok(())
//! # }
//! ```

mod server;
mod status;

pub use server::serve;
pub use status::{AdminSource, BackendStatus, StatusReport, UpstreamStatus};
