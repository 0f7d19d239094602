//! Background work of a running proxy: active health checks and the statistics tick.
//! Nothing here is on the request path.
//!
//! A supervisor keeps one task per upstream, following the proxy's upstreams as reloads
//! add, remove or rebuild them. Each upstream's task ticks its statistics every
//! `analysis.tick` and, every [`RECONCILE`], reconciles its health checkers with the
//! backends it has now: a backend added at run time (reload, admin API, discovery) gets
//! a checker, a removed one loses it, and new `[upstream.health]` settings restart them
//! all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use smartlb_health::{
    BackendHealth, CheckConfig, CheckHandle, CheckObserver, CheckTarget, HealthChecker, Transition,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock;
use crate::proxy::Proxy;
use crate::upstream::Upstream;

/// How often an upstream's task looks for new or removed backends and settings, and the
/// supervisor for new or removed upstreams (it is also woken by every reload).
const RECONCILE: Duration = Duration::from_millis(250);

/// Starts the supervisor of the per-upstream tasks; everything ends when `stopped` turns
/// `true` (or its sender is dropped), or when the returned task is aborted.
pub(crate) fn spawn(proxy: &Proxy, stopped: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let proxy = proxy.clone();
    vec![tokio::spawn(supervise(proxy, stopped))]
}

/// Aborts the tasks it holds when dropped (the supervisor's children end with it).
struct Tasks(HashMap<String, JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

async fn supervise(proxy: Proxy, mut stopped: watch::Receiver<bool>) {
    let mut tasks = Tasks(HashMap::new());
    loop {
        let upstreams = proxy.upstreams();
        tasks.0.retain(|name, task| {
            let keep = !task.is_finished() && upstreams.iter().any(|u| u.name() == name);
            if !keep {
                task.abort();
            }
            keep
        });
        for upstream in upstreams {
            if !tasks.0.contains_key(upstream.name()) {
                let task = tokio::spawn(run_upstream(
                    proxy.clone(),
                    upstream.clone(),
                    stopped.clone(),
                ));
                tasks.0.insert(upstream.name().to_string(), task);
            }
        }
        tokio::select! {
            () = proxy.hooks().changed.notified() => {}
            () = tokio::time::sleep(RECONCILE * 4) => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

/// One upstream's background task: statistics ticks and health checkers, following the
/// upstream object by name as reloads rebuild it; ends when the upstream is removed.
async fn run_upstream(proxy: Proxy, mut upstream: Upstream, mut stopped: watch::Receiver<bool>) {
    let mut checks = Checks::new(&upstream);
    let mut ticker = ticker(upstream.tick_interval());
    let mut reconcile = tokio::time::interval(RECONCILE);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let reconcile_now = tokio::select! {
            _ = ticker.tick() => false,
            _ = reconcile.tick() => true,
            _ = stopped.wait_for(|s| *s) => return,
        };
        if !reconcile_now {
            upstream.tick(clock::now());
            continue;
        }
        match proxy.upstream(upstream.name()) {
            None => return,
            Some(current) if !current.ptr_eq(&upstream) => {
                if current.check_options() != upstream.check_options() {
                    checks = Checks::new(&current);
                }
                if current.tick_interval() != upstream.tick_interval() {
                    ticker = self::ticker(current.tick_interval());
                }
                upstream = current;
            }
            Some(_) => {}
        }
        checks.reconcile(&upstream).await;
    }
}

fn ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(period.max(Duration::from_millis(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

/// The active health checkers of one upstream, one per backend.
struct Checks {
    checker: Option<HealthChecker>,
    /// By backend address: the health state checked (a backend removed and added again
    /// gets a new one) and the running checker.
    running: HashMap<String, (Arc<BackendHealth>, CheckHandle)>,
}

impl Checks {
    /// The checkers of `upstream`'s settings (none when it has no `[upstream.health]`);
    /// started for its backends by [`Checks::reconcile`].
    fn new(upstream: &Upstream) -> Self {
        let checker = upstream
            .check_options()
            .and_then(|options| checker(upstream, options));
        Self {
            checker,
            running: HashMap::new(),
        }
    }

    /// Starts checkers for backends without one and stops those of removed backends.
    async fn reconcile(&mut self, upstream: &Upstream) {
        let Some(checker) = &self.checker else {
            return;
        };
        let set = upstream.endpoints();
        self.running.retain(|address, (health, _)| {
            set.endpoints()
                .iter()
                .any(|e| e.address() == address && Arc::ptr_eq(e.health(), health))
        });
        for endpoint in set.endpoints() {
            if self.running.contains_key(endpoint.address()) {
                continue;
            }
            let Some(target) =
                crate::tls::check_target(endpoint.address(), upstream.config()).await
            else {
                tracing::error!(
                    upstream = upstream.name(),
                    backend = endpoint.address(),
                    "cannot resolve the backend for health checks"
                );
                continue;
            };
            // Checks send the backend's configured address as `Host` (over TLS for
            // `https://` backends), and logs name the backend by it.
            match checker.spawn(target, endpoint.health().clone()) {
                Ok(handle) => {
                    self.running.insert(
                        endpoint.address().to_string(),
                        (endpoint.health().clone(), handle),
                    );
                }
                Err(error) => tracing::error!(
                    upstream = upstream.name(),
                    backend = endpoint.address(),
                    %error,
                    "cannot start health checks"
                ),
            }
        }
    }
}

fn checker(upstream: &Upstream, options: &CheckConfig) -> Option<HealthChecker> {
    match HealthChecker::new(options.clone()) {
        // The checker logs its transitions; the observer publishes them.
        Ok(checker) => Some(
            checker
                .with_clock(clock::now)
                .with_upstream(upstream.name())
                .with_observer(Arc::new(Publish(
                    upstream.name().to_string(),
                    upstream.clone(),
                ))),
        ),
        Err(error) => {
            tracing::error!(upstream = upstream.name(), %error, "health checks disabled");
            None
        }
    }
}

/// Publishes the active checker's transitions as the upstream's health events.
struct Publish(String, Upstream);

impl CheckObserver for Publish {
    fn on_check(&self, target: &CheckTarget, outcome: &smartlb_health::CheckOutcome) {
        use smartlb_admin::metrics::CheckResult;
        let result = match outcome {
            smartlb_health::CheckOutcome::Passed { .. } => CheckResult::Success,
            smartlb_health::CheckOutcome::Timeout => CheckResult::Timeout,
            _ => CheckResult::Failure,
        };
        // The membership is shared with rebuilt upstreams, so this one sees it current.
        let set = self.1.endpoints();
        match set
            .endpoints()
            .iter()
            .find(|e| e.address() == target.host)
            .and_then(|e| e.metrics())
        {
            Some(metrics) => metrics.health_check(result),
            None => smartlb_admin::metrics::health_check(&self.0, &target.host, result),
        }
    }

    fn on_transition(&self, target: &CheckTarget, transition: &Transition) {
        self.1.publish(&target.host, transition);
    }
}
