//! Traffic analysis, run once per `analysis.tick`: forecasting, anomaly
//! detection and weight control.
//!
//! Everything here is pure: the caller passes the time and the tick's
//! figures (usually the newest [`Sample`](crate::Sample)s of an
//! [`UpstreamSeries`](crate::UpstreamSeries)), and gets decisions back. The
//! proxy calls it from its background tick; the simulator calls the same
//! code in virtual time.
//!
//! * [`HoltWinters`] forecasts the upstream's request rate (level, trend
//!   and, with a season, seasonality) and scores its own error.
//! * [`AnomalyDetector`] reports rate spikes and drops outside the forecast
//!   band, and backends whose latency or error rate departs from their own
//!   history or from their peers, each once.
//! * [`WeightController`] sets effective weights with their [`Reason`]s.
//! * [`Analyzer`] runs the three in order for one upstream.

mod anomaly;
mod forecast;
mod weights;

use std::time::Duration;

use serde::Serialize;
use smartlb_balance::Nanos;

pub use anomaly::{
    Anomaly, AnomalyConfig, AnomalyDetector, AnomalyKind, BackendObservation, Reference,
};
pub use forecast::{ForecastError, HoltWinters, HoltWintersConfig, MAX_SEASON};
pub use weights::{
    BackendInput, Reason, WeightConfig, WeightController, WeightDecision, WeightMode,
};

/// Settings of an [`Analyzer`], mirroring `[upstream.analysis]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AnalyzerConfig {
    /// The tick (`analysis.tick`).
    pub tick: Duration,
    /// The seasonal period (`analysis.season`; `None` for "none").
    pub season: Option<Duration>,
    /// How far ahead a surge is looked for (default 30 s).
    pub horizon: Duration,
    /// Forecasting parameters (the season is set from `season`).
    pub forecast: HoltWintersConfig,
    /// Anomaly thresholds.
    pub anomalies: AnomalyConfig,
    /// Weight control (`max_weight_change`, `mode`, ...).
    pub weights: WeightConfig,
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        AnalyzerConfig {
            tick: Duration::from_secs(1),
            season: None,
            horizon: Duration::from_secs(30),
            forecast: HoltWintersConfig::default(),
            anomalies: AnomalyConfig::default(),
            weights: WeightConfig::default(),
        }
    }
}

impl AnalyzerConfig {
    /// The season in ticks, if any (at most [`MAX_SEASON`]).
    pub fn season_ticks(&self) -> Option<usize> {
        let tick = self.tick.as_nanos().max(1);
        self.season
            .map(|s| (s.as_nanos() / tick).min(MAX_SEASON as u128) as usize)
            .filter(|&m| m > 1)
    }

    /// The surge horizon in ticks (at least 1).
    pub fn horizon_ticks(&self) -> usize {
        let tick = self.tick.as_nanos().max(1);
        ((self.horizon.as_nanos() / tick) as usize).max(1)
    }
}

/// The request-rate forecast after a tick, for the traffic API and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ForecastView {
    /// The rate observed in the tick, requests/s.
    pub actual_rps: f64,
    /// The forecast for the next tick (`null` before any data).
    pub next_rps: Option<f64>,
    /// Lower edge of the band (forecast − 3 RMSE).
    pub lower_rps: Option<f64>,
    /// Upper edge of the band (forecast + 3 RMSE).
    pub upper_rps: Option<f64>,
    /// The forecast at the surge horizon.
    pub horizon_rps: Option<f64>,
    /// How the forecasts have fared.
    pub error: ForecastError,
}

/// What one tick of an [`Analyzer`] decided.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TickReport {
    /// When, in milliseconds of the caller's time base.
    pub at_ms: u64,
    /// The forecast made after the tick.
    pub forecast: ForecastView,
    /// Anomalies that started in this tick (each reported once).
    pub anomalies: Vec<Anomaly>,
    /// Weights, in the order of the inputs.
    pub weights: Vec<WeightDecision>,
}

/// One upstream's analysis: the rate forecast, the anomaly detector and
/// the weight controller, run in that order at every tick.
///
/// ```
/// use smartlb_traffic::analysis::{Analyzer, AnalyzerConfig, BackendInput};
/// use smartlb_traffic::Nanos;
/// let mut analyzer = Analyzer::new(AnalyzerConfig::default());
/// let input = |key, latency_ms| BackendInput {
///     key, configured_weight: 1.0, available: true, slow_start: 1.0,
///     requests: 500, errors: 0, latency_ms: Some(latency_ms), in_flight: 3,
/// };
/// let mut report = None;
/// for t in 1..=60 {
///     let backends = [input("10.0.0.1:80", 5.0), input("10.0.0.2:80", 5.0), input("10.0.0.3:80", 25.0)];
///     report = Some(analyzer.tick(Nanos::from_secs(t), 1000.0, &backends));
/// }
/// let report = report.ok_or("no tick")?;
/// assert!((report.forecast.next_rps.unwrap_or(0.0) - 1000.0).abs() < 1.0);
/// assert!(report.weights[0].weight > report.weights[2].weight);
/// // The slower backend was reported once as departing from its peers.
/// assert_eq!(analyzer.detector().recent().len(), 1);
/// # Ok::<(), &str>(())
/// ```
#[derive(Clone, Debug)]
pub struct Analyzer {
    cfg: AnalyzerConfig,
    forecaster: HoltWinters,
    detector: AnomalyDetector,
    controller: WeightController,
    last: Option<ForecastView>,
}

impl Analyzer {
    /// An analyzer for one upstream.
    pub fn new(cfg: AnalyzerConfig) -> Self {
        let forecast = HoltWintersConfig {
            season: cfg.season_ticks(),
            ..cfg.forecast
        };
        Analyzer {
            cfg,
            forecaster: HoltWinters::new(forecast),
            detector: AnomalyDetector::new(cfg.anomalies),
            controller: WeightController::new(cfg.weights),
            last: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &AnalyzerConfig {
        &self.cfg
    }

    /// The rate forecaster.
    pub fn forecaster(&self) -> &HoltWinters {
        &self.forecaster
    }

    /// The anomaly detector (counts and recent anomalies).
    pub fn detector(&self) -> &AnomalyDetector {
        &self.detector
    }

    /// The weight controller.
    pub fn controller(&self) -> &WeightController {
        &self.controller
    }

    /// Changes enforce/shadow mode from the next tick on.
    pub fn set_mode(&mut self, mode: WeightMode) {
        self.controller.set_mode(mode);
        self.cfg.weights.mode = mode;
    }

    /// The forecast of the last tick.
    pub fn last_forecast(&self) -> Option<&ForecastView> {
        self.last.as_ref()
    }

    /// Runs one tick: `total_rps` is the upstream's request rate in the tick
    /// just closed, `backends` each backend's figures and health.
    pub fn tick(
        &mut self,
        now: Nanos,
        total_rps: f64,
        backends: &[BackendInput<'_>],
    ) -> TickReport {
        // Judge the rate against the forecast made before it was seen.
        let expected = self.forecaster.is_ready().then(|| {
            (
                self.forecaster.forecast(1).unwrap_or(total_rps),
                self.forecaster.error().rmse,
            )
        });
        let mut anomalies: Vec<Anomaly> = self
            .detector
            .observe_rate(now, total_rps, expected)
            .into_iter()
            .collect();
        self.forecaster.observe(total_rps);

        let observations: Vec<BackendObservation<'_>> = backends
            .iter()
            .filter(|b| b.available)
            .map(|b| BackendObservation {
                key: b.key,
                requests: b.requests,
                errors: b.errors,
                latency_ms: b.latency_ms,
            })
            .collect();
        anomalies.extend(self.detector.observe_backends(now, &observations));

        let horizon = self.cfg.horizon_ticks();
        let horizon_rps = self.forecaster.forecast(horizon);
        let surge = match (horizon_rps, self.forecaster.is_ready()) {
            (Some(f), true) if total_rps > 0.0 => Some(f / total_rps),
            _ => None,
        };
        let weights = self.controller.tick(now, backends, surge);
        let band = self.forecaster.band(1, 3.0);
        let view = ForecastView {
            actual_rps: total_rps,
            next_rps: band.map(|b| b.1),
            lower_rps: band.map(|b| b.0.max(0.0)),
            upper_rps: band.map(|b| b.2),
            horizon_rps,
            error: self.forecaster.error(),
        };
        self.last = Some(view);
        TickReport {
            at_ms: now.as_u64() / 1_000_000,
            forecast: view,
            anomalies,
            weights,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_conversions() {
        let c = AnalyzerConfig {
            season: Some(Duration::from_secs(86_400)),
            ..AnalyzerConfig::default()
        };
        assert_eq!(c.season_ticks(), Some(86_400));
        assert_eq!(c.horizon_ticks(), 30);
        let c = AnalyzerConfig {
            tick: Duration::ZERO,
            season: Some(Duration::from_secs(1)),
            horizon: Duration::ZERO,
            ..AnalyzerConfig::default()
        };
        assert_eq!(c.season_ticks(), Some(MAX_SEASON));
        assert_eq!(c.horizon_ticks(), 1);
        assert_eq!(AnalyzerConfig::default().season_ticks(), None);
    }

    #[test]
    fn a_rate_spike_is_reported_once_by_the_analyzer() {
        let mut a = Analyzer::new(AnalyzerConfig::default());
        let input = BackendInput {
            key: "a",
            configured_weight: 1.0,
            available: true,
            slow_start: 1.0,
            requests: 100,
            errors: 0,
            latency_ms: Some(5.0),
            in_flight: 1,
        };
        let mut found = Vec::new();
        for t in 1..=200u64 {
            let rps = if (100..130).contains(&t) {
                400.0
            } else {
                100.0 + (t % 7) as f64
            };
            found.extend(a.tick(Nanos::from_secs(t), rps, &[input]).anomalies);
        }
        let spikes = found
            .iter()
            .filter(|x| x.kind == AnomalyKind::RateSpike)
            .count();
        assert_eq!(spikes, 1, "{found:?}");
        // The clipped forecaster did not learn the spike as the new level.
        let f = a.last_forecast().and_then(|f| f.next_rps).unwrap_or(0.0);
        assert!((f - 103.0).abs() < 10.0, "{f}");
    }
}
