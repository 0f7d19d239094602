//! What a run reports, and its renderings: a text table, JSON and a
//! self-contained HTML page with charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use smartlb_traffic::analysis::{Anomaly, ForecastError};

use crate::engine::BIN_NS;

/// One backend's figures over the measured part of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendReport {
    /// Its name in the run (`backend-0`, ...).
    pub backend: String,
    /// Its nominal speed.
    pub speed: f64,
    /// Share of all attempts sent to it.
    pub share: f64,
    /// Busy worker time over worker time.
    pub utilisation: f64,
    /// Attempts sent to it.
    pub requests: u64,
    /// Attempts that failed on it.
    pub errors: u64,
    /// Times the outlier detector ejected it.
    pub ejections: u32,
}

/// How quickly backends got their share back after their stalls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StallRecovery {
    /// Stalls judged (those well inside the measured part of the run).
    pub stalls: usize,
    /// Mean time from the end of a stall until the backend's share of
    /// attempts, over a 500 ms window, is back to 75 % of what it was in the
    /// 5 s before the stall; seconds.
    pub mean_s: f64,
    /// 90th percentile of that time, seconds.
    pub p90_s: f64,
    /// Longest, seconds (capped at 30 s, or at the end of the run).
    pub max_s: f64,
    /// Share of stalls recovered within 2 s.
    pub within_2s: f64,
}

/// Anomalies the analyser reported during a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AnomalySummary {
    /// How many.
    pub total: u64,
    /// How many of each kind.
    pub by_kind: BTreeMap<String, u64>,
    /// The first twenty.
    pub first: Vec<Anomaly>,
}

impl AnomalySummary {
    pub(crate) fn add(&mut self, a: &Anomaly) {
        self.total += 1;
        *self.by_kind.entry(a.kind.as_str().to_string()).or_insert(0) += 1;
        if self.first.len() < 20 {
            self.first.push(a.clone());
        }
    }
}

/// One second of a run, for the charts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// End of the second, seconds from the start.
    pub t_s: f64,
    /// Requests finished in the second (all backends), per second.
    pub rps: f64,
    /// The analyser's forecast for the next second.
    pub forecast_rps: Option<f64>,
    /// Median client latency of the requests finished in the second, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile of the same, ms.
    pub p99_ms: Option<f64>,
    /// Each backend's share of the attempts sent in the second.
    pub shares: Vec<f64>,
    /// Each backend's weight as the balancer saw it.
    pub weights: Vec<f64>,
}

/// The result of one run of one scenario with one algorithm and seed.
///
/// Latencies are those of the clients: from the time a request was
/// scheduled to be sent until its final answer, retries included, for the
/// requests scheduled after the warm-up. An error is a request whose final
/// answer was a failure (refused, reset, 503, timeout).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimReport {
    /// Scenario name.
    pub scenario: String,
    /// Algorithm name.
    pub algorithm: String,
    /// The seed.
    pub seed: u64,
    /// Simulated seconds.
    pub duration_s: f64,
    /// Mean arrival rate over the nominal capacity.
    pub utilisation: f64,
    /// Requests measured.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// 99.9th percentile latency, ms.
    pub p999_ms: f64,
    /// Mean latency, ms.
    pub mean_ms: f64,
    /// The busiest backend's utilisation over the mean utilisation (1 = even).
    pub max_over_mean_utilisation: f64,
    /// Retries made.
    pub retries: u64,
    /// Per backend.
    pub backends: Vec<BackendReport>,
    /// Recovery after stalls, in scenarios with stalls.
    pub stall_recovery: Option<StallRecovery>,
    /// Anomalies the analyser reported.
    pub anomalies: AnomalySummary,
    /// How the request-rate forecast fared.
    pub forecast_error: ForecastError,
    /// Per-second timeline (not in the JSON output).
    #[serde(skip)]
    pub timeline: Vec<TimelinePoint>,
}

pub(crate) fn summarise_stalls(
    stalls: &[(usize, u64, u64)],
    bins: &[u32],
    n: usize,
    warmup: u64,
    end: u64,
) -> StallRecovery {
    const BEFORE: u64 = 50; // bins: 5 s
    const WINDOW: u64 = 5; // bins: 500 ms
    const MAX_BINS: u64 = 300; // 30 s
    let total_bins = (bins.len() / n.max(1)) as u64;
    let share = |b: usize, from: u64, to: u64| -> Option<f64> {
        let (mut mine, mut all) = (0u64, 0u64);
        for bin in from..to.min(total_bins) {
            let row = bin as usize * n;
            let Some(slice) = bins.get(row..row + n) else {
                break;
            };
            mine += u64::from(slice[b]);
            all += slice.iter().map(|&c| u64::from(c)).sum::<u64>();
        }
        (all > 0).then(|| mine as f64 / all as f64)
    };
    let mut times = Vec::new();
    for &(b, start, stop) in stalls {
        if start < warmup + 5 * 1_000_000_000 || stop + 5 * 1_000_000_000 > end {
            continue;
        }
        let start_bin = start / BIN_NS;
        let Some(fair) = share(b, start_bin.saturating_sub(BEFORE), start_bin) else {
            continue;
        };
        if fair <= 0.0 {
            continue;
        }
        let end_bin = stop.div_ceil(BIN_NS);
        let last = (end / BIN_NS).saturating_sub(end_bin + WINDOW);
        let mut t = MAX_BINS.min(last);
        for k in 0..MAX_BINS.min(last) {
            if share(b, end_bin + k, end_bin + k + WINDOW).is_some_and(|s| s >= 0.75 * fair) {
                t = k;
                break;
            }
        }
        times.push(t as f64 * BIN_NS as f64 / 1e9);
    }
    if times.is_empty() {
        return StallRecovery::default();
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    StallRecovery {
        stalls: n,
        mean_s: times.iter().sum::<f64>() / n as f64,
        p90_s: times[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1],
        max_s: times[n - 1],
        within_2s: times.iter().filter(|&&t| t <= 2.0).count() as f64 / n as f64,
    }
}

/// The comparison table, one row per report.
pub fn render_table(reports: &[SimReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<15} {:<15} {:>9} {:>9} {:>9} {:>8} {:>10} {:>9}",
        "scenario", "algorithm", "p50 ms", "p99 ms", "p99.9 ms", "errors", "util max/", "stall"
    );
    let _ = writeln!(
        out,
        "{:<15} {:<15} {:>9} {:>9} {:>9} {:>8} {:>10} {:>9}",
        "", "", "", "", "", "", "mean", "recov. s"
    );
    let mut last = "";
    for r in reports {
        if !last.is_empty() && last != r.scenario {
            out.push('\n');
        }
        last = &r.scenario;
        let recovery = r
            .stall_recovery
            .filter(|s| s.stalls > 0)
            .map_or_else(|| "-".to_string(), |s| format!("{:.2}", s.mean_s));
        let _ = writeln!(
            out,
            "{:<15} {:<15} {:>9.2} {:>9.2} {:>9.2} {:>7.3}% {:>10.3} {:>9}",
            r.scenario,
            r.algorithm,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.error_rate * 100.0,
            r.max_over_mean_utilisation,
            recovery
        );
    }
    out
}

/// The reports as a JSON array (one object per scenario and algorithm).
pub fn render_json(reports: &[SimReport]) -> String {
    serde_json::to_string_pretty(reports).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

const PALETTE: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Line<'a> {
    label: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

fn chart(title: &str, y_label: &str, lines: &[Line<'_>], log_y: bool) -> String {
    const W: f64 = 640.0;
    const H: f64 = 240.0;
    const L: f64 = 60.0;
    const R: f64 = 130.0;
    const T: f64 = 24.0;
    const B: f64 = 30.0;
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        if !(x.is_finite() && y.is_finite()) || (log_y && y <= 0.0) {
            continue;
        }
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" font-family="sans-serif" font-size="11">"#,
        W + R,
        H,
        W + R,
        H
    );
    let _ = write!(
        svg,
        r#"<text x="{L}" y="15" font-size="13" font-weight="bold">{}</text>"#,
        escape(title)
    );
    if x0 > x1 {
        svg.push_str(r#"<text x="80" y="120">no data</text></svg>"#);
        return svg;
    }
    if log_y {
        y0 = y0.max(1e-3);
        y1 = y1.max(y0 * 10.0);
    } else {
        y0 = y0.min(0.0);
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let fy = |y: f64| {
        let v = if log_y {
            (y.max(y0).log10() - y0.log10()) / (y1.log10() - y0.log10())
        } else {
            (y - y0) / (y1 - y0)
        };
        H - B - v * (H - T - B)
    };
    let fx = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - 10.0);
    // Axes and grid.
    let _ = write!(
        svg,
        r##"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        W - L - 10.0,
        H - T - B
    );
    let ticks: Vec<f64> = if log_y {
        let mut v = Vec::new();
        let mut p = 10f64.powf(y0.log10().floor());
        while p <= y1 * 1.0001 && v.len() < 12 {
            if p >= y0 * 0.9999 {
                v.push(p);
            }
            p *= 10.0;
        }
        v
    } else {
        (0..=4)
            .map(|k| y0 + (y1 - y0) * f64::from(k) / 4.0)
            .collect()
    };
    for y in ticks {
        let py = fy(y);
        let _ = write!(
            svg,
            r##"<line x1="{L}" x2="{}" y1="{py:.1}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - 10.0,
            L - 4.0,
            py + 4.0,
            fmt_tick(y)
        );
    }
    for k in 0..=4 {
        let x = x0 + (x1 - x0) * f64::from(k) / 4.0;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0} s</text>"#,
            fx(x),
            H - B + 14.0,
            x
        );
    }
    let _ = write!(
        svg,
        r#"<text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"#,
        H / 2.0,
        H / 2.0,
        escape(y_label)
    );
    for (k, line) in lines.iter().enumerate() {
        let mut d = String::new();
        for &(x, y) in &line.points {
            if !(x.is_finite() && y.is_finite()) || (log_y && y <= 0.0) {
                continue;
            }
            let _ = write!(d, "{:.1},{:.1} ", fx(x), fy(y));
        }
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.2" points="{}"/>"#,
            line.color,
            d.trim_end()
        );
        let ly = T + 14.0 * k as f64 + 8.0;
        let _ = write!(
            svg,
            r#"<line x1="{}" x2="{}" y1="{ly:.1}" y2="{ly:.1}" stroke="{}" stroke-width="3"/><text x="{}" y="{:.1}">{}</text>"#,
            W + 2.0,
            W + 18.0,
            line.color,
            W + 22.0,
            ly + 4.0,
            escape(line.label)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn fmt_tick(y: f64) -> String {
    if y == 0.0 {
        "0".into()
    } else if y.abs() >= 100.0 {
        format!("{y:.0}")
    } else if y.abs() >= 1.0 {
        format!("{y:.1}")
    } else {
        format!("{y:.3}")
    }
}

/// A self-contained HTML page: the comparison table and, per scenario,
/// charts of the per-second p99 latency of each algorithm and of each
/// backend's share of attempts over time under each algorithm.
pub fn render_html(reports: &[SimReport]) -> String {
    let mut out = String::new();
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>smartlb simulation</title>\
<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,td:nth-child(2),th{text-align:left}\
.charts{display:flex;flex-wrap:wrap;gap:8px}h2{margin-top:2em}pre{background:#f6f6f6;padding:1em}</style></head><body>\n",
    );
    out.push_str("<h1>smartlb simulation</h1>\n");
    let _ = writeln!(
        out,
        "<p>Deterministic discrete-event simulation; client latency from the scheduled send time. Seeds: {}.</p>",
        escape(
            &reports
                .iter()
                .map(|r| r.seed.to_string())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        )
    );
    out.push_str("<table><tr><th>scenario</th><th>algorithm</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>errors</th><th>util max/mean</th><th>stall recovery s</th></tr>\n");
    for r in reports {
        let recovery = r
            .stall_recovery
            .filter(|s| s.stalls > 0)
            .map_or_else(|| "-".to_string(), |s| format!("{:.2}", s.mean_s));
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.3}%</td><td>{:.3}</td><td>{}</td></tr>",
            escape(&r.scenario),
            escape(&r.algorithm),
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.error_rate * 100.0,
            r.max_over_mean_utilisation,
            recovery
        );
    }
    out.push_str("</table>\n");
    let mut scenarios: Vec<&str> = Vec::new();
    for r in reports {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
    }
    for s in scenarios {
        let runs: Vec<&SimReport> = reports.iter().filter(|r| r.scenario == s).collect();
        let _ = writeln!(out, "<h2>{}</h2>\n<div class=\"charts\">", escape(s));
        let p99: Vec<Line<'_>> = runs
            .iter()
            .enumerate()
            .map(|(k, r)| Line {
                label: &r.algorithm,
                color: PALETTE[k % PALETTE.len()],
                points: r
                    .timeline
                    .iter()
                    .filter_map(|p| p.p99_ms.map(|v| (p.t_s, v)))
                    .collect(),
            })
            .collect();
        out.push_str(&chart("p99 latency per second", "ms (log)", &p99, true));
        let p50: Vec<Line<'_>> = runs
            .iter()
            .enumerate()
            .map(|(k, r)| Line {
                label: &r.algorithm,
                color: PALETTE[k % PALETTE.len()],
                points: r
                    .timeline
                    .iter()
                    .filter_map(|p| p.p50_ms.map(|v| (p.t_s, v)))
                    .collect(),
            })
            .collect();
        out.push_str(&chart("p50 latency per second", "ms (log)", &p50, true));
        if let Some(first) = runs.first() {
            let rate = vec![
                Line {
                    label: "actual",
                    color: PALETTE[0],
                    points: first.timeline.iter().map(|p| (p.t_s, p.rps)).collect(),
                },
                Line {
                    label: "forecast",
                    color: PALETTE[1],
                    points: first
                        .timeline
                        .iter()
                        .filter_map(|p| p.forecast_rps.map(|v| (p.t_s, v)))
                        .collect(),
                },
            ];
            out.push_str(&chart("request rate and forecast", "req/s", &rate, false));
        }
        for r in &runs {
            let n = r.backends.len();
            let labels: Vec<String> = r
                .backends
                .iter()
                .map(|b| format!("{} ×{}", b.backend, b.speed))
                .collect();
            let lines: Vec<Line<'_>> = (0..n)
                .map(|i| Line {
                    label: &labels[i],
                    color: PALETTE[i % PALETTE.len()],
                    points: r
                        .timeline
                        .iter()
                        .map(|p| (p.t_s, p.shares.get(i).copied().unwrap_or(0.0)))
                        .collect(),
                })
                .collect();
            out.push_str(&chart(
                &format!("share of attempts: {}", r.algorithm),
                "share",
                &lines,
                false,
            ));
        }
        out.push_str("</div>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_recovery_is_measured_from_bins() {
        // Two backends; backend 0 gets half until a stall from 20 s to 21 s,
        // nothing until 22 s, then half again.
        let n = 2;
        let bins_len = 600;
        let mut bins = vec![0u32; bins_len * n];
        for bin in 0..bins_len {
            let mine = if (200..220).contains(&bin) { 0 } else { 10 };
            bins[bin * n] = mine;
            bins[bin * n + 1] = 10;
        }
        let r = summarise_stalls(
            &[(0, 20_000_000_000, 21_000_000_000)],
            &bins,
            n,
            10_000_000_000,
            60_000_000_000,
        );
        assert_eq!(r.stalls, 1);
        assert!((r.mean_s - 0.8).abs() < 1e-9, "{r:?}");
        assert_eq!(r.within_2s, 1.0);
        assert_eq!(summarise_stalls(&[], &bins, n, 0, 1).stalls, 0);
    }

    #[test]
    fn charts_handle_empty_and_flat_data() {
        let empty = chart("t", "y", &[], true);
        assert!(empty.contains("no data"));
        let flat = chart(
            "t",
            "y",
            &[Line {
                label: "<a>",
                color: "#000",
                points: vec![(1.0, 5.0), (1.0, 5.0)],
            }],
            false,
        );
        assert!(flat.contains("&lt;a&gt;"));
        assert!(flat.ends_with("</svg>"));
    }
}
