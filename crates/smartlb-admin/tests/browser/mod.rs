//! Headless Chromium for the dashboard tests: finding the browser and reading the
//! chart series the page writes as `data-points` attributes.
#![allow(dead_code, clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Loads `url` in headless Chromium (`browser`) with five seconds of virtual time for its
/// scripts, and returns the process output (the DOM on stdout) and the screenshot kept at
/// `<target>/<screenshot>`. The flags are those that work as root on these machines.
pub async fn dump_dom(
    browser: &str,
    url: &str,
    screenshot: &str,
) -> (std::process::Output, PathBuf) {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let profile = tmp.join(format!("chromium-{screenshot}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).unwrap();
    let picture = tmp.parent().unwrap_or(Path::new(".")).join(screenshot);
    let _ = std::fs::remove_file(&picture);
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(browser)
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
            .arg(format!("--screenshot={}", picture.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium took over 90 s")
    .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    (out, picture)
}

/// The Chromium binary: `$SMARTLB_CHROMIUM`, else the first of the usual names on PATH.
pub fn chromium() -> Option<String> {
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
pub fn series_tags(html: &str) -> Vec<HashMap<String, String>> {
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

pub fn points(tags: &[HashMap<String, String>], want: &[(&str, &str)]) -> Vec<usize> {
    tags.iter()
        .filter(|t| {
            want.iter()
                .all(|(k, v)| t.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|t| t["data-points"].parse().unwrap())
        .collect()
}
