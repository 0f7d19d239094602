//! [`ProxyBody`]: the one body type that flows through the proxy.

use std::any::Any;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;

use crate::client::pool::PoolReturn;

/// The error type of body streams and of boxed errors in general.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every request the proxy forwards and every response it produces.
///
/// It is a small enum rather than a boxed trait object, so the common cases cost
/// no allocation:
///
/// - a body received from a client or a backend ([`Incoming`]), streamed through;
/// - a backend's response body that also hands its pooled connection back once
///   the last byte was read (built by [`BackendClient`](crate::BackendClient));
/// - a complete in-memory body ([`ProxyBody::full`]) for the proxy's own responses;
/// - no body ([`ProxyBody::empty`]);
/// - any other [`Body`] ([`ProxyBody::new`]), boxed.
///
/// Bodies are never buffered whole: frames are passed on as they arrive.
pub struct ProxyBody {
    kind: Kind,
}

enum Kind {
    Empty,
    Full(Option<Bytes>),
    Incoming(Incoming),
    Upstream(UpstreamBody),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl ProxyBody {
    /// A body with no data.
    pub const fn empty() -> Self {
        Self { kind: Kind::Empty }
    }

    /// A body made of one complete chunk.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        if data.is_empty() {
            return Self::empty();
        }
        Self {
            kind: Kind::Full(Some(data)),
        }
    }

    /// Wraps any body.
    ///
    /// A `ProxyBody` or a hyper [`Incoming`] is taken as it is (no allocation); any
    /// other body type is boxed.
    pub fn new<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut slot = Some(body);
        let any: &mut dyn Any = &mut slot;
        if let Some(Some(body)) = any.downcast_mut::<Option<ProxyBody>>().map(Option::take) {
            return body;
        }
        if let Some(Some(body)) = any.downcast_mut::<Option<Incoming>>().map(Option::take) {
            return Self::from(body);
        }
        if let Some(Some(_)) = any
            .downcast_mut::<Option<http_body_util::Empty<Bytes>>>()
            .map(Option::take)
        {
            return Self::empty();
        }
        match slot {
            Some(body) => Self {
                kind: Kind::Boxed(UnsyncBoxBody::new(body.map_err(Into::into))),
            },
            None => Self::empty(),
        }
    }

    pub(crate) fn upstream(body: Incoming, ret: Option<PoolReturn>) -> Self {
        Self {
            kind: Kind::Upstream(UpstreamBody { body, ret }),
        }
    }
}

impl Default for ProxyBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Incoming> for ProxyBody {
    fn from(body: Incoming) -> Self {
        Self {
            kind: Kind::Incoming(body),
        }
    }
}

impl From<Bytes> for ProxyBody {
    fn from(data: Bytes) -> Self {
        Self::full(data)
    }
}

impl From<String> for ProxyBody {
    fn from(data: String) -> Self {
        Self::full(data)
    }
}

impl From<&'static str> for ProxyBody {
    fn from(data: &'static str) -> Self {
        Self::full(Bytes::from_static(data.as_bytes()))
    }
}

impl fmt::Debug for ProxyBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Empty => "Empty",
            Kind::Full(_) => "Full",
            Kind::Incoming(_) => "Incoming",
            Kind::Upstream(_) => "Upstream",
            Kind::Boxed(_) => "Boxed",
        };
        f.debug_tuple("ProxyBody").field(&kind).finish()
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Kind::Incoming(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            Kind::Upstream(body) => body.poll_frame(cx),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Full(data) => data.is_none(),
            Kind::Incoming(body) => body.is_end_stream(),
            Kind::Upstream(body) => body.body.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Kind::Incoming(body) => body.size_hint(),
            Kind::Upstream(body) => body.body.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
        }
    }
}

/// A backend's response body that returns its connection to the pool once the
/// body has been read to the end. Dropped early, the connection is closed instead
/// (an HTTP/1.1 connection with an unread response cannot carry another request).
struct UpstreamBody {
    body: Incoming,
    ret: Option<PoolReturn>,
}

impl UpstreamBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
            None => {
                self.release();
                Poll::Ready(None)
            }
            Some(Ok(frame)) => {
                if self.body.is_end_stream() {
                    self.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                self.ret = None;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn release(&mut self) {
        if let Some(ret) = self.ret.take() {
            ret.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty, Full};

    #[tokio::test]
    async fn full_yields_its_data_once() {
        let body = ProxyBody::full("hello");
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let data = body.collect().await.unwrap().to_bytes();
        assert_eq!(&data[..], b"hello");
    }

    #[tokio::test]
    async fn empty_full_is_empty() {
        let body = ProxyBody::full(Bytes::new());
        assert!(body.is_end_stream());
        assert!(matches!(body.kind, Kind::Empty));
    }

    #[tokio::test]
    async fn new_avoids_boxing_known_types() {
        let inner = ProxyBody::full("x");
        let outer = ProxyBody::new(inner);
        assert!(matches!(outer.kind, Kind::Full(_)));
        let empty = ProxyBody::new(Empty::<Bytes>::new());
        assert!(matches!(empty.kind, Kind::Empty));
        let boxed = ProxyBody::new(Full::new(Bytes::from_static(b"abc")));
        assert!(matches!(boxed.kind, Kind::Boxed(_)));
        assert_eq!(boxed.size_hint().exact(), Some(3));
        let data = boxed.collect().await.unwrap().to_bytes();
        assert_eq!(&data[..], b"abc");
    }

    #[test]
    fn debug_names_the_variant() {
        assert_eq!(format!("{:?}", ProxyBody::empty()), "ProxyBody(\"Empty\")");
    }
}
