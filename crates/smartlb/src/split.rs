//! Weighted splits of a route over upstreams, changeable at run time, and the SLO-gated
//! canary that moves them by itself (`[route.canary]`).
//!
//! A canary starts at its configured share. Every `interval` it is judged against the
//! baseline (the route's other targets) over that window, from the backends' own
//! counters and latency histograms:
//! - its error rate (failed exchanges, 5xx included, over all) above `max_error_rate`, or
//!   its p99 above `max_p99_ratio` times the baseline's (and more than 2 ms above it, so
//!   that sub-millisecond noise does not count), rolls it back to 0% at once, for good
//!   (state `rolled-back`, logged at `WARN` with the reason);
//! - otherwise its share grows by `step` points (logged at `INFO`), up to 100%
//!   (`promoted`). The baseline targets share the rest in their configured proportions.
//!
//! A window with fewer than [`MIN_CANARY_REQUESTS`] canary requests is not judged; it
//! stays open until it has them. Weights set through the admin API stop the canary
//! (state `manual`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use smartlb_admin::{AdminError, CanaryStatus, RouteStatus, RoutesReport, SplitWeight};
use smartlb_balance::Rng;
use smartlb_config::CanaryConfig;
use smartlb_traffic::Histogram;

use crate::proxy::Proxy;
use crate::set::with_rng;
use crate::upstream::Upstream;

/// The fewest canary requests a window needs before it is judged.
pub const MIN_CANARY_REQUESTS: u64 = 10;

/// Latency differences below this never roll a canary back.
const P99_NOISE_FLOOR: Duration = Duration::from_millis(2);

/// A route's targets and their live weights.
#[derive(Debug)]
pub(crate) struct Split {
    targets: Vec<Target>,
    canary: Option<Mutex<Canary>>,
    label: String,
}

#[derive(Debug)]
struct Target {
    upstream: Upstream,
    weight: AtomicU32,
    /// The weight in the configuration (the baseline's proportions).
    configured: u32,
}

#[derive(Debug)]
struct Canary {
    config: CanaryConfig,
    /// Index of the canary in `targets`.
    index: usize,
    state: CanaryState,
    reason: String,
    evaluations: u64,
    window: Option<Window>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CanaryState {
    Advancing,
    Promoted,
    RolledBack,
    Manual,
}

impl CanaryState {
    fn as_str(self) -> &'static str {
        match self {
            CanaryState::Advancing => "advancing",
            CanaryState::Promoted => "promoted",
            CanaryState::RolledBack => "rolled-back",
            CanaryState::Manual => "manual",
        }
    }
}

/// Where a window started: the counters of the canary and of the baseline then.
#[derive(Debug)]
struct Window {
    started: Instant,
    canary: Totals,
    baseline: Totals,
}

/// Requests, errors and latency of a group of upstreams, cumulative.
#[derive(Debug, Default, Clone)]
struct Totals {
    requests: u64,
    errors: u64,
    latency: Histogram,
}

impl Totals {
    fn of<'a>(upstreams: impl Iterator<Item = &'a Upstream>) -> Self {
        let mut totals = Totals::default();
        for upstream in upstreams {
            for endpoint in upstream.endpoints().endpoints() {
                let stats = endpoint.stats();
                totals.requests += stats.requests_total();
                totals.errors += stats.errors_total();
                totals.latency.merge(&stats.latency_histogram());
            }
        }
        totals
    }

    /// What happened since `earlier`.
    fn since(&self, earlier: &Totals) -> (u64, u64, Histogram) {
        (
            self.requests.saturating_sub(earlier.requests),
            self.errors.saturating_sub(earlier.errors),
            self.latency.delta_since(&earlier.latency),
        )
    }
}

impl Split {
    /// A split over `targets` (upstream, weight) with an optional canary (its upstream
    /// must be one of the targets; it is ignored otherwise).
    pub(crate) fn new(
        targets: Vec<(Upstream, u32)>,
        canary: Option<&CanaryConfig>,
        label: String,
    ) -> Self {
        let canary = canary.and_then(|config| {
            let index = targets
                .iter()
                .position(|(u, _)| u.name() == config.upstream)?;
            Some(Mutex::new(Canary {
                config: config.clone(),
                index,
                state: CanaryState::Advancing,
                reason: String::new(),
                evaluations: 0,
                window: None,
            }))
        });
        Self {
            targets: targets
                .into_iter()
                .map(|(upstream, weight)| Target {
                    upstream,
                    weight: AtomicU32::new(weight),
                    configured: weight,
                })
                .collect(),
            canary,
            label,
        }
    }

    /// Takes over `old`'s weights (by upstream name) and canary progress: the same route
    /// rebuilt by a reload.
    pub(crate) fn inherit(&self, old: &Split) {
        for target in &self.targets {
            if let Some(previous) = old
                .targets
                .iter()
                .find(|t| t.upstream.name() == target.upstream.name())
            {
                target
                    .weight
                    .store(previous.weight.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        if let (Some(canary), Some(previous)) = (&self.canary, &old.canary) {
            let previous = previous
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut canary = canary
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            canary.state = previous.state;
            canary.reason.clone_from(&previous.reason);
            canary.evaluations = previous.evaluations;
            canary.window = previous.window.as_ref().map(|w| Window {
                started: w.started,
                canary: w.canary.clone(),
                baseline: w.baseline.clone(),
            });
        }
    }

    /// Picks a target at random in proportion to the current weights.
    pub(crate) fn pick(&self) -> Option<&Upstream> {
        if self.targets.len() == 1 {
            return self.targets.first().map(|t| &t.upstream);
        }
        let total: u64 = self
            .targets
            .iter()
            .map(|t| u64::from(t.weight.load(Ordering::Relaxed)))
            .sum();
        if total == 0 {
            return self.targets.first().map(|t| &t.upstream);
        }
        let mut point = with_rng(|rng| rng.next_u64()) % total;
        for target in &self.targets {
            let weight = u64::from(target.weight.load(Ordering::Relaxed));
            if point < weight {
                return Some(&target.upstream);
            }
            point -= weight;
        }
        self.targets.last().map(|t| &t.upstream)
    }

    /// The targets and their weights now.
    pub(crate) fn weights(&self) -> Vec<SplitWeight> {
        self.targets
            .iter()
            .map(|t| SplitWeight {
                upstream: t.upstream.name().to_owned(),
                weight: t.weight.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Where the canary stands, when the route has one.
    pub(crate) fn canary_status(&self) -> Option<CanaryStatus> {
        let canary = self.canary.as_ref()?;
        let canary = canary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let target = self.targets.get(canary.index)?;
        Some(CanaryStatus {
            upstream: target.upstream.name().to_owned(),
            percent: target.weight.load(Ordering::Relaxed),
            state: canary.state.as_str().to_owned(),
            reason: canary.reason.clone(),
            evaluations: canary.evaluations,
        })
    }

    /// Sets weights by hand (admin API); targets not named keep theirs. Stops the canary.
    ///
    /// # Errors
    ///
    /// An upstream that is not a target, or weights that would add up to zero; nothing
    /// is changed then.
    pub(crate) fn set_weights(&self, weights: &[SplitWeight]) -> Result<(), String> {
        let mut next: Vec<u32> = self
            .targets
            .iter()
            .map(|t| t.weight.load(Ordering::Relaxed))
            .collect();
        for w in weights {
            let Some(i) = self
                .targets
                .iter()
                .position(|t| t.upstream.name() == w.upstream)
            else {
                return Err(format!(
                    "`{}` is not a target of route {}; its targets are {}",
                    w.upstream,
                    self.label,
                    self.targets
                        .iter()
                        .map(|t| format!("`{}`", t.upstream.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            if w.weight > 1_000_000 {
                return Err(format!("weight {} is above 1000000", w.weight));
            }
            next[i] = w.weight;
        }
        if next.iter().all(|w| *w == 0) {
            return Err("the weights add up to zero: no upstream would get requests".into());
        }
        for (target, weight) in self.targets.iter().zip(next) {
            target.weight.store(weight, Ordering::Relaxed);
        }
        if let Some(canary) = &self.canary {
            let mut canary = canary
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            canary.state = CanaryState::Manual;
            canary.reason = "weights set through the admin API".into();
            canary.window = None;
        }
        tracing::info!(route = %self.label, split = ?self.weights(), "route split set through the admin API");
        Ok(())
    }

    /// Judges the canary when its window is over (called a few times a second).
    pub(crate) fn evaluate(&self, now: Instant) {
        let Some(canary) = &self.canary else { return };
        let mut canary = canary
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if canary.state != CanaryState::Advancing {
            return;
        }
        let index = canary.index;
        let canary_totals = || Totals::of(self.targets.get(index).map(|t| &t.upstream).into_iter());
        let baseline_totals = || {
            Totals::of(
                self.targets
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != index)
                    .map(|(_, t)| &t.upstream),
            )
        };
        let Some(window) = &canary.window else {
            canary.window = Some(Window {
                started: now,
                canary: canary_totals(),
                baseline: baseline_totals(),
            });
            return;
        };
        if now.saturating_duration_since(window.started) < canary.config.interval {
            return;
        }
        let percent = self
            .targets
            .get(index)
            .map_or(0, |t| t.weight.load(Ordering::Relaxed));
        let (requests, errors, latency) = canary_totals().since(&window.canary);
        let (_, _, base_latency) = baseline_totals().since(&window.baseline);
        if percent > 0 && requests < MIN_CANARY_REQUESTS {
            // Not enough evidence yet: keep the window open.
            return;
        }
        canary.evaluations += 1;
        let error_rate = if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        };
        let p99 = latency.quantile(0.99);
        let base_p99 = base_latency.quantile(0.99);
        let ms = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
        let broken = if error_rate > canary.config.max_error_rate {
            Some(format!(
                "error rate {error_rate:.3} > {} over {requests} requests",
                canary.config.max_error_rate
            ))
        } else if let (Some(p99), Some(base)) = (p99, base_p99)
            && p99.as_secs_f64() > base.as_secs_f64() * canary.config.max_p99_ratio
            && p99 > base + P99_NOISE_FLOOR
        {
            Some(format!(
                "p99 {:.1} ms > {} x baseline p99 {:.1} ms",
                ms(Some(p99)),
                canary.config.max_p99_ratio,
                ms(Some(base))
            ))
        } else {
            None
        };
        let canary_name = self
            .targets
            .get(index)
            .map_or("", |t| t.upstream.name())
            .to_owned();
        match broken {
            Some(reason) => {
                self.set_canary_percent(index, 0);
                canary.state = CanaryState::RolledBack;
                tracing::warn!(route = %self.label, canary = %canary_name, %reason, "canary rolled back to 0%");
                canary.reason = reason;
                canary.window = None;
            }
            None => {
                let next = (percent + canary.config.step).min(100);
                self.set_canary_percent(index, next);
                let reason = format!(
                    "error rate {error_rate:.3} <= {}, p99 {:.1} ms vs baseline {:.1} ms, over {requests} requests",
                    canary.config.max_error_rate,
                    ms(p99),
                    ms(base_p99)
                );
                tracing::info!(route = %self.label, canary = %canary_name, percent = next, %reason, "canary advanced");
                canary.reason = reason;
                if next >= 100 {
                    canary.state = CanaryState::Promoted;
                    canary.window = None;
                } else {
                    canary.window = Some(Window {
                        started: now,
                        canary: canary_totals(),
                        baseline: baseline_totals(),
                    });
                }
            }
        }
    }

    /// Gives the canary `percent` and the baseline the rest, in its configured
    /// proportions (equal shares when they were all 0).
    fn set_canary_percent(&self, index: usize, percent: u32) {
        let rest = 100 - percent.min(100);
        let base: Vec<(usize, u32)> = self
            .targets
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(i, t)| (i, t.configured))
            .collect();
        let base_total: u64 = base.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut given = 0u32;
        for (n, (i, configured)) in base.iter().enumerate() {
            let share = if n + 1 == base.len() {
                rest - given
            } else {
                (u64::from(rest) * u64::from(*configured))
                    .checked_div(base_total)
                    .map_or(rest / base.len() as u32, |s| s as u32)
            };
            given += share;
            if let Some(t) = self.targets.get(*i) {
                t.weight.store(share, Ordering::Relaxed);
            }
        }
        if let Some(t) = self.targets.get(index) {
            t.weight.store(percent, Ordering::Relaxed);
        }
    }
}

impl Proxy {
    /// The routing table as `GET /api/v1/routes` reports it: each route's split and
    /// canary.
    pub fn routes_report(&self) -> RoutesReport {
        let table = self.routes().table();
        RoutesReport {
            routes: table
                .router
                .splits()
                .enumerate()
                .map(|(index, split)| split.status(index))
                .collect(),
        }
    }

    /// Sets the weights of route `index`'s split by hand (`PATCH /api/v1/routes/{index}`),
    /// which stops its canary.
    ///
    /// # Errors
    ///
    /// No route at `index` (not found), or weights the route cannot take (bad request).
    pub fn set_split(
        &self,
        index: usize,
        weights: &[SplitWeight],
    ) -> Result<RouteStatus, AdminError> {
        let table = self.routes().table();
        let split = table
            .router
            .splits()
            .nth(index)
            .ok_or_else(|| AdminError::NotFound(format!("no route at index {index}")))?;
        split.set_weights(weights).map_err(AdminError::BadRequest)?;
        Ok(split.status(index))
    }
}

impl Split {
    fn status(&self, index: usize) -> RouteStatus {
        RouteStatus {
            index,
            label: self.label.clone(),
            split: self.weights(),
            canary: self.canary_status(),
        }
    }
}

/// How often canaries are looked at (each judges itself once its `interval` is over).
const CANARY_POLL: Duration = Duration::from_millis(100);

/// Starts the task that judges every route's canary, following the routing table across
/// reloads; it ends when `stopped` turns `true`.
pub(crate) fn spawn_canaries(
    proxy: &Proxy,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(CANARY_POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let table = proxy.routes().table();
                    let now = Instant::now();
                    for split in table.router.splits() {
                        split.evaluate(now);
                    }
                }
                _ = stopped.wait_for(|s| *s) => return,
            }
        }
    })
}
