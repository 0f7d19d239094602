//! The dashboard in real headless Chromium: every chart holds points for every backend.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Fake, Running};
use smartlb_admin::AdminServer;

/// The Chromium binary: `$SMARTLB_CHROMIUM`, else the first of the usual names on PATH.
fn chromium() -> Option<String> {
    if let Ok(path) = std::env::var("SMARTLB_CHROMIUM") {
        return Some(path);
    }
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .into_iter()
    .find(|name| {
        std::process::Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
    .map(str::to_owned)
}

/// The attributes of every start tag in `html` that has a `data-points` attribute.
fn series_tags(html: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let Some(end) = rest.find('>') else { break };
        let tag = &rest[..end];
        rest = &rest[end..];
        if !tag.contains("data-points=") {
            continue;
        }
        out.push(attributes(tag));
    }
    out
}

/// Parses `name="value"` pairs of one tag (values without `"` inside, as the page writes).
fn attributes(tag: &str) -> HashMap<String, String> {
    let mut attrs = HashMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq]
            .rsplit(char::is_whitespace)
            .next()
            .unwrap_or("")
            .to_owned();
        let after = &rest[eq + 2..];
        let Some(close) = after.find('"') else { break };
        attrs.insert(name, html_unescape(&after[..close]));
        rest = &after[close + 1..];
    }
    attrs
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn points(tags: &[HashMap<String, String>], want: &[(&str, &str)]) -> Vec<usize> {
    tags.iter()
        .filter(|t| {
            want.iter()
                .all(|(k, v)| t.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|t| t["data-points"].parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_draws_every_chart_for_every_backend() {
    let Some(browser) = chromium() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("chromium is required when CI=true (apt-get install chromium)");
        }
        eprintln!(
            "skipping the dashboard test: chromium is not installed (apt-get install chromium)"
        );
        return;
    };
    let fake = Fake::new();
    let server = Running::start(AdminServer::new(fake.clone())).await;
    let url = format!("http://{}/", server.addr);

    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let profile = tmp.join(format!("chromium-profile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).unwrap();
    // Keep the picture beside the build output: <target>/dashboard.png.
    let screenshot = tmp.parent().unwrap_or(Path::new(".")).join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);

    let mut command = tokio::process::Command::new(&browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1400,2200",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("chromium took over 90 s")
        .unwrap();
    server.stop().await;
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // The page polled more than once while virtual time ran.
    let polls = fake.polls.load(Ordering::Relaxed);
    assert!(polls >= 3, "only {polls} traffic polls");
    assert!(
        !dom.contains("<div id=\"banner\" class=\"show\""),
        "the page shows an error: {dom}"
    );

    let tags = series_tags(&dom);
    let status = fake.upstreams.lock().unwrap().clone();
    for u in &status {
        for b in &u.backends {
            let backend = b.address.as_str();
            for (chart, series) in [
                ("rate", None),
                ("latency", Some("p99")),
                ("latency", Some("p50")),
                ("weight", None),
                ("state", None),
            ] {
                let mut want = vec![("data-chart", chart), ("data-backend", backend)];
                if let Some(s) = series {
                    want.push(("data-series", s));
                }
                let found = points(&tags, &want);
                // One series per upstream section holding this backend.
                assert!(
                    !found.is_empty(),
                    "no {chart} {series:?} series for {backend}"
                );
                let min = if chart == "rate" || chart == "latency" {
                    10
                } else {
                    2
                };
                assert!(
                    found.iter().all(|&n| n >= min),
                    "{chart} {series:?} of {backend} has {found:?} points, want at least {min}"
                );
            }
        }
    }
    for series in ["actual", "forecast", "band"] {
        let found = points(
            &tags,
            &[("data-chart", "forecast"), ("data-series", series)],
        );
        assert_eq!(found.len(), status.len(), "forecast {series}: {found:?}");
        assert!(
            found.iter().all(|&n| n >= 10),
            "forecast {series}: {found:?}"
        );
    }
    // Both anomalies of each upstream are marked on the rate, latency and forecast charts.
    let markers = dom.matches("class=\"anomaly\"").count();
    assert_eq!(markers, status.len() * 2 * 3, "anomaly markers");
    assert!(dom.contains("data-kind=\"rate-spike\"") && dom.contains("data-kind=\"latency\""));
    // The table shows the live state and the weight explanation.
    assert!(dom.contains("p99 above peers"));
    assert!(dom.contains("v9.9.9"));

    let png = std::fs::read(&screenshot).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG"),
        "no screenshot at {}",
        screenshot.display()
    );
    eprintln!("dashboard screenshot: {}", screenshot.display());
}
