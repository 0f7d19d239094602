//! The dashboard in real headless Chromium: every chart holds points for every backend.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

mod browser;
mod common;

use std::sync::atomic::Ordering;

use browser::{chromium, points, series_tags};
use common::{Fake, Running};
use smartlb_admin::AdminServer;

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

    let (out, screenshot) = browser::dump_dom(&browser, &url, "dashboard.png").await;
    server.stop().await;
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
