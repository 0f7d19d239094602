//! From the configuration's health tables to the health crate's options.

use std::time::Duration;

use smartlb_config::UpstreamConfig;
use smartlb_health::{
    ActiveThresholds, CheckConfig, HealthConfig, OutlierConfig, SlowStartConfig, StatusRange,
};

/// The health state machine's options for an upstream: active-check thresholds when
/// `[upstream.health]` is present, outlier detection, slow start.
pub(crate) fn options(config: &UpstreamConfig) -> HealthConfig {
    HealthConfig {
        active: config.health.as_ref().map(|h| ActiveThresholds {
            healthy_threshold: h.healthy_threshold,
            unhealthy_threshold: h.unhealthy_threshold,
        }),
        outlier: Some(OutlierConfig {
            consecutive_failures: config.outlier.consecutive_failures,
            base_ejection_time: config.outlier.base_ejection_time,
            max_ejection_time: config.outlier.max_ejection_time,
            max_ejection_percent: config.outlier.max_ejection_percent,
        }),
        slow_start: (config.slow_start.duration > Duration::ZERO)
            .then(|| SlowStartConfig::linear(config.slow_start.duration)),
    }
}

/// The active checker's options, when `[upstream.health]` is present.
pub(crate) fn check_options(config: &UpstreamConfig) -> Option<CheckConfig> {
    let h = config.health.as_ref()?;
    Some(CheckConfig {
        path: h.path.clone(),
        interval: h.interval,
        timeout: h.timeout,
        expect_status: StatusRange::new(h.expect_status.min, h.expect_status.max)
            .unwrap_or_default(),
        grpc: (h.kind == smartlb_config::HealthCheckKind::Grpc).then(|| h.grpc_service.clone()),
        ..CheckConfig::default()
    })
}

/// The traffic analyser for an upstream's `[upstream.analysis]` table.
pub(crate) fn analyzer(config: &UpstreamConfig) -> smartlb_traffic::analysis::Analyzer {
    use smartlb_traffic::analysis::{AnalyzerConfig, WeightMode};
    let mut cfg = AnalyzerConfig {
        tick: config.analysis.tick,
        season: config.analysis.season,
        ..AnalyzerConfig::default()
    };
    // A proxy sees a backend turn slow within seconds of start-up: judge after a few
    // ticks of history, and judge backends that finished only a handful of requests
    // (a penalised backend keeps only its probing share).
    cfg.anomalies.warmup_ticks = 5;
    cfg.anomalies.min_requests = 1;
    cfg.weights.max_weight_change = config.analysis.max_weight_change;
    cfg.weights.mode = match config.analysis.mode {
        smartlb_config::AnalysisMode::Enforce => WeightMode::Enforce,
        smartlb_config::AnalysisMode::Shadow => WeightMode::Shadow,
    };
    smartlb_traffic::analysis::Analyzer::new(cfg)
}
