//! WebSocket upgrades are tunnelled through the proxy.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use smartlb_proxy::{ProxyBody, ServerOptions};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// A backend that accepts WebSocket handshakes and echoes every message.
async fn ws_echo_backend() -> Backend {
    backend(|mut req: Request<Incoming>| async move {
        let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
            return Response::new(ProxyBody::from("not a websocket request"));
        };
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_close() {
                    break;
                }
                if ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-accept", derive_accept_key(key.as_bytes()))
            .body(ProxyBody::empty())
            .expect("valid response")
    })
    .await
}

#[tokio::test]
async fn websocket_echo_through_the_proxy() {
    bounded(async {
        let backend = ws_echo_backend().await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let (mut ws, resp) = tokio_tungstenite::client_async("ws://test.example/chat", stream)
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(resp.headers()["via"], "1.1 smartlb");

        for i in 0..10 {
            ws.send(Message::text(format!("hello {i}"))).await.unwrap();
            let echoed = ws.next().await.unwrap().unwrap();
            assert_eq!(echoed, Message::text(format!("hello {i}")));
        }
        let big = vec![7u8; 256 * 1024];
        ws.send(Message::binary(big.clone())).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_data().len(), big.len());
        ws.close(None).await.unwrap();

        // The upgrade used a dedicated connection: nothing went into the pool.
        assert_eq!(proxy.client.idle_connections(), 0);
    })
    .await;
}

#[tokio::test]
async fn refused_upgrade_is_relayed_as_a_normal_response() {
    bounded(async {
        let backend = backend(|_req: Request<Incoming>| async {
            Response::builder()
                .status(StatusCode::FORBIDDEN)
                .body(ProxyBody::from("no websockets here"))
                .unwrap()
        })
        .await;
        let proxy = proxy(backend.addr, quick_client(), ServerOptions::default()).await;
        let req = b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let answer = raw(proxy.addr, req, Duration::from_millis(500)).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(answer.ends_with("no websockets here"), "{answer}");
    })
    .await;
}
