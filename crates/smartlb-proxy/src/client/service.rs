//! [`BackendClient`] as a tower [`Service`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::BackendClient;
use crate::body::{BoxError, ProxyBody};
use crate::error::ProxyError;

/// The future of [`BackendClient`]'s [`Service`](tower_service::Service) impl.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ProxyError>> + Send + 'static>>;

impl<B> Service<Request<B>> for BackendClient
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ProxyBody>;
    type Error = ProxyError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        let client = self.clone();
        let req = req.map(ProxyBody::new);
        Box::pin(async move { client.send(req).await })
    }
}
