//! `smartlb demo`: the proxy in front of in-process demo backends, under load, with a live
//! view of how traffic moves.
//!
//! The story (see [`smartlb_demo::DemoPlan::default_story`]): four backends of different
//! speeds; `degrading` slows down steadily from a quarter of the run; `flaky` crashes at
//! 40% of the run and comes back at 65%. The proxy balances with the default algorithm
//! and has active health checks, outlier detection, retries and slow start turned on, so
//! the view shows traffic leaving the slow and the crashed backend, the crash costing no
//! client request, and the recovered backend ramping back up.

use std::future::Future;
use std::time::{Duration, Instant};

use smartlb_demo::{
    BackendRow, DEFAULT_DURATION, DemoBackend, DemoBackendHandle, DemoBackendOptions, DemoPlan,
    Latency, LiveView, LoadGenerator, LoadOptions, LoadSnapshot, ViewData, ViewMode,
};
use smartlb_health::HealthEvent;
use tokio::sync::{broadcast, mpsc};

use crate::server::start;

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How long to run; `None` runs the story again and again until the signal.
    pub duration: Option<Duration>,
    /// Plain frames (no screen redraw), as for a log or a pipe.
    pub plain: bool,
    /// Requests per second the load generator sends.
    pub rate: f64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            duration: None,
            plain: false,
            rate: 200.0,
        }
    }
}

/// The error type of the demo.
pub type DemoError = Box<dyn std::error::Error + Send + Sync>;

/// The configuration the demo serves, for backends at `addresses` (name, address).
pub fn demo_config(backends: &[(String, std::net::SocketAddr)]) -> String {
    let list = backends
        .iter()
        .map(|(_, addr)| format!("\"{addr}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[server]
listen = "127.0.0.1:0"
request_timeout = "5s"

[admin]
listen = "127.0.0.1:0"

[log]
access_log = false

[[upstream]]
name = "demo"
algorithm = "adaptive"
connect_timeout = "250ms"
backends = [{list}]

[upstream.health]
path = "/health"
interval = "1s"
timeout = "500ms"
healthy_threshold = 2
unhealthy_threshold = 2

[upstream.outlier]
consecutive_failures = 3
base_ejection_time = "3s"

[upstream.slow_start]
duration = "8s"
"#
    )
}

/// Runs the demo until `duration` has passed or `signal` resolves, printing a frame every
/// second to standard output.
///
/// # Errors
///
/// A demo backend or the proxy could not start.
pub async fn run(options: DemoOptions, signal: impl Future<Output = ()>) -> Result<(), DemoError> {
    let plan = DemoPlan::default_story();
    let backends = plan.start_backends().await?;
    let named: Vec<(String, std::net::SocketAddr)> = backends
        .iter()
        .map(|b| (b.name().to_string(), b.addr()))
        .collect();
    let config = smartlb_config::parse_str(&demo_config(&named), "demo.toml", &|_| None)?;
    let running = start(&config).await?;
    let mut health_events: Vec<broadcast::Receiver<HealthEvent>> = running
        .proxy()
        .upstreams()
        .iter()
        .map(|u| u.subscribe_health())
        .collect();
    let proxy_addr = running.listen_addrs()[0];
    let admin_addr = running.admin_addr();
    let load = LoadGenerator::start(proxy_addr, LoadOptions::default().with_rate(options.rate))?;

    let story = options.duration.unwrap_or(DEFAULT_DURATION);
    let handles: Vec<_> = backends.iter().map(|b| b.handle()).collect();
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<String>();
    let story_task = {
        let handles = handles.clone();
        let events_tx = events_tx.clone();
        let repeat = options.duration.is_none();
        tokio::spawn(async move {
            loop {
                let tx = events_tx.clone();
                let played = plan
                    .run(story, &handles, move |event| {
                        let _ = tx.send(event.to_string());
                    })
                    .await;
                if let Err(error) = played {
                    let _ = events_tx.send(format!("the demo story stopped: {error}"));
                    return;
                }
                if !repeat {
                    return;
                }
                let _ = events_tx.send("the story starts again".to_string());
            }
        })
    };

    let view = if options.plain {
        LiveView::new(ViewMode::Plain)
    } else {
        LiveView::auto()
    }
    .with_title("smartlb demo")
    .with_max_events(8);
    let footer = vec![
        format!("proxy   http://{proxy_addr}/   (algorithm: adaptive; try curl)"),
        format!("dashboard http://{admin_addr}/   (status: /api/v1/status, metrics: /metrics)"),
        "Ctrl-C to stop".to_string(),
    ];

    let started = Instant::now();
    let started_at = crate::clock::now();
    let mut events: Vec<String> = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            _ = ticker.tick() => {}
        }
        let elapsed = started.elapsed();
        while let Ok(event) = events_rx.try_recv() {
            events.push(event);
        }
        for receiver in &mut health_events {
            loop {
                match receiver.try_recv() {
                    Ok(event) => events.push(health_line(&event, started_at, &named)),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        events.push(format!("({n} health events not shown)"));
                    }
                    Err(_) => break,
                }
            }
        }
        let snapshot = load.take_interval();
        let status = running.proxy().status();
        let mut rows = Vec::new();
        for upstream in &status.upstreams {
            for backend in &upstream.backends {
                let name = display_name(&backend.address, &named);
                rows.push(
                    BackendRow::from_load(&name, &backend.address, &backend.state, &snapshot)
                        .with_weight(backend.effective_weight),
                );
            }
        }
        let keep = events.len().saturating_sub(32);
        events.drain(..keep);
        let frame = view.render(&ViewData {
            elapsed,
            total: options.duration.unwrap_or(Duration::ZERO),
            rows,
            load: snapshot,
            events: events.clone(),
            footer: footer.clone(),
        });
        print!("{frame}");
        if options
            .duration
            .is_some_and(|d| elapsed + Duration::from_millis(500) >= d)
        {
            break;
        }
    }

    story_task.abort();
    let totals = load.stop().await;
    print_summary(&totals, started.elapsed());
    running.shutdown().await?;
    drop(backends);
    Ok(())
}

/// The demo's name of the backend at `address`, or the address.
fn display_name(address: &str, named: &[(String, std::net::SocketAddr)]) -> String {
    named
        .iter()
        .find(|(_, addr)| addr.to_string() == address)
        .map_or_else(|| address.to_string(), |(n, _)| n.clone())
}

/// One line of the event list for a health transition, timed from the start of the demo.
fn health_line(
    event: &HealthEvent,
    started_at: crate::clock::Nanos,
    named: &[(String, std::net::SocketAddr)],
) -> String {
    let t = &event.transition;
    format!(
        "t={:.1}s {}: {} → {} ({})",
        event.at.saturating_since(started_at) as f64 / 1e9,
        display_name(&event.backend, named),
        t.from,
        t.to,
        t.reason
    )
}

fn print_summary(totals: &LoadSnapshot, elapsed: Duration) {
    println!();
    println!(
        "demo finished after {}s: {} requests, {} succeeded, {} failed ({} connect errors, {} timeouts, {} dropped by the load generator)",
        elapsed.as_secs(),
        totals.requests,
        totals.successes,
        totals.errors,
        totals.connect_errors,
        totals.timeouts,
        totals.dropped,
    );
    let total = totals.requests.max(1) as f64;
    for (name, seen) in &totals.by_backend {
        println!(
            "  {name:<10} {:>6} requests ({:>5.1}%)",
            seen.requests,
            seen.requests as f64 * 100.0 / total
        );
    }
}

/// Options of [`serve_backend`].
#[derive(Debug, Clone)]
pub struct BackendProcessOptions {
    /// Where to listen (port 0 picks a free port).
    pub listen: std::net::SocketAddr,
    /// The name the backend answers with in `x-backend`.
    pub name: String,
    /// Latency added to every request.
    pub latency: Duration,
    /// Probability that a request (other than `/health`) is answered 500 or 503.
    pub error_rate: f64,
    /// Read control commands from standard input, and stop at its end.
    pub control: bool,
}

impl Default for BackendProcessOptions {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            name: "backend".to_string(),
            latency: Duration::ZERO,
            error_rate: 0.0,
            control: false,
        }
    }
}

/// How long [`serve_backend`] keeps trying to bind an address still held by a process
/// that was just killed.
const BIND_PATIENCE: Duration = Duration::from_secs(3);

/// Runs one demo backend (see [`smartlb_demo::DemoBackend`]) until `signal` resolves: the
/// `smartlb demo-backend` command, a real process that tests and scripts kill and restart.
///
/// Once listening it prints `listening on ADDR` on standard output. With
/// [`control`](BackendProcessOptions::control) it reads one command per line from standard
/// input, answers `ok` or `error: ...` on standard output, and stops at the end of input:
///
/// | command | effect |
/// | --- | --- |
/// | `health-failing on\|off` | `GET /health` answers 503 / 200; other paths keep serving |
/// | `blackhole on\|off` | connections are accepted and requests read, but none is answered |
/// | `error-rate P` | requests other than `/health` get a 500 or 503 with probability P |
/// | `latency D` | every request waits D (`"5ms"`) |
///
/// # Errors
///
/// The address cannot be bound (after retrying for a few seconds while it is still held
/// by a killed predecessor), or the options are invalid.
pub async fn serve_backend(
    options: BackendProcessOptions,
    signal: impl Future<Output = ()>,
) -> Result<(), DemoError> {
    let backend_options = DemoBackendOptions::default()
        .with_addr(options.listen)
        .with_latency(Latency::fixed(options.latency))
        .with_error_rate(options.error_rate);
    let deadline = Instant::now() + BIND_PATIENCE;
    let backend = loop {
        match DemoBackend::start(options.name.clone(), backend_options.clone()).await {
            Ok(backend) => break backend,
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse
                    && options.listen.port() != 0
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    say(&format!("listening on {}", backend.addr()));
    tokio::pin!(signal);
    if !options.control {
        signal.await;
        return Ok(());
    }
    let (tx, mut commands) = mpsc::unbounded_channel::<String>();
    // Standard input is read on a thread of its own: a blocking read has no place on the
    // runtime, and the thread ends with the process.
    std::thread::Builder::new()
        .name("control".to_string())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut line = String::new();
            loop {
                line.clear();
                match std::io::BufRead::read_line(&mut stdin.lock(), &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if tx.send(line.trim().to_string()).is_err() {
                            return;
                        }
                    }
                }
            }
        })?;
    let handle = backend.handle();
    loop {
        tokio::select! {
            () = &mut signal => return Ok(()),
            command = commands.recv() => match command {
                None => return Ok(()),
                Some(command) if command.is_empty() => {}
                Some(command) => match control(&handle, &command) {
                    Ok(()) => say("ok"),
                    Err(error) => say(&format!("error: {error}")),
                },
            },
        }
    }
}

/// Prints one line on standard output at once (the reader is waiting for it).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe only means nobody listens any more.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Applies one control command.
fn control(backend: &DemoBackendHandle, command: &str) -> Result<(), String> {
    let (verb, arg) = command.split_once(' ').unwrap_or((command, ""));
    let switch = |arg: &str| match arg.trim() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("expected on or off, got {other:?}")),
    };
    match verb {
        "health-failing" => backend.set_health_failing(switch(arg)?),
        "blackhole" => backend.blackhole(switch(arg)?),
        "error-rate" => {
            let rate: f64 = arg
                .trim()
                .parse()
                .map_err(|_| format!("not a number: {arg:?}"))?;
            backend.set_error_rate(rate).map_err(|e| e.to_string())?;
        }
        "latency" => {
            let latency = smartlb_config::parse_duration(arg.trim()).map_err(|e| e.to_string())?;
            backend.set_latency(Latency::fixed(latency));
        }
        other => return Err(format!("unknown command {other:?}")),
    }
    Ok(())
}
