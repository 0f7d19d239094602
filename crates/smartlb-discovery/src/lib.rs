//! Where an upstream's backends come from.
//!
//! Discovery turns an upstream's `[upstream.discovery]` table into a backend set that
//! follows the source while the proxy runs:
//!
//! - **`static`**: the `backends` listed in the file. The set never changes (a reload
//!   brings a new list; [`diff`] tells what changed).
//! - **`dns`**: a name's `A`, `AAAA` or `SRV` records, asked again every `refresh`
//!   (bypassing cached answers). `SRV` targets are resolved to addresses; the lowest
//!   priority gives the primaries, higher priorities the backups, and the SRV weight
//!   becomes the backend weight. A failed lookup, or an answer with no usable record,
//!   keeps the last known set: it is logged once per failure streak and shown in
//!   [`SourceStatus`].
//! - **`etcd`**: one key per backend below a prefix, its value
//!   `{"address": "host:port", "weight": 1}` (`weight` and `backup` optional). The
//!   prefix is read, then watched from the revision after the read; invalid values are
//!   logged and count as absent, and two keys naming one address count once. A lost
//!   etcd keeps the last known set (logged once, and shown in [`SourceStatus`]); the
//!   watch reconnects with exponential backoff and resumes from the revision after the
//!   last change applied, so nothing written meanwhile is missed (if etcd compacted that
//!   history away, the prefix is read again whole).
//!
//! [`start`] spawns the task that follows a source and returns a [`DiscoveryHandle`]:
//! the current set, a status, and [`DiscoveryHandle::changed`], which waits for the
//! next change and says what it is as [`Change`]s (insert, update, remove), the shape
//! of tower's `Discover`. Sets are published through a `tokio::sync::watch` channel, so
//! a burst of updates arrives as one list of changes and a slow reader never lags
//! behind a queue. Dropping the handle stops the task.
//!
//! A whole configuration document can live in an etcd key too
//! (`smartlb run --config etcd://HOST:PORT/KEY`): [`watch_config_key`] follows it the
//! same way.
//!
//! etcd is reached through its gRPC API with the `etcd-client` crate (a range read, then
//! a watch stream), one endpoint at a time: after a failure the next attempt goes to the
//! next endpoint listed. etcd-client compiles etcd's protobuf API when it is built; the
//! `protoc` it needs for that is the one the `protoc-bin-vendored` crate ships (the
//! workspace's `.cargo/config.toml` points `PROTOC` at `tools/protoc`, which runs it), so
//! building needs nothing but cargo. TLS to etcd is not supported yet.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use smartlb_discovery::Change;
//!
//! let config = smartlb_config::parse_str(
//!     "[server]\nlisten = \"127.0.0.1:0\"\n[[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1:8081\", { address = \"127.0.0.1:8082\", weight = 3 }]\n",
//!     "inline.toml",
//!     &|_| None,
//! ).unwrap();
//! let web = &config.upstreams[0];
//!
//! // The set an upstream starts with (static discovery only).
//! let backends = smartlb_discovery::initial_backends(web).unwrap();
//! assert_eq!(backends.len(), 2);
//! assert_eq!(backends[1].weight, 3);
//!
//! // Following any kind of source.
//! let mut handle = smartlb_discovery::start(web).unwrap();
//! let first = handle.ready().await.unwrap();
//! assert_eq!(first.len(), 2);
//! assert!(handle.status().healthy);
//!
//! // Without `ready`, the first `changed` reports every backend as inserted.
//! let mut fresh = smartlb_discovery::start(web).unwrap();
//! let changes = fresh.changed().await.unwrap();
//! assert!(matches!(&changes[0], Change::Insert(b) if b.address.to_string() == "127.0.0.1:8081"));
//! # }
//! ```

mod backoff;
mod change;
mod dns;
mod error;
mod etcd;
mod handle;

use std::time::Duration;

use smartlb_config::{BackendConfig, DiscoveryConfig, UpstreamConfig};

pub use change::{Change, diff};
pub use error::DiscoveryError;
pub use etcd::{
    ConfigDocument, ConfigWatch, EtcdConfigKey, watch_config_key, watch_config_key_with,
};
pub use handle::{Backends, DiscoveryHandle, SourceStatus};

/// The backends an upstream starts with, for static discovery.
///
/// # Errors
///
/// [`DiscoveryError::Unsupported`] for `dns` and `etcd` discovery, whose backends are
/// only known once the source has been asked: use [`start`].
pub fn initial_backends(upstream: &UpstreamConfig) -> Result<Vec<BackendConfig>, DiscoveryError> {
    match &upstream.discovery {
        DiscoveryConfig::Static => Ok(upstream.backends.clone()),
        DiscoveryConfig::Dns(_) => Err(DiscoveryError::Unsupported("dns")),
        DiscoveryConfig::Etcd(_) => Err(DiscoveryError::Unsupported("etcd")),
    }
}

/// Timeouts and reconnect delays of the discovery tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveryOptions {
    /// First delay before reconnecting to etcd after a failure (doubles each time,
    /// ±20% jitter). Default 200 ms.
    pub retry_min: Duration,
    /// Longest delay between reconnect attempts. Default 5 s.
    pub retry_max: Duration,
    /// Bound on connecting to etcd, on each read of a key range and on opening a watch
    /// (also the time an unanswered keep-alive ping waits). Default 5 s.
    pub etcd_timeout: Duration,
    /// Bound on one DNS query. Default 2 s.
    pub dns_timeout: Duration,
    /// DNS attempts per lookup. Default 2.
    pub dns_attempts: usize,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            retry_min: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            etcd_timeout: Duration::from_secs(5),
            dns_timeout: Duration::from_secs(2),
            dns_attempts: 2,
        }
    }
}

impl DiscoveryOptions {
    /// Sets the reconnect delays: from `min`, doubling up to `max`.
    pub fn with_retry(mut self, min: Duration, max: Duration) -> Self {
        self.retry_min = min;
        self.retry_max = max.max(min);
        self
    }

    /// Sets the bound on etcd connects, reads and watch openings.
    pub fn with_etcd_timeout(mut self, timeout: Duration) -> Self {
        self.etcd_timeout = timeout;
        self
    }

    /// Sets the bound on one DNS query and the attempts per lookup (at least 1).
    pub fn with_dns_timeout(mut self, timeout: Duration, attempts: usize) -> Self {
        self.dns_timeout = timeout;
        self.dns_attempts = attempts.max(1);
        self
    }
}

/// Starts following `upstream`'s backends with the default [`DiscoveryOptions`].
///
/// A static upstream's handle is loaded at once and never changes; `dns` and `etcd`
/// spawn a task on the current tokio runtime, stopped when the handle is dropped.
///
/// # Errors
///
/// No tokio runtime (for `dns` and `etcd`), settings that cannot be followed (an `A`
/// lookup without a port, an `https://` etcd endpoint), or an unreadable system DNS
/// configuration when no `resolvers` are given.
pub fn start(upstream: &UpstreamConfig) -> Result<DiscoveryHandle, DiscoveryError> {
    start_with(upstream, &DiscoveryOptions::default())
}

/// [`start`] with explicit timeouts and reconnect delays.
///
/// # Errors
///
/// As [`start`].
pub fn start_with(
    upstream: &UpstreamConfig,
    options: &DiscoveryOptions,
) -> Result<DiscoveryHandle, DiscoveryError> {
    match &upstream.discovery {
        DiscoveryConfig::Static => Ok(DiscoveryHandle::fixed(
            &upstream.name,
            change::normalize(upstream.backends.iter().cloned()),
        )),
        DiscoveryConfig::Dns(dns) => dns::start(&upstream.name, dns, options),
        DiscoveryConfig::Etcd(etcd) => etcd::start(&upstream.name, etcd, options),
    }
}
