//! Route-level traffic control over real sockets: rate limiting per client address and per
//! header (429 with `Retry-After` for the client over its limit, others unaffected), and
//! the response cache (a cacheable response is fetched from the backend once; `Vary`
//! keeps variants apart; uncacheable responses always go to the backend).

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::HeaderMap;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend whose `/page` is cacheable (60 s) and varies on `Accept-Language`, whose
/// `/fresh` may not be stored, and which counts the requests it gets.
async fn cacheable_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new()
        .route(
            "/page",
            axum::routing::get(|headers: HeaderMap| async move {
                let lang = headers
                    .get("accept-language")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("en")
                    .to_owned();
                (
                    [("cache-control", "max-age=60"), ("vary", "Accept-Language")],
                    format!("page in {lang}"),
                )
            }),
        )
        .route(
            "/fresh",
            axum::routing::get(|| async { ([("cache-control", "no-store")], "fresh") }),
        )
        .route("/limited", axum::routing::get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, hits)
}

fn config(backend: SocketAddr) -> String {
    format!(
        r#"{PREAMBLE}
[[upstream]]
name = "web"
algorithm = "round-robin"
backends = ["{backend}"]

[[route]]
path_prefix = "/limited"
upstream = "web"

[route.rate_limit]
rps = 1
burst = 3
key = "ip"

[[route]]
path_prefix = "/keyed"
upstream = "web"

[route.rate_limit]
rps = 1
burst = 2
key = "header:x-api-key"

[[route]]
path_prefix = "/"
upstream = "web"

[route.cache]
max_entries = 100
max_bytes = 1048576
"#
    )
}

/// One `GET` over a new connection from the local address `from`; returns the status and
/// the raw head.
async fn get_from(from: &str, proxy: SocketAddr, path: &str) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = within(Duration::from_secs(5), "connecting", socket.connect(proxy))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    within(
        Duration::from_secs(5),
        "reading",
        stream.read_to_end(&mut response),
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn a_client_over_its_limit_gets_429_while_another_is_unaffected() {
    let (backend, hits) = cacheable_backend().await;
    let running = start_proxy(&config(backend)).await;
    let proxy = proxy_addr(&running);

    // 127.0.0.2 is another client (the whole 127/8 is loopback).
    for i in 0..3 {
        assert_eq!(get_from("127.0.0.1", proxy, "/limited").await.0, 200, "{i}");
    }
    let (status, head) = get_from("127.0.0.1", proxy, "/limited").await;
    assert_eq!(status, 429, "{head}");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("retry-after: 1\r\n"), "{head}");
    assert!(head.contains("x-smartlb-error: rate-limited"), "{head}");
    for i in 0..3 {
        assert_eq!(get_from("127.0.0.2", proxy, "/limited").await.0, 200, "{i}");
    }
    // Refused requests never reached the backend.
    assert_eq!(hits.load(Ordering::SeqCst), 6);

    // Keyed by a header: each key has its own bucket.
    let client = client();
    for key in ["alice", "alice"] {
        let answer = get_with(&client, proxy, "/keyed", &[("x-api-key", key)]).await;
        assert_ne!(answer.status, 429);
    }
    let over = get_with(&client, proxy, "/keyed", &[("x-api-key", "alice")]).await;
    assert_eq!(over.status, 429);
    let other = get_with(&client, proxy, "/keyed", &[("x-api-key", "bob")]).await;
    assert_ne!(other.status, 429);

    // The refusals are counted.
    let text = metrics_text(&client, running.admin_addr()).await;
    assert!(
        text.contains("smartlb_rate_limited_total{route=\"*/limited\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("smartlb_rate_limited_total{route=\"*/keyed\"} 1"),
        "{text}"
    );
    stop(running).await;
}

#[tokio::test]
async fn cacheable_responses_are_served_from_the_cache_and_vary_keeps_variants_apart() {
    let (backend, hits) = cacheable_backend().await;
    let running = start_proxy(&config(backend)).await;
    let proxy = proxy_addr(&running);
    let client = client();

    for i in 0..5 {
        let answer = get(&client, proxy, "/page").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), "page in en");
        if i > 0 {
            assert!(!answer.header("age").is_empty(), "served from the cache");
        }
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the backend saw one request"
    );

    for _ in 0..3 {
        let fr = get_with(&client, proxy, "/page", &[("accept-language", "fr")]).await;
        assert_eq!(fr.text(), "page in fr");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "one more for the other variant"
    );
    assert_eq!(get(&client, proxy, "/page").await.text(), "page in en");

    // A client asking for a fresh copy goes to the backend.
    let again = get_with(&client, proxy, "/page", &[("cache-control", "no-cache")]).await;
    assert_eq!(again.text(), "page in en");
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // What may not be stored always goes to the backend.
    for _ in 0..3 {
        assert_eq!(get(&client, proxy, "/fresh").await.text(), "fresh");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 6);

    let text = metrics_text(&client, running.admin_addr()).await;
    assert!(
        text.contains("smartlb_cache_requests_total{route=\"*/\",result=\"hit\"} 7"),
        "{text}"
    );
    stop(running).await;
}

/// The sticky cookie's `name=value` from a response, when it sets one.
fn sticky_cookie(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

#[tokio::test]
async fn a_sticky_cookie_holds_a_client_to_its_backend_until_that_backend_dies() {
    let backends = [
        backend("a", 0).await,
        backend("b", 0).await,
        backend("c", 0).await,
    ];
    let list: Vec<(SocketAddr, u32)> = backends.iter().map(|b| (b.addr(), 1)).collect();
    let running = start_proxy(&one_upstream(
        "round-robin",
        &list,
        "\n[upstream.sticky]\ncookie = \"session\"\nttl = \"10m\"\n",
    ))
    .await;
    let proxy = proxy_addr(&running);
    let client = client();

    let first = get(&client, proxy, "/").await;
    let cookie = sticky_cookie(&first).expect("the first response sets the cookie");
    let set = first.header("set-cookie").to_owned();
    assert!(set.contains("Max-Age=600"), "{set}");
    assert!(set.contains("HttpOnly"), "{set}");
    let home = first.backend().to_owned();
    for (b, n) in backends.iter().map(|b| (b, b.addr().to_string())) {
        assert!(
            !cookie.contains(&n),
            "the cookie does not name {} by address",
            b.name()
        );
    }
    for i in 0..100 {
        let answer = get_with(&client, proxy, "/", &[("cookie", &cookie)]).await;
        assert_eq!(answer.status, 200, "{i}");
        assert_eq!(answer.backend(), home, "request {i} stayed");
        assert!(
            sticky_cookie(&answer).is_none(),
            "no new cookie while it holds"
        );
    }
    // Without the cookie, round-robin spreads requests as usual.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(get(&client, proxy, "/").await.backend().to_owned());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");

    // Its backend dies: the client moves and gets a new cookie that holds it there.
    let dead = backends.iter().find(|b| b.name() == home).unwrap();
    assert!(dead.crash());
    let moved = get_with(&client, proxy, "/", &[("cookie", &cookie)]).await;
    assert_eq!(moved.status, 200);
    assert_ne!(moved.backend(), home);
    let new_cookie = sticky_cookie(&moved).expect("a new cookie after the move");
    assert_ne!(new_cookie, cookie);
    let new_home = moved.backend().to_owned();
    for i in 0..20 {
        let answer = get_with(&client, proxy, "/", &[("cookie", &new_cookie)]).await;
        assert_eq!(
            answer.backend(),
            new_home,
            "request {i} stayed on the new backend"
        );
    }
    stop(running).await;
}

#[tokio::test]
async fn route_state_survives_a_reload_that_rebuilds_the_upstream() {
    let (backend, hits) = cacheable_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("smartlb.toml");
    let first = config(backend);
    std::fs::write(&file, &first).unwrap();
    let running = smartlb::start(&smartlb::config::load_file(&file).unwrap())
        .await
        .unwrap();
    running.proxy().set_config_source(&file);
    let proxy = proxy_addr(&running);
    let client = client();
    assert_eq!(get(&client, proxy, "/page").await.text(), "page in en");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Another algorithm rebuilds the upstream, and the routing table with it; the access
    // log turns on at once.
    let second = first
        .replace(
            "algorithm = \"round-robin\"",
            "algorithm = \"least-requests\"",
        )
        .replace("access_log = false", "access_log = true");
    std::fs::write(&file, second).unwrap();
    let changes = running.proxy().reload().unwrap();
    assert!(
        changes.iter().any(|c| c.contains("algorithm")),
        "{changes:?}"
    );
    assert!(changes.iter().any(|c| c == "access log on"), "{changes:?}");
    // The route kept its cache: the page is still served from memory.
    let again = get(&client, proxy, "/page").await;
    assert_eq!(again.text(), "page in en");
    assert!(!again.header("age").is_empty());
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    stop(running).await;
}
