//! `smartlb demo`: the proxy in front of in-process demo backends, under load, with a live
//! view of how traffic moves.
//!
//! The story (see [`smartlb_demo::DemoPlan::default_story`]): four backends of different
//! speeds; `degrading` slows down steadily from a quarter of the run; `flaky` crashes at
//! 40% of the run and comes back at 65%. The proxy balances with the default algorithm
//! and has active health checks, outlier detection, retries and slow start turned on, so
//! the view shows traffic leaving the slow and the crashed backend, the crash costing no
//! client request, and the recovered backend ramping back up.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use smartlb_demo::{
    BackendRow, DEFAULT_DURATION, DemoPlan, LiveView, LoadGenerator, LoadOptions, LoadSnapshot,
    ViewData, ViewMode,
};
use tokio::sync::mpsc;

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
        format!("status  http://{admin_addr}/api/v1/status"),
        "Ctrl-C to stop".to_string(),
    ];

    let started = Instant::now();
    let mut events: Vec<String> = Vec::new();
    let mut states: HashMap<String, String> = HashMap::new();
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
        let snapshot = load.take_interval();
        let status = running.proxy().status();
        let mut rows = Vec::new();
        for upstream in &status.upstreams {
            for backend in &upstream.backends {
                let name = named
                    .iter()
                    .find(|(_, addr)| addr.to_string() == backend.address)
                    .map_or_else(|| backend.address.clone(), |(n, _)| n.clone());
                if let Some(previous) = states.insert(name.clone(), backend.state.clone())
                    && previous != backend.state
                {
                    events.push(format!(
                        "t={}s {name}: {previous} → {}",
                        elapsed.as_secs(),
                        backend.state
                    ));
                }
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
