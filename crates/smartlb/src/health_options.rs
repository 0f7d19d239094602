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
        ..CheckConfig::default()
    })
}
