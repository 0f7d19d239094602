//! A fake proxy behind the admin API, and a raw HTTP/1.1 client for the tests.
#![allow(clippy::unwrap_used, dead_code, reason = "test helpers fail loudly")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smartlb_admin::{
    AdminControl, AdminError, AdminServer, AdminSource, Anomaly, BackendStatus, BackendTraffic,
    BackendUpdate, ControlFuture, ForecastPoint, NewBackend, ReloadReport, StatusReport,
    TrafficQuery, TrafficReport, TrafficSample, UpstreamStatus, UpstreamTraffic, WeightDecision,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A proxy in memory: two upstreams whose numbers move on every poll.
pub struct Fake {
    pub ready: AtomicBool,
    pub polls: AtomicU64,
    pub upstreams: Mutex<Vec<UpstreamStatus>>,
    pub reload: Mutex<Result<ReloadReport, AdminError>>,
    pub reloads: AtomicU64,
}

pub fn backend(address: &str, weight: u32, state: &str) -> BackendStatus {
    BackendStatus {
        address: address.into(),
        state: state.into(),
        backup: state == "backup",
        configured_weight: weight,
        effective_weight: f64::from(weight),
        in_flight: 0,
        requests_total: 7,
        errors_total: 1,
        latency_ewma_ms: 1.25,
        latency_p99_ms: 3.0,
    }
}

impl Fake {
    pub fn new() -> Arc<Fake> {
        Arc::new(Fake {
            ready: AtomicBool::new(true),
            polls: AtomicU64::new(0),
            upstreams: Mutex::new(vec![
                UpstreamStatus {
                    name: "web".into(),
                    algorithm: "adaptive".into(),
                    backends: vec![
                        backend("127.0.0.1:8081", 2, "healthy"),
                        backend("127.0.0.1:8082", 1, "healthy"),
                        backend("[::1]:8083", 1, "backup"),
                    ],
                    anomalies: Vec::new(),
                },
                UpstreamStatus {
                    name: "api canary".into(),
                    algorithm: "p2c-ewma".into(),
                    backends: vec![backend("127.0.0.1:9081", 1, "healthy")],
                    anomalies: Vec::new(),
                },
            ]),
            reload: Mutex::new(Ok(ReloadReport {
                changes: vec!["upstream web: backend 127.0.0.1:8084 added".into()],
            })),
            reloads: AtomicU64::new(0),
        })
    }

    fn upstream<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut UpstreamStatus) -> Result<T, AdminError>,
    ) -> Result<UpstreamStatus, AdminError> {
        let mut upstreams = self.upstreams.lock().unwrap();
        let u = upstreams
            .iter_mut()
            .find(|u| u.name == name)
            .ok_or_else(|| AdminError::NotFound(format!("no upstream named `{name}`")))?;
        f(u)?;
        Ok(u.clone())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl AdminSource for Fake {
    fn status(&self) -> StatusReport {
        let poll = self.polls.load(Ordering::Relaxed);
        let mut upstreams = self.upstreams.lock().unwrap().clone();
        // Weights and states that change over time, as the analyser would make them.
        for u in &mut upstreams {
            for (i, b) in u.backends.iter_mut().enumerate() {
                b.effective_weight = f64::from(b.configured_weight)
                    * (0.6 + 0.4 * ((poll + i as u64) % 5) as f64 / 4.0);
                b.requests_total += poll * 10;
                b.in_flight = (poll + i as u64) % 4;
                if i == 1 && poll % 6 >= 3 && b.state == "healthy" {
                    b.state = "slow-start".into();
                }
            }
        }
        StatusReport {
            version: "9.9.9".into(),
            uptime_seconds: 1.5 + poll as f64,
            config: None,
            upstreams,
        }
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn traffic(&self, query: &TrafficQuery) -> TrafficReport {
        let poll = self.polls.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let n = query.samples.min(30 + poll as usize);
        let at = |i: usize| now - (n - 1 - i) as u64 * 1000;
        let sample = |i: usize, scale: f64| {
            let t = (poll as usize + i) as f64;
            let rps = scale * (50.0 + 20.0 * (t / 7.0).sin());
            TrafficSample {
                at_ms: at(i),
                interval_s: 1.0,
                requests: rps as u64,
                errors: u64::from(i.is_multiple_of(9)),
                rps,
                errors_per_sec: f64::from(u8::from(i.is_multiple_of(9))),
                // A gap in the latency series: no requests finished in that tick.
                p50_ms: (i != 3).then_some(2.0 * scale + (t / 5.0).cos()),
                p99_ms: (i != 3).then_some(9.0 * scale + 3.0 * (t / 5.0).cos()),
                mean_ms: Some(3.0 * scale),
                in_flight: (i % 4) as u64,
            }
        };
        let upstreams = self.upstreams.lock().unwrap().clone();
        TrafficReport {
            now_ms: now,
            upstreams: upstreams
                .iter()
                .map(|u| {
                    let backends: Vec<BackendTraffic> = u
                        .backends
                        .iter()
                        .enumerate()
                        .map(|(b, s)| BackendTraffic {
                            address: s.address.clone(),
                            series: (0..n).map(|i| sample(i, 1.0 + b as f64 * 0.5)).collect(),
                            weight: Some(WeightDecision {
                                configured: s.configured_weight,
                                computed: f64::from(s.configured_weight) * 0.9,
                                applied: f64::from(s.configured_weight) * 0.9,
                                reason: "p99 above peers".into(),
                            }),
                        })
                        .collect();
                    let scale = u.backends.len() as f64;
                    UpstreamTraffic {
                        name: u.name.clone(),
                        tick_ms: 1000,
                        analysis: "enforce".into(),
                        total: (0..n).map(|i| sample(i, scale)).collect(),
                        forecast: Some(ForecastPoint {
                            at_ms: now + 1000,
                            rps: 50.0 * scale,
                            lower: 40.0 * scale,
                            upper: 60.0 * scale,
                        }),
                        forecast_series: (0..n)
                            .map(|i| {
                                let t = (poll as usize + i) as f64;
                                let rps = scale * (50.0 + 18.0 * ((t - 1.0) / 7.0).sin());
                                ForecastPoint {
                                    at_ms: at(i),
                                    rps,
                                    lower: rps - 8.0 * scale,
                                    upper: rps + 8.0 * scale,
                                }
                            })
                            .collect(),
                        anomalies: vec![
                            Anomaly {
                                at_ms: now - 12_000,
                                kind: "rate-spike".into(),
                                backend: None,
                                message: "rate 90/s against 50/s expected".into(),
                                value: Some(90.0),
                                expected: Some(50.0),
                            },
                            Anomaly {
                                at_ms: now - 4_000,
                                kind: "latency".into(),
                                backend: Some(u.backends[0].address.clone()),
                                message: "p99 2.1x its peers".into(),
                                value: Some(21.0),
                                expected: Some(10.0),
                            },
                        ],
                        backends,
                    }
                })
                .collect(),
        }
    }
}

impl AdminControl for Fake {
    fn add_backend(&self, upstream: String, new: NewBackend) -> ControlFuture<'_, UpstreamStatus> {
        Box::pin(async move {
            self.upstream(&upstream, |u| {
                if !new.address.contains(':') {
                    return Err(AdminError::BadRequest(format!(
                        "`{}` is not a host:port address",
                        new.address
                    )));
                }
                if u.backends.iter().any(|b| b.address == new.address) {
                    return Err(AdminError::Conflict(format!(
                        "{} is already a backend of {upstream}",
                        new.address
                    )));
                }
                let mut b = backend(&new.address, new.weight, "slow-start");
                b.backup = new.backup;
                u.backends.push(b);
                Ok(())
            })
        })
    }

    fn update_backend(
        &self,
        upstream: String,
        address: String,
        update: BackendUpdate,
    ) -> ControlFuture<'_, UpstreamStatus> {
        Box::pin(async move {
            self.upstream(&upstream, |u| {
                let b = u
                    .backends
                    .iter_mut()
                    .find(|b| b.address == address)
                    .ok_or_else(|| {
                        AdminError::NotFound(format!("no backend {address} in {upstream}"))
                    })?;
                if let Some(w) = update.weight {
                    if w > 1000 {
                        return Err(AdminError::BadRequest("weight must be at most 1000".into()));
                    }
                    b.configured_weight = w;
                }
                match update.drain {
                    Some(true) => b.state = "draining".into(),
                    Some(false) => b.state = "healthy".into(),
                    None => {}
                }
                Ok(())
            })
        })
    }

    fn remove_backend(
        &self,
        upstream: String,
        address: String,
    ) -> ControlFuture<'_, UpstreamStatus> {
        Box::pin(async move {
            self.upstream(&upstream, |u| {
                let i = u
                    .backends
                    .iter()
                    .position(|b| b.address == address)
                    .ok_or_else(|| {
                        AdminError::NotFound(format!("no backend {address} in {upstream}"))
                    })?;
                if u.backends.len() == 1 {
                    return Err(AdminError::Conflict(
                        "cannot remove the last backend".into(),
                    ));
                }
                if u.backends[i].in_flight > 0 || address.ends_with(":8082") {
                    // Requests still in flight: drain first, remove later.
                    u.backends[i].state = "draining".into();
                } else {
                    u.backends.remove(i);
                }
                Ok(())
            })
        })
    }

    fn reload(&self) -> ControlFuture<'_, ReloadReport> {
        Box::pin(async move {
            self.reloads.fetch_add(1, Ordering::Relaxed);
            self.reload.lock().unwrap().clone()
        })
    }
}

/// A running admin server on loopback.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub async fn start(server: AdminServer) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// An answer: status, headers (names in lower case) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Checks the JSON error body shape and returns its message.
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?}");
        let json = self.json();
        assert_eq!(json["status"], status, "{self:?}");
        assert_eq!(self.headers["content-type"], "application/json");
        json["error"].as_str().unwrap().to_owned()
    }
}

/// Sends one HTTP/1.1 request and reads the whole answer.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let run = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body.unwrap_or(""));
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    };
    let out = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

pub async fn get(addr: SocketAddr, path: &str) -> Answer {
    send(addr, "GET", path, &[], None).await
}
