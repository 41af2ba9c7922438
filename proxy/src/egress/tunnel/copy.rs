//! The tunnel's copy, both ways at once: what tokio's `copy_bidirectional`
//! does (each direction reads into its buffer and writes it out; at the
//! reader's end the writer is flushed and shut down; the copy ends when both
//! directions have, or at the first error), with two differences.
//!
//! - **The buffers grow.** Each direction starts at [`MIN_BUF`] and doubles,
//!   up to [`MAX_BUF`], after every read that filled it. A bulk transfer
//!   gets there within a few reads and then moves up to [`MAX_BUF`] per
//!   system call (tokio's fixed 8 KiB made the sidecar read and write in
//!   8 KiB pieces and the destination wake for each: a quarter of direct
//!   loopback throughput). A tunnel that carries a few requests, or sits
//!   idle, keeps 2 × [`MIN_BUF`].
//! - **Counting is a plain add.** Bytes read and written go to [`Moved`],
//!   counters only this copy writes: a relaxed load and store, no locked
//!   instruction, no clock read, nothing shared with another tunnel. The
//!   tunnel's watcher reads them to export metrics and notice idleness.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Each direction's buffer at the start.
pub const MIN_BUF: usize = 8 * 1024;
/// The most a direction's buffer grows to.
pub const MAX_BUF: usize = 512 * 1024;

/// One direction's bytes so far: read from one side, written to the other.
/// Written only by that direction's copy.
#[derive(Debug, Default)]
pub struct Moved {
    pub read: AtomicU64,
    pub written: AtomicU64,
}

impl Moved {
    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Read plus written: changes whenever the direction makes progress.
    pub fn total(&self) -> u64 {
        self.read()
            .wrapping_add(self.written.load(Ordering::Relaxed))
    }
}

/// Adds `n` to a counter with one writer: a load and a store, not a locked
/// read-modify-write.
fn add(counter: &AtomicU64, n: usize) {
    let now = counter.load(Ordering::Relaxed).wrapping_add(n as u64);
    counter.store(now, Ordering::Relaxed);
}

/// The buffer's next size: doubled (up to [`MAX_BUF`]) after a read that
/// filled it, else the same.
pub fn next_len(len: usize, filled: bool) -> usize {
    if filled {
        len.saturating_mul(2).clamp(MIN_BUF, MAX_BUF)
    } else {
        len
    }
}

/// Copies `a` → `b` (counted in `a_to_b`) and `b` → `a` (in `b_to_a`)
/// until both readers have ended and both writers are shut down, or either
/// direction fails.
pub async fn both_ways<A, B>(a: &mut A, b: &mut B, a_to_b: &Moved, b_to_a: &Moved) -> io::Result<()>
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut there = Pipe::new(a_to_b);
    let mut back = Pipe::new(b_to_a);
    poll_fn(|cx| {
        let there_done = there.poll_copy(cx, &mut *a, &mut *b)?;
        let back_done = back.poll_copy(cx, &mut *b, &mut *a)?;
        ready!(there_done);
        ready!(back_done);
        Poll::Ready(Ok(()))
    })
    .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Copying; the reader has not ended, or not all is written yet.
    Copying,
    /// The reader ended and all was written and flushed: shutting down the
    /// writer.
    ShuttingDown,
    Done,
}

/// One direction.
#[derive(Debug)]
struct Pipe<'a> {
    /// `buf[pos..cap]` is read and not yet written.
    buf: Vec<u8>,
    pos: usize,
    cap: usize,
    /// Grow the buffer once it is empty again.
    grow: bool,
    read_done: bool,
    need_flush: bool,
    stage: Stage,
    moved: &'a Moved,
}

impl<'a> Pipe<'a> {
    fn new(moved: &'a Moved) -> Pipe<'a> {
        Pipe {
            buf: vec![0; MIN_BUF],
            pos: 0,
            cap: 0,
            grow: false,
            read_done: false,
            need_flush: false,
            stage: Stage::Copying,
            moved,
        }
    }

    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            match self.stage {
                Stage::Copying => {
                    ready!(self.poll_copying(cx, reader, writer))?;
                    self.stage = Stage::ShuttingDown;
                }
                Stage::ShuttingDown => {
                    ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                    self.stage = Stage::Done;
                }
                Stage::Done => return Poll::Ready(Ok(())),
            }
        }
    }

    /// Ready once the reader has ended and everything read is written and
    /// flushed.
    fn poll_copying<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        loop {
            // Read while there is room: a fuller buffer, a larger write.
            if !self.read_done && self.cap < self.buf.len() {
                let mut space = ReadBuf::new(&mut self.buf[self.cap..]);
                match Pin::new(&mut *reader).poll_read(cx, &mut space) {
                    Poll::Ready(Ok(())) => {
                        let n = space.filled().len();
                        if n == 0 {
                            self.read_done = true;
                        } else {
                            add(&self.moved.read, n);
                            self.cap += n;
                            self.grow |= self.cap == self.buf.len();
                        }
                    }
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        if self.pos == self.cap {
                            // Nothing to write either: flush what was
                            // written, then wait for the reader.
                            if self.need_flush {
                                ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                                self.need_flush = false;
                            }
                            return Poll::Pending;
                        }
                    }
                }
            }
            while self.pos < self.cap {
                let written = Pin::new(&mut *writer).poll_write(cx, &self.buf[self.pos..self.cap]);
                match ready!(written) {
                    Ok(0) => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::WriteZero,
                            "the tunnel's peer accepted zero bytes",
                        )));
                    }
                    Ok(n) => {
                        add(&self.moved.written, n);
                        self.pos += n;
                        self.need_flush = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            // All written: the buffer is empty again.
            self.pos = 0;
            self.cap = 0;
            if self.grow {
                self.grow = false;
                let len = next_len(self.buf.len(), true);
                self.buf.resize(len, 0);
            }
            if self.read_done {
                if self.need_flush {
                    ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                    self.need_flush = false;
                }
                return Poll::Ready(Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_buffer_doubles_after_a_full_read_up_to_the_cap() {
        assert_eq!(next_len(MIN_BUF, false), MIN_BUF);
        assert_eq!(next_len(MIN_BUF, true), 2 * MIN_BUF);
        assert_eq!(next_len(MAX_BUF / 2, true), MAX_BUF);
        assert_eq!(next_len(MAX_BUF, true), MAX_BUF);
        let mut len = MIN_BUF;
        let mut doublings = 0;
        while len < MAX_BUF {
            len = next_len(len, true);
            doublings += 1;
        }
        assert_eq!((len, doublings), (MAX_BUF, 6));
    }

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    /// Both directions carry their bytes intact and counted, each side sees
    /// the other's end, and a direction whose reads fill the buffer grows it
    /// to the cap while the other stays at the start size.
    #[tokio::test]
    async fn copies_both_ways_counts_and_grows_only_the_busy_direction() {
        let up_data = pattern(3 * MAX_BUF + 17, 0);
        let down_data = pattern(100, 7);
        // Each duplex holds all its data, so the tunnel's reads of `up_data`
        // fill whatever buffer they are given.
        let (mut agent, mut tunnel_client) = tokio::io::duplex(8 * MAX_BUF);
        let (mut tunnel_upstream, mut server) = tokio::io::duplex(8 * MAX_BUF);
        agent.write_all(&up_data).await.unwrap();
        agent.shutdown().await.unwrap();
        server.write_all(&down_data).await.unwrap();
        server.shutdown().await.unwrap();

        let (up, down) = (Moved::default(), Moved::default());
        both_ways(&mut tunnel_client, &mut tunnel_upstream, &up, &down)
            .await
            .unwrap();

        let mut at_server = Vec::new();
        server.read_to_end(&mut at_server).await.unwrap();
        let mut at_agent = Vec::new();
        agent.read_to_end(&mut at_agent).await.unwrap();
        assert_eq!(at_server, up_data);
        assert_eq!(at_agent, down_data);
        assert_eq!((up.read(), down.read()), (up_data.len() as u64, 100));
        assert_eq!(up.total(), 2 * up_data.len() as u64);
        assert_eq!(down.total(), 200);
    }

    #[tokio::test]
    async fn a_pipe_grows_to_the_cap_under_bulk_and_not_for_small_reads() {
        let data = pattern(4 * MAX_BUF, 3);
        let (mut source, mut reader) = tokio::io::duplex(8 * MAX_BUF);
        let (mut writer, mut sink) = tokio::io::duplex(8 * MAX_BUF);
        source.write_all(&data).await.unwrap();
        source.shutdown().await.unwrap();
        let moved = Moved::default();
        let mut pipe = Pipe::new(&moved);
        poll_fn(|cx| pipe.poll_copy(cx, &mut reader, &mut writer))
            .await
            .unwrap();
        assert_eq!(pipe.buf.len(), MAX_BUF);
        let mut got = Vec::new();
        sink.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);

        let (mut source, mut reader) = tokio::io::duplex(MIN_BUF);
        let (mut writer, _sink) = tokio::io::duplex(8 * MAX_BUF);
        let moved = Moved::default();
        let mut pipe = Pipe::new(&moved);
        source.write_all(&[1; 100]).await.unwrap();
        source.shutdown().await.unwrap();
        poll_fn(|cx| pipe.poll_copy(cx, &mut reader, &mut writer))
            .await
            .unwrap();
        assert_eq!((pipe.buf.len(), moved.read()), (MIN_BUF, 100));
    }

    #[test]
    fn counters_add() {
        let moved = Moved::default();
        add(&moved.read, 10);
        add(&moved.read, 5);
        add(&moved.written, 7);
        assert_eq!((moved.read(), moved.total()), (15, 22));
    }
}
