//! Errors of building and running the proxy.

use thiserror::Error;

/// Why a proxy could not be built from a configuration.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A backend's host name did not resolve.
    #[error("upstream `{upstream}`: backend `{address}` does not resolve")]
    Resolve {
        /// The upstream's name.
        upstream: String,
        /// The backend address as configured.
        address: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The upstream's backends could not be discovered.
    #[error("upstream `{upstream}`: backend discovery failed")]
    Discovery {
        /// The upstream's name.
        upstream: String,
        /// What went wrong.
        #[source]
        source: smartlb_discovery::DiscoveryError,
    },
    /// The algorithm is not known to the balancing crate.
    #[error("upstream `{upstream}`: unknown algorithm `{algorithm}`")]
    Algorithm {
        /// The upstream's name.
        upstream: String,
        /// The algorithm's name.
        algorithm: String,
    },
    /// An upstream built in code is not valid.
    #[error("upstream `{upstream}`: {reason}")]
    Invalid {
        /// The upstream's name.
        upstream: String,
        /// What is wrong.
        reason: String,
    },
    /// The analysis settings cannot be served.
    #[error("upstream `{upstream}`: analysis settings: {reason}")]
    Analysis {
        /// The upstream's name.
        upstream: String,
        /// What is wrong.
        reason: String,
    },
    /// TLS settings could not be loaded.
    #[error("{what}: {source}")]
    Tls {
        /// Which settings.
        what: String,
        /// What went wrong.
        #[source]
        source: smartlb_proxy::tls::TlsError,
    },
    /// A route names an upstream that does not exist.
    #[error("a route names the unknown upstream `{0}`")]
    UnknownUpstream(String),
}

/// Why the proxy stopped with an error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration could not be turned into a proxy.
    #[error("the configuration cannot be served")]
    Build(#[from] BuildError),
    /// A listening address could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: std::net::SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// A listener failed while serving.
    #[error("a listener failed")]
    Serve(#[source] std::io::Error),
}
