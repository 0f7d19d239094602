//! The `smartlb` binary's command line: `check` on good and bad files (exit codes, and
//! errors naming file, line, column and field path), `--version`, `help`, and a short
//! `demo` run that must end with no failed request.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_smartlb");

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// Runs the binary with `args` in the fixtures directory (so that error messages name
/// the file as given), with a clean environment for the variables the fixtures use.
fn smartlb(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(fixture(""))
        .env_remove("SMARTLB_ADMIN_TOKEN")
        .env_remove("SMARTLB_ITEST_UNSET_TOKEN")
        .env_remove("SMARTLB_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("the smartlb binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The process ended by itself (not by a signal) and did not panic.
fn assert_no_panic(output: &Output) {
    let stderr = text(&output.stderr);
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_ne!(output.status.code(), Some(101), "panic exit: {stderr}");
    assert!(
        output.status.code().is_some(),
        "killed by a signal: {output:?}"
    );
}

fn check_ok(file: &str, env: &[(&str, &str)]) {
    let output = smartlb(&["check", "-c", file], env);
    assert_no_panic(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{file}: {}",
        text(&output.stderr)
    );
    assert_eq!(text(&output.stdout).trim(), "ok");
}

/// Checks a bad file: exit 2, and stderr holds `file:line:col: path` (or, for errors
/// without a position, the file and `needle`).
fn check_bad(file: &str, position: &str, path: &str, needle: &str) -> String {
    let output = smartlb(&["check", "-c", file], &[]);
    assert_no_panic(&output);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{file}: {stderr}");
    assert_ne!(text(&output.stdout).trim(), "ok", "{file}");
    let located = format!("{file}:{position}:");
    assert!(
        stderr.contains(&located),
        "{file}: no `{located}` in {stderr:?}"
    );
    if !path.is_empty() {
        let with_path = format!("{located} {path}:");
        assert!(
            stderr.contains(&with_path),
            "{file}: no `{with_path}` in {stderr:?}"
        );
    }
    assert!(
        stderr.contains(needle),
        "{file}: no {needle:?} in {stderr:?}"
    );
    stderr
}

#[test]
fn check_accepts_good_files() {
    check_ok("good_minimal.toml", &[]);
    check_ok("good_rich.toml", &[]);
    // The SPEC's full example is valid once its token variable is set.
    check_ok("spec_full.toml", &[("SMARTLB_ADMIN_TOKEN", "s3cret")]);
}

#[test]
fn check_rejects_bad_files_with_positions_and_paths() {
    check_bad(
        "bad_unknown_key.toml",
        "6:1",
        "upstream[0].algoritm",
        "did you mean `algorithm`",
    );
    check_bad(
        "bad_duration.toml",
        "13:12",
        "upstream[1].health.interval",
        "invalid duration \"2x\"",
    );
    check_bad(
        "bad_type.toml",
        "3:11",
        "server.workers",
        "expected an integer",
    );
    check_bad(
        "bad_missing_field.toml",
        "4:1",
        "upstream[0].name",
        "missing required key `name`",
    );
    check_bad(
        "bad_unknown_upstream.toml",
        "10:12",
        "route[0].upstream",
        "unknown upstream \"api\"",
    );
    check_bad("bad_syntax.toml", "2:25", "", "TOML syntax error");
    check_bad(
        "bad_unset_var.toml",
        "6:10",
        "admin.token",
        "SMARTLB_ITEST_UNSET_TOKEN",
    );
    // The SPEC's full file without its token variable.
    check_bad(
        "spec_full.toml",
        "14:10",
        "admin.token",
        "SMARTLB_ADMIN_TOKEN",
    );
}

#[test]
fn check_reports_every_error_of_a_file() {
    let stderr = check_bad(
        "bad_many.toml",
        "4:19",
        "server.request_timeout",
        "invalid duration \"soon\"",
    );
    assert!(
        stderr.contains("bad_many.toml:8:13: upstream[0].algorithm:")
            && stderr.contains("did you mean \"round-robin\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad_many.toml:12:12: upstream[0].retry.attempts:"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
}

#[test]
fn check_reports_a_missing_file() {
    let output = smartlb(&["check", "-c", "no-such-file.toml"], &[]);
    assert_no_panic(&output);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such-file.toml"), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn run_rejects_a_bad_file_before_serving() {
    let output = smartlb(&["run", "-c", "bad_duration.toml"], &[]);
    assert_no_panic(&output);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad_duration.toml:13:12: upstream[1].health.interval:"),
        "{stderr}"
    );

    // Without `-c` or $SMARTLB_CONFIG, the file is ./smartlb.toml (absent here).
    let output = smartlb(&["run"], &[]);
    assert_no_panic(&output);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("smartlb.toml: cannot read"), "{stderr}");

    // Without `-c`, the file comes from $SMARTLB_CONFIG.
    let output = smartlb(&["run"], &[("SMARTLB_CONFIG", "bad_unknown_key.toml")]);
    assert_no_panic(&output);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad_unknown_key.toml:6:1: upstream[0].algoritm:"),
        "{stderr}"
    );
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["frobnicate"][..],
        &["check"][..],
        &["demo", "--duration", "soon"][..],
    ] {
        let output = smartlb(args, &[]);
        assert_no_panic(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(!output.stderr.is_empty(), "{args:?}: no message");
    }
}

#[test]
fn version_and_help() {
    let output = smartlb(&["--version"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with("smartlb ") && stdout.contains(env!("CARGO_PKG_VERSION")),
        "{stdout}"
    );

    let output = smartlb(&["help"], &[]);
    assert_eq!(output.status.code(), Some(0));
    let stdout = text(&output.stdout);
    for command in ["run", "check", "demo"] {
        assert!(stdout.contains(command), "help lacks {command}: {stdout}");
    }

    let output = smartlb(&["help", "check"], &[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(text(&output.stdout).contains("--config"));
}

#[test]
fn demo_runs_its_story_without_failed_requests() {
    let started = Instant::now();
    let output = smartlb(&["demo", "--duration", "4s", "--plain"], &[]);
    let took = started.elapsed();
    assert_no_panic(&output);
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // Bounded: a 4 s story and a prompt shutdown (not a performance assertion).
    assert!(took < Duration::from_secs(30), "the demo took {took:?}");
    for name in ["fast", "medium", "degrading", "flaky"] {
        assert!(
            stdout.contains(name),
            "the demo never names {name}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("crashed"),
        "no crash in the story:\n{stdout}"
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("demo finished after"))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    assert!(
        summary.contains(" 0 failed"),
        "the demo lost requests: {summary}\n{stdout}"
    );
    // Some traffic was carried at all.
    let requests: u64 = summary
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 100, "too few requests: {summary}");
}
