//! Tunnelling upgrade requests (WebSocket and other `Upgrade` protocols).

use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::connect::connect_http1;
use super::{Exchange, Inner};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::headers::prepare_response;

/// Sends an upgrade request over a dedicated connection. On `101 Switching
/// Protocols` a task joins the client's and the backend's upgraded connections;
/// any other response is relayed as usual (and its connection not reused).
pub(super) async fn send_upgrade(
    inner: &Inner,
    mut req: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let connected = connect_http1(
        &inner.target,
        inner.opts.connect_timeout,
        inner.opts.tls.as_ref(),
        &inner.open,
        true,
        inner.deadlines.as_deref(),
    )
    .await;
    let mut conn = match connected {
        Ok(conn) => conn,
        Err(e) => return Err(e.with_request(req)),
    };
    inner.start_sweeper();
    // Taken before the request is handed over: the server fulfils it once the
    // 101 reaches the client.
    let client_side = req.extensions_mut().remove::<OnUpgrade>();
    match inner.exchange(&mut conn, req).await {
        Exchange::Done(mut resp) => {
            if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
                prepare_response(&mut resp);
                return Ok(resp.map(|body| ProxyBody::upstream(body, None)));
            }
            let backend_side = hyper::upgrade::on(&mut resp);
            match client_side {
                Some(client_side) => {
                    tokio::spawn(tunnel(client_side, backend_side));
                }
                None => {
                    // Not from a hyper server with upgrades: nothing to join. The
                    // backend's side is dropped, closing its connection.
                    tracing::debug!(
                        "upgrade accepted by the backend but the client side cannot upgrade"
                    );
                }
            }
            prepare_response(&mut resp);
            let (parts, _) = resp.into_parts();
            Ok(Response::from_parts(parts, ProxyBody::empty()))
        }
        Exchange::NotSent(mut unsent, e) => {
            if let Some(client_side) = client_side {
                unsent.extensions_mut().insert(client_side);
            }
            Err(ProxyError::closed_before_send(e).with_request(unsent))
        }
        Exchange::Failed(e) => Err(e),
    }
}

/// Copies bytes both ways between the two upgraded connections until both close.
async fn tunnel(client_side: OnUpgrade, backend_side: OnUpgrade) {
    let (client, backend) = tokio::join!(client_side, backend_side);
    let (client, backend) = match (client, backend) {
        (Ok(c), Ok(b)) => (c, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        Ok((up, down)) => tracing::trace!(up, down, "tunnel closed"),
        Err(e) => tracing::debug!(error = %e, "tunnel closed with an error"),
    }
}
