//! Cutting a relayed event stream into what the relay passes on: each
//! event block's bytes exactly as received, once the block is complete, and
//! what to do with an event too large to hold (over
//! `mcp.limits.max_response_bytes`). Shared by POST answers
//! (`relay/stream.rs`) and GET streams (`resume/stream.rs`); free of I/O.

use bytes::{Bytes, BytesMut};

use super::{Mark, SseEvent, SseParser};

/// One thing to pass on (or not).
#[derive(Debug)]
pub enum Piece {
    /// A complete event block as received, and its event if it carried
    /// data (whole: never one cut at the limit).
    Block {
        bytes: Bytes,
        event: Option<SseEvent>,
    },
    /// Bytes of an event too large to hold that nothing waits for: passed on
    /// as they come.
    Passed(Bytes),
    /// An event too large to hold, dropped (something may wait for it): its
    /// first bytes, full size and SHA-256.
    Dropped(SseEvent),
}

/// What happens to the event being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    /// Buffering its bytes until it is complete.
    Buffer,
    /// Too large, nothing waits for it: passed on as it comes.
    Pass,
    /// Too large, something may wait for it: dropped.
    Drop,
}

/// The framing state of one stream.
#[derive(Debug)]
pub struct Framer {
    parser: SseParser,
    limit: usize,
    raw: BytesMut,
    current: Current,
    events: Vec<SseEvent>,
    marks: Vec<Mark>,
}

impl Framer {
    /// Events up to `limit` bytes are held whole.
    pub fn new(limit: usize) -> Framer {
        Framer {
            parser: SseParser::new(limit),
            limit,
            raw: BytesMut::new(),
            current: Current::Buffer,
            events: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// The stream's last event id (a stream with one can be resumed).
    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_event_id()
    }

    /// Feeds the next chunk, pushing what it completes onto `out`. `hold`:
    /// `Some(max)` when something waits for an answer on this stream — an
    /// event over `max` (or the limit) is dropped, never passed; `None` —
    /// an event over the limit is passed on as it comes. The bytes of an
    /// unterminated last event are never passed (WHATWG: not an event).
    pub fn feed(&mut self, chunk: &Bytes, hold: Option<u64>, out: &mut Vec<Piece>) {
        self.events.clear();
        self.marks.clear();
        self.parser
            .feed_framed(chunk, &mut self.events, &mut self.marks);
        let mut start = 0;
        for i in 0..self.marks.len() {
            let mark = self.marks[i];
            let piece = chunk.slice(start..mark.offset);
            start = mark.offset;
            let event = mark
                .event
                .and_then(|at| self.events.get_mut(at))
                .map(std::mem::take);
            let was = std::mem::replace(&mut self.current, Current::Buffer);
            match (was, event) {
                (Current::Buffer, Some(event)) if !event.is_complete() && hold.is_some() => {
                    self.raw.clear();
                    out.push(Piece::Dropped(event));
                }
                (Current::Buffer, event) => {
                    self.raw.extend_from_slice(&piece);
                    let bytes = self.raw.split().freeze();
                    let event = event.filter(SseEvent::is_complete);
                    out.push(Piece::Block { bytes, event });
                }
                (Current::Pass, _) => out.push(Piece::Passed(piece)),
                (Current::Drop, Some(event)) => out.push(Piece::Dropped(event)),
                (Current::Drop, None) => {}
            }
        }
        let rest = chunk.slice(start..);
        match self.current {
            Current::Buffer => {
                self.raw.extend_from_slice(&rest);
                let pending = self.parser.pending_data_len() as u64;
                match hold {
                    Some(max)
                        if pending > max.min(self.limit as u64) || self.raw.len() > self.limit =>
                    {
                        self.raw.clear();
                        self.current = Current::Drop;
                    }
                    None if self.raw.len() > self.limit => {
                        out.push(Piece::Passed(self.raw.split().freeze()));
                        self.current = Current::Pass;
                    }
                    _ => {}
                }
            }
            Current::Pass if !rest.is_empty() => out.push(Piece::Passed(rest)),
            Current::Pass | Current::Drop => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(framer: &mut Framer, text: &str, hold: Option<u64>) -> Vec<Piece> {
        let mut out = Vec::new();
        framer.feed(&Bytes::copy_from_slice(text.as_bytes()), hold, &mut out);
        out
    }

    #[test]
    fn blocks_come_whole_and_as_received_across_chunks() {
        let mut framer = Framer::new(1024);
        assert!(feed(&mut framer, ": hi\n\nid: 1\nda", None).len() == 1);
        let out = feed(&mut framer, "ta: {\"a\":1}\r\n\r\n", None);
        let [Piece::Block { bytes, event }] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(&bytes[..], b"id: 1\ndata: {\"a\":1}\r\n\r\n");
        assert_eq!(event.as_ref().map(|e| &e.data[..]), Some(&b"{\"a\":1}"[..]));
        assert_eq!(framer.last_event_id(), Some("1"));
    }

    #[test]
    fn an_oversized_event_is_dropped_when_something_waits_and_passed_when_not() {
        let big = format!("data: {}\n\n", "x".repeat(100));
        let mut waiting = Framer::new(16);
        let out = feed(&mut waiting, &big, Some(1000));
        assert!(
            matches!(&out[..], [Piece::Dropped(e)] if e.data_len == 100),
            "{out:?}"
        );
        // Across chunks too: nothing of it is passed.
        let mut waiting = Framer::new(16);
        let (head, tail) = big.split_at(40);
        assert!(feed(&mut waiting, head, Some(1000)).is_empty());
        let out = feed(&mut waiting, tail, Some(1000));
        assert!(
            matches!(&out[..], [Piece::Dropped(e)] if e.data_len == 100),
            "{out:?}"
        );
        // Nothing waits: its bytes go on as they come.
        let mut idle = Framer::new(16);
        let mut passed = Vec::new();
        for piece in feed(&mut idle, head, None)
            .into_iter()
            .chain(feed(&mut idle, tail, None))
        {
            let Piece::Passed(bytes) = piece else {
                panic!("{piece:?}")
            };
            passed.extend_from_slice(&bytes);
        }
        assert_eq!(passed, big.as_bytes());
    }

    #[test]
    fn an_answer_over_the_calls_own_limit_is_dropped_before_the_streams() {
        let mut framer = Framer::new(1024);
        let (head, tail) = ("data: 0123456789", "0123456789\n\n");
        assert!(feed(&mut framer, head, Some(5)).is_empty());
        let out = feed(&mut framer, tail, Some(5));
        assert!(
            matches!(&out[..], [Piece::Dropped(e)] if e.data_len == 20),
            "{out:?}"
        );
    }

    #[test]
    fn an_unterminated_last_event_is_never_passed() {
        let mut framer = Framer::new(1024);
        let out = feed(&mut framer, "data: {\"id\":1,\"result\":{}}\n", Some(1024));
        assert!(out.is_empty());
    }
}
