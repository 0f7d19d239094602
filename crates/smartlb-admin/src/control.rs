//! The mutating half of the admin API: the trait the proxy implements, the request
//! bodies and the errors that map to HTTP status codes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::status::UpstreamStatus;

/// The future a control call returns.
pub type ControlFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AdminError>> + Send + 'a>>;

/// What the admin server may change in the running proxy.
///
/// Implemented by the `smartlb` facade; each method has a default that answers
/// [`AdminError::Unsupported`] (HTTP 501), so an embedder offers only what it supports.
/// The server has already checked the bearer token and the JSON shape; the implementation
/// checks names, addresses and ranges and answers with the [`AdminError`] that fits.
pub trait AdminControl: Send + Sync + 'static {
    /// `POST /api/v1/upstreams/{upstream}/backends`: adds a backend, which joins in slow
    /// start. Answers the upstream as it is afterwards.
    ///
    /// Errors: [`AdminError::NotFound`] for an unknown upstream, [`AdminError::Conflict`]
    /// when the address is already a backend of it (or its backends come from discovery),
    /// [`AdminError::BadRequest`] for an address or weight the configuration would refuse.
    fn add_backend(
        &self,
        upstream: String,
        backend: NewBackend,
    ) -> ControlFuture<'_, UpstreamStatus> {
        let _ = (upstream, backend);
        Box::pin(async { Err(AdminError::Unsupported("adding backends".into())) })
    }

    /// `PATCH /api/v1/upstreams/{upstream}/backends/{address}`: sets the configured
    /// weight and/or drains (`drain: Some(true)`: no new requests, in-flight ones finish)
    /// or undrains (`Some(false)`) the backend. Answers the upstream as it is afterwards.
    ///
    /// Errors: [`AdminError::NotFound`] for an unknown upstream or backend,
    /// [`AdminError::BadRequest`] for a weight out of range.
    fn update_backend(
        &self,
        upstream: String,
        address: String,
        update: BackendUpdate,
    ) -> ControlFuture<'_, UpstreamStatus> {
        let _ = (upstream, address, update);
        Box::pin(async { Err(AdminError::Unsupported("changing backends".into())) })
    }

    /// `DELETE /api/v1/upstreams/{upstream}/backends/{address}`: drains the backend and
    /// removes it once its in-flight requests have finished. May return before the
    /// removal: the answer is the upstream as it is now, where the backend still shows as
    /// `draining` (the server then answers `202 Accepted`) or is already gone (`200`).
    ///
    /// Errors: [`AdminError::NotFound`] for an unknown upstream or backend,
    /// [`AdminError::Conflict`] when it is the upstream's last primary.
    fn remove_backend(
        &self,
        upstream: String,
        address: String,
    ) -> ControlFuture<'_, UpstreamStatus> {
        let _ = (upstream, address);
        Box::pin(async { Err(AdminError::Unsupported("removing backends".into())) })
    }

    /// `POST /api/v1/reload`: reads and validates the configuration again and applies
    /// it, as SIGHUP does.
    ///
    /// Errors: [`AdminError::BadRequest`] with every problem found when the new
    /// configuration is invalid (the old one keeps serving), [`AdminError::Internal`]
    /// when it cannot be read.
    fn reload(&self) -> ControlFuture<'_, ReloadReport> {
        Box::pin(async { Err(AdminError::Unsupported("reloading".into())) })
    }

    /// `PATCH /api/v1/routes/{index}`: sets the weights of a route's split (canary and
    /// blue-green changes by hand). A route's canary stops moving weights once they are
    /// set by hand.
    ///
    /// Errors: [`AdminError::NotFound`] for no route at `index`,
    /// [`AdminError::BadRequest`] for an upstream that is not one of the route's targets
    /// or weights that add up to zero.
    fn set_split(
        &self,
        index: usize,
        split: Vec<crate::SplitWeight>,
    ) -> ControlFuture<'_, crate::RouteStatus> {
        let _ = (index, split);
        Box::pin(async { Err(AdminError::Unsupported("changing route splits".into())) })
    }
}

/// The body of `PATCH /api/v1/routes/{index}`:
/// `{"split": [{"upstream": "web", "weight": 90}, {"upstream": "web-canary", "weight": 10}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitUpdate {
    /// The new weight of each target; targets left out keep theirs.
    pub split: Vec<crate::SplitWeight>,
}

/// The body of `POST /api/v1/upstreams/{name}/backends`: `{"address": "...", "weight": 2}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBackend {
    /// `host:port`.
    pub address: String,
    /// The configured weight; 1 when absent.
    #[serde(default = "one")]
    pub weight: u32,
    /// Whether the backend is a backup; `false` when absent.
    #[serde(default)]
    pub backup: bool,
}

fn one() -> u32 {
    1
}

/// The body of `PATCH /api/v1/upstreams/{name}/backends/{address}`:
/// `{"weight": 3}`, `{"drain": true}` or both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendUpdate {
    /// The new configured weight.
    pub weight: Option<u32>,
    /// `true` stops new requests to the backend (in-flight ones finish); `false` returns
    /// a drained backend to service.
    pub drain: Option<bool>,
}

/// The answer of `POST /api/v1/reload`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// What changed, one line each (`upstream web: backend 10.0.0.3:80 added`); empty
    /// when the configuration was unchanged.
    pub changes: Vec<String>,
}

/// Why a control call failed; each kind maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminError {
    /// The request is invalid (400): a bad address or weight, an invalid configuration.
    BadRequest(String),
    /// An upstream or backend does not exist (404).
    NotFound(String),
    /// The change clashes with the current state (409): a duplicate backend, removing
    /// the last primary, backends managed by discovery.
    Conflict(String),
    /// The proxy failed to carry the change out (500).
    Internal(String),
    /// This proxy does not offer the operation (501).
    Unsupported(String),
}

impl AdminError {
    /// The HTTP status the error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) => StatusCode::CONFLICT,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Unsupported(what) => write!(f, "{what} is not supported by this proxy"),
            AdminError::BadRequest(m)
            | AdminError::NotFound(m)
            | AdminError::Conflict(m)
            | AdminError::Internal(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for AdminError {}
