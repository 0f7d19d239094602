//! `smartlb demo`: the proxy in front of in-process demo backends, under load, with a live
//! view of how traffic moves.
//!
//! The story (see [`smartlb_demo::DemoPlan::default_story`]): four backends of different
//! speeds; `degrading` slows down steadily from a quarter of the run; `flaky` crashes at
//! 40% of the run and comes back at 65%. The proxy balances with the default algorithm
//! and has active health checks, outlier detection, retries and slow start turned on, so
//! the view shows traffic leaving the slow and the crashed backend, the crash costing no
//! client request, and the recovered backend ramping back up.
//!
//! The event list also narrates the traffic analyser's decisions, read from the running
//! proxy's analyser (the figures the status and traffic APIs show) by a [`Narrator`]:
//! anomalies as they are reported (`t=8.0s anomaly: degrading latency 72.3 ms, expected
//! 9.3 ms from its own history`), weight changes with their reasons (`t=11.0s analysis:
//! degrading loses share, weight 0.75 → 0.42 (capacity factor ×0.42): change limited
//! (wanted ×0.31), capacity ×0.42 (latency 55.03 ms against 12.85 ms)`), and every 10 s
//! the forecast against the actual rate.

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
    .with_max_events(10);
    let footer = vec![
        format!("proxy   http://{proxy_addr}/   (algorithm: adaptive; try curl)"),
        format!("dashboard http://{admin_addr}/   (status: /api/v1/status, metrics: /metrics)"),
        "Ctrl-C to stop".to_string(),
    ];

    let started = Instant::now();
    let started_at = crate::clock::now();
    let mut events: Vec<String> = Vec::new();
    let mut narrator = Narrator::new(started_at, FORECAST_EVERY);
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
        for upstream in running.proxy().upstreams() {
            let (anomalies, _) = upstream.anomalies();
            events.extend(narrator.observe(
                upstream.analysis().as_ref(),
                &anomalies,
                elapsed,
                &named,
            ));
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

/// How often the demo narrates the forecast against the actual rate.
const FORECAST_EVERY: Duration = Duration::from_secs(10);

/// A capacity factor must move by this ratio (either way) from the last one narrated
/// before a weight change is narrated again: the controller moves factors by up to 25% a
/// tick, and one line per step would drown the view.
const NARRATE_FACTOR_RATIO: f64 = 1.5;

/// Turns what the traffic analyser decided into lines of the demo's event list: weight
/// changes with their reasons, anomalies as they are reported, and now and then the
/// forecast against the actual rate.
///
/// It reads only the analyser's own output ([`crate::Upstream::analysis`] and
/// [`crate::Upstream::anomalies`], the same figures as the status and traffic APIs), so
/// what it says is what the proxy decided.
#[derive(Debug)]
pub struct Narrator {
    started_at_ms: u64,
    forecast_every: Duration,
    next_forecast: Duration,
    /// Per backend address: the capacity factor and weight last narrated.
    narrated: std::collections::HashMap<String, (f64, f64)>,
    /// Anomalies already narrated: (time, kind, backend).
    seen: std::collections::HashSet<(u64, &'static str, Option<String>)>,
    /// The tick of the last report looked at.
    last_tick_ms: Option<u64>,
}

impl Narrator {
    /// A narrator for a demo that started at `started_at`, telling the forecast every
    /// `forecast_every` (at least a second).
    pub fn new(started_at: crate::clock::Nanos, forecast_every: Duration) -> Self {
        let forecast_every = forecast_every.max(Duration::from_secs(1));
        Self {
            started_at_ms: started_at.as_u64() / 1_000_000,
            forecast_every,
            next_forecast: forecast_every,
            narrated: std::collections::HashMap::new(),
            seen: std::collections::HashSet::new(),
            last_tick_ms: None,
        }
    }

    /// The new narration lines, given the analyser's last tick report, its recent
    /// anomalies (oldest first), the time since the demo started, and the demo's names
    /// of the backends (others are shown by address).
    pub fn observe(
        &mut self,
        report: Option<&smartlb_traffic::analysis::TickReport>,
        anomalies: &[smartlb_traffic::analysis::Anomaly],
        elapsed: Duration,
        named: &[(String, std::net::SocketAddr)],
    ) -> Vec<String> {
        let mut lines = Vec::new();
        self.seen.retain(|(at, kind, backend)| {
            anomalies
                .iter()
                .any(|a| a.at_ms == *at && a.kind.as_str() == *kind && &a.backend == backend)
        });
        for anomaly in anomalies {
            let key = (
                anomaly.at_ms,
                anomaly.kind.as_str(),
                anomaly.backend.clone(),
            );
            if self.seen.insert(key) {
                lines.push(self.anomaly_line(anomaly, named));
            }
        }
        let Some(report) = report else {
            return lines;
        };
        if self.last_tick_ms != Some(report.at_ms) {
            self.last_tick_ms = Some(report.at_ms);
            for decision in &report.weights {
                if let Some(line) = self.weight_line(report.at_ms, decision, named) {
                    lines.push(line);
                }
            }
        }
        if elapsed >= self.next_forecast {
            while self.next_forecast <= elapsed {
                self.next_forecast += self.forecast_every;
            }
            if let Some(line) = self.forecast_line(report) {
                lines.push(line);
            }
        }
        lines
    }

    /// `t=12.0s` for a time in the analyser's milliseconds.
    fn stamp(&self, at_ms: u64) -> String {
        format!(
            "t={:.1}s",
            at_ms.saturating_sub(self.started_at_ms) as f64 / 1000.0
        )
    }

    fn anomaly_line(
        &self,
        anomaly: &smartlb_traffic::analysis::Anomaly,
        named: &[(String, std::net::SocketAddr)],
    ) -> String {
        use smartlb_traffic::analysis::AnomalyKind;
        let subject = anomaly
            .backend
            .as_deref()
            .map_or_else(|| "request rate".to_string(), |b| display_name(b, named));
        let (what, observed, expected) = match anomaly.kind {
            AnomalyKind::RateSpike => (
                "spike",
                format!("{:.0} req/s", anomaly.observed),
                format!("{:.0} req/s", anomaly.expected),
            ),
            AnomalyKind::RateDrop => (
                "drop",
                format!("{:.0} req/s", anomaly.observed),
                format!("{:.0} req/s", anomaly.expected),
            ),
            AnomalyKind::Latency => (
                "latency",
                format!("{:.1} ms", anomaly.observed),
                format!("{:.1} ms", anomaly.expected),
            ),
            AnomalyKind::ErrorRate => (
                "error rate",
                format!("{:.1}%", anomaly.observed * 100.0),
                format!("{:.1}%", anomaly.expected * 100.0),
            ),
        };
        format!(
            "{} anomaly: {subject} {what} {observed}, expected {expected} from {}",
            self.stamp(anomaly.at_ms),
            match anomaly.reference {
                smartlb_traffic::analysis::Reference::Forecast => "the forecast",
                smartlb_traffic::analysis::Reference::OwnHistory => "its own history",
                smartlb_traffic::analysis::Reference::Peers => "its peers",
            }
        )
    }

    /// A line when `decision`'s capacity factor has moved far enough from the one last
    /// narrated (or come back to 1).
    fn weight_line(
        &mut self,
        at_ms: u64,
        decision: &smartlb_traffic::analysis::WeightDecision,
        named: &[(String, std::net::SocketAddr)],
    ) -> Option<String> {
        use smartlb_traffic::analysis::Reason;
        if !decision.factor.is_finite() || decision.factor <= 0.0 {
            return None;
        }
        let Some(&(factor, weight)) = self.narrated.get(&decision.backend) else {
            // First seen: the starting point of what is narrated later.
            self.narrated
                .insert(decision.backend.clone(), (decision.factor, decision.weight));
            return None;
        };
        let ratio = decision.factor / factor;
        let moved = ratio.max(1.0 / ratio) >= NARRATE_FACTOR_RATIO;
        let back = (decision.factor - 1.0).abs() < 0.05 && (factor - 1.0).abs() >= 0.05;
        if !moved && !back {
            return None;
        }
        self.narrated
            .insert(decision.backend.clone(), (decision.factor, decision.weight));
        let reasons: Vec<String> = decision
            .reasons
            .iter()
            .filter(|r| !matches!(r, Reason::Configured { .. }))
            .map(ToString::to_string)
            .collect();
        let direction = if decision.factor < factor {
            "loses share"
        } else {
            "gains share"
        };
        Some(format!(
            "{} analysis: {} {direction}, weight {weight:.2} → {:.2} (capacity factor ×{:.2}): {}",
            self.stamp(at_ms),
            display_name(&decision.backend, named),
            decision.weight,
            decision.factor,
            if reasons.is_empty() {
                "back to its configured share".to_string()
            } else {
                reasons.join(", ")
            }
        ))
    }

    fn forecast_line(&self, report: &smartlb_traffic::analysis::TickReport) -> Option<String> {
        let f = &report.forecast;
        let next = f.next_rps?;
        let mut line = format!(
            "{} forecast: {next:.0} req/s next second",
            self.stamp(report.at_ms)
        );
        if let (Some(lower), Some(upper)) = (f.lower_rps, f.upper_rps)
            && upper - lower >= 1.0
        {
            line.push_str(&format!(" (band {lower:.0}–{upper:.0})"));
        }
        line.push_str(&format!(", actual {:.0} req/s", f.actual_rps));
        if f.error.samples > 0 {
            line.push_str(&format!(
                "; mean error so far {:.1}% over {} forecasts",
                f.error.mape * 100.0,
                f.error.samples
            ));
        }
        Some(line)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use smartlb_traffic::analysis::{
        Anomaly, AnomalyKind, ForecastView, Reason, Reference, TickReport, WeightDecision,
    };

    fn named() -> Vec<(String, std::net::SocketAddr)> {
        vec![
            ("fast".to_string(), ([127, 0, 0, 1], 1001).into()),
            ("slow".to_string(), ([127, 0, 0, 1], 1002).into()),
        ]
    }

    fn decision(backend: &str, factor: f64) -> WeightDecision {
        WeightDecision {
            backend: backend.to_string(),
            weight: factor,
            computed: factor,
            factor,
            prewarm: 0,
            reasons: vec![
                Reason::Configured { weight: 1.0 },
                Reason::Capacity {
                    factor,
                    latency_ms: 40.0,
                    reference_ms: 5.0,
                },
            ],
        }
    }

    fn report(at_s: u64, slow_factor: f64) -> TickReport {
        TickReport {
            at_ms: at_s * 1000,
            forecast: ForecastView {
                actual_rps: 200.0,
                next_rps: Some(198.0),
                lower_rps: Some(180.0),
                upper_rps: Some(216.0),
                ..ForecastView::default()
            },
            anomalies: Vec::new(),
            weights: vec![
                decision("127.0.0.1:1001", 1.0),
                decision("127.0.0.1:1002", slow_factor),
            ],
        }
    }

    #[test]
    fn narrates_weight_moves_with_reasons_once_they_are_large_enough() {
        let mut narrator = Narrator::new(crate::clock::Nanos::ZERO, Duration::from_secs(60));
        let named = named();
        let mut lines = Vec::new();
        for (t, factor) in [(1, 1.0), (2, 0.9), (3, 0.75), (4, 0.6), (5, 0.45), (6, 0.4)] {
            let r = report(t, factor);
            lines.extend(narrator.observe(Some(&r), &[], Duration::from_secs(t), &named));
            // The same report seen twice (the view polls faster than the analyser
            // ticks) says nothing new.
            assert!(
                narrator
                    .observe(Some(&r), &[], Duration::from_secs(t), &named)
                    .is_empty()
            );
        }
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].starts_with("t=4.0s analysis: slow loses share, weight 1.00 → 0.60"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("capacity ×0.60 (latency 40.00 ms against 5.00 ms)"),
            "{}",
            lines[0]
        );
        // Back to its configured share.
        let r = report(7, 1.0);
        let back = narrator.observe(Some(&r), &[], Duration::from_secs(7), &named);
        assert_eq!(back.len(), 1, "{back:#?}");
        assert!(back[0].contains("slow gains share"), "{}", back[0]);
    }

    #[test]
    fn narrates_each_anomaly_once_and_the_forecast_periodically() {
        let mut narrator =
            Narrator::new(crate::clock::Nanos::from_secs(100), Duration::from_secs(10));
        let named = named();
        let anomaly = Anomaly {
            at_ms: 108_000,
            kind: AnomalyKind::Latency,
            backend: Some("127.0.0.1:1002".to_string()),
            reference: Reference::OwnHistory,
            observed: 72.34,
            expected: 9.31,
        };
        let r = report(108, 1.0);
        let lines = narrator.observe(
            Some(&r),
            std::slice::from_ref(&anomaly),
            Duration::from_secs(8),
            &named,
        );
        assert_eq!(
            lines,
            vec![
                "t=8.0s anomaly: slow latency 72.3 ms, expected 9.3 ms from its own history"
                    .to_string()
            ]
        );
        let r = report(110, 1.0);
        let lines = narrator.observe(
            Some(&r),
            std::slice::from_ref(&anomaly),
            Duration::from_secs(10),
            &named,
        );
        assert_eq!(
            lines,
            vec![
                "t=10.0s forecast: 198 req/s next second (band 180–216), actual 200 req/s"
                    .to_string()
            ]
        );
        let r = report(111, 1.0);
        assert!(
            narrator
                .observe(Some(&r), &[anomaly], Duration::from_secs(11), &named)
                .is_empty()
        );
        // A rate anomaly has no backend.
        let spike = Anomaly {
            at_ms: 112_000,
            kind: AnomalyKind::RateSpike,
            backend: None,
            reference: Reference::Forecast,
            observed: 400.0,
            expected: 200.0,
        };
        let lines = narrator.observe(None, &[spike], Duration::from_secs(12), &named);
        assert_eq!(
            lines,
            vec![
                "t=12.0s anomaly: request rate spike 400 req/s, expected 200 req/s from the forecast"
                    .to_string()
            ]
        );
    }
}
