//! Background work of a running proxy: active health checks and the statistics tick.
//! Nothing here is on the request path.

use std::sync::Arc;

use smartlb_health::{CheckObserver, CheckTarget, HealthChecker, Transition};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock;
use crate::proxy::Proxy;
use crate::upstream::Upstream;

/// Starts, per upstream, a task that owns its backends' health checkers and ticks its
/// statistics every second; each task ends when `stopped` turns `true`.
pub(crate) fn spawn(proxy: &Proxy, stopped: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    proxy
        .upstreams()
        .iter()
        .map(|upstream| {
            let upstream = upstream.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                // Dropping the handles (when this task ends) stops the checkers.
                let _checks = match upstream.check_options() {
                    None => Vec::new(),
                    Some(options) => match HealthChecker::new(options.clone()) {
                        Ok(checker) => {
                            // The checker logs its transitions; the observer publishes them.
                            let checker = checker
                                .with_clock(clock::now)
                                .with_upstream(upstream.name())
                                .with_observer(Arc::new(Publish(upstream.clone())));
                            let mut handles = Vec::new();
                            for endpoint in upstream.endpoints().endpoints() {
                                let Some(addr) = resolve(endpoint.address()).await else {
                                    tracing::error!(
                                        upstream = upstream.name(),
                                        backend = endpoint.address(),
                                        "cannot resolve the backend for health checks"
                                    );
                                    continue;
                                };
                                // Checks send the backend's configured address as `Host`,
                                // and logs name the backend by it.
                                let target =
                                    CheckTarget::new(addr).with_host(endpoint.address());
                                match checker.spawn(target, endpoint.health().clone()) {
                                    Ok(handle) => handles.push(handle),
                                    Err(error) => tracing::error!(
                                        upstream = upstream.name(),
                                        backend = endpoint.address(),
                                        %error,
                                        "cannot start health checks"
                                    ),
                                }
                            }
                            handles
                        }
                        Err(error) => {
                            tracing::error!(upstream = upstream.name(), %error, "health checks disabled");
                            Vec::new()
                        }
                    },
                };
                let mut ticker = tokio::time::interval(upstream.tick_interval());
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = ticker.tick() => upstream.tick(clock::now()),
                        changed = stopped.wait_for(|s| *s) => {
                            let _ = changed;
                            return;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Publishes the active checker's transitions as the upstream's health events.
struct Publish(Upstream);

impl CheckObserver for Publish {
    fn on_check(&self, target: &CheckTarget, outcome: &smartlb_health::CheckOutcome) {
        use smartlb_admin::metrics::CheckResult;
        let result = match outcome {
            smartlb_health::CheckOutcome::Passed { .. } => CheckResult::Success,
            smartlb_health::CheckOutcome::Timeout => CheckResult::Timeout,
            _ => CheckResult::Failure,
        };
        let set = self.0.endpoints();
        match set
            .endpoints()
            .iter()
            .find(|e| e.address() == target.host)
            .and_then(|e| e.metrics())
        {
            Some(metrics) => metrics.health_check(result),
            None => smartlb_admin::metrics::health_check(self.0.name(), &target.host, result),
        }
    }

    fn on_transition(&self, target: &CheckTarget, transition: &Transition) {
        self.0.publish(&target.host, transition);
    }
}

async fn resolve(address: &str) -> Option<std::net::SocketAddr> {
    if let Ok(addr) = address.parse() {
        return Some(addr);
    }
    tokio::net::lookup_host(address).await.ok()?.next()
}
