//! The tokio runtime and process signals, as the binary uses them.

/// Builds the runtime for `workers` threads: one thread runs a current-thread runtime (no
/// work stealing, the cheapest per request); `0` means one worker per core.
///
/// # Errors
///
/// The operating system refused the threads or the I/O driver.
pub fn build(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if workers > 1 {
            builder.worker_threads(workers);
        }
        builder.enable_all().build()
    }
}

/// Resolves on the first SIGINT or SIGTERM (Ctrl-C only, where those do not exist).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                }
                return;
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::warn!(%error, "cannot listen for signals; only Ctrl-C stops the proxy");
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
