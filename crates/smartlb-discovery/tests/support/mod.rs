//! Servers the integration tests run on loopback.

#![allow(clippy::unwrap_used, dead_code, reason = "test helpers fail loudly")]

pub mod dns;
pub mod etcd;

use std::time::Duration;

/// Waits (at most `limit`) until the watched value satisfies `f`; whether it did.
pub async fn wait_until<T>(
    rx: &mut tokio::sync::watch::Receiver<T>,
    limit: Duration,
    f: impl FnMut(&T) -> bool,
) -> bool {
    matches!(tokio::time::timeout(limit, rx.wait_for(f)).await, Ok(Ok(_)))
}

/// Sends the crate's logs to the test's output (shown when a test fails, or with
/// `--nocapture`).
pub fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "smartlb_discovery=debug".into()),
        )
        .with_test_writer()
        .try_init();
}
