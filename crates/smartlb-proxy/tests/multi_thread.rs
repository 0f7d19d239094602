//! The forwarding path on a multi-threaded runtime, where a pooled connection's
//! task and the request that reuses it run on different threads.

mod common;

use bytes::Bytes;
use common::*;
use http::{Request, StatusCode};
use smartlb_proxy::{ProxyBody, ServerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_share_pooled_connections() {
    bounded(async {
        let backend = echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let mut tasks = Vec::new();
        for c in 0..6 {
            let addr = proxy.addr;
            tasks.push(tokio::spawn(async move {
                let mut tx = h1(addr).await;
                for i in 0..40 {
                    let payload = Bytes::from(format!("client {c} request {i}"));
                    let req = Request::post(format!("/{c}/{i}"))
                        .header("host", "h")
                        .body(ProxyBody::from(payload.clone()))
                        .unwrap();
                    let resp = exchange(&mut tx, req).await;
                    assert_eq!(resp.status, StatusCode::OK);
                    assert_eq!(resp.body, payload);
                    assert_eq!(resp.headers["echo-path"], format!("/{c}/{i}"));
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let opened = backend.connections();
        assert!(
            opened <= 6,
            "opened {opened} backend connections for 6 clients"
        );
        assert!(proxy.client.idle_connections() <= opened);
    })
    .await;
}
