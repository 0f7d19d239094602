//! The active checker against tiny HTTP servers on 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions; a failure is a test failure"
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use smartlb_health::{
    ActiveThresholds, BackendHealth, CheckConfig, CheckHandle, CheckObserver, CheckOutcome,
    CheckTarget, Clock, EjectionBudget, HealthChecker, HealthConfig, HealthState, SlowStartConfig,
    StatusRange, TokioClock, Transition, check_once,
};
use tokio::net::TcpListener;

const OK: u8 = 0;
const FAIL: u8 = 1;
/// Accepts the connection and never answers.
const BLACKHOLE: u8 = 2;
/// Accepts the connection and closes it at once.
const CLOSE: u8 = 3;

/// What the server saw of one request: host, user agent, path and query.
type Seen = (String, String, String);

struct Backend {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    seen: Arc<Mutex<Vec<Seen>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Backend {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

async fn backend(mode: u8) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mode = Arc::new(AtomicU8::new(mode));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (m, s) = (Arc::clone(&mode), Arc::clone(&seen));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            match m.load(Ordering::SeqCst) {
                BLACKHOLE => {
                    tokio::spawn(async move {
                        let _held = stream;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    });
                }
                CLOSE => drop(stream),
                _ => {
                    let (m, s) = (Arc::clone(&m), Arc::clone(&s));
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let header = |name| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        s.lock().unwrap().push((
                            header(http::header::HOST),
                            header(http::header::USER_AGENT),
                            req.uri().to_string(),
                        ));
                        let status = if m.load(Ordering::SeqCst) == FAIL {
                            500
                        } else {
                            200
                        };
                        let resp = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from_static(b"ok")))
                            .unwrap();
                        std::future::ready(Ok::<_, Infallible>(resp))
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            }
        }
    });
    Backend {
        addr,
        mode,
        seen,
        _task: task,
    }
}

#[derive(Default)]
struct Recorder {
    outcomes: Mutex<Vec<CheckOutcome>>,
    transitions: Mutex<Vec<Transition>>,
}

impl CheckObserver for Recorder {
    fn on_check(&self, _target: &CheckTarget, outcome: &CheckOutcome) {
        self.outcomes.lock().unwrap().push(outcome.clone());
    }
    fn on_transition(&self, _target: &CheckTarget, transition: &Transition) {
        self.transitions.lock().unwrap().push(transition.clone());
    }
}

impl Recorder {
    fn transitions(&self) -> Vec<(HealthState, HealthState)> {
        self.transitions
            .lock()
            .unwrap()
            .iter()
            .map(|t| (t.from, t.to))
            .collect()
    }
}

/// Polls `cond` every 5 ms for at most 5 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn health_config(slow_start: Option<Duration>) -> HealthConfig {
    HealthConfig {
        active: Some(ActiveThresholds {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }),
        outlier: None,
        slow_start: slow_start.map(SlowStartConfig::linear),
    }
}

fn check_config(timeout_ms: u64) -> CheckConfig {
    CheckConfig {
        path: "/health?deep=1".to_owned(),
        interval: Duration::from_millis(20),
        timeout: Duration::from_millis(timeout_ms),
        expect_status: StatusRange::default(),
        jitter: 0.1,
        grpc: None,
    }
}

fn start(
    b: &Backend,
    config: CheckConfig,
    health: HealthConfig,
) -> (Arc<BackendHealth>, Arc<Recorder>, CheckHandle, TokioClock) {
    let clock = TokioClock::new();
    let recorder = Arc::new(Recorder::default());
    let health = Arc::new(BackendHealth::new(
        &health,
        Arc::new(EjectionBudget::new(50)),
    ));
    let checker = HealthChecker::new(config)
        .unwrap()
        .with_clock(clock)
        .with_observer(Arc::clone(&recorder) as Arc<dyn CheckObserver>)
        .with_seed(7);
    let handle = checker
        .spawn(CheckTarget::new(b.addr), Arc::clone(&health))
        .unwrap();
    (health, recorder, handle, clock)
}

#[tokio::test]
async fn pass_fail_recover_and_stop() {
    let b = backend(OK).await;
    let (health, rec, handle, clock) = start(
        &b,
        check_config(500),
        health_config(Some(Duration::from_millis(60))),
    );

    eventually("three passing checks", || health.checks_passed() >= 3).await;
    assert_eq!(health.state(clock.now()), HealthState::Healthy);
    assert!(rec.transitions().is_empty());
    {
        let seen = b.seen.lock().unwrap();
        let (host, ua, path) = &seen[0];
        assert_eq!(host, &b.addr.to_string());
        assert_eq!(ua, "smartlb-health");
        assert_eq!(path, "/health?deep=1");
    }

    // 500s: out after three failures in a row.
    b.set(FAIL);
    eventually("unhealthy", || {
        health.state(clock.now()) == HealthState::Unhealthy
    })
    .await;
    assert!(health.checks_failed() >= 3);
    assert_eq!(
        rec.transitions(),
        vec![(HealthState::Healthy, HealthState::Unhealthy)]
    );
    assert!(
        rec.outcomes
            .lock()
            .unwrap()
            .contains(&CheckOutcome::UnexpectedStatus { status: 500 })
    );

    // Recovery: back after two passes, through slow start; the checker's
    // poll reports the end of the ramp.
    b.set(OK);
    eventually("recovered and ramped up", || rec.transitions().len() >= 3).await;
    assert_eq!(
        rec.transitions(),
        vec![
            (HealthState::Healthy, HealthState::Unhealthy),
            (HealthState::Unhealthy, HealthState::SlowStart),
            (HealthState::SlowStart, HealthState::Healthy),
        ]
    );
    assert!(health.is_available(clock.now()));

    // Dropping the handle stops the checks.
    drop(handle);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let before = health.checks_passed() + health.checks_failed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(health.checks_passed() + health.checks_failed(), before);
}

#[tokio::test]
async fn blackhole_times_out_then_recovers() {
    let b = backend(BLACKHOLE).await;
    let (health, rec, _handle, clock) = start(&b, check_config(40), health_config(None));
    eventually("unhealthy", || {
        health.state(clock.now()) == HealthState::Unhealthy
    })
    .await;
    {
        let outcomes = rec.outcomes.lock().unwrap();
        assert!(outcomes.len() >= 3);
        assert!(
            outcomes.iter().all(|o| *o == CheckOutcome::Timeout),
            "{outcomes:?}"
        );
    }
    b.set(OK);
    eventually("healthy", || {
        health.state(clock.now()) == HealthState::Healthy
    })
    .await;
    assert_eq!(
        rec.transitions(),
        vec![
            (HealthState::Healthy, HealthState::Unhealthy),
            (HealthState::Unhealthy, HealthState::Healthy),
        ]
    );
}

#[tokio::test]
async fn refused_and_closed_connections_fail() {
    // Nothing listens on a port that was just released.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let target = CheckTarget::new(addr);
    let outcome = check_once(&target, &check_config(500)).await;
    assert!(matches!(outcome, CheckOutcome::Connect(_)), "{outcome:?}");

    let b = backend(CLOSE).await;
    let outcome = check_once(&CheckTarget::new(b.addr), &check_config(500)).await;
    assert!(matches!(outcome, CheckOutcome::Broken(_)), "{outcome:?}");

    let (health, rec, _handle, clock) = start(&b, check_config(500), health_config(None));
    eventually("unhealthy", || {
        health.state(clock.now()) == HealthState::Unhealthy
    })
    .await;
    assert!(
        rec.outcomes
            .lock()
            .unwrap()
            .iter()
            .all(|o| matches!(o, CheckOutcome::Broken(_)))
    );
}

#[tokio::test]
async fn expected_status_and_host_override() {
    let b = backend(FAIL).await;
    let target = CheckTarget::new(b.addr).with_host("web.internal");
    let mut config = check_config(500);
    assert_eq!(
        check_once(&target, &config).await,
        CheckOutcome::UnexpectedStatus { status: 500 }
    );
    config.expect_status = "500-503".parse().unwrap();
    assert_eq!(
        check_once(&target, &config).await,
        CheckOutcome::Passed { status: 500 }
    );
    b.set(OK);
    assert_eq!(
        check_once(&target, &config).await,
        CheckOutcome::UnexpectedStatus { status: 200 }
    );
    let seen = b.seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|(host, _, _)| host == "web.internal"));
}
