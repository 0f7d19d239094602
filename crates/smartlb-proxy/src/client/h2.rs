//! HTTP/2 to a backend (`protocol = "h2"`): one multiplexed connection per backend
//! carries every request (gRPC needs it), opened on first use and again after it
//! closes. Over TLS the backend must agree to `h2` by ALPN; over plain TCP it is
//! spoken with prior knowledge (h2c).

use http::uri::{Authority, Scheme, Uri};
use http::{Request, Response};
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::Inner;
use super::connect::{OpenGuard, connect_tcp, tls_handshake};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::headers::{self, prepare_response};
use crate::server::ClientInfo;

/// The backend's HTTP/2 connection, once open.
#[derive(Default)]
pub(super) struct H2 {
    conn: tokio::sync::Mutex<Option<SendRequest<ProxyBody>>>,
}

impl Inner {
    /// Sends `req` over the backend's HTTP/2 connection, opening it when there is none.
    pub(super) async fn send_h2(
        &self,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let client = req.extensions().get::<ClientInfo>().copied();
        let _ = headers::prepare(&mut req, client.as_ref());
        if req.method() == http::Method::CONNECT {
            return Err(ProxyError::bad_request("CONNECT is not forwarded"));
        }
        if self.h2_form(&mut req).is_err() {
            return Err(ProxyError::bad_request(
                "the request's Host is not a valid authority",
            ));
        }
        let mut tx = match self.h2_sender().await {
            Ok(tx) => tx,
            Err(e) => return Err(e.with_request(req)),
        };
        let method = req.method().clone();
        if tx.ready().await.is_err() {
            // The connection closed before taking the request: it was not sent.
            self.forget_h2().await;
            return Err(ProxyError::connect(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the HTTP/2 connection closed",
            ))
            .with_request(req));
        }
        let sent = tx.send_request(req);
        let res = if self.opts.request_timeout.is_zero() {
            Ok(sent.await)
        } else {
            tokio::time::timeout(self.opts.request_timeout, sent).await
        };
        match res {
            Err(_) => Err(ProxyError::timeout(&method)),
            Ok(Err(e)) => Err(ProxyError::from_hyper(e, &method)),
            Ok(Ok(mut resp)) => {
                prepare_response(&mut resp);
                Ok(resp.map(|body| ProxyBody::upstream(body, None)))
            }
        }
    }

    /// Puts the request in the form hyper's HTTP/2 client sends: an absolute URI
    /// (`:scheme` and `:authority` from the backend and the client's `Host`), no
    /// `Host` header.
    fn h2_form(&self, req: &mut Request<ProxyBody>) -> Result<(), http::Error> {
        let authority = match req.headers_mut().remove(http::header::HOST) {
            Some(host) => Authority::try_from(host.as_bytes())?,
            None => match req.uri().authority() {
                Some(a) => a.clone(),
                None => Authority::try_from(self.host.as_bytes())?,
            },
        };
        let scheme = if self.opts.tls.is_some() {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *req.uri_mut() = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()?;
        *req.version_mut() = http::Version::HTTP_2;
        Ok(())
    }

    /// A sender on the open connection, or on a new one.
    async fn h2_sender(&self) -> Result<SendRequest<ProxyBody>, ProxyError> {
        let mut slot = self.h2.conn.lock().await;
        if let Some(tx) = slot.as_ref()
            && !tx.is_closed()
        {
            return Ok(tx.clone());
        }
        let tx = self.connect_h2().await?;
        *slot = Some(tx.clone());
        Ok(tx)
    }

    async fn forget_h2(&self) {
        *self.h2.conn.lock().await = None;
    }

    async fn connect_h2(&self) -> Result<SendRequest<ProxyBody>, ProxyError> {
        let started = tokio::time::Instant::now();
        let timeout = self.opts.connect_timeout;
        let stream = connect_tcp(&self.target, timeout).await?;
        match &self.opts.tls {
            None => self.start_h2(stream).await,
            Some(tls) => {
                let stream = tls_handshake(tls, stream, timeout, started).await?;
                if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(ProxyError::connect(std::io::Error::other(
                        "the backend did not agree to HTTP/2 (ALPN h2)",
                    )));
                }
                self.start_h2(stream).await
            }
        }
    }

    async fn start_h2<I>(&self, io: I) -> Result<SendRequest<ProxyBody>, ProxyError>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(std::time::Duration::from_secs(20))
            .handshake::<_, ProxyBody>(TokioIo::new(io))
            .await
            .map_err(ProxyError::handshake)?;
        let guard = OpenGuard::new(self.open.clone());
        let target = self.target.clone();
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = conn.await {
                tracing::debug!(%target, error = %e, "backend HTTP/2 connection ended with an error");
            }
        });
        Ok(tx)
    }
}
