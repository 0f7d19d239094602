//! The admin side of smartlb: a small HTTP server, separate from the proxy's listeners,
//! that tells operators what the balancer is doing, lets them change backends, exposes
//! Prometheus metrics and serves a live dashboard.
//!
//! This crate knows nothing about balancing. Whoever runs the proxy implements
//! [`AdminSource`] (read: status, readiness, traffic) and optionally [`AdminControl`]
//! (write: add, change and remove backends, reload) over its live state, records metrics
//! through [`metrics`], and runs an [`AdminServer`] on the admin address:
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET /healthz` | `200 ok` while the process runs |
//! | `GET /readyz` | `200` once every upstream has a healthy backend, else `503` |
//! | `GET /metrics` | Prometheus text exposition (see [`metrics`]) |
//! | `GET /api/v1/status` | JSON [`StatusReport`]: per upstream, per backend state and counters |
//! | `GET /api/v1/traffic[?samples=N]` | JSON [`TrafficReport`]: per-second series, forecast, anomalies |
//! | `POST /api/v1/upstreams/{name}/backends` | add a backend ([`NewBackend`]); `201` + [`UpstreamStatus`] |
//! | `PATCH /api/v1/upstreams/{name}/backends/{address}` | set weight and/or drain ([`BackendUpdate`]); `200` + [`UpstreamStatus`] |
//! | `DELETE /api/v1/upstreams/{name}/backends/{address}` | drain, then remove; `202` (draining) or `200` (gone) + [`UpstreamStatus`] |
//! | `POST /api/v1/reload` | reload the configuration; `200` + [`ReloadReport`] |
//! | `GET /` | the dashboard: one self-contained page polling the two JSON endpoints |
//!
//! Path parameters are percent-decoded (`%5B::1%5D:80` is `[::1]:80`). Errors answer
//! `{"error": "...", "status": N}`: `400` for bad JSON (unknown keys included) or values,
//! `404` for an unknown endpoint, upstream or backend, `405` (with `Allow`) for a wrong
//! method, `409` for a change that clashes with the current state, `413` for a body over
//! 64 KiB, `501` for an operation the proxy does not offer.
//!
//! Mutating calls need `Authorization: Bearer TOKEN` when a token is set: `401` without
//! one, `403` with a wrong one (compared in constant time). Cross-origin browser requests
//! (an `Origin` naming another host, or `Sec-Fetch-Site: cross-site`) are refused with
//! `403` even without a token, so a web page cannot drive a loopback admin API. A server
//! without a token refuses to listen on a non-loopback address ([`SetupError`]).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use smartlb_admin::{AdminControl, AdminServer, AdminSource, StatusReport};
//!
//! struct Idle;
//! impl AdminSource for Idle {
//!     fn status(&self) -> StatusReport {
//!         StatusReport { version: "0.1.0".into(), uptime_seconds: 0.0, config: None, upstreams: vec![] }
//!     }
//!     fn ready(&self) -> bool { true }
//! }
//! // Every control method has a default answering 501; a real proxy overrides them.
//! impl AdminControl for Idle {}
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let metrics = smartlb_admin::metrics::install()?;
//! let per_backend = smartlb_admin::metrics::BackendMetrics::new("web", "127.0.0.1:8081");
//! per_backend.record_request(200, 0.004);
//! assert!(metrics.render().contains("smartlb_requests_total"));
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let idle = Arc::new(Idle);
//! let server = AdminServer::new(idle.clone())
//!     .with_control(idle)
//!     .with_token(Some("s3cret".into()))
//!     .with_metrics(metrics);
//! // Serve until the shutdown future resolves (here: at once).
//! server.serve(listener, async {}).await?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod control;
pub mod metrics;
mod server;
mod status;
mod traffic;

pub use control::{
    AdminControl, AdminError, BackendUpdate, ControlFuture, NewBackend, ReloadReport, SplitUpdate,
};
pub use server::{AdminServer, SetupError, serve};
pub use status::{
    AdminSource, BackendStatus, CanaryStatus, ConfigVersion, RouteStatus, RoutesReport,
    SplitWeight, StatusReport, UpstreamStatus,
};
pub use traffic::{
    Anomaly, BackendTraffic, ForecastPoint, TrafficQuery, TrafficReport, TrafficSample,
    UpstreamTraffic, WeightDecision,
};
