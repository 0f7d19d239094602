//! A minimal etcd v3 client over the server's HTTP/JSON gateway: a prefix (or key)
//! read and a watch stream, which is all discovery needs.
//!
//! The gateway is part of every etcd v3 server (`/v3/kv/range`, `/v3/watch` on the
//! client URL) and speaks the gRPC API's messages as JSON, so this needs only an HTTP
//! client and no generated protobuf code.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use smartlb_config::BackendAddress;
use tokio::net::TcpStream;

use super::wire::{
    RangeRequest, RangeResponse, WatchCreateRequest, WatchEnvelope, WatchRequest, WatchResponse,
    encode, error_message,
};
use crate::handle::AbortOnDrop;

/// Largest range response read (etcd's own default request limit is 1.5 MiB per
/// value; a prefix holds many).
const MAX_RANGE_BYTES: usize = 64 << 20;
/// Largest single watch message buffered.
const MAX_WATCH_MESSAGE: usize = 16 << 20;

/// Talks to one of a cluster's endpoints at a time, moving to the next on failure.
#[derive(Debug)]
pub(crate) struct Client {
    endpoints: Vec<BackendAddress>,
    next: usize,
    timeout: Duration,
}

struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    authority: String,
    _driver: AbortOnDrop,
}

/// An open watch: its messages as they arrive.
pub(crate) struct WatchStream {
    body: Incoming,
    buf: Vec<u8>,
    conn: Conn,
}

impl Client {
    /// `timeout` bounds each connection attempt and each read (not a watch's life).
    pub(crate) fn new(endpoints: Vec<BackendAddress>, timeout: Duration) -> Self {
        Client {
            endpoints,
            next: 0,
            timeout,
        }
    }

    /// The endpoint the next request goes to.
    pub(crate) fn endpoint(&self) -> Option<&BackendAddress> {
        self.endpoints.get(self.next % self.endpoints.len().max(1))
    }

    /// Every key in `[key, range_end)` (just `key` when `range_end` is empty).
    ///
    /// Errors name the endpoint; after one, the next call goes to the next endpoint.
    pub(crate) async fn range(
        &mut self,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<RangeResponse, String> {
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

    async fn try_range(&mut self, key: &[u8], range_end: &[u8]) -> Result<RangeResponse, String> {
        let body = serde_json::to_vec(&RangeRequest {
            key: encode(key),
            range_end: encode_end(range_end),
        })
        .map_err(|e| e.to_string())?;
        let timeout = self.timeout;
        let (status, body) = tokio::time::timeout(timeout, async {
            let mut conn = self.connect().await?;
            let response = conn.post("/v3/kv/range", body).await?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RANGE_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the range response: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))??;
        if !status.is_success() {
            return Err(http_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| format!("bad range response: {e}"))
    }

    async fn try_watch(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
    ) -> Result<WatchStream, String> {
        let body = serde_json::to_vec(&WatchRequest {
            create_request: WatchCreateRequest {
                key: encode(key),
                range_end: encode_end(range_end),
                start_revision: start_revision.to_string(),
            },
        })
        .map_err(|e| e.to_string())?;
        let timeout = self.timeout;
        let (conn, response) = tokio::time::timeout(timeout, async {
            let mut conn = self.connect().await?;
            let response = conn.post("/v3/watch", body).await?;
            Ok::<_, String>((conn, response))
        })
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))??;
        if !response.status().is_success() {
            let status = response.status();
            let body = tokio::time::timeout(
                timeout,
                Limited::new(response.into_body(), 64 << 10).collect(),
            )
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|b| b.to_bytes())
            .unwrap_or_default();
            return Err(http_error(status, &body));
        }
        Ok(WatchStream {
            body: response.into_body(),
            buf: Vec::new(),
            conn,
        })
    }

    /// After a failure, the next attempt goes to the next endpoint.
    pub(crate) fn rotate(&mut self) {
        self.next = self.next.wrapping_add(1);
    }

    async fn connect(&mut self) -> Result<Conn, String> {
        let Some(endpoint) = self.endpoint().cloned() else {
            return Err("no etcd endpoints".to_string());
        };
        let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        // A server that vanishes without closing the connection (a host lost, a network
        // partition) is noticed by keep-alive probes rather than never.
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(10));
        #[cfg(any(target_os = "linux", target_os = "macos", windows))]
        let keepalive = keepalive.with_interval(Duration::from_secs(3));
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        let driver = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        Ok(Conn {
            sender,
            authority: endpoint.authority(),
            _driver: driver,
        })
    }
}

impl Conn {
    async fn post(
        &mut self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<http::Response<Incoming>, String> {
        let request = http::Request::post(path)
            .header(http::header::HOST, &self.authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        self.sender
            .send_request(request)
            .await
            .map_err(|e| format!("{path}: {e}"))
    }
}

impl WatchStream {
    /// The next message; an error (naming the endpoint) when the stream broke, ended
    /// or said so.
    pub(crate) async fn next(&mut self) -> Result<WatchResponse, String> {
        self.next_message()
            .await
            .map_err(|e| format!("{}: {e}", self.conn.authority))
    }

    async fn next_message(&mut self) -> Result<WatchResponse, String> {
        loop {
            if let Some(message) = self.parse_one()? {
                return Ok(message);
            }
            match self.body.frame().await {
                None => return Err("the server closed the watch".to_string()),
                Some(Err(e)) => return Err(format!("the watch broke: {e}")),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                        if self.buf.len() > MAX_WATCH_MESSAGE {
                            return Err(format!(
                                "a watch message is larger than {MAX_WATCH_MESSAGE} bytes"
                            ));
                        }
                    }
                }
            }
        }
    }

    /// One complete message from the buffer, if there is one. Messages are JSON
    /// objects one after another (the gateway separates them with newlines).
    fn parse_one(&mut self) -> Result<Option<WatchResponse>, String> {
        let Some(start) = self.buf.iter().position(|b| !b.is_ascii_whitespace()) else {
            self.buf.clear();
            return Ok(None);
        };
        let mut messages =
            serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<WatchEnvelope>();
        let envelope = match messages.next() {
            None => return Ok(None),
            Some(Err(e)) if e.is_eof() => return Ok(None),
            Some(Err(e)) => return Err(format!("bad watch message: {e}")),
            Some(Ok(envelope)) => envelope,
        };
        let used = start + messages.byte_offset();
        self.buf.drain(..used);
        match envelope {
            WatchEnvelope {
                result: Some(response),
                ..
            } => Ok(Some(response)),
            WatchEnvelope {
                error: Some(error), ..
            } => Err(error_message(&error)),
            _ => Err("a watch message with neither result nor error".to_string()),
        }
    }
}

fn encode_end(range_end: &[u8]) -> String {
    if range_end.is_empty() {
        String::new()
    } else {
        encode(range_end)
    }
}

fn http_error(status: http::StatusCode, body: &[u8]) -> String {
    let detail = serde_json::from_slice::<serde_json::Value>(body)
        .map(|v| error_message(&v))
        .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    format!("HTTP {status}: {detail}")
}
