//! Upstreams whose backends come from DNS or etcd (`[upstream.discovery]`).
//!
//! At start-up each such upstream waits (at most [`FIRST_LOAD`]) for its source's first
//! answer and is built from it; then a task follows the source and applies each change
//! as the admin API would: a new backend enters through slow start, a changed weight
//! applies at the next pick, a vanished backend drains and is dropped. A source that
//! fails keeps the last known set (the discovery crate says so in the log).

use std::time::Duration;

use smartlb_config::{Config, DiscoveryConfig};
use smartlb_discovery::{Change, DiscoveryHandle};

use crate::error::{BuildError, RunError};
use crate::proxy::Proxy;

/// How long start-up waits for a discovery source's first answer.
const FIRST_LOAD: Duration = Duration::from_secs(10);
/// How long a backend that vanished from its source may take to finish its requests.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

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

/// Follows each source, applying its changes to `proxy`, until the returned tasks are
/// aborted (at shutdown).
pub(crate) fn follow(
    proxy: &Proxy,
    sources: Vec<(String, DiscoveryHandle)>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for (name, mut handle) in sources {
        let Some(upstream) = proxy.upstream(&name).cloned() else {
            continue;
        };
        tasks.push(tokio::spawn(async move {
            while let Some(changes) = handle.changed().await {
                for change in changes {
                    match change {
                        Change::Insert(backend) => {
                            if let Err(error) = upstream.add_backend(&backend) {
                                tracing::warn!(upstream = %name, %error, "discovered backend not added");
                            }
                        }
                        Change::Update(backend) => {
                            upstream.set_weight(&backend.address.to_string(), backend.weight);
                        }
                        Change::Remove(address) => {
                            upstream.remove_backend(&address.to_string(), DRAIN_GRACE);
                        }
                    }
                }
            }
        }));
    }
    tasks
}
