//! Helpers of the failover tests: demo backends as real processes (killed with SIGKILL and
//! restarted on the same port), closed-loop load that records who answered when, the
//! proxy's health events, and a capture of the `backend health changed` log lines.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use smartlb::Running;
use smartlb::clock::{self, Nanos};
use smartlb_health::{HealthEvent, HealthState};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The `smartlb` binary, whose hidden `demo-backend` command serves one backend.
pub const BIN: &str = env!("CARGO_BIN_EXE_smartlb");

/// Tests that measure time run one at a time, so that they do not slow each other down
/// on a small machine.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

/// Seconds between two instants of the process clock.
pub fn secs(from: Nanos, to: Nanos) -> f64 {
    to.saturating_since(from) as f64 / 1e9
}

// ----- backend processes ------------------------------------------------------------

/// A demo backend running as a process of its own (`smartlb demo-backend --control`).
/// Killed when dropped.
pub struct BackendProcess {
    pub name: String,
    pub addr: SocketAddr,
    extra: Vec<String>,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Option<Lines<BufReader<ChildStdout>>>,
}

impl BackendProcess {
    /// Starts backend `name` on a free loopback port, with extra command-line arguments
    /// (such as `--error-rate 1`).
    pub async fn start(name: &str, extra: &[&str]) -> Self {
        let mut backend = Self {
            name: name.to_string(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            stdin: None,
            stdout: None,
        };
        backend.spawn().await;
        backend
    }

    async fn spawn(&mut self) {
        let mut child = Command::new(BIN)
            .arg("demo-backend")
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--name")
            .arg(&self.name)
            .arg("--latency")
            .arg("1ms")
            .arg("--control")
            .args(&self.extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the smartlb binary starts");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: no address within 10 s", self.name))
            .expect("read stdout")
            .unwrap_or_else(|| panic!("{}: exited before listening", self.name));
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{}: unexpected first line {line:?}", self.name));
        self.addr = addr;
        self.child = Some(child);
        self.stdin = Some(stdin);
        self.stdout = Some(stdout);
    }

    /// Kills the process with SIGKILL and waits until it is gone. Returns when the signal
    /// was sent, on the proxy's clock.
    pub async fn kill(&mut self) -> Nanos {
        let mut child = self.child.take().expect("running");
        let at = clock::now();
        child.start_kill().expect("SIGKILL");
        // Closed only now: the end of its input would stop it cleanly.
        self.stdin = None;
        self.stdout = None;
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the killed process is reaped within 10 s")
            .expect("wait");
        assert!(!status.success(), "{}: {status}", self.name);
        at
    }

    /// Starts the process again on the same port. Returns when it listens, on the proxy's
    /// clock.
    pub async fn restart(&mut self) -> Nanos {
        assert!(self.child.is_none(), "{} is running", self.name);
        self.spawn().await;
        clock::now()
    }

    /// Sends a control command (`health-failing on`, `blackhole on`, ...) and waits for
    /// its `ok`.
    pub async fn control(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("running");
        stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write command");
        stdin.flush().await.expect("flush command");
        let stdout = self.stdout.as_mut().expect("running");
        let answer = tokio::time::timeout(Duration::from_secs(5), stdout.next_line())
            .await
            .expect("an answer within 5 s")
            .expect("read answer");
        assert_eq!(answer.as_deref(), Some("ok"), "{}: {command}", self.name);
    }
}

// ----- configuration -----------------------------------------------------------------

/// A proxy configuration with one upstream `name` over `backends`: `(address, backup)`,
/// and `tables` appended verbatim (algorithm, health, outlier, ... settings).
pub fn config(name: &str, backends: &[(SocketAddr, bool)], server: &str, tables: &str) -> String {
    let list = backends
        .iter()
        .map(|(addr, backup)| format!("{{ address = \"{addr}\", backup = {backup} }}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[server]
listen = "127.0.0.1:0"
{server}

[admin]
listen = "127.0.0.1:0"

[log]
access_log = false

[[upstream]]
name = "{name}"
connect_timeout = "250ms"
backends = [{list}]
{tables}
"#
    )
}

/// The addresses of processes, all primaries.
pub fn primaries(backends: &[&BackendProcess]) -> Vec<(SocketAddr, bool)> {
    backends.iter().map(|b| (b.addr, false)).collect()
}

// ----- load ------------------------------------------------------------------------

/// One exchange of the load.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the response was complete (process clock).
    pub at: Nanos,
    /// When the request was sent.
    pub sent: Nanos,
    /// The `x-backend` header, or `""`.
    pub backend: String,
    /// `None` for a 200, else what went wrong.
    pub failure: Option<String>,
}

/// Closed-loop clients sending requests through the proxy until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Record>>>,
}

/// Requests per client at most: every loop is bounded.
const MAX_PER_CLIENT: usize = 200_000;

impl Load {
    /// `gets` clients sending `GET /`, and `puts` clients sending `PUT /` with a 2 KiB
    /// body (replayable: small and of known length).
    pub fn start(proxy: SocketAddr, gets: usize, puts: usize) -> Self {
        Self::start_paced(proxy, gets, puts, Duration::ZERO)
    }

    /// As [`start`](Self::start), each client pausing `pause` between requests.
    pub fn start_paced(proxy: SocketAddr, gets: usize, puts: usize, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let body = Bytes::from(vec![b'x'; 2048]);
        let workers = (0..gets + puts)
            .map(|i| {
                let stop = stop.clone();
                let method = if i < gets { Method::GET } else { Method::PUT };
                let body = if i < gets { Bytes::new() } else { body.clone() };
                tokio::spawn(async move {
                    let client = crate::common::client();
                    let mut records = Vec::new();
                    for _ in 0..MAX_PER_CLIENT {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let req = Request::builder()
                            .method(method.clone())
                            .uri(format!("http://{proxy}/"))
                            .body(Full::new(body.clone()))
                            .expect("request");
                        let sent = clock::now();
                        let outcome =
                            tokio::time::timeout(Duration::from_secs(10), client.request(req))
                                .await;
                        let (backend, failure) = match outcome {
                            Ok(Ok(resp)) => {
                                let status = resp.status();
                                let header = |name: &str| {
                                    resp.headers()
                                        .get(name)
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or("")
                                        .to_string()
                                };
                                let backend = header("x-backend");
                                let cause = header("x-smartlb-error");
                                match resp.into_body().collect().await {
                                    Ok(_) if status == StatusCode::OK => (backend, None),
                                    Ok(_) => (backend, Some(format!("{status} {cause}"))),
                                    Err(e) => (backend, Some(format!("body: {e}"))),
                                }
                            }
                            Ok(Err(e)) => (String::new(), Some(format!("client: {e}"))),
                            Err(_) => (String::new(), Some("timed out".to_string())),
                        };
                        records.push(Record {
                            at: clock::now(),
                            sent,
                            backend,
                            failure,
                        });
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    records
                })
            })
            .collect();
        Self { stop, workers }
    }

    /// Stops the clients and returns every exchange, in order of completion.
    pub async fn stop(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for worker in self.workers {
            let records = tokio::time::timeout(Duration::from_secs(30), worker)
                .await
                .expect("load client stops within 30 s")
                .expect("load client");
            all.extend(records);
        }
        all.sort_by_key(|r| r.at);
        all
    }
}

/// The failed exchanges.
pub fn failures(records: &[Record]) -> Vec<&Record> {
    records.iter().filter(|r| r.failure.is_some()).collect()
}

/// Answers per backend among `records` completed in `[from, to)`.
pub fn shares(records: &[Record], from: Nanos, to: Nanos) -> (BTreeMap<String, usize>, usize) {
    let mut by = BTreeMap::new();
    let mut total = 0;
    for r in records
        .iter()
        .filter(|r| r.at >= from && r.at < to && r.failure.is_none())
    {
        *by.entry(r.backend.clone()).or_default() += 1;
        total += 1;
    }
    (by, total)
}

// ----- health events ---------------------------------------------------------------

/// Every health event of one upstream, collected in the background.
#[derive(Clone)]
pub struct Events {
    seen: Arc<Mutex<Vec<HealthEvent>>>,
}

impl Events {
    /// Starts collecting the events of `upstream`.
    pub fn collect(running: &Running, upstream: &str) -> Self {
        let mut rx = running
            .proxy()
            .upstream(upstream)
            .expect("the upstream exists")
            .subscribe_health();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        tokio::spawn(async move {
            while let Ok(event) = rx.recv().await {
                sink.lock().expect("events").push(event);
            }
        });
        Self { seen }
    }

    /// The events so far.
    pub fn all(&self) -> Vec<HealthEvent> {
        self.seen.lock().expect("events").clone()
    }

    /// The events of the backend at `addr` so far.
    pub fn of(&self, addr: SocketAddr) -> Vec<HealthEvent> {
        let addr = addr.to_string();
        self.all()
            .into_iter()
            .filter(|e| *e.backend == *addr)
            .collect()
    }

    /// Waits for the first event of the backend at `addr`, after `after`, that `matches`;
    /// fails the test after `limit`.
    pub async fn wait(
        &self,
        addr: SocketAddr,
        after: Nanos,
        limit: Duration,
        what: &str,
        matches: impl Fn(&HealthEvent) -> bool,
    ) -> HealthEvent {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(e) = self
                .of(addr)
                .into_iter()
                .find(|e| e.at >= after && matches(e))
            {
                return e;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "{addr}: no event within {limit:?}: {what}; events: {:#?}",
                    self.of(addr)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Whether an event takes the backend out of service.
pub fn goes_out(e: &HealthEvent) -> bool {
    e.transition.from.is_available() && !e.transition.to.is_available()
}

/// Whether an event brings the backend back into service.
pub fn comes_back(e: &HealthEvent) -> bool {
    !e.transition.from.is_available() && e.transition.to.is_available()
}

/// Whether an event goes to `state`.
pub fn to(state: HealthState) -> impl Fn(&HealthEvent) -> bool {
    move |e| e.transition.to == state
}

// ----- captured logs ---------------------------------------------------------------

/// One `backend health changed` log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogLine {
    pub level: String,
    pub upstream: String,
    pub backend: String,
    pub from: String,
    pub to: String,
    pub reason: String,
}

fn log_lines() -> &'static Mutex<Vec<LogLine>> {
    static LINES: OnceLock<Mutex<Vec<LogLine>>> = OnceLock::new();
    LINES.get_or_init(|| Mutex::new(Vec::new()))
}

/// Starts capturing `backend health changed` log lines (once per test binary).
pub fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(Capture);
        // Another subscriber already installed would only mean no capture.
        let _ = tracing::subscriber::set_global_default(subscriber);
    });
}

/// The captured lines of `upstream`'s backend at `addr`.
pub fn logged(upstream: &str, addr: SocketAddr) -> Vec<LogLine> {
    let addr = addr.to_string();
    log_lines()
        .lock()
        .expect("log lines")
        .iter()
        .filter(|l| l.upstream == upstream && l.backend == addr)
        .cloned()
        .collect()
}

struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut visitor = Visitor::default();
        event.record(&mut visitor);
        if visitor.message != "backend health changed" {
            return;
        }
        visitor.line.level = event.metadata().level().to_string();
        log_lines().lock().expect("log lines").push(visitor.line);
    }
}

#[derive(Default)]
struct Visitor {
    message: String,
    line: LogLine,
}

impl tracing::field::Visit for Visitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let slot = match field.name() {
            "upstream" => &mut self.line.upstream,
            "backend" => &mut self.line.backend,
            "from" => &mut self.line.from,
            "to" => &mut self.line.to,
            "reason" => &mut self.line.reason,
            "message" => &mut self.message,
            _ => return,
        };
        *slot = value.to_string();
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.record_str(field, &format!("{value:?}"));
        }
    }
}

/// Checks that the log lines and the events of one backend tell the same story, each
/// transition once, and that the transitions chain (each starts where the previous one
/// ended), starting from `healthy`.
pub fn assert_logged_once(upstream: &str, addr: SocketAddr, events: &[HealthEvent]) {
    let lines = logged(upstream, addr);
    let from_events: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e.transition.from.to_string(),
                e.transition.to.to_string(),
                e.transition.reason.clone(),
            )
        })
        .collect();
    let from_logs: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| (l.from.clone(), l.to.clone(), l.reason.clone()))
        .collect();
    assert_eq!(
        from_logs, from_events,
        "{addr}: the log and the events differ"
    );
    let mut state = "healthy".to_string();
    for l in &lines {
        assert_eq!(
            l.from, state,
            "{addr}: transitions do not chain: {lines:#?}"
        );
        let expected_level = if matches!(l.to.as_str(), "healthy" | "slow-start" | "backup") {
            "INFO"
        } else {
            "WARN"
        };
        assert_eq!(l.level, expected_level, "{l:?}");
        state = l.to.clone();
    }
}
