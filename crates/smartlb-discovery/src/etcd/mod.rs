//! `kind = "etcd"`: one key per backend below a prefix, read once and then watched; and
//! a whole configuration document kept in one key.
//!
//! Both follow a key range the same way ([`Watcher`]): read the range, watch it from
//! the revision after the read, apply each event. When the connection breaks, the last
//! known data stays published, the failure is logged once, and the watcher reconnects
//! with exponential backoff, resuming from the revision after the last one applied, so
//! that no change made in the meantime is missed. If etcd compacted that revision away
//! meanwhile, the range is read again whole.

mod client;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use smartlb_config::{BackendAddress, BackendConfig, EtcdDiscovery, Scheme};
use tokio::sync::watch;

use self::client::{Client, prefix_end};
use crate::DiscoveryOptions;
use crate::backoff::{self, Backoff};
use crate::change::normalize;
use crate::error::DiscoveryError;
use crate::handle::{AbortOnDrop, Backends, DiscoveryHandle, SourceStatus, replace_set, spawn};

/// Starts following `etcd` for `upstream`.
pub(crate) fn start(
    upstream: &str,
    etcd: &EtcdDiscovery,
    options: &DiscoveryOptions,
) -> Result<DiscoveryHandle, DiscoveryError> {
    check_endpoints(upstream, &etcd.endpoints)?;
    let prefix = etcd.prefix.as_bytes().to_vec();
    let end = prefix_end(&prefix);
    let key = if prefix.is_empty() { vec![0] } else { prefix };
    let (set_tx, set_rx) = watch::channel(Backends::from(Vec::new()));
    let (status_tx, status_rx) = watch::channel(SourceStatus::default());
    let sink = BackendSink {
        upstream: upstream.to_string(),
        set: set_tx,
    };
    let watcher = Watcher::new(
        format!("upstream `{upstream}`"),
        Client::new(etcd.endpoints.clone(), options.etcd_timeout),
        (key, end),
        sink,
        status_tx,
        options,
    );
    let task = spawn(watcher.run())?;
    Ok(DiscoveryHandle::task(
        upstream, "etcd", set_rx, status_rx, task,
    ))
}

fn check_endpoints(label: &str, endpoints: &[BackendAddress]) -> Result<(), DiscoveryError> {
    if endpoints.is_empty() {
        return Err(DiscoveryError::Invalid {
            upstream: label.to_string(),
            reason: "etcd discovery needs at least one endpoint".to_string(),
        });
    }
    if let Some(tls) = endpoints.iter().find(|e| e.scheme == Scheme::Https) {
        return Err(DiscoveryError::Invalid {
            upstream: label.to_string(),
            reason: format!(
                "etcd endpoint {tls}: TLS to etcd is not supported; use an http:// client URL"
            ),
        });
    }
    Ok(())
}

/// A value stored under an etcd key, with the revision it was written at.
#[derive(Debug, Clone)]
struct Entry<T> {
    value: T,
    mod_revision: i64,
}

/// What the contents of a watched range turn into.
trait Sink: Send + 'static {
    type Item: Send;
    /// The value of `key`, or `None` (logged) when it is not valid: the key then counts
    /// as absent.
    fn parse(&self, key: &[u8], value: &[u8]) -> Option<Self::Item>;
    /// Publishes the range's current contents.
    fn publish(&mut self, entries: &BTreeMap<Vec<u8>, Entry<Self::Item>>) -> Published;
    /// What stays published while etcd is unreachable, for the log.
    fn kept(&self) -> String;
}

/// The outcome of [`Sink::publish`].
struct Published {
    /// There is data to serve (always, for a backend prefix).
    loaded: bool,
    /// The published data changed.
    changed: bool,
    /// A note for the status when there is nothing to serve yet.
    note: Option<String>,
}

/// How a session with etcd ended.
enum SessionEnd {
    /// The watched revision was compacted: read the range again right away.
    Resync,
    /// Something failed: wait, then try again.
    Failed(String),
}

/// Follows one key range: read, then watch; reconnect and resume on failure.
struct Watcher<S: Sink> {
    label: String,
    client: Client,
    key: Vec<u8>,
    range_end: Vec<u8>,
    sink: S,
    status: watch::Sender<SourceStatus>,
    entries: BTreeMap<Vec<u8>, Entry<S::Item>>,
    /// Every change up to this revision is reflected in `entries`.
    revision: i64,
    /// `entries` came from a full read (else the next session reads the range again).
    synced: bool,
    /// Some failure has been logged and not yet followed by a success.
    failing: bool,
    backoff: Backoff,
}

impl<S: Sink> Watcher<S> {
    fn new(
        label: String,
        client: Client,
        (key, range_end): (Vec<u8>, Vec<u8>),
        sink: S,
        status: watch::Sender<SourceStatus>,
        options: &DiscoveryOptions,
    ) -> Self {
        Watcher {
            label,
            client,
            key,
            range_end,
            sink,
            status,
            entries: BTreeMap::new(),
            revision: 0,
            synced: false,
            failing: false,
            backoff: Backoff::new(options.retry_min, options.retry_max, backoff::seed()),
        }
    }

    async fn run(mut self) {
        loop {
            match self.session().await {
                SessionEnd::Resync => {}
                SessionEnd::Failed(error) => {
                    if self.failing {
                        tracing::debug!("{}: etcd still unreachable: {error}", self.label);
                    } else {
                        tracing::warn!(
                            "{}: lost etcd ({error}); keeping {} until it is back",
                            self.label,
                            self.sink.kept()
                        );
                        self.failing = true;
                    }
                    self.status.send_modify(|s| {
                        s.healthy = false;
                        s.last_error = Some(error);
                    });
                    tokio::time::sleep(self.backoff.next_delay()).await;
                }
            }
        }
    }

    async fn session(&mut self) -> SessionEnd {
        if !self.synced {
            let response = match self.client.range(&self.key, &self.range_end).await {
                Ok(response) => response,
                Err(error) => return SessionEnd::Failed(error),
            };
            self.entries.clear();
            for kv in response.kvs {
                if let Some(value) = self.sink.parse(&kv.key, &kv.value) {
                    self.entries.insert(
                        kv.key,
                        Entry {
                            value,
                            mod_revision: kv.mod_revision,
                        },
                    );
                }
            }
            self.revision = response.revision;
            self.synced = true;
            self.publish();
            self.reached();
        }
        let mut stream = match self
            .client
            .watch(&self.key, &self.range_end, self.revision + 1)
            .await
        {
            Ok(stream) => stream,
            Err(error) => return SessionEnd::Failed(error),
        };
        loop {
            let response = match stream.next().await {
                Ok(response) => response,
                Err(error) => {
                    // The member may be gone: the next attempt goes to another one.
                    self.client.rotate();
                    return SessionEnd::Failed(error);
                }
            };
            if response.canceled {
                if response.compact_revision > 0 {
                    tracing::warn!(
                        "{}: etcd compacted its history past revision {} (now {}); reading the keys again",
                        self.label,
                        self.revision + 1,
                        response.compact_revision
                    );
                    self.synced = false;
                    return SessionEnd::Resync;
                }
                return SessionEnd::Failed(format!(
                    "etcd cancelled the watch: {}",
                    if response.cancel_reason.is_empty() {
                        "no reason given"
                    } else {
                        &response.cancel_reason
                    }
                ));
            }
            if response.created {
                self.reached();
                continue;
            }
            if response.events.is_empty() {
                // A progress notification: every change up to its revision was sent.
                self.revision = self.revision.max(response.revision);
                continue;
            }
            for event in response.events {
                let delete = event.delete;
                let kv = event.kv;
                self.revision = self.revision.max(kv.mod_revision);
                let value = if delete {
                    None
                } else {
                    self.sink.parse(&kv.key, &kv.value)
                };
                match value {
                    Some(value) => {
                        self.entries.insert(
                            kv.key,
                            Entry {
                                value,
                                mod_revision: kv.mod_revision,
                            },
                        );
                    }
                    None => {
                        self.entries.remove(&kv.key);
                    }
                }
            }
            self.publish();
        }
    }

    fn publish(&mut self) {
        let published = self.sink.publish(&self.entries);
        let revision = self.revision;
        self.status.send_modify(|s| {
            s.loaded |= published.loaded;
            s.healthy = true;
            s.last_error = published.note;
            s.revision = Some(revision);
            if published.changed {
                s.updates += 1;
            }
        });
    }

    /// etcd answered: end a failure streak.
    fn reached(&mut self) {
        self.backoff.reset();
        if self.failing {
            self.failing = false;
            tracing::info!(
                "{}: etcd reachable again; following changes from revision {}",
                self.label,
                self.revision + 1
            );
            // Nothing new to publish, but the status is healthy again (and, for a key
            // that does not exist yet, says so rather than the old failure).
            self.publish();
        }
    }
}

/// The JSON value of a backend key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendValue {
    address: String,
    #[serde(default = "default_weight")]
    weight: u32,
    #[serde(default)]
    backup: bool,
}

fn default_weight() -> u32 {
    1
}

/// Parses a backend key's value: `{"address": "host:port", "weight": 1}` (`weight`
/// and `backup` optional).
fn parse_backend(value: &[u8]) -> Result<BackendConfig, String> {
    let value: BackendValue = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    let address = BackendAddress::from_str(&value.address).map_err(|e| e.to_string())?;
    if !(BackendConfig::MIN_WEIGHT..=BackendConfig::MAX_WEIGHT).contains(&value.weight) {
        return Err(format!(
            "weight {} is out of range ({} to {})",
            value.weight,
            BackendConfig::MIN_WEIGHT,
            BackendConfig::MAX_WEIGHT
        ));
    }
    let mut backend = BackendConfig::new(address);
    backend.weight = value.weight;
    backend.backup = value.backup;
    Ok(backend)
}

struct BackendSink {
    upstream: String,
    set: watch::Sender<Backends>,
}

impl Sink for BackendSink {
    type Item = BackendConfig;

    fn parse(&self, key: &[u8], value: &[u8]) -> Option<BackendConfig> {
        parse_backend(value)
            .inspect_err(|error| {
                tracing::warn!(
                    "upstream `{}`: ignoring etcd key {:?}: invalid backend value ({error}); expected {{\"address\": \"host:port\", \"weight\": 1}}",
                    self.upstream,
                    String::from_utf8_lossy(key)
                );
            })
            .ok()
    }

    fn publish(&mut self, entries: &BTreeMap<Vec<u8>, Entry<BackendConfig>>) -> Published {
        let set = normalize(entries.values().map(|e| e.value.clone()));
        let count = set.len();
        let changed = replace_set(&self.set, set);
        if changed {
            tracing::info!(
                "upstream `{}`: etcd discovery: {count} backends",
                self.upstream
            );
        }
        Published {
            loaded: true,
            changed,
            note: None,
        }
    }

    fn kept(&self) -> String {
        format!("the last known {} backends", self.set.borrow().len())
    }
}

/// A configuration document read from an etcd key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDocument {
    /// The revision the key was last written at (changes on every write, even of the
    /// same text).
    pub revision: i64,
    /// The document (TOML text, UTF-8).
    pub text: String,
}

/// Where a configuration document lives: `etcd://HOST:PORT/KEY`.
///
/// The key is the address's path, leading `/` included, because etcd keys usually
/// start with one: `etcd://127.0.0.1:2379/smartlb/config` names the key
/// `/smartlb/config` on `http://127.0.0.1:2379`.
///
/// ```
/// use smartlb_discovery::EtcdConfigKey;
///
/// let source: EtcdConfigKey = "etcd://127.0.0.1:2379/smartlb/config".parse().unwrap();
/// assert_eq!(source.endpoint.to_string(), "127.0.0.1:2379");
/// assert_eq!(source.key, "/smartlb/config");
/// assert_eq!(source.to_string(), "etcd://127.0.0.1:2379/smartlb/config");
/// assert!("etcd://127.0.0.1:2379".parse::<EtcdConfigKey>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfigKey {
    /// The etcd client endpoint (plain HTTP).
    pub endpoint: BackendAddress,
    /// The key holding the document.
    pub key: String,
}

impl EtcdConfigKey {
    /// Whether `text` is meant as an etcd address (starts with `etcd://`) rather than a
    /// file path.
    pub fn is_etcd_url(text: &str) -> bool {
        text.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("etcd://"))
    }
}

impl FromStr for EtcdConfigKey {
    type Err = DiscoveryError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| DiscoveryError::ConfigUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        if !Self::is_etcd_url(url) {
            return Err(bad("expected etcd://HOST:PORT/KEY"));
        }
        let rest = &url[7..];
        let Some(slash) = rest.find('/') else {
            return Err(bad("no key; expected etcd://HOST:PORT/KEY"));
        };
        let (authority, key) = rest.split_at(slash);
        if key.len() < 2 {
            return Err(bad("empty key; expected etcd://HOST:PORT/KEY"));
        }
        if key.contains(['?', '#']) {
            return Err(bad("a key cannot contain `?` or `#`"));
        }
        let endpoint =
            BackendAddress::from_str(authority).map_err(|e| bad(&format!("bad HOST:PORT: {e}")))?;
        Ok(EtcdConfigKey {
            endpoint,
            key: key.to_string(),
        })
    }
}

impl fmt::Display for EtcdConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd://{}{}", self.endpoint.authority(), self.key)
    }
}

/// A followed configuration key. Dropping it stops the background task.
pub struct ConfigWatch {
    source: EtcdConfigKey,
    document: watch::Receiver<Option<ConfigDocument>>,
    status: watch::Receiver<SourceStatus>,
    seen: Option<i64>,
    _task: AbortOnDrop,
}

impl fmt::Debug for ConfigWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigWatch")
            .field("source", &self.source.to_string())
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl ConfigWatch {
    /// Where the document comes from.
    pub fn source(&self) -> &EtcdConfigKey {
        &self.source
    }

    /// The latest document, once the key has been read.
    pub fn current(&self) -> Option<ConfigDocument> {
        self.document.borrow().clone()
    }

    /// How the watch is doing; before the first document, `last_error` says why there
    /// is none (etcd unreachable, or the key does not exist).
    pub fn status(&self) -> SourceStatus {
        self.status.borrow().clone()
    }

    /// A receiver of the watch's status.
    pub fn subscribe_status(&self) -> watch::Receiver<SourceStatus> {
        self.status.clone()
    }

    /// A receiver of documents, for callers that prefer to watch themselves.
    pub fn subscribe(&self) -> watch::Receiver<Option<ConfigDocument>> {
        self.document.clone()
    }

    /// Waits for a document this method has not returned yet: the first one, then each
    /// new write of the key. Writes in quick succession may arrive as the last one only.
    /// A deleted key keeps the last document (and logs a warning). `None` once the
    /// background task has stopped.
    ///
    /// Cancel-safe. Put a timeout around the first call: a key that cannot be read
    /// never arrives (see [`status`](Self::status) for why).
    pub async fn changed(&mut self) -> Option<ConfigDocument> {
        loop {
            let current = self.document.borrow_and_update().clone();
            if let Some(document) = current
                && self.seen != Some(document.revision)
            {
                self.seen = Some(document.revision);
                return Some(document);
            }
            if self.document.changed().await.is_err() {
                let document = self.document.borrow().clone()?;
                if self.seen == Some(document.revision) {
                    return None;
                }
                self.seen = Some(document.revision);
                return Some(document);
            }
        }
    }
}

/// Loads and watches a whole configuration document kept in the etcd key `source.key`
/// (for `smartlb run --config etcd://HOST:PORT/KEY`), with the default
/// [`DiscoveryOptions`].
///
/// # Errors
///
/// An `https://` endpoint (unsupported), or no tokio runtime.
pub fn watch_config_key(source: &EtcdConfigKey) -> Result<ConfigWatch, DiscoveryError> {
    watch_config_key_with(source, &DiscoveryOptions::default())
}

/// [`watch_config_key`] with explicit timeouts and reconnect delays.
///
/// # Errors
///
/// As [`watch_config_key`].
pub fn watch_config_key_with(
    source: &EtcdConfigKey,
    options: &DiscoveryOptions,
) -> Result<ConfigWatch, DiscoveryError> {
    let label = format!("configuration key `{}`", source.key);
    check_endpoints(&label, std::slice::from_ref(&source.endpoint))?;
    let (document_tx, document_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(SourceStatus::default());
    let sink = ConfigSink {
        key: source.key.as_bytes().to_vec(),
        label: label.clone(),
        document: document_tx,
        warned_deleted: false,
    };
    let watcher = Watcher::new(
        label,
        Client::new(vec![source.endpoint.clone()], options.etcd_timeout),
        (source.key.as_bytes().to_vec(), Vec::new()),
        sink,
        status_tx,
        options,
    );
    let task = spawn(watcher.run())?;
    Ok(ConfigWatch {
        source: source.clone(),
        document: document_rx,
        status: status_rx,
        seen: None,
        _task: task,
    })
}

struct ConfigSink {
    key: Vec<u8>,
    label: String,
    document: watch::Sender<Option<ConfigDocument>>,
    warned_deleted: bool,
}

impl Sink for ConfigSink {
    type Item = String;

    fn parse(&self, _key: &[u8], value: &[u8]) -> Option<String> {
        String::from_utf8(value.to_vec())
            .inspect_err(|_| {
                tracing::warn!("{}: ignoring a value that is not UTF-8 text", self.label);
            })
            .ok()
    }

    fn publish(&mut self, entries: &BTreeMap<Vec<u8>, Entry<String>>) -> Published {
        match entries.get(&self.key) {
            Some(entry) => {
                self.warned_deleted = false;
                let changed = self.document.send_if_modified(|current| {
                    if current.as_ref().map(|d| d.revision) == Some(entry.mod_revision) {
                        false
                    } else {
                        *current = Some(ConfigDocument {
                            revision: entry.mod_revision,
                            text: entry.value.clone(),
                        });
                        true
                    }
                });
                if changed {
                    tracing::info!(
                        "{}: new configuration at revision {}",
                        self.label,
                        entry.mod_revision
                    );
                }
                Published {
                    loaded: true,
                    changed,
                    note: None,
                }
            }
            None => {
                let loaded = self.document.borrow().is_some();
                if loaded && !self.warned_deleted {
                    self.warned_deleted = true;
                    tracing::warn!(
                        "{}: the key was deleted or holds no valid text; keeping the last configuration",
                        self.label
                    );
                }
                Published {
                    loaded,
                    changed: false,
                    note: (!loaded)
                        .then(|| format!("{} does not exist (or is not UTF-8 text)", self.label)),
                }
            }
        }
    }

    fn kept(&self) -> String {
        match &*self.document.borrow() {
            Some(document) => format!("the configuration of revision {}", document.revision),
            None => "waiting for a first configuration".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_values() {
        let b = parse_backend(br#"{"address": "10.0.0.1:8080"}"#).unwrap();
        assert_eq!(
            (b.address.to_string().as_str(), b.weight, b.backup),
            ("10.0.0.1:8080", 1, false)
        );
        let b =
            parse_backend(br#"{"address": "https://api.internal", "weight": 7, "backup": true}"#)
                .unwrap();
        assert_eq!(b.address.to_string(), "https://api.internal:443");
        assert_eq!((b.weight, b.backup), (7, true));
        for bad in [
            &br#"{"address": "10.0.0.1"}"#[..],
            br#"{"address": "10.0.0.1:80", "weight": 0}"#,
            br#"{"address": "10.0.0.1:80", "weight": 1001}"#,
            br#"{"address": "10.0.0.1:80", "wieght": 2}"#,
            br#"{"weight": 2}"#,
            b"not json",
            b"",
        ] {
            assert!(
                parse_backend(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn config_urls() {
        let k: EtcdConfigKey = "ETCD://[::1]:2379/a".parse().unwrap();
        assert_eq!(k.endpoint.host, "::1");
        assert_eq!(k.key, "/a");
        assert_eq!(k.to_string(), "etcd://[::1]:2379/a");
        for bad in [
            "http://127.0.0.1:2379/a",
            "etcd://127.0.0.1:2379",
            "etcd://127.0.0.1:2379/",
            "etcd://127.0.0.1/a",
            "etcd:///a",
            "etcd://127.0.0.1:2379/a?x",
        ] {
            let error = bad.parse::<EtcdConfigKey>().unwrap_err();
            assert!(error.to_string().contains(bad), "{error}");
        }
        assert!(EtcdConfigKey::is_etcd_url("etcd://x"));
        assert!(!EtcdConfigKey::is_etcd_url("smartlb.toml"));
    }

    #[tokio::test]
    async fn https_endpoints_and_empty_lists_are_refused() {
        let mut upstream = smartlb_config::UpstreamConfig::new("web", Vec::new());
        upstream.discovery = smartlb_config::DiscoveryConfig::Etcd(EtcdDiscovery {
            endpoints: vec!["https://127.0.0.1:2379".parse().unwrap()],
            prefix: "/x/".to_string(),
        });
        let error = crate::start(&upstream).unwrap_err();
        assert!(error.to_string().contains("TLS"), "{error}");
        upstream.discovery = smartlb_config::DiscoveryConfig::Etcd(EtcdDiscovery {
            endpoints: Vec::new(),
            prefix: "/x/".to_string(),
        });
        assert!(crate::start(&upstream).is_err());
    }
}
