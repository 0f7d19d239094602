//! Request ids: a client's `x-request-id` is kept, otherwise one is made; either way the
//! client gets it back.
#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::*;

#[tokio::test]
async fn request_ids_are_kept_or_made_and_returned() {
    let a = backend("a", 0).await;
    let running = start_proxy(&one_upstream("round-robin", &[(a.addr(), 1)], "")).await;
    let client = client();
    let proxy = proxy_addr(&running);
    let made = get(&client, proxy, "/").await;
    let id = made.header("x-request-id").to_owned();
    assert_eq!(id.len(), 16, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let other = get(&client, proxy, "/").await;
    assert_ne!(other.header("x-request-id"), id);
    let kept = get_with(&client, proxy, "/", &[("x-request-id", "trace-42")]).await;
    assert_eq!(kept.header("x-request-id"), "trace-42");
    stop(running).await;
}
