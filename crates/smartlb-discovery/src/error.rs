//! The crate's error type.

/// Why discovery could not be set up.
///
/// Failures *after* a source has started (a DNS server that stops answering, an etcd
/// cluster that goes away) are not errors of this type: the source keeps its last known
/// set, logs the failure and reports it through [`SourceStatus`](crate::SourceStatus).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The discovery kind has no fixed backend list: its backends are followed with
    /// [`start`](crate::start), not read once with
    /// [`initial_backends`](crate::initial_backends).
    #[error("discovery kind `{0}` is not supported by this build (use `backends`)")]
    Unsupported(&'static str),
    /// A discovery source was started outside a tokio runtime.
    #[error("discovery must be started inside a tokio runtime")]
    NoRuntime,
    /// The discovery settings cannot be followed (for example an `A` lookup without a
    /// port, or an `https://` etcd endpoint).
    #[error("upstream `{upstream}`: {reason}")]
    Invalid {
        /// The upstream (or, for a configuration key, the key) concerned.
        upstream: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The system's DNS configuration could not be read.
    #[error("upstream `{upstream}`: cannot read the system's DNS configuration")]
    SystemResolver {
        /// The upstream concerned.
        upstream: String,
        /// The resolver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An `etcd://HOST:PORT/KEY` configuration address could not be parsed.
    #[error("invalid etcd configuration address {url:?}: {reason}")]
    ConfigUrl {
        /// The address as given.
        url: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The background task that followed the source has stopped.
    #[error("the discovery task has stopped")]
    Stopped,
}
