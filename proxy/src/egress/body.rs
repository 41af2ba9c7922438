//! Byte counting on forwarded HTTP: [`CountedBody`] around a body. (A
//! tunnel's streams are counted in `tunnel.rs`.)

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// Called once when a body ends: `true` at its end, `false` when dropped
/// before (the client went away).
pub type OnEnd = Box<dyn FnOnce(bool) + Send>;

/// A body that adds the bytes of its data frames to `count`.
pub struct CountedBody<B> {
    inner: B,
    count: Arc<AtomicU64>,
    on_end: Option<OnEnd>,
}

impl<B> std::fmt::Debug for CountedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedBody")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl<B> CountedBody<B> {
    pub fn new(inner: B, count: Arc<AtomicU64>, on_end: Option<OnEnd>) -> CountedBody<B> {
        CountedBody {
            inner,
            count,
            on_end,
        }
    }

    fn end(&mut self, complete: bool) {
        if let Some(on_end) = self.on_end.take() {
            on_end(complete);
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for CountedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                // hyper stops polling a body that says it has ended.
                if self.inner.is_end_stream() {
                    self.end(true);
                }
            }
            Poll::Ready(None) => self.end(true),
            Poll::Ready(Some(Err(_))) => self.end(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for CountedBody<B> {
    fn drop(&mut self) {
        self.end(false);
    }
}
