//! The crate's error type.

use std::io;

/// What went wrong when configuring or driving a demo component.
///
/// Every variant names the bad value so that a command line can print it as is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// An error rate outside `0.0..=1.0` (or not a number).
    #[error("error rate must be between 0 and 1, got {0}")]
    InvalidErrorRate(f64),
    /// A load rate that is not a positive, finite number of requests per second.
    #[error("load rate must be a positive number of requests per second, got {0}")]
    InvalidRate(f64),
    /// A load generator concurrency of zero.
    #[error("load concurrency must be at least 1")]
    InvalidConcurrency,
    /// A zero duration where a positive one is needed.
    #[error("{what} must be longer than zero")]
    ZeroDuration {
        /// Which duration was zero.
        what: &'static str,
    },
    /// A plan time outside `0.0..=1.0` of the run, or a ramp that ends before it starts.
    #[error("plan action for `{backend}` has an invalid time: {reason}")]
    InvalidPlanTime {
        /// The backend the action applies to.
        backend: String,
        /// Why the time is invalid.
        reason: String,
    },
    /// A plan action names a backend the plan does not declare.
    #[error("plan action names unknown backend `{0}`")]
    UnknownBackend(String),
    /// Two backends with the same name.
    #[error("backend name `{0}` is used twice")]
    DuplicateBackend(String),
    /// A backend name that is empty or holds characters unfit for an HTTP header.
    #[error("backend name {0:?} must be non-empty visible ASCII without spaces")]
    InvalidBackendName(String),
    /// The plan is run against a set of handles that lacks one of its backends.
    #[error("no running backend named `{0}` was given to the plan runner")]
    MissingBackend(String),
    /// A request path that is not an origin-form path such as `/` or `/api?x=1`.
    #[error("request path must start with `/` and be a valid URI path, got {0:?}")]
    InvalidPath(String),
    /// A `Host` header value that cannot be sent.
    #[error("host {0:?} is not a valid Host header value")]
    InvalidHost(String),
    /// A component that spawns tasks was started outside a Tokio runtime.
    #[error("must be called from inside a Tokio runtime")]
    NoRuntime,
    /// A socket operation failed.
    #[error("socket operation failed")]
    Io(#[from] io::Error),
}
