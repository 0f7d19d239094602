//! Reloading the configuration while serving (SIGHUP, `POST /api/v1/reload`).
//!
//! The file is validated first: an invalid file is refused with its errors, logged and
//! counted (`smartlb_config_reloads_total{result="failure"}`), and the running
//! configuration keeps serving. A valid file is applied as a diff of each upstream's
//! backends: unchanged backends keep their pools, health state and statistics; new ones
//! enter through slow start; removed ones drain (no new requests, in-flight requests
//! finish) and are then dropped; changed weights apply at the next pick. Changes this
//! version cannot apply in place (listeners, routes, upstreams added or removed, an
//! upstream's algorithm or health settings) are reported as needing a restart.

use std::path::{Path, PathBuf};

use smartlb_admin::metrics::{ReloadResult, config_reload};
use smartlb_config::{BackendConfig, Config};
use smartlb_discovery::Change;

use crate::proxy::Proxy;

/// How long a backend removed by a reload may take to finish its in-flight requests.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The proxy was not started from a file.
    #[error("the proxy was not started from a configuration file")]
    NoSource,
    /// The new file is invalid; the running configuration keeps serving.
    #[error("the new configuration is invalid; keeping the running one:\n{0}")]
    Invalid(smartlb_config::ConfigErrors),
}

impl Proxy {
    /// Reloads from the file the proxy was started from (see [`Proxy::set_config_source`]),
    /// returning what changed.
    ///
    /// # Errors
    ///
    /// No source file, or the file is invalid (nothing is changed then).
    pub fn reload(&self) -> Result<Vec<String>, ReloadError> {
        let Some(path) = self.config_source() else {
            return Err(ReloadError::NoSource);
        };
        self.reload_from_file(&path)
    }

    /// Validates `path` and applies it.
    ///
    /// # Errors
    ///
    /// The file is invalid: the errors are returned, logged and counted, and the running
    /// configuration is kept.
    pub fn reload_from_file(&self, path: &Path) -> Result<Vec<String>, ReloadError> {
        match smartlb_config::load_file(path) {
            Ok(config) => {
                let changes = self.apply(&config);
                config_reload(ReloadResult::Success);
                self.record_version(&path.display().to_string(), None, true);
                tracing::info!(file = %path.display(), changes = changes.len(), "configuration reloaded");
                for change in &changes {
                    tracing::info!(file = %path.display(), "reload: {change}");
                }
                Ok(changes)
            }
            Err(errors) => {
                config_reload(ReloadResult::Failure);
                self.record_version(&path.display().to_string(), None, false);
                tracing::error!(file = %path.display(), "configuration reload refused, keeping the running one:\n{errors}");
                Err(ReloadError::Invalid(errors))
            }
        }
    }

    /// Applies a validated configuration as a diff; returns a line per change, including
    /// those that need a restart.
    pub fn apply(&self, config: &Config) -> Vec<String> {
        let mut changes = Vec::new();
        for new in &config.upstreams {
            let Some(upstream) = self.upstream(&new.name) else {
                changes.push(format!("upstream `{}` is new: needs a restart", new.name));
                continue;
            };
            let set = upstream.endpoints();
            if set.algorithm().as_str() != new.algorithm.as_str() {
                changes.push(format!(
                    "upstream `{}`: algorithm {} -> {} needs a restart",
                    new.name,
                    set.algorithm().as_str(),
                    new.algorithm.as_str()
                ));
            }
            let old: Vec<BackendConfig> = set
                .endpoints()
                .iter()
                .filter(|e| !e.health().is_draining())
                .filter_map(|e| {
                    let mut b = BackendConfig::new(e.address().parse().ok()?);
                    b.weight = e.configured_weight();
                    b.backup = e.is_backup();
                    Some(b)
                })
                .collect();
            for change in smartlb_discovery::diff(&old, &new.backends) {
                match change {
                    Change::Insert(backend) => match upstream.add_backend(&backend) {
                        Ok(()) => changes.push(format!(
                            "upstream `{}`: added {}",
                            new.name, backend.address
                        )),
                        Err(error) => changes.push(format!("upstream `{}`: {error}", new.name)),
                    },
                    Change::Update(backend) => {
                        let address = backend.address.to_string();
                        upstream.set_weight(&address, backend.weight);
                        changes.push(format!(
                            "upstream `{}`: {address} weight {}",
                            new.name, backend.weight
                        ));
                    }
                    Change::Remove(address) => {
                        let address = address.to_string();
                        if upstream.remove_backend(&address, DRAIN_GRACE) {
                            changes.push(format!(
                                "upstream `{}`: draining and removing {address}",
                                new.name
                            ));
                        }
                    }
                }
            }
        }
        for old in self.upstreams() {
            if !config.upstreams.iter().any(|u| u.name == old.name()) {
                changes.push(format!(
                    "upstream `{}` was removed: needs a restart",
                    old.name()
                ));
            }
        }
        changes
    }
}

/// Reloads on every SIGHUP until the process ends (Unix only).
pub(crate) fn spawn_sighup(proxy: Proxy) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading the configuration");
                        let _ = proxy.reload();
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; reload through the admin API")
            }
        }
    }
    #[cfg(not(unix))]
    let _ = proxy;
}

/// The path a proxy reloads from.
pub(crate) type Source = std::sync::OnceLock<PathBuf>;

/// Runs the proxy whose whole configuration is the etcd key of `url`
/// (`etcd://HOST:PORT/KEY`) until `signal` resolves. Each new version of the key is
/// validated and applied like a reload, or refused (and the running one kept); the
/// status API reports the revision applied last.
///
/// # Errors
///
/// The URL is not an etcd key, no version arrives within 10 s, the first version is
/// invalid, or see [`crate::start`].
pub async fn run_etcd(
    url: &str,
    signal: impl std::future::Future<Output = ()>,
) -> Result<(), EtcdConfigError> {
    let key: smartlb_discovery::EtcdConfigKey = url
        .parse()
        .map_err(|e: smartlb_discovery::DiscoveryError| EtcdConfigError::Source(e.to_string()))?;
    let mut watch = smartlb_discovery::watch_config_key(&key)
        .map_err(|e| EtcdConfigError::Source(e.to_string()))?;
    let first =
        match tokio::time::timeout(std::time::Duration::from_secs(10), watch.changed()).await {
            Ok(Some(doc)) => doc,
            _ => {
                let why = watch
                    .status()
                    .last_error
                    .unwrap_or_else(|| "no answer".into());
                return Err(EtcdConfigError::Source(format!(
                    "no configuration at {url} within 10s: {why}"
                )));
            }
        };
    let env = |name: &str| std::env::var(name).ok();
    let config =
        smartlb_config::parse_str(&first.text, url, &env).map_err(EtcdConfigError::Invalid)?;
    let running = crate::start(&config).await.map_err(EtcdConfigError::Run)?;
    let proxy = running.proxy().clone();
    proxy.record_version(url, Some(first.revision), true);
    tracing::info!(
        source = url,
        revision = first.revision,
        "configuration loaded from etcd"
    );
    let source = url.to_string();
    let follower = tokio::spawn(async move {
        while let Some(doc) = watch.changed().await {
            match smartlb_config::parse_str(&doc.text, &source, &env) {
                Ok(config) => {
                    let changes = proxy.apply(&config);
                    config_reload(ReloadResult::Success);
                    proxy.record_version(&source, Some(doc.revision), true);
                    tracing::info!(%source, revision = doc.revision, changes = changes.len(), "configuration version applied");
                    for change in &changes {
                        tracing::info!(%source, "reload: {change}");
                    }
                }
                Err(errors) => {
                    config_reload(ReloadResult::Failure);
                    proxy.record_version(&source, Some(doc.revision), false);
                    tracing::error!(%source, revision = doc.revision, "configuration version refused, keeping the running one:\n{errors}");
                }
            }
        }
    });
    let result = running.run_until(signal).await;
    follower.abort();
    result.map_err(EtcdConfigError::Run)
}

/// Why `smartlb run --config etcd://...` could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdConfigError {
    /// The key could not be read.
    #[error("{0}")]
    Source(String),
    /// The first version is invalid.
    #[error("the configuration in etcd is invalid:\n{0}")]
    Invalid(smartlb_config::ConfigErrors),
    /// The proxy could not run.
    #[error("the configuration cannot be served")]
    Run(#[source] crate::RunError),
}
