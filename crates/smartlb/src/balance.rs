//! The balancing layer over services of your own.
//!
//! [`Balance`] spreads requests over endpoint services `S` with any algorithm of
//! `smartlb-balance`, tracking each endpoint's in-flight requests, latency and failures
//! (errors returned by `S` count as failures for outlier detection). Use it to balance
//! over tonic channels, hyper clients or any tower service; the proxy's own upstreams use
//! the same endpoint sets with HTTP-aware retries on top.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use arc_swap::ArcSwap;
use smartlb_balance::Algorithm;
use smartlb_health::{BackendHealth, EjectionBudget, FailureKind, HealthConfig};
use smartlb_traffic::Outcome;
use tower_service::Service;

use crate::clock;
use crate::endpoint::Endpoint;
use crate::set::EndpointSet;

/// Errors of [`Balance`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BalanceError {
    /// No endpoint may take a request now (none configured, or all unavailable).
    #[error("no endpoint is available")]
    NoEndpoint,
    /// The chosen endpoint's service failed.
    #[error("the endpoint `{address}` failed")]
    Endpoint {
        /// The endpoint's address.
        address: String,
        /// The service's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A tower service that balances each request over endpoint services.
///
/// Cloning shares the endpoint set. Endpoint services are cloned per request (tower's
/// `Clone + ready` pattern), so they should be cheap handles (hyper's `SendRequest`,
/// tonic's `Channel`, an `Arc`-backed client...).
#[derive(Debug)]
pub struct Balance<S> {
    set: Arc<ArcSwap<EndpointSet<S>>>,
}

impl<S> Clone for Balance<S> {
    fn clone(&self) -> Self {
        Self {
            set: self.set.clone(),
        }
    }
}

impl<S> Balance<S> {
    /// Balances over `endpoints` — `(name, weight, service)` — with `algorithm`.
    /// Passive outlier detection uses `health` (its defaults eject an endpoint after five
    /// consecutive errors).
    pub fn new(
        algorithm: Algorithm,
        health: HealthConfig,
        endpoints: impl IntoIterator<Item = (String, u32, S)>,
    ) -> Self {
        let max_percent = health
            .outlier
            .as_ref()
            .map_or(100, |o| o.max_ejection_percent);
        let budget = Arc::new(EjectionBudget::new(max_percent));
        let endpoints = endpoints
            .into_iter()
            .map(|(name, weight, service)| {
                let health = Arc::new(BackendHealth::new(&health, budget.clone()));
                Arc::new(Endpoint::new(name, weight, false, service, health))
            })
            .collect();
        Self {
            set: Arc::new(ArcSwap::from_pointee(EndpointSet::new(
                algorithm, endpoints,
            ))),
        }
    }

    /// The current endpoints.
    pub fn endpoints(&self) -> Arc<EndpointSet<S>> {
        self.set.load_full()
    }
}

impl<S, Req> Service<Req> for Balance<S>
where
    S: Service<Req> + Clone + Send + Sync + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BalanceError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BalanceError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BalanceError>> {
        // Readiness is per endpoint and checked at call time: the balancer picks among
        // endpoints without reserving one.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let now = clock::now();
        let set = self.set.load_full();
        let Some(endpoint) = set.pick(now, None, &[]).cloned() else {
            return Box::pin(async { Err(BalanceError::NoEndpoint) });
        };
        Box::pin(async move {
            let stats = endpoint.stats().clone();
            let guard = stats.start();
            let started = Instant::now();
            let mut service = endpoint.service().clone();
            let result = match std::future::poll_fn(|cx| service.poll_ready(cx)).await {
                Ok(()) => service.call(req).await,
                Err(error) => Err(error),
            };
            let latency = started.elapsed();
            let done = clock::now();
            match result {
                Ok(resp) => {
                    guard.finish(Outcome::Success, latency);
                    endpoint.observe_latency(latency, done);
                    endpoint.health().record_success();
                    Ok(resp)
                }
                Err(error) => {
                    guard.finish(Outcome::from(FailureKind::Reset), latency);
                    endpoint.observe_latency(latency.max(crate::endpoint::FAILURE_LATENCY), done);
                    if let Some(t) = endpoint.health().record_failure(FailureKind::Reset, done) {
                        tracing::warn!(backend = endpoint.address(), "{t}");
                    }
                    Err(BalanceError::Endpoint {
                        address: endpoint.address().to_string(),
                        source: error.into(),
                    })
                }
            }
        })
    }
}
