//! The JSON messages of etcd's v3 HTTP gateway (the gRPC API in proto3's JSON mapping:
//! bytes as base64, 64-bit integers as strings).

use data_encoding::BASE64;
use serde::{Deserialize, Deserializer, Serialize};

/// `etcdserverpb.RangeRequest`, the fields used here.
#[derive(Debug, Serialize)]
pub(crate) struct RangeRequest {
    pub(crate) key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) range_end: String,
}

/// `etcdserverpb.RangeResponse`, the fields used here.
#[derive(Debug, Deserialize)]
pub(crate) struct RangeResponse {
    #[serde(default)]
    pub(crate) header: Header,
    #[serde(default)]
    pub(crate) kvs: Vec<KeyValue>,
}

/// `etcdserverpb.ResponseHeader`, the fields used here.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Header {
    #[serde(default, deserialize_with = "int64")]
    pub(crate) revision: i64,
}

/// `mvccpb.KeyValue`, the fields used here.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct KeyValue {
    #[serde(default, deserialize_with = "bytes")]
    pub(crate) key: Vec<u8>,
    #[serde(default, deserialize_with = "bytes")]
    pub(crate) value: Vec<u8>,
    #[serde(default, deserialize_with = "int64")]
    pub(crate) mod_revision: i64,
}

/// `etcdserverpb.WatchRequest` with a `create_request`.
#[derive(Debug, Serialize)]
pub(crate) struct WatchRequest {
    pub(crate) create_request: WatchCreateRequest,
}

/// `etcdserverpb.WatchCreateRequest`, the fields used here.
#[derive(Debug, Serialize)]
pub(crate) struct WatchCreateRequest {
    pub(crate) key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) range_end: String,
    /// proto3 JSON writes int64 as a string.
    pub(crate) start_revision: String,
}

/// One message of the watch stream: a response or an error.
#[derive(Debug, Deserialize)]
pub(crate) struct WatchEnvelope {
    pub(crate) result: Option<WatchResponse>,
    pub(crate) error: Option<serde_json::Value>,
}

/// `etcdserverpb.WatchResponse`, the fields used here.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WatchResponse {
    #[serde(default)]
    pub(crate) header: Header,
    #[serde(default)]
    pub(crate) created: bool,
    #[serde(default)]
    pub(crate) canceled: bool,
    #[serde(default, deserialize_with = "int64")]
    pub(crate) compact_revision: i64,
    #[serde(default)]
    pub(crate) cancel_reason: String,
    #[serde(default)]
    pub(crate) events: Vec<Event>,
}

/// `mvccpb.Event`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Event {
    /// `"PUT"` (the default, so usually absent) or `"DELETE"`.
    #[serde(default, rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) kv: KeyValue,
}

impl Event {
    pub(crate) fn is_delete(&self) -> bool {
        self.kind.as_deref() == Some("DELETE")
    }
}

/// The gateway's error body: `{"error": "...", "message": "...", "code": N}` (3.4)
/// or `{"code": N, "message": "..."}` (later versions).
pub(crate) fn error_message(value: &serde_json::Value) -> String {
    let text = |field: &str| {
        value
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    text("message")
        .or_else(|| text("error"))
        .unwrap_or_else(|| value.to_string())
}

pub(crate) fn encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
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

fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Number(i64),
        Text(String),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    BASE64
        .decode(text.as_bytes())
        .map_err(serde::de::Error::custom)
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
    fn watch_messages_decode() {
        let text = r#"{"result":{"header":{"cluster_id":"1","revision":"4","raft_term":"2"},"events":[{"type":"DELETE","kv":{"key":"L2EvMQ==","mod_revision":"4"}},{"kv":{"key":"L2EvMg==","create_revision":"3","mod_revision":"3","version":"1","value":"eA=="}}]}}"#;
        let envelope: WatchEnvelope = serde_json::from_str(text).unwrap();
        let response = envelope.result.unwrap();
        assert_eq!(response.header.revision, 4);
        assert!(response.events[0].is_delete());
        assert_eq!(response.events[0].kv.key, b"/a/1");
        assert!(!response.events[1].is_delete());
        assert_eq!(response.events[1].kv.value, b"x");
        assert_eq!(response.events[1].kv.mod_revision, 3);

        let text =
            r#"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"4"}}"#;
        let response = serde_json::from_str::<WatchEnvelope>(text)
            .unwrap()
            .result
            .unwrap();
        assert!(response.canceled);
        assert_eq!(response.compact_revision, 4);
    }

    #[test]
    fn errors_and_bad_fields() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"error":"boom","message":"etcdserver: boom","code":11}"#)
                .unwrap();
        assert_eq!(error_message(&value), "etcdserver: boom");
        assert!(serde_json::from_str::<KeyValue>(r#"{"key":"***"}"#).is_err());
        assert!(serde_json::from_str::<Header>(r#"{"revision":"x"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<Header>(r#"{"revision":7}"#)
                .unwrap()
                .revision,
            7
        );
    }
}
