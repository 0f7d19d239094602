//! Holt-Winters forecasting of a per-tick series, with its error tracked.

use serde::Serialize;

use crate::ewma::Ewma;

/// Longest season accepted, in ticks (a million: 11.5 days at one tick per
/// second), so that a season's memory stays bounded.
pub const MAX_SEASON: usize = 1_000_000;

/// Smoothing parameters of [`HoltWinters`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct HoltWintersConfig {
    /// Weight of a new observation in the level, in `(0, 1]`.
    pub alpha: f64,
    /// Weight of a new level change in the trend, in `[0, 1]`.
    pub beta: f64,
    /// Weight of a new observation in its seasonal index, in `[0, 1]`.
    pub gamma: f64,
    /// Season length in ticks (`None`: level and trend only).
    pub season: Option<usize>,
    /// Residuals beyond this many standard deviations are clipped before they
    /// update the state (the robust Holt-Winters of Gelper, Fried and Croux,
    /// 2010): a spike is reported as an anomaly instead of being learnt as
    /// the new normal within a few ticks. `None` turns clipping off.
    pub clip_sigmas: Option<f64>,
}

impl Default for HoltWintersConfig {
    /// `alpha` 0.2, `beta` 0.01, `gamma` 0.2, no season, clipping at 4σ.
    fn default() -> Self {
        HoltWintersConfig {
            alpha: 0.2,
            beta: 0.01,
            gamma: 0.2,
            season: None,
            clip_sigmas: Some(4.0),
        }
    }
}

impl HoltWintersConfig {
    /// The default parameters with a season of `ticks` ticks (0 means none).
    pub fn with_season(ticks: usize) -> Self {
        HoltWintersConfig {
            season: (ticks > 0).then_some(ticks),
            ..HoltWintersConfig::default()
        }
    }

    /// The same parameters, each forced into its valid range: NaN becomes the
    /// default, a season longer than [`MAX_SEASON`] is cut to it, a season of
    /// 1 or less is none.
    pub fn sanitised(self) -> Self {
        let d = HoltWintersConfig::default();
        let unit = |x: f64, lo: f64, default: f64| {
            if x.is_nan() {
                default
            } else {
                x.clamp(lo, 1.0)
            }
        };
        HoltWintersConfig {
            alpha: unit(self.alpha, 1e-4, d.alpha),
            beta: unit(self.beta, 0.0, d.beta),
            gamma: unit(self.gamma, 0.0, d.gamma),
            season: self.season.filter(|&m| m > 1).map(|m| m.min(MAX_SEASON)),
            clip_sigmas: self.clip_sigmas.filter(|c| c.is_finite() && *c > 0.0),
        }
    }
}

/// How far the one-step forecasts were from what happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ForecastError {
    /// One-step forecasts scored so far.
    pub samples: u64,
    /// Mean absolute error over all scored forecasts.
    pub mae: f64,
    /// Mean absolute percentage error (0.05 = 5 %) over the scored forecasts
    /// whose actual value was not 0.
    pub mape: f64,
    /// Recent root mean square error (exponentially weighted, half-life of
    /// 60 forecasts): the width unit of the forecast band.
    pub rmse: f64,
    /// Recent mean error, actual minus forecast (positive: under-forecasting).
    pub bias: f64,
}

/// Additive Holt-Winters exponential smoothing (Holt 1957, Winters 1960):
/// a level, a trend and, when a season is set, one seasonal index per
/// position in the season, updated once per tick.
///
/// ```text
/// forecast(h) = level + h·trend + seasonal[t + h]
/// level'      = α(x − seasonal[t]) + (1 − α)(level + trend)
/// trend'      = β(level' − level) + (1 − β)·trend
/// seasonal[t] = γ(x − level') + (1 − γ)·seasonal[t]
/// ```
///
/// With a season of `m` ticks the first `m` observations initialise it
/// (level = their mean, seasonal indices = deviations from it); until then
/// the forecast is their running mean. Every one-step forecast is scored
/// against the observation that follows ([`error`](HoltWinters::error)),
/// which gives the band used for anomaly detection. Memory is one `f64` per
/// tick of the season.
///
/// ```
/// use smartlb_traffic::analysis::{HoltWinters, HoltWintersConfig};
/// let mut hw = HoltWinters::new(HoltWintersConfig::default());
/// for t in 0..200 {
///     hw.observe(100.0 + t as f64); // a steady ramp
/// }
/// let next = hw.forecast(1).unwrap_or(0.0);
/// assert!((next - 300.0).abs() < 5.0, "{next}");
/// ```
#[derive(Clone, Debug)]
pub struct HoltWinters {
    cfg: HoltWintersConfig,
    level: f64,
    trend: f64,
    seasonal: Vec<f64>,
    /// Position in the season of the next observation.
    pos: usize,
    observed: u64,
    ready: bool,
    residuals: Ewma,
    abs_sum: f64,
    pct_sum: f64,
    pct_count: u64,
    scored: u64,
}

impl HoltWinters {
    /// A forecaster with the given (sanitised) parameters.
    pub fn new(cfg: HoltWintersConfig) -> Self {
        let cfg = cfg.sanitised();
        HoltWinters {
            cfg,
            level: 0.0,
            trend: 0.0,
            seasonal: Vec::with_capacity(cfg.season.unwrap_or(0).min(4096)),
            pos: 0,
            observed: 0,
            ready: false,
            residuals: Ewma::with_half_life(60.0),
            abs_sum: 0.0,
            pct_sum: 0.0,
            pct_count: 0,
            scored: 0,
        }
    }

    /// The parameters in use.
    pub fn config(&self) -> HoltWintersConfig {
        self.cfg
    }

    /// Observations taken.
    pub fn observed(&self) -> u64 {
        self.observed
    }

    /// Whether the state is initialised (one full season seen, or two
    /// observations without a season): forecasts are scored from then on.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Takes the next observation (non-finite values are ignored). Returns
    /// the one-step forecast it was scored against, if the model was ready.
    pub fn observe(&mut self, x: f64) -> Option<f64> {
        if !x.is_finite() {
            return None;
        }
        self.observed = self.observed.saturating_add(1);
        if !self.ready {
            self.initialise(x);
            return None;
        }
        let predicted = self.forecast(1).unwrap_or(x);
        let residual = x - predicted;
        // Robust update: clip the residual before it moves the state or the
        // error scale (so one spike widens the band only a little).
        let sigma = self.error().rmse;
        let clipped = match self.cfg.clip_sigmas {
            Some(c) if sigma > 0.0 && self.scored > 10 => residual.clamp(-c * sigma, c * sigma),
            _ => residual,
        };
        self.score(x, residual, clipped);
        let used = predicted + clipped;
        let HoltWintersConfig {
            alpha, beta, gamma, ..
        } = self.cfg;
        let season = self.seasonal.get(self.pos).copied().unwrap_or(0.0);
        let level = alpha * (used - season) + (1.0 - alpha) * (self.level + self.trend);
        self.trend = beta * (level - self.level) + (1.0 - beta) * self.trend;
        self.level = level;
        if let Some(s) = self.seasonal.get_mut(self.pos) {
            *s = gamma * (used - level) + (1.0 - gamma) * *s;
        }
        self.advance();
        Some(predicted)
    }

    fn initialise(&mut self, x: f64) {
        match self.cfg.season {
            Some(m) => {
                // Collect the first season; the level is its running mean.
                self.seasonal.push(x);
                let n = self.seasonal.len() as f64;
                self.level += (x - self.level) / n;
                if self.seasonal.len() >= m {
                    let mean = self.level;
                    self.seasonal.iter_mut().for_each(|s| *s -= mean);
                    self.trend = 0.0;
                    self.pos = 0;
                    self.ready = true;
                }
            }
            None => {
                // The trend starts at 0: a trend taken from two noisy
                // observations would bias every forecast for a long time.
                if self.observed == 1 {
                    self.level = x;
                } else {
                    self.level += (x - self.level) / 2.0;
                    self.ready = true;
                }
            }
        }
    }

    fn advance(&mut self) {
        if let Some(m) = self.cfg.season {
            self.pos = (self.pos + 1) % m;
        }
    }

    fn score(&mut self, actual: f64, residual: f64, clipped: f64) {
        self.scored = self.scored.saturating_add(1);
        self.residuals.update(clipped);
        self.abs_sum += residual.abs();
        if actual != 0.0 {
            self.pct_sum += (residual / actual).abs();
            self.pct_count += 1;
        }
    }

    /// The forecast `h ≥ 1` ticks after the last observation (`h = 0` counts
    /// as 1); `None` before the first observation.
    pub fn forecast(&self, h: usize) -> Option<f64> {
        if self.observed == 0 {
            return None;
        }
        if !self.ready {
            return Some(self.level);
        }
        let h = h.max(1);
        let season = match self.cfg.season {
            Some(m) if !self.seasonal.is_empty() => self
                .seasonal
                .get((self.pos + h - 1) % m)
                .copied()
                .unwrap_or(0.0),
            _ => 0.0,
        };
        Some(self.level + h as f64 * self.trend + season)
    }

    /// The forecast `h` ticks ahead and a band of `k` recent RMSEs around
    /// it, as `(lower, forecast, upper)`.
    pub fn band(&self, h: usize, k: f64) -> Option<(f64, f64, f64)> {
        let f = self.forecast(h)?;
        let w = k * self.error().rmse;
        Some((f - w, f, f + w))
    }

    /// The current level (the de-seasonalised smoothed value).
    pub fn level(&self) -> f64 {
        self.level
    }

    /// The current trend, per tick.
    pub fn trend(&self) -> f64 {
        self.trend
    }

    /// How the one-step forecasts have fared so far.
    pub fn error(&self) -> ForecastError {
        let n = self.scored;
        let mean = self.residuals.mean();
        ForecastError {
            samples: n,
            mae: if n > 0 { self.abs_sum / n as f64 } else { 0.0 },
            mape: if self.pct_count > 0 {
                self.pct_sum / self.pct_count as f64
            } else {
                0.0
            },
            rmse: (self.residuals.variance() + mean * mean).sqrt(),
            bias: mean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator for noise in tests.
    fn noise(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((*state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    #[test]
    fn seasonal_series_is_forecast_within_a_few_percent() {
        // Season of 48 ticks, ±300 around 1000 with a slow upward trend and
        // ±20 of noise; ten seasons of history.
        let m = 48;
        let value = |t: usize, rng: &mut u64| {
            let phase = 2.0 * std::f64::consts::PI * (t % m) as f64 / m as f64;
            1000.0 + 0.5 * t as f64 + 300.0 * phase.sin() + 20.0 * noise(rng)
        };
        let mut rng = 7;
        let mut hw = HoltWinters::new(HoltWintersConfig::with_season(m));
        for t in 0..10 * m {
            hw.observe(value(t, &mut rng));
        }
        assert!(hw.is_ready());
        // Forecast the next season without observing it, against the
        // noise-free curve.
        let mut worst = 0.0f64;
        for h in 1..=m {
            let t = 10 * m + h - 1;
            let phase = 2.0 * std::f64::consts::PI * (t % m) as f64 / m as f64;
            let expected = 1000.0 + 0.5 * t as f64 + 300.0 * phase.sin();
            let f = hw.forecast(h).unwrap();
            worst = worst.max((f - expected).abs() / expected);
        }
        assert!(worst < 0.05, "worst relative error {worst}");
        // One-step forecasts over the history were scored.
        let e = hw.error();
        assert_eq!(e.samples, (9 * m) as u64);
        assert!(e.mape < 0.05, "{e:?}");
        assert!(e.rmse > 0.0);
    }

    #[test]
    fn without_season_follows_level_and_trend() {
        let mut hw = HoltWinters::new(HoltWintersConfig::default());
        assert_eq!(hw.forecast(1), None);
        hw.observe(10.0);
        assert_eq!(hw.forecast(3), Some(10.0));
        assert!(!hw.is_ready());
        for t in 1..1000 {
            hw.observe(10.0 + 2.0 * t as f64);
        }
        let f = hw.forecast(10).unwrap();
        let expected = 10.0 + 2.0 * 1009.0;
        assert!((f - expected).abs() < 2.0, "{f} vs {expected}");
        assert!((hw.trend() - 2.0).abs() < 0.05);
        let (lo, mid, hi) = hw.band(1, 3.0).unwrap();
        assert!(lo <= mid && mid <= hi);
    }

    #[test]
    fn a_spike_is_clipped_not_learnt() {
        let mut hw = HoltWinters::new(HoltWintersConfig::default());
        let mut rng = 3;
        for _ in 0..200 {
            hw.observe(100.0 + 3.0 * noise(&mut rng));
        }
        for _ in 0..3 {
            hw.observe(1000.0);
        }
        let f = hw.forecast(1).unwrap();
        assert!(f < 130.0, "level jumped to {f}");
        // Without clipping the level follows the spike.
        let mut plain = HoltWinters::new(HoltWintersConfig {
            clip_sigmas: None,
            ..HoltWintersConfig::default()
        });
        for _ in 0..200 {
            plain.observe(100.0);
        }
        for _ in 0..3 {
            plain.observe(1000.0);
        }
        assert!(plain.forecast(1).unwrap() > 400.0);
    }

    #[test]
    fn bad_input_and_parameters() {
        let cfg = HoltWintersConfig {
            alpha: f64::NAN,
            beta: 7.0,
            gamma: -1.0,
            season: Some(1),
            clip_sigmas: Some(f64::INFINITY),
        }
        .sanitised();
        assert_eq!(cfg.alpha, 0.2);
        assert_eq!(cfg.beta, 1.0);
        assert_eq!(cfg.gamma, 0.0);
        assert_eq!(cfg.season, None);
        assert_eq!(cfg.clip_sigmas, None);
        assert_eq!(
            HoltWintersConfig::with_season(usize::MAX)
                .sanitised()
                .season,
            Some(MAX_SEASON)
        );
        assert_eq!(HoltWintersConfig::with_season(0).season, None);
        let mut hw = HoltWinters::new(cfg);
        assert_eq!(hw.observe(f64::NAN), None);
        assert_eq!(hw.observed(), 0);
    }
}
