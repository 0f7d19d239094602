//! The live view's frames, in plain and ANSI mode.

use std::collections::BTreeMap;
use std::time::Duration;

use smartlb_demo::{BackendLoad, BackendRow, LiveView, LoadSnapshot, ViewData, ViewMode};

fn sample() -> ViewData {
    let mut by_backend = BTreeMap::new();
    by_backend.insert(
        "fast".to_owned(),
        BackendLoad {
            requests: 150,
            errors: 0,
            p50: Some(Duration::from_micros(5_200)),
            p99: Some(Duration::from_micros(7_100)),
        },
    );
    by_backend.insert(
        "slow".to_owned(),
        BackendLoad {
            requests: 50,
            errors: 2,
            p50: Some(Duration::from_millis(150)),
            p99: Some(Duration::from_millis(301)),
        },
    );
    let load = LoadSnapshot {
        window: Duration::from_secs(1),
        target_rate: 200.0,
        requests: 200,
        successes: 198,
        errors: 2,
        status_5xx: 2,
        p50: Some(Duration::from_micros(5_600)),
        p99: Some(Duration::from_millis(290)),
        by_backend,
        ..LoadSnapshot::default()
    };
    ViewData {
        elapsed: Duration::from_secs(12),
        total: Duration::from_secs(60),
        rows: vec![
            BackendRow::from_load("fast", "127.0.0.1:40001", "healthy", &load).with_weight(1.4),
            BackendRow::from_load("slow", "127.0.0.1:40002", "slow-start", &load),
            BackendRow::new("flaky", "127.0.0.1:40003", "ejected"),
        ],
        load,
        events: (1..=8)
            .map(|i| format!("t={i}s event number {i}"))
            .collect(),
        footer: vec!["dashboard: http://127.0.0.1:9901/".to_owned()],
    }
}

fn line_with<'a>(frame: &'a str, needle: &str) -> &'a str {
    frame
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{frame}"))
}

#[test]
fn plain_frame_shows_everything_without_escapes() {
    let view = LiveView::new(ViewMode::Plain);
    assert_eq!(view.mode(), ViewMode::Plain);
    let frame = view.render(&sample());
    assert!(!frame.contains('\x1b'), "{frame}");
    assert!(frame.ends_with("\n\n"), "frames end with a blank line");

    let title = frame.lines().next().unwrap();
    assert!(title.starts_with("smartlb demo"));
    assert!(title.contains("t=12s / 60s"), "{title}");
    let load = line_with(&frame, "req/s (target 200)");
    assert!(load.contains("200.0 req/s"));
    assert!(load.contains("ok 198"));
    assert!(load.contains("errors 2"));
    assert!(load.contains("p50 5.6 ms"));
    assert!(load.contains("p99 290 ms"));

    let header = line_with(&frame, "BACKEND");
    for column in [
        "ADDRESS", "STATE", "SHARE", "REQ/S", "P50 ms", "P99 ms", "ERR", "WEIGHT",
    ] {
        assert!(header.contains(column), "{header}");
    }

    let fast = line_with(&frame, "127.0.0.1:40001");
    let words: Vec<&str> = fast.split_whitespace().collect();
    assert_eq!(words[0], "fast");
    assert_eq!(words[2], "healthy");
    assert_eq!(words[3], "75%");
    assert_eq!(words[4], "█".repeat(15));
    assert_eq!(&words[5..], ["150.0", "5.2", "7.1", "0", "1.40"]);

    let slow = line_with(&frame, "127.0.0.1:40002");
    let words: Vec<&str> = slow.split_whitespace().collect();
    assert_eq!(words[2], "slow-start");
    assert_eq!(words[3], "25%");
    assert_eq!(words[4], "█".repeat(5));
    assert_eq!(&words[5..], ["50.0", "150", "301", "2", "-"]);

    let flaky = line_with(&frame, "127.0.0.1:40003");
    let words: Vec<&str> = flaky.split_whitespace().collect();
    assert_eq!(&words[2..], ["ejected", "0%", "0.0", "-", "-", "0", "-"]);

    // Columns line up: every row's address starts where the header's does.
    let column = header.find("ADDRESS").unwrap();
    for row in [fast, slow, flaky] {
        assert_eq!(
            row.find("127.0.0.1").map(|i| row[..i].chars().count()),
            Some(column)
        );
    }

    // Only the last six events, oldest first.
    assert!(!frame.contains("event number 2\n"));
    assert!(frame.contains("t=3s event number 3"));
    assert!(frame.contains("t=8s event number 8"));
    let third = frame.find("event number 3").unwrap();
    let eighth = frame.find("event number 8").unwrap();
    assert!(third < eighth);

    assert!(
        frame
            .trim_end()
            .ends_with("dashboard: http://127.0.0.1:9901/")
    );
}

#[test]
fn plain_frames_are_stable() {
    let view = LiveView::new(ViewMode::Plain);
    let data = sample();
    assert_eq!(view.render(&data), view.render(&data));
}

#[test]
fn ansi_frame_redraws_in_place_with_colours() {
    let view = LiveView::new(ViewMode::Ansi);
    let frame = view.render(&sample());
    assert!(frame.starts_with("\x1b[H"), "cursor home first");
    assert!(frame.ends_with("\x1b[J"), "clears what is below");
    assert!(frame.contains("\x1b[32mhealthy"), "healthy is green");
    assert!(frame.contains("\x1b[31mejected"), "ejected is red");
    assert!(frame.contains("\x1b[33mslow-start"), "slow-start is yellow");
    // The same text is there once the escapes are taken out.
    let plain = LiveView::new(ViewMode::Plain).render(&sample());
    let stripped = strip_ansi(&frame);
    for line in plain.lines().filter(|l| !l.is_empty()) {
        assert!(stripped.contains(line.trim_end()), "missing {line:?}");
    }
}

#[test]
fn empty_data_renders_without_panicking() {
    let frame = LiveView::new(ViewMode::Plain).render(&ViewData::default());
    assert!(frame.contains("smartlb demo  t=0s"));
    assert!(frame.contains("(none yet)"));
    assert!(frame.contains("load 0.0 req/s"));
    assert!(frame.contains("p50 - ms"));
}

#[test]
fn hostile_text_cannot_inject_escapes() {
    let mut data = sample();
    data.rows[0].name = "evil\x1b[2J".to_owned();
    data.events.push("boom\x1b[31m".to_owned());
    data.rows[1].rps = f64::NAN;
    let frame = LiveView::new(ViewMode::Plain).render(&data);
    assert!(!frame.contains('\x1b'));
}

#[test]
fn options_change_title_events_and_bars() {
    let view = LiveView::new(ViewMode::Plain)
        .with_title("my demo")
        .with_max_events(2)
        .with_bar_width(10);
    let frame = view.render(&sample());
    assert!(frame.starts_with("my demo"));
    assert!(!frame.contains("event number 6"));
    assert!(frame.contains("event number 7"));
    let fast = line_with(&frame, "127.0.0.1:40001");
    assert!(fast.contains(&format!("75% {}", "█".repeat(8))), "{fast}");
    // auto() picks a mode without panicking; under the test harness stdout is a pipe or a tty.
    let _ = LiveView::auto().mode();
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // Skip `[`, parameters, and the final letter.
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
