//! Upstreams whose backends come from DNS or etcd (`[upstream.discovery]`).
//!
//! At start-up each such upstream waits (at most [`FIRST_LOAD`]) for its source's first
//! answer and is built from it; then a follower task applies each new answer to the
//! upstream as a diff of its backends, as the admin API would: a new backend enters
//! through slow start (and gets active health checks), a changed weight applies at the
//! next pick, a vanished backend drains and is dropped. A source that fails keeps the
//! last known set (the discovery crate says so in the log). The follower looks the
//! upstream up by name at each answer, so it follows reloads that rebuild it; a reload
//! that changes the discovery table restarts the source.

use std::time::Duration;

use smartlb_config::{Config, DiscoveryConfig};
use smartlb_discovery::DiscoveryHandle;

use crate::error::{BuildError, RunError};
use crate::proxy::Proxy;

/// How long start-up waits for a discovery source's first answer.
const FIRST_LOAD: Duration = Duration::from_secs(10);

/// Starts the discovery sources of `config`, waits for their first answers, and returns
/// the configuration with those backends filled in, plus the running sources.
pub(crate) async fn resolve(
    config: &Config,
) -> Result<(Config, Vec<(String, DiscoveryHandle)>), RunError> {
    let mut config = config.clone();
    let mut sources = Vec::new();
    for upstream in &mut config.upstreams {
        if matches!(upstream.discovery, DiscoveryConfig::Static) {
            continue;
        }
        let build = |source| {
            RunError::Build(BuildError::Discovery {
                upstream: upstream.name.clone(),
                source,
            })
        };
        let mut handle = smartlb_discovery::start(upstream).map_err(build)?;
        let first = match tokio::time::timeout(FIRST_LOAD, handle.ready()).await {
            Ok(Ok(backends)) => backends,
            Ok(Err(error)) => return Err(build(error)),
            Err(_) => {
                let why = handle
                    .status()
                    .last_error
                    .unwrap_or_else(|| "no answer".into());
                return Err(RunError::Build(BuildError::Invalid {
                    upstream: upstream.name.clone(),
                    reason: format!("discovery gave no backends within {FIRST_LOAD:?}: {why}"),
                }));
            }
        };
        if first.is_empty() {
            tracing::warn!(upstream = %upstream.name, "discovery found no backend yet; the upstream answers 503 until it does");
        }
        upstream.backends = first.to_vec();
        upstream.discovery = DiscoveryConfig::Static;
        sources.push((upstream.name.clone(), handle));
    }
    Ok((config, sources))
}

/// Follows each source (see [`follow_one`]) until the proxy stops.
pub(crate) fn follow(proxy: &Proxy, sources: Vec<(String, DiscoveryHandle)>) {
    for (name, handle) in sources {
        proxy.hooks().follow(proxy, &name, handle);
    }
}

/// A task that applies every answer of `handle` to the upstream named `name` (as it is at
/// that moment: a reload may have rebuilt it) as a diff of its backends: a new backend
/// enters through slow start, a changed weight applies at the next pick, a vanished
/// backend drains and is dropped. An empty answer is applied too (the source is
/// authoritative); a failing source keeps its last known set. The task ends when the
/// source stops.
pub(crate) fn spawn_follower(
    proxy: Proxy,
    name: String,
    handle: DiscoveryHandle,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sets = handle.subscribe();
        let mut status = handle.subscribe_status();
        // The first answer: wait for the source to load (a restarted source has not).
        if status.wait_for(|s| s.loaded).await.is_err() {
            return;
        }
        loop {
            let backends = sets.borrow_and_update().clone();
            match proxy.upstream(&name) {
                Some(upstream) => {
                    for change in crate::reload::apply_backends(&upstream, &backends) {
                        tracing::info!(upstream = %name, source = handle.kind(), "discovery: {change}");
                    }
                }
                None => return,
            }
            if sets.changed().await.is_err() {
                return;
            }
        }
    })
}
