//! The two etcd v3 calls discovery needs, a key range read and a watch, over etcd's gRPC
//! API with the `etcd-client` crate; one endpoint at a time, moving to the next after a
//! failure.

use std::time::Duration;

use etcd_client::{ConnectOptions, GetOptions, WatchOptions};
use smartlb_config::BackendAddress;

/// Largest range response read (etcd's own default request limit is 1.5 MiB per
/// value; a prefix holds many).
const MAX_RANGE_BYTES: usize = 64 << 20;
/// Largest single watch message accepted.
const MAX_WATCH_MESSAGE: usize = 16 << 20;
/// HTTP/2 keep-alive pings on an open watch, so that a server that vanishes without
/// closing the connection (a host lost, a network partition) is noticed. etcd refuses
/// pings more often than every 5 s by default.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Talks to one of a cluster's endpoints at a time, moving to the next on failure.
pub(crate) struct Client {
    endpoints: Vec<BackendAddress>,
    next: usize,
    timeout: Duration,
    /// The connection to the current endpoint, kept from a read to the watch that
    /// follows it; dropped after a failure.
    connection: Option<etcd_client::Client>,
}

/// A key and its value as read or watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyValue {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
    pub(crate) mod_revision: i64,
}

/// The keys of a range and the store revision they were read at.
#[derive(Debug)]
pub(crate) struct Range {
    pub(crate) revision: i64,
    pub(crate) kvs: Vec<KeyValue>,
}

/// One change to a watched key.
#[derive(Debug)]
pub(crate) struct Event {
    /// The key was deleted (`kv` holds the key and the revision of the deletion).
    pub(crate) delete: bool,
    pub(crate) kv: KeyValue,
}

/// One message of a watch.
#[derive(Debug, Default)]
pub(crate) struct WatchMessage {
    /// The store revision when the message was sent.
    pub(crate) revision: i64,
    pub(crate) created: bool,
    pub(crate) canceled: bool,
    /// Set when the watch was cancelled because its start revision was compacted away.
    pub(crate) compact_revision: i64,
    pub(crate) cancel_reason: String,
    pub(crate) events: Vec<Event>,
}

/// An open watch: its messages as they arrive.
pub(crate) struct WatchStream {
    stream: etcd_client::WatchStream,
    endpoint: String,
    /// The connection the watch runs on.
    _client: etcd_client::Client,
}

impl Client {
    /// `timeout` bounds each connection attempt, each read and the opening of a watch
    /// (not a watch's life).
    pub(crate) fn new(endpoints: Vec<BackendAddress>, timeout: Duration) -> Self {
        Client {
            endpoints,
            next: 0,
            timeout,
            connection: None,
        }
    }

    /// The endpoint the next request goes to.
    fn endpoint(&self) -> Option<&BackendAddress> {
        self.endpoints.get(self.next % self.endpoints.len().max(1))
    }

    /// After a failure, the next attempt goes to the next endpoint, on a new connection.
    pub(crate) fn rotate(&mut self) {
        self.next = self.next.wrapping_add(1);
        self.connection = None;
    }

    /// Every key in `[key, range_end)` (just `key` when `range_end` is empty).
    ///
    /// Errors name the endpoint; after one, the next call goes to the next endpoint.
    pub(crate) async fn range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Range, String> {
        let result = self.try_range(key, range_end).await;
        self.checked(result)
    }

    /// Watches `[key, range_end)` (just `key` when `range_end` is empty) from
    /// `start_revision` on.
    ///
    /// Errors name the endpoint; after one, the next call goes to the next endpoint.
    pub(crate) async fn watch(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
    ) -> Result<WatchStream, String> {
        let result = self.try_watch(key, range_end, start_revision).await;
        self.checked(result)
    }

    /// Names the endpoint in an error and moves on to the next one.
    fn checked<T>(&mut self, result: Result<T, String>) -> Result<T, String> {
        result.map_err(|error| {
            let endpoint = self.endpoint().map(ToString::to_string).unwrap_or_default();
            self.rotate();
            format!("{endpoint}: {error}")
        })
    }

    /// A client for the current endpoint. Connecting is lazy: the first call connects,
    /// and a failure to connect is that call's error.
    async fn connect(&mut self) -> Result<(etcd_client::Client, String), String> {
        let Some(endpoint) = self.endpoint() else {
            return Err("no etcd endpoints".to_string());
        };
        if let Some(client) = &self.connection {
            return Ok((client.clone(), endpoint.to_string()));
        }
        let url = format!("http://{}", endpoint.authority());
        let options = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_keep_alive(KEEPALIVE_INTERVAL, self.timeout)
            .with_tcp_keepalive(KEEPALIVE_INTERVAL);
        let endpoint = endpoint.to_string();
        let client = etcd_client::Client::connect([url.as_str()], Some(options))
            .await
            .map_err(|e| describe(&e))?;
        self.connection = Some(client.clone());
        Ok((client, endpoint))
    }

    async fn try_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<Range, String> {
        let timeout = self.timeout;
        let mut options = GetOptions::new();
        if !range_end.is_empty() {
            options = options.with_range(range_end);
        }
        let mut response = tokio::time::timeout(timeout, async {
            let (client, _) = self.connect().await?;
            client
                .kv_client()
                .max_decoding_message_size(MAX_RANGE_BYTES)
                .get(key, Some(options))
                .await
                .map_err(|e| describe(&e))
        })
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))??;
        let revision = response.header().map_or(0, |h| h.revision());
        let kvs = response
            .take_kvs()
            .into_iter()
            .map(|kv| {
                let mod_revision = kv.mod_revision();
                let (key, value) = kv.into_key_value();
                KeyValue {
                    key,
                    value,
                    mod_revision,
                }
            })
            .collect();
        Ok(Range { revision, kvs })
    }

    async fn try_watch(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
    ) -> Result<WatchStream, String> {
        let timeout = self.timeout;
        let mut options = WatchOptions::new().with_start_revision(start_revision);
        if !range_end.is_empty() {
            options = options.with_range(range_end);
        }
        tokio::time::timeout(timeout, async {
            let (client, endpoint) = self.connect().await?;
            let stream = client
                .watch_client()
                .max_decoding_message_size(MAX_WATCH_MESSAGE)
                .watch(key, Some(options))
                .await
                .map_err(|e| describe(&e))?;
            Ok(WatchStream {
                stream,
                endpoint,
                _client: client,
            })
        })
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
    }
}

impl WatchStream {
    /// The next message; an error (naming the endpoint) when the stream broke or ended.
    pub(crate) async fn next(&mut self) -> Result<WatchMessage, String> {
        match self.stream.message().await {
            Ok(Some(response)) => Ok(convert(&response)),
            Ok(None) => Err(format!("{}: the server closed the watch", self.endpoint)),
            Err(e) => Err(format!(
                "{}: the watch broke: {}",
                self.endpoint,
                describe(&e)
            )),
        }
    }
}

fn convert(response: &etcd_client::WatchResponse) -> WatchMessage {
    WatchMessage {
        revision: response.header().map_or(0, |h| h.revision()),
        created: response.created(),
        canceled: response.canceled(),
        compact_revision: response.compact_revision(),
        cancel_reason: response.cancel_reason().to_string(),
        events: response
            .events()
            .iter()
            .filter_map(|event| {
                let kv = event.kv()?;
                Some(Event {
                    // A deletion resets a key's version to 0; every write leaves it at 1
                    // or more. (This reads the event type without `Event::event_type`,
                    // which panics on a type it does not know.)
                    delete: kv.version() == 0,
                    kv: KeyValue {
                        key: kv.key().to_vec(),
                        value: kv.value().to_vec(),
                        mod_revision: kv.mod_revision(),
                    },
                })
            })
            .collect(),
    }
}

/// An etcd-client error in a few words: for a gRPC status, its code and message.
fn describe(error: &etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            if message.is_empty() {
                format!("{:?}", status.code())
            } else {
                format!("{:?}: {message}", status.code())
            }
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}

/// The end of the range holding every key that starts with `prefix`: the prefix with
/// its last byte below 0xff incremented and what follows dropped; `[0]` (every key from
/// `prefix` on) when there is no such byte.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn errors_are_described_with_their_causes() {
        let error = etcd_client::Error::WatchError("gone".to_string());
        assert_eq!(describe(&error), "watch error: gone");
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            describe(&etcd_client::Error::IoError(io)),
            "io error: refused"
        );
    }
}
