//! The bodies of answers to the agent: a fixed body, the relay task's
//! events, and upstream bodies that hold something (the request's slot) or
//! end at shutdown.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every answer to the agent.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Events buffered between a relay task and the agent's connection.
pub const RELAY_QUEUE: usize = 32;

pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A relay task's events, as a response body.
#[derive(Debug)]
pub struct ChannelBody {
    pub rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body fed by the returned sender (at most [`RELAY_QUEUE`] queued).
    pub fn channel() -> (mpsc::Sender<Bytes>, ProxyBody) {
        let (tx, rx) = mpsc::channel::<Bytes>(RELAY_QUEUE);
        (tx, ChannelBody { rx }.boxed_unsync())
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|next| next.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// A body that keeps something alive (a permit) until it ends.
#[derive(Debug)]
pub struct Holding<B, H> {
    pub body: B,
    pub hold: H,
}

impl<B: hyper::body::Body + Unpin, H: Unpin> hyper::body::Body for Holding<B, H> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A body that ends early when shutdown begins.
pub struct UntilShutdown<B> {
    pub body: B,
    pub shutdown: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

impl<B> std::fmt::Debug for UntilShutdown<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UntilShutdown").finish_non_exhaustive()
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for UntilShutdown<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.shutdown.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }
}
