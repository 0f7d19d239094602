//! Headless Chromium for the dashboard tests: finding the browser and reading the
//! chart series the page writes as `data-points` attributes.
#![allow(dead_code, clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::collections::HashMap;
use std::process::Stdio;

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
