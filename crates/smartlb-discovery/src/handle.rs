//! The handle a caller holds while a source is followed, and the publishing side the
//! background tasks write to.

use std::fmt;
use std::sync::Arc;

use smartlb_config::BackendConfig;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::change::{Change, diff};
use crate::error::DiscoveryError;

/// A published backend set: one entry per address, sorted by address.
pub type Backends = Arc<[BackendConfig]>;

/// How a discovery source is doing.
///
/// A source that fails after its first success keeps publishing its last known set:
/// `healthy` turns false and `last_error` says why, but the backends stay.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SourceStatus {
    /// A first set (or configuration document) has been obtained.
    pub loaded: bool,
    /// The most recent attempt to reach the source succeeded.
    pub healthy: bool,
    /// The most recent failure while the source is unhealthy (or, for a configuration
    /// key, why there is no document yet); `None` once it works.
    pub last_error: Option<String>,
    /// etcd only: the store revision the published data is current as of.
    pub revision: Option<i64>,
    /// How many times the published data changed.
    pub updates: u64,
}

/// Replaces the set in `tx` with `set` (already normalized) when they differ; returns
/// whether it did.
pub(crate) fn replace_set(tx: &watch::Sender<Backends>, set: Vec<BackendConfig>) -> bool {
    tx.send_if_modified(|current| {
        if current[..] == set[..] {
            false
        } else {
            *current = Backends::from(set);
            true
        }
    })
}

/// Aborts a spawned task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns `task` on the current tokio runtime.
pub(crate) fn spawn(
    task: impl Future<Output = ()> + Send + 'static,
) -> Result<AbortOnDrop, DiscoveryError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
    Ok(AbortOnDrop(runtime.spawn(task)))
}

/// The writing side of a source: its set and its status.
#[derive(Debug)]
pub(crate) struct Publisher {
    set: watch::Sender<Backends>,
    status: watch::Sender<SourceStatus>,
}

impl Publisher {
    pub(crate) fn new() -> (
        Publisher,
        watch::Receiver<Backends>,
        watch::Receiver<SourceStatus>,
    ) {
        let (set, set_rx) = watch::channel(Backends::from(Vec::new()));
        let (status, status_rx) = watch::channel(SourceStatus::default());
        (Publisher { set, status }, set_rx, status_rx)
    }

    /// Publishes `set` (already normalized) when it differs from the current one, and
    /// marks the source loaded and healthy. Returns whether the set changed.
    pub(crate) fn publish(&self, set: Vec<BackendConfig>, revision: Option<i64>) -> bool {
        let changed = replace_set(&self.set, set);
        self.status.send_modify(|s| {
            s.loaded = true;
            s.healthy = true;
            s.last_error = None;
            if revision.is_some() {
                s.revision = revision;
            }
            if changed {
                s.updates += 1;
            }
        });
        changed
    }

    /// Records a failure; the published set stays as it is.
    pub(crate) fn failed(&self, error: String) {
        self.status.send_modify(|s| {
            s.healthy = false;
            s.last_error = Some(error);
        });
    }

    /// How many backends are published now.
    pub(crate) fn len(&self) -> usize {
        self.set.borrow().len()
    }
}

/// A followed discovery source: the current backend set, its changes and the source's
/// status. Dropping the handle stops the background task.
///
/// The set is published through a [`tokio::sync::watch`] channel: a burst of updates
/// coalesces into the latest set, a slow reader never falls behind a queue, and
/// [`changed`](Self::changed) turns "the set is now X" into the insert / update /
/// remove steps from the set this handle last handed out.
pub struct DiscoveryHandle {
    upstream: String,
    kind: &'static str,
    set: watch::Receiver<Backends>,
    status: watch::Receiver<SourceStatus>,
    seen: Backends,
    _guard: Guard,
}

enum Guard {
    /// A static set: the senders are kept so that receivers never see a closed channel.
    Static(
        #[allow(dead_code)] watch::Sender<Backends>,
        #[allow(dead_code)] watch::Sender<SourceStatus>,
    ),
    /// A background task, aborted on drop.
    Task(#[allow(dead_code)] AbortOnDrop),
}

impl fmt::Debug for DiscoveryHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryHandle")
            .field("upstream", &self.upstream)
            .field("kind", &self.kind)
            .field("backends", &self.set.borrow().len())
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl DiscoveryHandle {
    /// A handle over a fixed set that is loaded from the start and never changes.
    pub(crate) fn fixed(upstream: &str, set: Vec<BackendConfig>) -> Self {
        let (publisher, set_rx, status_rx) = Publisher::new();
        publisher.publish(set, None);
        let Publisher { set, status } = publisher;
        DiscoveryHandle {
            upstream: upstream.to_string(),
            kind: "static",
            set: set_rx,
            status: status_rx,
            seen: Backends::from(Vec::new()),
            _guard: Guard::Static(set, status),
        }
    }

    /// A handle over a background task that writes to the other ends of `set` and
    /// `status`.
    pub(crate) fn task(
        upstream: &str,
        kind: &'static str,
        set: watch::Receiver<Backends>,
        status: watch::Receiver<SourceStatus>,
        task: AbortOnDrop,
    ) -> Self {
        DiscoveryHandle {
            upstream: upstream.to_string(),
            kind,
            set,
            status,
            seen: Backends::from(Vec::new()),
            _guard: Guard::Task(task),
        }
    }

    /// The upstream's name.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The source kind: `"static"`, `"dns"` or `"etcd"`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The current set (empty until the source has loaded).
    pub fn backends(&self) -> Backends {
        self.set.borrow().clone()
    }

    /// The source's current status.
    pub fn status(&self) -> SourceStatus {
        self.status.borrow().clone()
    }

    /// A receiver of whole sets, for callers that prefer snapshots to changes.
    pub fn subscribe(&self) -> watch::Receiver<Backends> {
        self.set.clone()
    }

    /// A receiver of the source's status.
    pub fn subscribe_status(&self) -> watch::Receiver<SourceStatus> {
        self.status.clone()
    }

    /// Waits until the source has produced its first set and returns it; later calls
    /// to [`changed`](Self::changed) report changes from this set. Put a timeout around
    /// it: a source that cannot be reached never loads (see [`status`](Self::status)
    /// for why).
    ///
    /// # Errors
    ///
    /// [`DiscoveryError::Stopped`] if the background task ended first.
    pub async fn ready(&mut self) -> Result<Backends, DiscoveryError> {
        self.status
            .wait_for(|s| s.loaded)
            .await
            .map_err(|_| DiscoveryError::Stopped)?;
        let set = self.set.borrow_and_update().clone();
        self.seen = set.clone();
        Ok(set)
    }

    /// Waits until the set differs from the one last returned by [`ready`](Self::ready)
    /// or `changed` (at first: the empty set) and returns the changes, ordered by
    /// address. Many updates in a row arrive as one list. `None` once the background
    /// task has stopped and every change has been returned; for a static source this
    /// waits forever after the first call.
    ///
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn changed(&mut self) -> Option<Vec<Change>> {
        loop {
            let current = self.set.borrow_and_update().clone();
            let changes = diff(&self.seen, &current);
            if !changes.is_empty() {
                self.seen = current;
                return Some(changes);
            }
            if self.set.changed().await.is_err() {
                let current = self.set.borrow().clone();
                let changes = diff(&self.seen, &current);
                if changes.is_empty() {
                    return None;
                }
                self.seen = current;
                return Some(changes);
            }
        }
    }
}
