//! Where an upstream's backends come from.
//!
//! Discovery turns an upstream's `[upstream.discovery]` table into the set of backends
//! the balancer works over. This version follows `kind = "static"`: the backends listed
//! in the file. `dns` and `etcd` are accepted by the configuration schema but refused
//! when an upstream is built, with an error that says so, rather than serving an empty
//! upstream.
//!
//! # Example
//!
//! ```
//! let config = smartlb_config::parse_str(
//!     "[server]\nlisten = \"127.0.0.1:0\"\n[[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1:8081\", { address = \"127.0.0.1:8082\", weight = 3 }]\n",
//!     "inline.toml",
//!     &|_| None,
//! ).unwrap();
//! let backends = smartlb_discovery::initial_backends(&config.upstreams[0]).unwrap();
//! assert_eq!(backends.len(), 2);
//! assert_eq!(backends[1].weight, 3);
//! ```

use smartlb_config::{BackendConfig, DiscoveryConfig, UpstreamConfig};

/// Why an upstream's backends could not be discovered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The discovery kind is valid configuration but this build does not follow it yet.
    #[error("discovery kind `{0}` is not supported by this build (use `backends`)")]
    Unsupported(&'static str),
}

/// The backends an upstream starts with.
///
/// # Errors
///
/// [`DiscoveryError::Unsupported`] for `dns` and `etcd` discovery.
pub fn initial_backends(upstream: &UpstreamConfig) -> Result<Vec<BackendConfig>, DiscoveryError> {
    match &upstream.discovery {
        DiscoveryConfig::Static => Ok(upstream.backends.clone()),
        DiscoveryConfig::Dns(_) => Err(DiscoveryError::Unsupported("dns")),
        DiscoveryConfig::Etcd(_) => Err(DiscoveryError::Unsupported("etcd")),
    }
}
