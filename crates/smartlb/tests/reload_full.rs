//! Reloads that change more than backends, over real sockets: routes and upstreams under
//! load, listeners with a request in flight, upstream settings in place, and active
//! health checks for backends added while running.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use smartlb_demo::{LoadGenerator, LoadOptions};

/// Writes `text` to `path` and reloads through the proxy; returns the changes.
fn reload_with(running: &smartlb::Running, path: &Path, text: &str) -> Vec<String> {
    std::fs::write(path, text).unwrap();
    match running.proxy().reload() {
        Ok(changes) => changes,
        Err(error) => panic!("reload refused: {error}\n---\n{text}"),
    }
}

/// Starts the proxy from `text` written to `path`, reloading from that file.
async fn start_file(path: &Path, text: &str) -> smartlb::Running {
    std::fs::write(path, text).unwrap();
    let config = smartlb::config::load_file(path).unwrap();
    let running = within(Duration::from_secs(10), "start", smartlb::start(&config))
        .await
        .unwrap();
    running.proxy().set_config_source(path);
    running
}

fn requests_of(running: &smartlb::Running, upstream: &str, backend: SocketAddr) -> u64 {
    running
        .proxy()
        .status()
        .upstreams
        .iter()
        .find(|u| u.name == upstream)
        .and_then(|u| u.backends.iter().find(|b| b.address == backend.to_string()))
        .map_or(0, |b| b.requests_total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_upstreams_change_under_load_without_a_failed_request() {
    let a = backend("a", 1).await;
    let b = backend("b", 1).await;
    let c = backend("c", 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smartlb.toml");
    let head = "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n";
    let first = format!(
        "{head}[[upstream]]\nname = \"web\"\nalgorithm = \"round-robin\"\nbackends = [\"{}\", \"{}\"]\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"web\"\n",
        a.addr(),
        b.addr()
    );
    let running = start_file(&path, &first).await;
    let proxy = proxy_addr(&running);
    let root = LoadGenerator::start(
        proxy,
        LoadOptions::default().with_rate(150.0).with_concurrency(8),
    )
    .unwrap();
    let mut api_options = LoadOptions::default().with_rate(150.0).with_concurrency(8);
    api_options.path = "/api/items".into();
    let api = LoadGenerator::start(proxy, api_options).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a_before = requests_of(&running, "web", a.addr());
    assert!(a_before > 0);

    // A new upstream `api` takes /api; `web` changes algorithm and gains a health table;
    // its backends are unchanged and keep their statistics.
    let second = format!(
        "{head}[[upstream]]\nname = \"web\"\nalgorithm = \"least-requests\"\nbackends = [\"{}\", \"{}\"]\n\
         [upstream.health]\npath = \"/health\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
         [[upstream]]\nname = \"api\"\nalgorithm = \"round-robin\"\nbackends = [\"{}\"]\n\
         [upstream.slow_start]\nduration = \"0s\"\n\
         [[route]]\npath_prefix = \"/api\"\nupstream = \"api\"\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"web\"\n",
        a.addr(),
        b.addr(),
        c.addr()
    );
    let changes = reload_with(&running, &path, &second);
    assert!(
        changes.iter().any(|c| c.contains("`api` added")),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.contains("`web`") && c.contains("algorithm")),
        "{changes:?}"
    );
    assert!(changes.iter().any(|c| c.contains("routes")), "{changes:?}");
    let status = running.proxy().status();
    assert_eq!(status.upstreams.len(), 2);
    assert_eq!(status.upstreams[0].algorithm, "least-requests");
    assert!(
        requests_of(&running, "web", a.addr()) >= a_before,
        "a's statistics were reset"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = api.take_interval();
    let _ = root.take_interval();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let api_window = api.take_interval();
    let root_window = root.take_interval();
    assert!(api_window.requests > 0 && root_window.requests > 0);
    assert_eq!(
        api_window.share("c"),
        1.0,
        "/api is served by the new upstream"
    );
    assert_eq!(root_window.share("c"), 0.0, "/ stays on web");

    // Remove the new upstream again and route everything to web.
    let changes = reload_with(&running, &path, &first);
    assert!(
        changes.iter().any(|c| c.contains("`api` removed")),
        "{changes:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = api.take_interval();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.take_interval().share("c"), 0.0);

    let api_totals = api.stop().await;
    let root_totals = root.stop().await;
    assert_eq!(api_totals.errors, 0, "{api_totals:?}");
    assert_eq!(root_totals.errors, 0, "{root_totals:?}");
    assert!(api_totals.requests > 200 && root_totals.requests > 200);
    stop(running).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_change_binds_the_new_address_and_lets_the_old_one_finish() {
    let slow = backend("slow", 1500).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smartlb.toml");
    let config = |listen: &str| {
        format!(
            "[server]\nlisten = {listen}\nidle_timeout = \"5s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\
             [[upstream]]\nname = \"web\"\nalgorithm = \"round-robin\"\nbackends = [\"{}\"]\n",
            slow.addr()
        )
    };
    let running = start_file(&path, &config("\"127.0.0.1:0\"")).await;
    let old = proxy_addr(&running);

    // A slow request in flight on the old listener.
    let in_flight = tokio::spawn(async move {
        let client = client();
        get(&client, old, "/slow").await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let port = free_port();
    let new: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let changes = reload_with(&running, &path, &config(&format!("[\"{new}\"]")));
    assert!(
        changes
            .iter()
            .any(|c| c.contains(&format!("listening on {new}"))),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.contains(&format!("stopped listening on {old}"))),
        "{changes:?}"
    );
    assert_eq!(running.listen_addrs(), vec![new]);

    // The new address serves.
    let answer = get(&client(), new, "/").await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.backend(), "slow");

    // The old one stops accepting (soon: its accept loop ends on its own task).
    let started = Instant::now();
    loop {
        match tokio::net::TcpStream::connect(old).await {
            Err(_) => break,
            Ok(_) => {
                assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "the old listener still accepts"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    // The request accepted on the old listener completes.
    let answer = within(Duration::from_secs(5), "the in-flight request", in_flight)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.backend(), "slow");

    // New server timeouts restart the accept loop of the kept address: it still serves.
    let mut text = config(&format!("[\"{new}\"]"));
    text = text.replace("idle_timeout = \"5s\"", "idle_timeout = \"7s\"");
    let changes = reload_with(&running, &path, &text);
    assert!(
        changes
            .iter()
            .any(|c| c.contains("apply to new connections")),
        "{changes:?}"
    );
    let answer = get(&client(), new, "/").await;
    assert_eq!(answer.status, 200);

    // A smaller request head limit applies to the next connection.
    let big = "x".repeat(6000);
    let answer = get_with(&client(), new, "/", &[("x-big", big.as_str())]).await;
    assert_eq!(answer.status, 200);
    text = text.replace("[server]\n", "[server]\nmax_header_bytes = 4096\n");
    reload_with(&running, &path, &text);
    let answer = get_with(&client(), new, "/", &[("x-big", big.as_str())]).await;
    assert_eq!(answer.status, 431, "{}", answer.text());

    // Keys that cannot change while running are reported.
    let text = text.replace("[server]\n", "[server]\nworkers = 3\n");
    let changes = reload_with(&running, &path, &text);
    assert!(
        changes
            .iter()
            .any(|c| c.contains("server.workers") && c.contains("restart")),
        "{changes:?}"
    );
    stop(running).await;
}

async fn admin_post(admin: SocketAddr, path: &str, body: &str) -> Answer {
    let req = Request::post(format!("http://{admin}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(&client(), req).await
}

async fn state_becomes(running: &smartlb::Running, backend: SocketAddr, state: &str) {
    let key = backend.to_string();
    let started = Instant::now();
    loop {
        let states = backend_states(running, "web");
        if states.get(&key).map(String::as_str) == Some(state) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{key} never became {state}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_added_while_running_get_active_health_checks() {
    let a = backend("a", 0).await;
    let b = backend("b", 0).await;
    let c = backend("c", 0).await;
    b.handle().set_health_failing(true);
    c.handle().set_health_failing(true);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smartlb.toml");
    let config = |backends: &[SocketAddr], health_path: &str| {
        let list = backends
            .iter()
            .map(|b| format!("\"{b}\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[log]\naccess_log = false\n\
             [[upstream]]\nname = \"web\"\nalgorithm = \"round-robin\"\nbackends = [{list}]\n\
             [upstream.health]\npath = \"{health_path}\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\n\
             healthy_threshold = 1\nunhealthy_threshold = 2\n\
             [upstream.slow_start]\nduration = \"0s\"\n"
        )
    };
    let running = start_file(&path, &config(&[a.addr()], "/health")).await;
    let admin = running.admin_addr();

    // Added through the admin API: its failing /health takes it out.
    let answer = admin_post(
        admin,
        "/api/v1/upstreams/web/backends",
        &format!("{{\"address\": \"{}\", \"weight\": 1}}", b.addr()),
    )
    .await;
    assert!(answer.status.is_success(), "{}", answer.text());
    state_becomes(&running, b.addr(), "unhealthy").await;
    assert!(b.handle().health_checks() > 0);

    // Added by a reload (the file also keeps b, which stays out).
    reload_with(
        &running,
        &path,
        &config(&[a.addr(), b.addr(), c.addr()], "/health"),
    );
    state_becomes(&running, c.addr(), "unhealthy").await;
    assert_eq!(sequential(proxy_addr(&running), "/", 6).await.count("a"), 6);

    // New health settings restart the checkers: `/` passes, so b and c come back.
    let changes = reload_with(
        &running,
        &path,
        &config(&[a.addr(), b.addr(), c.addr()], "/"),
    );
    assert!(changes.iter().any(|c| c.contains("health")), "{changes:?}");
    state_becomes(&running, b.addr(), "healthy").await;
    state_becomes(&running, c.addr(), "healthy").await;

    // A removed backend loses its checker.
    reload_with(&running, &path, &config(&[a.addr(), b.addr()], "/"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let checks = c.handle().health_checks();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(c.handle().health_checks(), checks, "c is still checked");
    stop(running).await;
}
