//! The dashboard of a running smartlb under traffic, in real headless Chromium: each
//! chart holds data points for each backend. A screenshot is kept at
//! `<target>/dashboard-live.png`.
#![allow(clippy::unwrap_used, dead_code, reason = "tests fail loudly")]

#[path = "../../smartlb-admin/tests/browser/mod.rs"]
mod browser;
mod common;

use std::time::Duration;

use common::*;
use smartlb_demo::{LoadGenerator, LoadOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_of_a_running_proxy_shows_every_backend() {
    let Some(chromium) = browser::chromium() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("chromium is required when CI=true (apt-get install chromium)");
        }
        eprintln!("skipping: chromium is not installed");
        return;
    };
    let a = backend("a", 1).await;
    let b = backend("b", 5).await;
    let running = start_proxy(&one_upstream(
        "adaptive",
        &[(a.addr(), 1), (b.addr(), 1)],
        "",
    ))
    .await;
    let load = LoadGenerator::start(
        proxy_addr(&running),
        LoadOptions::default().with_rate(100.0).with_concurrency(16),
    )
    .unwrap();
    // Twelve seconds of per-second samples before the page opens.
    tokio::time::sleep(Duration::from_secs(12)).await;

    let url = format!("http://{}/", running.admin_addr());
    let (out, screenshot) = browser::dump_dom(&chromium, &url, "dashboard-live.png").await;
    let totals = load.stop().await;
    stop(running).await;
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("</html>"),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(totals.errors, 0);

    let tags = browser::series_tags(&dom);
    for backend in [a.addr().to_string(), b.addr().to_string()] {
        for (chart, series, min) in [
            ("rate", None, 10),
            // A second in which a backend finished no request has no latency point.
            ("latency", Some("p50"), 5),
            ("latency", Some("p99"), 5),
            ("weight", None, 1),
            ("state", None, 1),
        ] {
            let mut want = vec![("data-chart", chart), ("data-backend", backend.as_str())];
            if let Some(s) = series {
                want.push(("data-series", s));
            }
            let found = browser::points(&tags, &want);
            assert!(
                !found.is_empty() && found.iter().all(|&n| n >= min),
                "{chart} {series:?} of {backend}: {found:?} points, want at least {min}"
            );
        }
    }
    let actual = browser::points(
        &tags,
        &[("data-chart", "forecast"), ("data-series", "actual")],
    );
    assert!(
        actual.iter().all(|&n| n >= 10) && !actual.is_empty(),
        "forecast actual: {actual:?}"
    );
    eprintln!("dashboard screenshot: {}", screenshot.display());
}
