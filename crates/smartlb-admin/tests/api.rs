//! The admin API over real HTTP on loopback.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use smartlb_admin::{AdminSource, BackendStatus, StatusReport, UpstreamStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Fake {
    ready: AtomicBool,
}

impl AdminSource for Fake {
    fn status(&self) -> StatusReport {
        StatusReport {
            version: "9.9.9".into(),
            uptime_seconds: 1.5,
            upstreams: vec![UpstreamStatus {
                name: "web".into(),
                algorithm: "round-robin".into(),
                backends: vec![BackendStatus {
                    address: "127.0.0.1:1".into(),
                    state: "healthy".into(),
                    backup: false,
                    configured_weight: 2,
                    effective_weight: 2.0,
                    in_flight: 0,
                    requests_total: 7,
                    errors_total: 1,
                    latency_ewma_ms: 1.25,
                    latency_p99_ms: 3.0,
                }],
            }],
        }
    }
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn endpoints_answer_over_http() {
    let fake = Arc::new(Fake {
        ready: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(smartlb_admin::serve(listener, fake.clone(), async {
        let _ = stopped.await;
    }));

    let run = async {
        assert_eq!(request(addr, "GET", "/healthz").await, (200, "ok\n".into()));
        assert_eq!(request(addr, "GET", "/readyz").await.0, 503);
        fake.ready.store(true, Ordering::Relaxed);
        assert_eq!(request(addr, "GET", "/readyz").await.0, 200);

        let (status, body) = request(addr, "GET", "/api/v1/status").await;
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["version"], "9.9.9");
        let backend = &json["upstreams"][0]["backends"][0];
        assert_eq!(backend["address"], "127.0.0.1:1");
        assert_eq!(backend["state"], "healthy");
        assert_eq!(backend["requests_total"], 7);
        assert_eq!(backend["latency_p99_ms"], 3.0);

        let (status, body) = request(addr, "GET", "/nope").await;
        assert_eq!(status, 404);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], 404);
        assert_eq!(request(addr, "POST", "/healthz").await.0, 405);
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .unwrap();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
