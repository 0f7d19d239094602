//! Reloading the configuration while serving: SIGHUP, a change of the file (see
//! [`crate::run_file`]), or `POST /api/v1/reload`.
//!
//! The file is validated first: an invalid file is refused with its errors, logged and
//! counted (`smartlb_config_reloads_total{result="failure"}`), and the running
//! configuration keeps serving. A valid file is applied in place, as a diff against what
//! runs, and every change is logged and returned as one line:
//!
//! - **backends** of an upstream: unchanged ones keep their connection pools, health
//!   state, statistics and traffic history; new ones enter through slow start (and get
//!   active health checks within a quarter of a second); removed ones drain (no new
//!   requests, in-flight requests finish, at most 30 s) and are then dropped; a changed
//!   weight applies at the next pick;
//! - **upstream settings** (`algorithm`, `hash_key`, `connect_timeout`, `[health]`,
//!   `[outlier]`, `[retry]`, `[slow_start]`, `[analysis]`): the upstream is rebuilt around
//!   the same backend objects (see `Upstream::reconfigured`); health thresholds apply to
//!   each backend's state in place, active checkers restart with the new settings, and a
//!   new connect or request timeout opens new connections for the backends;
//! - **upstreams** added (built and checked at once) or removed (their in-flight
//!   requests finish), and **routes** (host, path, split): the routing table and the
//!   upstreams are swapped together in one atomic store, so a request sees either the old
//!   table or the new one, never a mix;
//! - **`[upstream.discovery]`** changed: the upstream's source is restarted and its first
//!   answer applied as a diff;
//! - **`[server]`**: new `listen` addresses are bound and served, removed ones stop
//!   accepting while their accepted connections finish (up to `shutdown_grace`), unchanged
//!   ones are not touched; new timeouts and limits apply to connections accepted from
//!   then on (the listening sockets are handed to a new accept loop, the old one lets its
//!   connections finish); `[server.tls]` certificates are read again on every reload and
//!   serve new connections (a certificate that does not load is reported and the current
//!   one kept), and adding or removing the table moves the listeners to or from TLS the
//!   same way;
//! - what cannot change while running is reported as needing a restart and otherwise
//!   ignored: `server.workers` (the runtime's threads), the `[admin]` table,
//!   `log.level` and `log.format` (`log.access_log` applies at once).
//!
//! Reloads are serialised: two at once apply one after the other.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use smartlb_admin::metrics::{ReloadResult, config_reload};
use smartlb_config::{BackendConfig, Config, DiscoveryConfig, UpstreamConfig};
use smartlb_discovery::Change;
use tokio::task::JoinHandle;

use crate::proxy::Proxy;
use crate::router::{Router, Table};
use crate::upstream::Upstream;

/// How long a backend removed by a reload may take to finish its in-flight requests.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

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

/// What reloads share, kept in the proxy.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    /// Serialises reloads.
    lock: Mutex<()>,
    /// The configuration applied last (as written: discovery tables not resolved).
    config: Mutex<Option<Config>>,
    /// Woken when the set of upstreams changed (the background tasks follow).
    pub(crate) changed: tokio::sync::Notify,
    /// The listeners of the server, when the proxy is served by [`crate::start`].
    server: OnceLock<Weak<crate::server::Listeners>>,
    /// The discovery followers, by upstream name.
    followers: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl Hooks {
    pub(crate) fn set_config(&self, config: Config) {
        *self.config.lock().unwrap_or_else(PoisonError::into_inner) = Some(config);
    }

    fn config(&self) -> Option<Config> {
        self.config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_server(&self, listeners: Weak<crate::server::Listeners>) {
        let _ = self.server.set(listeners);
    }

    /// Starts following `handle` for `upstream`, replacing (stopping) the follower it had.
    pub(crate) fn follow(
        &self,
        proxy: &Proxy,
        upstream: &str,
        handle: smartlb_discovery::DiscoveryHandle,
    ) {
        let task = crate::discovery::spawn_follower(proxy.clone(), upstream.to_string(), handle);
        let old = self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(upstream.to_string(), task);
        if let Some(old) = old {
            old.abort();
        }
    }

    /// Stops the follower of `upstream`, if it has one.
    fn unfollow(&self, upstream: &str) {
        if let Some(task) = self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(upstream)
        {
            task.abort();
        }
    }

    /// Stops every follower (at shutdown).
    pub(crate) fn stop_followers(&self) {
        for (_, task) in self
            .followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            task.abort();
        }
    }
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

    /// Applies a validated configuration in place (see the module documentation); returns
    /// a line per change, including those that need a restart.
    ///
    /// Call it within a tokio runtime: draining, new listeners and discovery sources run
    /// as tasks.
    pub fn apply(&self, config: &Config) -> Vec<String> {
        let hooks = self.hooks();
        let _serial = hooks.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = hooks.config();
        let mut changes = Vec::new();
        if let Some(previous) = &previous {
            restart_only(previous, config, &mut changes);
        }
        if self.set_access_log(config.log.access_log) != config.log.access_log {
            changes.push(format!(
                "access log {}",
                if config.log.access_log { "on" } else { "off" }
            ));
        }
        let request_timeout_changed = previous
            .as_ref()
            .is_some_and(|p| p.server.request_timeout != config.server.request_timeout);
        let table = self.routes().table();
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        let mut backend_work = Vec::new();
        let mut sources = Vec::new();
        for new in &config.upstreams {
            let name = &new.name;
            let Some(old) = table.upstreams.iter().find(|u| u.name() == name) else {
                match build_new(new, config.server.request_timeout) {
                    Ok(upstream) => {
                        changes.push(format!("upstream `{name}` added"));
                        if !matches!(new.discovery, DiscoveryConfig::Static) {
                            sources.push(new.clone());
                        }
                        upstreams.push(upstream);
                    }
                    Err(error) => changes.push(format!(
                        "upstream `{name}` not added: {}",
                        crate::error_chain(&error)
                    )),
                }
                continue;
            };
            let mut what = settings_changed(old.config(), new);
            if request_timeout_changed {
                what.push("server.request_timeout");
            }
            let upstream = if what.is_empty() {
                old.clone()
            } else {
                match old.reconfigured(new, config.server.request_timeout) {
                    Ok(upstream) => {
                        changes.push(format!("upstream `{name}`: {} changed", what.join(", ")));
                        upstream
                    }
                    Err(error) => {
                        changes.push(format!(
                            "upstream `{name}`: settings not applied: {}",
                            crate::error_chain(&error)
                        ));
                        old.clone()
                    }
                }
            };
            let old_discovery = previous
                .as_ref()
                .and_then(|p| p.upstream(name))
                .map_or(&old.config().discovery, |u| &u.discovery);
            if *old_discovery != new.discovery {
                if matches!(new.discovery, DiscoveryConfig::Static) {
                    changes.push(format!(
                        "upstream `{name}`: discovery stopped, backends from the file"
                    ));
                    hooks.unfollow(name);
                    backend_work.push((upstream.clone(), new.backends.clone()));
                } else {
                    changes.push(format!(
                        "upstream `{name}`: discovery changed, source restarted"
                    ));
                    sources.push(new.clone());
                }
            } else if matches!(new.discovery, DiscoveryConfig::Static) {
                backend_work.push((upstream.clone(), new.backends.clone()));
            }
            upstreams.push(upstream);
        }
        for old in &table.upstreams {
            if !config.upstreams.iter().any(|u| u.name == old.name()) {
                hooks.unfollow(old.name());
                changes.push(format!(
                    "upstream `{}` removed (its requests in flight finish)",
                    old.name()
                ));
            }
        }
        let routes_changed = previous.as_ref().is_none_or(|p| p.routes != config.routes);
        let same_upstreams = upstreams.len() == table.upstreams.len()
            && upstreams
                .iter()
                .zip(&table.upstreams)
                .all(|(new, old)| new.ptr_eq(old));
        // The table is kept when nothing in it changed, so that the routes' live state
        // (splits and canaries, rate limits, caches) carries on.
        let built = if routes_changed || !same_upstreams {
            Router::new(&config.routes, &upstreams).map(|mut router| {
                router.inherit(&table.router);
                Some(router)
            })
        } else {
            Ok(None)
        };
        match built {
            Ok(None) => {}
            Ok(Some(router)) => {
                if routes_changed && previous.is_some() {
                    changes.push(format!("routes replaced ({} routes)", config.routes.len()));
                }
                self.routes().store(Table { router, upstreams });
            }
            Err(error) => {
                // Only when an upstream a route needs could not be built.
                changes.push(format!(
                    "routes and upstreams not changed: {}",
                    crate::error_chain(&error)
                ));
                return changes;
            }
        }
        hooks.changed.notify_one();
        for (upstream, backends) in backend_work {
            changes.extend(apply_backends(&upstream, &backends));
        }
        for source in sources {
            match smartlb_discovery::start(&source) {
                Ok(handle) => hooks.follow(self, &source.name, handle),
                Err(error) => changes.push(format!(
                    "upstream `{}`: discovery not started: {}",
                    source.name,
                    crate::error_chain(&error)
                )),
            }
        }
        if let Some(listeners) = hooks.server.get().and_then(Weak::upgrade) {
            changes.extend(listeners.apply(self, &config.server));
        }
        hooks.set_config(config.clone());
        changes
    }
}

/// Builds an upstream a reload adds; one with a discovery source starts without backends
/// (it answers 503 until the source's first answer arrives).
fn build_new(
    config: &UpstreamConfig,
    request_timeout: Duration,
) -> Result<Upstream, crate::BuildError> {
    if matches!(config.discovery, DiscoveryConfig::Static) {
        return Upstream::from_config(config, request_timeout);
    }
    let mut empty = config.clone();
    empty.discovery = DiscoveryConfig::Static;
    empty.backends.clear();
    let upstream = Upstream::from_config(&empty, request_timeout)?;
    // Keep the discovery table in the upstream's configuration, for later diffs.
    upstream.reconfigured(config, request_timeout)
}

/// The names of the settings of an upstream that differ (backends and discovery aside).
fn settings_changed(old: &UpstreamConfig, new: &UpstreamConfig) -> Vec<&'static str> {
    [
        ("algorithm", old.algorithm != new.algorithm),
        ("hash_key", old.hash_key != new.hash_key),
        (
            "connect_timeout",
            old.connect_timeout != new.connect_timeout,
        ),
        ("protocol", old.protocol != new.protocol),
        ("tls", old.tls != new.tls),
        ("health", old.health != new.health),
        ("outlier", old.outlier != new.outlier),
        ("retry", old.retry != new.retry),
        ("slow_start", old.slow_start != new.slow_start),
        ("analysis", old.analysis != new.analysis),
        ("sticky", old.sticky != new.sticky),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

/// The keys that only a restart applies.
fn restart_only(old: &Config, new: &Config, changes: &mut Vec<String>) {
    let keys = [
        ("server.workers", old.server.workers != new.server.workers),
        ("admin.listen", old.admin.listen != new.admin.listen),
        ("admin.token", old.admin.token != new.admin.token),
        ("log.level", old.log.level != new.log.level),
        ("log.format", old.log.format != new.log.format),
    ];
    for (key, _) in keys.into_iter().filter(|(_, changed)| *changed) {
        tracing::warn!(
            key,
            "changed in the file: needs a restart; the running value is kept"
        );
        changes.push(format!(
            "{key} changed: needs a restart (the running value is kept)"
        ));
    }
}

/// Applies `backends` to `upstream` as a diff against its current (non-draining)
/// backends; returns a line per change.
pub(crate) fn apply_backends(upstream: &Upstream, backends: &[BackendConfig]) -> Vec<String> {
    let name = upstream.name();
    let mut changes = Vec::new();
    let set = upstream.endpoints();
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
    for change in smartlb_discovery::diff(&old, backends) {
        match change {
            Change::Insert(backend) => {
                // A backend draining away under the same address comes back instead.
                let address = backend.address.to_string();
                if upstream.set_draining(&address, false).is_some() {
                    upstream.set_weight(&address, backend.weight);
                    changes.push(format!("upstream `{name}`: {address} back (was draining)"));
                    continue;
                }
                match upstream.add_backend(&backend) {
                    Ok(()) => changes.push(format!("upstream `{name}`: added {address}")),
                    Err(error) => changes.push(format!("upstream `{name}`: {error}")),
                }
            }
            Change::Update(backend) => {
                let address = backend.address.to_string();
                upstream.set_weight(&address, backend.weight);
                changes.push(format!(
                    "upstream `{name}`: {address} weight {}",
                    backend.weight
                ));
            }
            Change::Remove(address) => {
                let address = address.to_string();
                if upstream.remove_backend(&address, DRAIN_GRACE) {
                    changes.push(format!(
                        "upstream `{name}`: draining and removing {address}"
                    ));
                }
            }
        }
    }
    changes
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

/// How long the configuration file must stay quiet after a change before it is reloaded
/// (editors and deployment tools write a file in several steps).
pub const WATCH_DEBOUNCE: Duration = Duration::from_millis(500);

/// Watches the configuration file and reloads the proxy when it changes; stops when
/// dropped. Made by [`Proxy::watch_config`].
#[derive(Debug)]
pub struct ConfigWatcher {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Reloads the configuration file (see [`Proxy::set_config_source`]) whenever it
    /// changes, like SIGHUP does, until the returned watcher is dropped.
    ///
    /// The file's directory is watched, not the file, so that a file replaced by rename
    /// (as editors and configuration management tools do) is followed, and so is a file
    /// reached through a `..data` symbolic link that is swapped (a Kubernetes ConfigMap
    /// volume). A change is
    /// applied once the file has been quiet for [`WATCH_DEBOUNCE`], and only when its
    /// contents differ from what was read last, so several writes in a row make one
    /// reload. An invalid version is refused (and counted) like any reload; the next
    /// valid version is applied.
    ///
    /// Call it within a tokio runtime.
    ///
    /// # Errors
    ///
    /// The proxy has no configuration file, or the file's directory cannot be watched.
    pub fn watch_config(&self) -> std::io::Result<ConfigWatcher> {
        use notify::Watcher;
        let Some(path) = self.config_source() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the proxy was not started from a configuration file",
            ));
        };
        let path = std::path::absolute(&path)?;
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a file path", path.display()),
            ));
        };
        let name = name.to_os_string();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
                Ok(event) => {
                    let relevant = matches!(
                        event.kind,
                        notify::EventKind::Create(_)
                            | notify::EventKind::Modify(_)
                            | notify::EventKind::Remove(_)
                            | notify::EventKind::Any
                    ) && event.paths.iter().any(|p| {
                        p.file_name().is_some_and(|n| {
                            // The file itself, or a Kubernetes-style `..data` link swap.
                            n == name.as_os_str() || n.as_encoded_bytes().starts_with(b"..")
                        })
                    });
                    if relevant {
                        let _ = tx.send(());
                    }
                }
                Err(error) => tracing::warn!(%error, "watching the configuration file"),
            })
            .map_err(watch_error)?;
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .map_err(watch_error)?;
        let proxy = self.clone();
        let mut last = std::fs::read(&path).ok();
        tracing::info!(file = %path.display(), "watching the configuration file for changes");
        let task = tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Debounce: wait until no event came for a whole quiet period.
                loop {
                    match tokio::time::timeout(WATCH_DEBOUNCE, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let Ok(contents) = std::fs::read(&path) else {
                    // Removed, or between a delete and a create: the next event tells.
                    continue;
                };
                if last.as_ref() == Some(&contents) {
                    continue;
                }
                last = Some(contents);
                tracing::info!(file = %path.display(), "the configuration file changed: reloading");
                let _ = proxy.reload_from_file(&path);
            }
        });
        Ok(ConfigWatcher {
            _watcher: watcher,
            task,
        })
    }
}

fn watch_error(error: notify::Error) -> std::io::Error {
    match error.kind {
        notify::ErrorKind::Io(io) => io,
        _ => std::io::Error::other(error.to_string()),
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn config(upstream_extra: &str, server_extra: &str) -> Config {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server_extra}\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1:9\", \"127.0.0.1:10\"]\n{upstream_extra}\n"
        );
        match smartlb_config::parse_str(&text, "test.toml", &|_| None) {
            Ok(config) => config,
            Err(errors) => panic!("{errors}\n{text}"),
        }
    }

    fn endpoint(proxy: &Proxy, address: &str) -> Arc<crate::upstream::Backend> {
        let set = proxy.upstream("web").expect("web").endpoints();
        set.endpoints()
            .iter()
            .find(|e| e.address() == address)
            .cloned()
            .expect("backend")
    }

    #[tokio::test]
    async fn settings_change_in_place_around_the_same_backends() {
        let first = config("algorithm = \"round-robin\"", "");
        let proxy = Proxy::from_config(&first).expect("proxy");
        let before = proxy.upstream("web").expect("web");
        let (a, b) = (
            endpoint(&proxy, "127.0.0.1:9"),
            endpoint(&proxy, "127.0.0.1:10"),
        );

        // Nothing changed: nothing is rebuilt.
        assert!(proxy.apply(&first).is_empty());
        assert!(proxy.upstream("web").expect("web").ptr_eq(&before));

        // Algorithm and outlier settings: a new upstream object over the same endpoints.
        let second = config(
            "algorithm = \"least-requests\"\n[upstream.outlier]\nconsecutive_failures = 7",
            "",
        );
        let changes = proxy.apply(&second);
        assert_eq!(
            changes,
            vec!["upstream `web`: algorithm, outlier changed".to_string()]
        );
        let after = proxy.upstream("web").expect("web");
        assert!(!after.ptr_eq(&before));
        assert_eq!(
            after.endpoints().algorithm(),
            smartlb_balance::Algorithm::LeastRequests
        );
        assert!(Arc::ptr_eq(&a, &endpoint(&proxy, "127.0.0.1:9")));
        assert!(Arc::ptr_eq(&b, &endpoint(&proxy, "127.0.0.1:10")));
        // The old object sees the same membership.
        assert_eq!(
            before.endpoints().algorithm(),
            smartlb_balance::Algorithm::LeastRequests
        );

        // A new connect timeout: new clients, same health state and statistics.
        let third = config(
            "algorithm = \"least-requests\"\nconnect_timeout = \"2s\"\n[upstream.outlier]\nconsecutive_failures = 7",
            "",
        );
        let changes = proxy.apply(&third);
        assert_eq!(
            changes,
            vec!["upstream `web`: connect_timeout changed".to_string()]
        );
        let renewed = endpoint(&proxy, "127.0.0.1:9");
        assert!(!Arc::ptr_eq(&a, &renewed));
        assert!(Arc::ptr_eq(a.health(), renewed.health()));
        assert!(Arc::ptr_eq(a.stats(), renewed.stats()));
        assert_eq!(
            renewed.service().options().connect_timeout,
            Duration::from_secs(2)
        );

        // Keys only a restart applies are reported, and nothing else changes.
        let fourth = config(
            "algorithm = \"least-requests\"\nconnect_timeout = \"2s\"\n[upstream.outlier]\nconsecutive_failures = 7",
            "workers = 3",
        );
        let changes = proxy.apply(&fourth);
        assert_eq!(
            changes,
            vec!["server.workers changed: needs a restart (the running value is kept)".to_string()]
        );
    }

    #[tokio::test]
    async fn a_new_protocol_gives_the_backends_http2_clients() {
        let proxy = Proxy::from_config(&config("", "")).expect("proxy");
        let a = endpoint(&proxy, "127.0.0.1:9");
        assert!(!a.service().options().http2);
        let changes = proxy.apply(&config("protocol = \"h2\"", ""));
        assert_eq!(
            changes,
            vec!["upstream `web`: protocol changed".to_string()]
        );
        let renewed = endpoint(&proxy, "127.0.0.1:9");
        assert!(renewed.service().options().http2);
        assert!(Arc::ptr_eq(a.health(), renewed.health()));
    }

    #[tokio::test]
    async fn upstreams_are_added_and_removed_with_the_routes() {
        let first = config("", "");
        let proxy = Proxy::from_config(&first).expect("proxy");
        let text = "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[upstream]]\nname = \"web\"\nbackends = [\"127.0.0.1:9\", \"127.0.0.1:10\"]\n\
             [[upstream]]\nname = \"api\"\nbackends = [\"127.0.0.1:11\"]\n\
             [[route]]\npath_prefix = \"/api\"\nupstream = \"api\"\n\
             [[route]]\nupstream = \"web\"\n";
        let second = smartlb_config::parse_str(text, "t.toml", &|_| None).expect("valid");
        let changes = proxy.apply(&second);
        assert!(
            changes.contains(&"upstream `api` added".to_string()),
            "{changes:?}"
        );
        assert!(
            changes.contains(&"routes replaced (2 routes)".to_string()),
            "{changes:?}"
        );
        let req = http::Request::get("/api/x").body(()).expect("request");
        let routed = proxy
            .routes()
            .table()
            .router
            .route(&req)
            .map(|u| u.name().to_string());
        assert_eq!(routed.as_deref(), Some("api"));

        let changes = proxy.apply(&first);
        assert!(
            changes.contains(&"upstream `api` removed (its requests in flight finish)".to_string()),
            "{changes:?}"
        );
        assert!(proxy.upstream("api").is_none());
        let routed = proxy
            .routes()
            .table()
            .router
            .route(&req)
            .map(|u| u.name().to_string());
        assert_eq!(routed.as_deref(), Some("web"));
    }
}
