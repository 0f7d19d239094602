//! Logging set-up from the `[log]` table.

use smartlb_config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber: `RUST_LOG` when set, else `log.level`; text or
/// JSON lines on standard error. Access-log lines use the target `smartlb::access`.
///
/// # Errors
///
/// `RUST_LOG` does not parse, or a subscriber was already installed.
pub fn init(config: &LogConfig) -> Result<(), LogError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => {
            EnvFilter::try_new(&value).map_err(|e| LogError(format!("RUST_LOG: {e}")))?
        }
        _ => EnvFilter::try_new(config.level.as_str())
            .map_err(|e| LogError(format!("log.level: {e}")))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| LogError(e.to_string()))
}

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up logging: {0}")]
pub struct LogError(String);
