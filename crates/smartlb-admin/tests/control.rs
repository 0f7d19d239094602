//! The mutating admin API over real HTTP: every endpoint and every error case.
#![allow(clippy::unwrap_used, reason = "test helpers fail loudly")]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Fake, Running, send};
use smartlb_admin::{AdminError, AdminServer, UpstreamStatus};

const TOKEN: &str = "s3cret-token";
const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret-token");
const JSON: (&str, &str) = ("Content-Type", "application/json");

async fn start(token: Option<&str>) -> (Arc<Fake>, Running) {
    let fake = Fake::new();
    let server = AdminServer::new(fake.clone())
        .with_control(fake.clone())
        .with_token(token.map(str::to_owned));
    (fake, Running::start(server).await)
}

fn upstream(answer: &common::Answer) -> UpstreamStatus {
    serde_json::from_str(&answer.body).unwrap()
}

#[tokio::test]
async fn add_backend() {
    let (fake, server) = start(Some(TOKEN)).await;
    let addr = server.addr;
    let path = "/api/v1/upstreams/web/backends";

    let added = send(
        addr,
        "POST",
        path,
        &[AUTH, JSON],
        Some(r#"{"address": "10.0.0.9:80", "weight": 2}"#),
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(
        added.headers["location"],
        "/api/v1/upstreams/web/backends/10.0.0.9:80"
    );
    let web = upstream(&added);
    let new = web
        .backends
        .iter()
        .find(|b| b.address == "10.0.0.9:80")
        .unwrap();
    assert_eq!(
        (new.configured_weight, new.state.as_str()),
        (2, "slow-start")
    );

    // Weight defaults to 1; backup is optional.
    let added = send(
        addr,
        "POST",
        path,
        &[AUTH],
        Some(r#"{"address": "10.0.0.10:80", "backup": true}"#),
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let web = upstream(&added);
    let new = web
        .backends
        .iter()
        .find(|b| b.address == "10.0.0.10:80")
        .unwrap();
    assert_eq!((new.configured_weight, new.backup), (1, true));

    // A name with a space, percent-encoded in the path.
    let added = send(
        addr,
        "POST",
        "/api/v1/upstreams/api%20canary/backends",
        &[AUTH],
        Some(r#"{"address": "10.0.0.11:80"}"#),
    )
    .await;
    assert_eq!(added.status, 201, "{}", added.body);
    assert_eq!(
        added.headers["location"],
        "/api/v1/upstreams/api%20canary/backends/10.0.0.11:80"
    );

    // Errors.
    let dup = send(
        addr,
        "POST",
        path,
        &[AUTH],
        Some(r#"{"address": "10.0.0.9:80"}"#),
    )
    .await;
    assert!(dup.error(409).contains("already"));
    let unknown = send(
        addr,
        "POST",
        "/api/v1/upstreams/nope/backends",
        &[AUTH],
        Some(r#"{"address": "10.0.0.9:80"}"#),
    )
    .await;
    assert!(unknown.error(404).contains("nope"));
    let invalid = send(
        addr,
        "POST",
        path,
        &[AUTH],
        Some(r#"{"address": "nocolon"}"#),
    )
    .await;
    assert!(invalid.error(400).contains("host:port"));
    for (body, needle) in [
        (
            r#"{"address": "10.0.0.9:80", "weight": 2, "colour": "red"}"#,
            "unknown field `colour`",
        ),
        (r#"{"address": "10.0.0.9:80""#, "invalid JSON"),
        (r#"{"weight": 2}"#, "missing field `address`"),
        (r#"{"address": 7}"#, "invalid type"),
        (r#"{"address": "10.0.0.9:80", "weight": -1}"#, "invalid"),
        (r#"["10.0.0.9:80"]"#, "invalid"),
        (r#"{"address": ""}"#, "must not be empty"),
        (r#"{"address": "a:1", "weight": 0}"#, "at least 1"),
        ("", "expected a JSON object body"),
    ] {
        let bad = send(addr, "POST", path, &[AUTH], Some(body)).await;
        let msg = bad.error(400);
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let big = format!(r#"{{"address": "{}"}}"#, "a".repeat(70_000));
    send(addr, "POST", path, &[AUTH], Some(&big))
        .await
        .error(413);

    assert_eq!(fake.upstreams.lock().unwrap()[0].backends.len(), 5);
    server.stop().await;
}

#[tokio::test]
async fn update_backend() {
    let (fake, server) = start(Some(TOKEN)).await;
    let addr = server.addr;
    let path = "/api/v1/upstreams/web/backends/127.0.0.1:8081";

    let changed = send(addr, "PATCH", path, &[AUTH, JSON], Some(r#"{"weight": 5}"#)).await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(upstream(&changed).backends[0].configured_weight, 5);

    let drained = send(addr, "PATCH", path, &[AUTH], Some(r#"{"drain": true}"#)).await;
    assert_eq!(drained.status, 200);
    assert_eq!(upstream(&drained).backends[0].state, "draining");
    let back = send(
        addr,
        "PATCH",
        path,
        &[AUTH],
        Some(r#"{"drain": false, "weight": 3}"#),
    )
    .await;
    assert_eq!(back.status, 200);
    let web = upstream(&back);
    assert_eq!(
        (
            web.backends[0].state.as_str(),
            web.backends[0].configured_weight
        ),
        ("healthy", 3)
    );

    // An IPv6 address, brackets percent-encoded.
    let v6 = send(
        addr,
        "PATCH",
        "/api/v1/upstreams/web/backends/%5B::1%5D:8083",
        &[AUTH],
        Some(r#"{"weight": 2}"#),
    )
    .await;
    assert_eq!(v6.status, 200, "{}", v6.body);

    // Errors.
    let msg = send(
        addr,
        "PATCH",
        "/api/v1/upstreams/web/backends/10.9.9.9:1",
        &[AUTH],
        Some(r#"{"weight": 2}"#),
    )
    .await
    .error(404);
    assert!(msg.contains("10.9.9.9:1"), "{msg}");
    send(
        addr,
        "PATCH",
        "/api/v1/upstreams/nope/backends/127.0.0.1:8081",
        &[AUTH],
        Some(r#"{"weight": 2}"#),
    )
    .await
    .error(404);
    send(addr, "PATCH", path, &[AUTH], Some(r#"{"weight": 5000}"#))
        .await
        .error(400);
    for (body, needle) in [
        ("{}", "nothing to change"),
        (r#"{"weight": 0}"#, "at least 1"),
        (r#"{"drain": "yes"}"#, "invalid type"),
        (r#"{"weight": 2, "backup": true}"#, "unknown field `backup`"),
        ("weight=2", "invalid JSON"),
        ("", "expected a JSON object body"),
    ] {
        let msg = send(addr, "PATCH", path, &[AUTH], Some(body))
            .await
            .error(400);
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    send(
        addr,
        "PATCH",
        "/api/v1/upstreams/web/backends/%G1",
        &[AUTH],
        Some(r#"{"weight": 2}"#),
    )
    .await
    .error(400);
    assert_eq!(
        fake.upstreams.lock().unwrap()[0].backends[0].configured_weight,
        3
    );
    server.stop().await;
}

#[tokio::test]
async fn remove_backend() {
    let (fake, server) = start(Some(TOKEN)).await;
    let addr = server.addr;

    // Idle: removed at once.
    let gone = send(
        addr,
        "DELETE",
        "/api/v1/upstreams/web/backends/127.0.0.1:8081",
        &[AUTH],
        None,
    )
    .await;
    assert_eq!(gone.status, 200, "{}", gone.body);
    assert!(
        upstream(&gone)
            .backends
            .iter()
            .all(|b| b.address != "127.0.0.1:8081")
    );
    // Busy: draining first, removed later.
    let draining = send(
        addr,
        "DELETE",
        "/api/v1/upstreams/web/backends/127.0.0.1:8082",
        &[AUTH],
        None,
    )
    .await;
    assert_eq!(draining.status, 202, "{}", draining.body);
    let web = upstream(&draining);
    assert_eq!(
        web.backends
            .iter()
            .find(|b| b.address == "127.0.0.1:8082")
            .unwrap()
            .state,
        "draining"
    );

    send(
        addr,
        "DELETE",
        "/api/v1/upstreams/web/backends/127.0.0.1:8081",
        &[AUTH],
        None,
    )
    .await
    .error(404);
    send(
        addr,
        "DELETE",
        "/api/v1/upstreams/nope/backends/127.0.0.1:8081",
        &[AUTH],
        None,
    )
    .await
    .error(404);
    let msg = send(
        addr,
        "DELETE",
        "/api/v1/upstreams/api%20canary/backends/127.0.0.1:9081",
        &[AUTH],
        None,
    )
    .await
    .error(409);
    assert!(msg.contains("last backend"));
    assert_eq!(fake.upstreams.lock().unwrap()[0].backends.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn reload() {
    let (fake, server) = start(Some(TOKEN)).await;
    let addr = server.addr;

    let ok = send(addr, "POST", "/api/v1/reload", &[AUTH], None).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.json()["changes"][0],
        "upstream web: backend 127.0.0.1:8084 added"
    );

    *fake.reload.lock().unwrap() = Err(AdminError::BadRequest(
        "smartlb.toml:3:1: upstream[0].backends: must list at least one backend".into(),
    ));
    let msg = send(addr, "POST", "/api/v1/reload", &[AUTH], None)
        .await
        .error(400);
    assert!(msg.contains("upstream[0].backends"), "{msg}");

    *fake.reload.lock().unwrap() = Err(AdminError::Internal(
        "smartlb.toml: permission denied".into(),
    ));
    send(addr, "POST", "/api/v1/reload", &[AUTH], None)
        .await
        .error(500);
    *fake.reload.lock().unwrap() = Err(AdminError::Conflict("a reload is already running".into()));
    send(addr, "POST", "/api/v1/reload", &[AUTH], None)
        .await
        .error(409);
    assert_eq!(fake.reloads.load(Ordering::Relaxed), 4);
    server.stop().await;
}

#[tokio::test]
async fn token_is_required_for_every_mutating_call() {
    let (fake, server) = start(Some(TOKEN)).await;
    let addr = server.addr;
    let calls: [(&str, &str, Option<&str>); 4] = [
        (
            "POST",
            "/api/v1/upstreams/web/backends",
            Some(r#"{"address": "10.0.0.9:80"}"#),
        ),
        (
            "PATCH",
            "/api/v1/upstreams/web/backends/127.0.0.1:8081",
            Some(r#"{"weight": 9}"#),
        ),
        (
            "DELETE",
            "/api/v1/upstreams/web/backends/127.0.0.1:8081",
            None,
        ),
        ("POST", "/api/v1/reload", None),
    ];
    for (method, path, body) in calls {
        let missing = send(addr, method, path, &[], body).await;
        missing.error(401);
        assert_eq!(
            missing.headers["www-authenticate"],
            "Bearer realm=\"smartlb-admin\""
        );
        send(
            addr,
            method,
            path,
            &[("Authorization", "Basic czNjcmV0LXRva2Vu")],
            body,
        )
        .await
        .error(401);
        send(
            addr,
            method,
            path,
            &[("Authorization", "Bearer s3cret-tokeN")],
            body,
        )
        .await
        .error(403);
        send(
            addr,
            method,
            path,
            &[("Authorization", "Bearer s3cret-token-and-more")],
            body,
        )
        .await
        .error(403);
        send(
            addr,
            method,
            path,
            &[("Authorization", "Bearer s3cret")],
            body,
        )
        .await
        .error(403);
        // Unknown names are not revealed before authentication.
        let hidden = path.replace("web", "nope");
        send(addr, method, &hidden, &[], body).await.error(401);
    }
    // Nothing changed.
    let web = fake.upstreams.lock().unwrap()[0].clone();
    assert_eq!(web.backends.len(), 3);
    assert_eq!(web.backends[0].configured_weight, 2);
    assert_eq!(fake.reloads.load(Ordering::Relaxed), 0);
    // Reads stay open.
    assert_eq!(
        send(addr, "GET", "/api/v1/status", &[], None).await.status,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn without_token_changes_are_open_but_not_cross_origin() {
    let (fake, server) = start(None).await;
    let addr = server.addr;
    let same_origin = format!("http://{addr}");
    let ok = send(
        addr,
        "POST",
        "/api/v1/reload",
        &[("Origin", &same_origin)],
        None,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let msg = send(
        addr,
        "POST",
        "/api/v1/reload",
        &[("Origin", "http://evil.example")],
        None,
    )
    .await
    .error(403);
    assert!(msg.contains("cross-origin"));
    send(
        addr,
        "POST",
        "/api/v1/reload",
        &[("Sec-Fetch-Site", "cross-site")],
        None,
    )
    .await
    .error(403);
    send(
        addr,
        "PATCH",
        "/api/v1/upstreams/web/backends/127.0.0.1:8081",
        &[("Origin", "null")],
        Some(r#"{"weight": 9}"#),
    )
    .await
    .error(403);
    assert_eq!(fake.reloads.load(Ordering::Relaxed), 1);
    server.stop().await;
}

#[tokio::test]
async fn without_control_changes_are_not_implemented() {
    let server = Running::start(AdminServer::new(Fake::new())).await;
    let msg = send(server.addr, "POST", "/api/v1/reload", &[], None)
        .await
        .error(501);
    assert!(msg.contains("does not offer"), "{msg}");
    server.stop().await;

    // A control that implements nothing answers 501 from the trait defaults.
    struct Nothing;
    impl smartlb_admin::AdminControl for Nothing {}
    let server =
        Running::start(AdminServer::new(Fake::new()).with_control(Arc::new(Nothing))).await;
    let addr = server.addr;
    let msg = send(
        addr,
        "POST",
        "/api/v1/upstreams/web/backends",
        &[],
        Some(r#"{"address": "a:1"}"#),
    )
    .await
    .error(501);
    assert!(msg.contains("not supported"), "{msg}");
    send(
        addr,
        "PATCH",
        "/api/v1/upstreams/web/backends/a:1",
        &[],
        Some(r#"{"weight": 1}"#),
    )
    .await
    .error(501);
    send(
        addr,
        "DELETE",
        "/api/v1/upstreams/web/backends/a:1",
        &[],
        None,
    )
    .await
    .error(501);
    send(addr, "POST", "/api/v1/reload", &[], None)
        .await
        .error(501);
    server.stop().await;
}
