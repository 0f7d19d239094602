//! The demo's live terminal view, rendered to a `String`.
//!
//! The caller fills a [`ViewData`] once a second (from the proxy's state, the load
//! generator and the plan's events) and prints [`LiveView::render`]'s result with
//! `print!`. Two modes:
//!
//! - [`ViewMode::Ansi`] for a terminal: each frame moves the cursor home and redraws
//!   in place (clearing each line's rest and everything below, so nothing flickers),
//!   with colours for backend states.
//! - [`ViewMode::Plain`] for logs, pipes and tests: no escape codes at all; each frame
//!   ends with a blank line, so successive frames read as paragraphs.
//!
//! [`LiveView::auto`] picks `Ansi` when standard output is a terminal.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use crate::load::LoadSnapshot;
use crate::plan::format_elapsed;

/// Move the cursor to the top-left corner.
const CURSOR_HOME: &str = "\x1b[H";
/// Clear from the cursor to the end of the line.
const CLEAR_LINE_END: &str = "\x1b[K";
/// Clear from the cursor to the end of the screen.
const CLEAR_BELOW: &str = "\x1b[J";
/// Reset colours and styles.
const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const CYAN: &str = "\x1b[36m";

/// How a frame is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewMode {
    /// No escape codes; frames separated by a blank line.
    Plain,
    /// Redraw in place with colours.
    Ansi,
}

/// One backend's line in the table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendRow {
    /// The backend's name.
    pub name: String,
    /// Its address, as the caller wants it shown.
    pub address: String,
    /// Its state (`healthy`, `ejected`, `slow-start`, ...); coloured by keyword.
    pub state: String,
    /// Requests per second it served over the last interval; its share of the
    /// traffic is this over the sum of all rows.
    pub rps: f64,
    /// Median latency over the last interval.
    pub p50: Option<Duration>,
    /// 99th percentile latency over the last interval.
    pub p99: Option<Duration>,
    /// Errors over the last interval.
    pub errors: u64,
    /// The balancer's effective weight, if it has one.
    pub weight: Option<f64>,
}

impl BackendRow {
    /// A row with a name, an address and a state, and no traffic yet.
    pub fn new(
        name: impl Into<String>,
        address: impl Into<String>,
        state: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            address: address.into(),
            state: state.into(),
            ..Self::default()
        }
    }

    /// A row whose traffic figures come from what the load generator saw of the
    /// backend called `name` (by its `x-backend` header) during `load`'s window.
    pub fn from_load(
        name: impl Into<String>,
        address: impl Into<String>,
        state: impl Into<String>,
        load: &LoadSnapshot,
    ) -> Self {
        let mut row = Self::new(name, address, state);
        if let Some(seen) = load.by_backend.get(&row.name) {
            row.rps = crate::load::per_second(seen.requests, load.window);
            row.p50 = seen.p50;
            row.p99 = seen.p99;
            row.errors = seen.errors;
        }
        row
    }

    /// This row with an effective weight.
    pub fn with_weight(mut self, weight: f64) -> Self {
        self.weight = Some(weight);
        self
    }
}

/// Everything one frame shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewData {
    /// Time since the demo started.
    pub elapsed: Duration,
    /// The demo's planned length (zero: unbounded, shown without a total).
    pub total: Duration,
    /// One row per backend, in display order.
    pub rows: Vec<BackendRow>,
    /// The load generator's last interval.
    pub load: LoadSnapshot,
    /// Recent events, oldest first; the view shows the last few.
    pub events: Vec<String>,
    /// Closing lines, such as the dashboard address and how to stop.
    pub footer: Vec<String>,
}

/// Renders [`ViewData`] frames. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveView {
    mode: ViewMode,
    title: String,
    max_events: usize,
    bar_width: usize,
}

impl LiveView {
    /// A view in the given mode, titled `smartlb demo`, showing the last 6 events and
    /// share bars 20 characters wide.
    pub fn new(mode: ViewMode) -> Self {
        Self {
            mode,
            title: "smartlb demo".to_owned(),
            max_events: 6,
            bar_width: 20,
        }
    }

    /// [`ViewMode::Ansi`] if standard output is a terminal, else [`ViewMode::Plain`].
    pub fn auto() -> Self {
        let mode = if std::io::stdout().is_terminal() {
            ViewMode::Ansi
        } else {
            ViewMode::Plain
        };
        Self::new(mode)
    }

    /// This view with another title.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// This view showing at most `max_events` events.
    pub fn with_max_events(mut self, max_events: usize) -> Self {
        self.max_events = max_events;
        self
    }

    /// This view with share bars `width` characters wide (at least 1).
    pub fn with_bar_width(mut self, width: usize) -> Self {
        self.bar_width = width.max(1);
        self
    }

    /// The mode frames are drawn in.
    pub fn mode(&self) -> ViewMode {
        self.mode
    }

    /// One frame, to be printed with `print!` (it ends with its own newlines).
    pub fn render(&self, data: &ViewData) -> String {
        let mut lines: Vec<String> = Vec::new();
        lines.push(self.title_line(data));
        lines.push(self.load_line(&data.load));
        lines.push(String::new());
        lines.extend(self.table(&data.rows));
        lines.push(String::new());
        lines.push(self.paint(BOLD, "events"));
        let skip = data.events.len().saturating_sub(self.max_events);
        if data.events.len() == skip {
            lines.push(format!("  {}", self.paint(DIM, "(none yet)")));
        }
        for event in &data.events[skip..] {
            lines.push(format!("  {}", sanitize(event)));
        }
        if !data.footer.is_empty() {
            lines.push(String::new());
            lines.extend(data.footer.iter().map(|line| sanitize(line)));
        }

        let mut out = String::new();
        match self.mode {
            ViewMode::Plain => {
                for line in lines {
                    out.push_str(&line);
                    out.push('\n');
                }
                out.push('\n');
            }
            ViewMode::Ansi => {
                out.push_str(CURSOR_HOME);
                for line in lines {
                    out.push_str(&line);
                    out.push_str(CLEAR_LINE_END);
                    out.push('\n');
                }
                out.push_str(CLEAR_BELOW);
            }
        }
        out
    }

    /// `smartlb demo  12s / 60s  [████░░░░]`.
    fn title_line(&self, data: &ViewData) -> String {
        let mut line = self.paint(BOLD, &sanitize(&self.title));
        if data.total.is_zero() {
            let _ = write!(line, "  t={}", format_elapsed(data.elapsed));
        } else {
            let progress = (data.elapsed.as_secs_f64() / data.total.as_secs_f64()).clamp(0.0, 1.0);
            let width = self.bar_width;
            let done = (progress * width as f64).round() as usize;
            let _ = write!(
                line,
                "  t={} / {}  [{}{}]",
                format_elapsed(data.elapsed),
                format_elapsed(data.total),
                "█".repeat(done),
                "░".repeat(width - done.min(width)),
            );
        }
        line
    }

    /// `load 199.0 req/s (target 200)  ok 199  errors 1  p50 5.2 ms  p99 14.8 ms`.
    fn load_line(&self, load: &LoadSnapshot) -> String {
        let mut line = format!("load {:.1} req/s", load.rate());
        if load.target_rate > 0.0 {
            let _ = write!(line, " (target {:.0})", load.target_rate);
        }
        let _ = write!(line, "  ok {}  ", load.successes);
        let errors = format!("errors {}", load.errors);
        if load.errors > 0 {
            line.push_str(&self.paint(RED, &errors));
        } else {
            line.push_str(&errors);
        }
        if load.dropped > 0 {
            let _ = write!(line, "  dropped {}", load.dropped);
        }
        let _ = write!(
            line,
            "  p50 {} ms  p99 {} ms",
            fmt_latency(load.p50),
            fmt_latency(load.p99)
        );
        line
    }

    /// The header and one line per row, columns aligned.
    fn table(&self, rows: &[BackendRow]) -> Vec<String> {
        let total_rps: f64 = rows
            .iter()
            .map(|r| r.rps.max(0.0))
            .filter(|r| r.is_finite())
            .sum();
        let header = [
            "BACKEND", "ADDRESS", "STATE", "SHARE", "REQ/S", "P50 ms", "P99 ms", "ERR", "WEIGHT",
        ];
        let cells: Vec<[String; 9]> = rows
            .iter()
            .map(|row| {
                let rps = if row.rps.is_finite() {
                    row.rps.max(0.0)
                } else {
                    0.0
                };
                let share = if total_rps > 0.0 {
                    rps / total_rps
                } else {
                    0.0
                };
                let filled = ((share * self.bar_width as f64).round() as usize).min(self.bar_width);
                [
                    sanitize(&row.name),
                    sanitize(&row.address),
                    sanitize(&row.state),
                    format!(
                        "{:>3.0}% {}{}",
                        share * 100.0,
                        "█".repeat(filled),
                        " ".repeat(self.bar_width - filled)
                    ),
                    format!("{rps:.1}"),
                    fmt_latency(row.p50),
                    fmt_latency(row.p99),
                    row.errors.to_string(),
                    row.weight
                        .filter(|w| w.is_finite())
                        .map_or_else(|| "-".to_owned(), |w| format!("{w:.2}")),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        // Text columns are left-aligned, numbers right-aligned.
        let right = [false, false, false, false, true, true, true, true, true];

        let mut lines = Vec::with_capacity(rows.len() + 1);
        let header_cells: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
        lines.push(self.paint(BOLD, &join_row(&header_cells, &widths, &right)));
        for (row, cell) in rows.iter().zip(cells) {
            let mut parts: Vec<String> = Vec::with_capacity(9);
            for (i, text) in cell.iter().enumerate() {
                let padded = pad(text, widths[i], right[i]);
                let colour = match i {
                    2 => state_colour(&row.state),
                    7 if row.errors > 0 => Some(RED),
                    _ => None,
                };
                parts.push(match colour {
                    Some(colour) => self.paint(colour, &padded),
                    None => padded,
                });
            }
            lines.push(parts.join("  ").trim_end().to_owned());
        }
        lines
    }

    /// `text` in `style` in ANSI mode; `text` unchanged in plain mode.
    fn paint(&self, style: &str, text: &str) -> String {
        match self.mode {
            ViewMode::Plain => text.to_owned(),
            ViewMode::Ansi => format!("{style}{text}{RESET}"),
        }
    }
}

/// The colour for a state, by keyword.
fn state_colour(state: &str) -> Option<&'static str> {
    let state = state.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| state.contains(w));
    if has(&[
        "unhealthy",
        "ejected",
        "down",
        "crash",
        "fail",
        "blackhole",
        "error",
    ]) {
        Some(RED)
    } else if has(&[
        "slow-start",
        "slow start",
        "draining",
        "degraded",
        "probing",
    ]) {
        Some(YELLOW)
    } else if has(&["backup"]) {
        Some(CYAN)
    } else if has(&["healthy", "up", "ok"]) {
        Some(GREEN)
    } else {
        None
    }
}

/// Cells padded to their column widths and joined, without trailing spaces.
fn join_row(cells: &[String], widths: &[usize], right: &[bool]) -> String {
    let parts: Vec<String> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| pad(c, widths[i], right[i]))
        .collect();
    parts.join("  ").trim_end().to_owned()
}

/// `text` padded with spaces to `width` characters.
fn pad(text: &str, width: usize, right: bool) -> String {
    let fill = " ".repeat(width.saturating_sub(text.chars().count()));
    if right {
        format!("{fill}{text}")
    } else {
        format!("{text}{fill}")
    }
}

/// Milliseconds for a table: one decimal below 100 ms, none above, `-` for none.
fn fmt_latency(latency: Option<Duration>) -> String {
    match latency {
        None => "-".to_owned(),
        Some(d) => {
            let ms = d.as_secs_f64() * 1000.0;
            if ms < 100.0 {
                format!("{ms:.1}")
            } else {
                format!("{ms:.0}")
            }
        }
    }
}

/// Caller text with control characters (escape codes included) replaced, so that it
/// cannot disturb the terminal or the layout.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_formatting() {
        assert_eq!(fmt_latency(None), "-");
        assert_eq!(fmt_latency(Some(Duration::from_micros(5_250))), "5.2");
        assert_eq!(fmt_latency(Some(Duration::from_millis(301))), "301");
    }

    #[test]
    fn states_get_colours() {
        assert_eq!(state_colour("healthy"), Some(GREEN));
        assert_eq!(state_colour("unhealthy"), Some(RED));
        assert_eq!(state_colour("ejected"), Some(RED));
        assert_eq!(state_colour("slow-start"), Some(YELLOW));
        assert_eq!(state_colour("backup"), Some(CYAN));
        assert_eq!(state_colour("mystery"), None);
    }

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(sanitize("a\x1b[31mb\n"), "a?[31mb?");
    }

    #[test]
    fn padding_counts_characters() {
        assert_eq!(pad("██", 4, false), "██  ");
        assert_eq!(pad("7", 3, true), "  7");
    }
}
