//! Watching a Server-Sent Events stream as it passes through.
//!
//! The proxy forwards an upstream's SSE bytes to the agent exactly as they
//! arrive (no buffering, `id:`, `retry:`, comments and empty priming events
//! included); this parser only observes the same bytes, chunk by chunk, to
//! find the JSON-RPC messages inside `data:` fields — the result of the call
//! being recorded. Parsing follows the WHATWG event-stream rules: lines end
//! in CRLF, LF or CR (also across chunk boundaries); `:` starts a comment;
//! one leading space after the colon is dropped; `data` lines join with
//! `\n`; a blank line dispatches the event; an event with no data is not
//! dispatched.
//!
//! Memory is bounded: each event's data is kept up to `data_limit` bytes,
//! while its full length and SHA-256 are always computed over all of it.

pub mod frames;

use sha2::{Digest as _, Sha256};

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` field, `"message"` when absent.
    pub event: String,
    /// The data, up to the parser's limit.
    pub data: Vec<u8>,
    /// The full data length.
    pub data_len: usize,
    /// SHA-256 of the full data.
    pub data_sha256: [u8; 32],
    /// The last `id:` seen (it persists across events, as in browsers).
    pub id: Option<String>,
}

impl SseEvent {
    /// Whether `data` holds all of the event's data.
    pub fn is_complete(&self) -> bool {
        self.data.len() == self.data_len
    }
}

/// The end of one event block within a fed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Offset in the chunk just past the block's blank line.
    pub offset: usize,
    /// Index in `out` of the event the block dispatched; `None` for a block
    /// without data (a priming event, `retry:` alone, comments).
    pub event: Option<usize>,
}

/// An incremental event-stream parser.
#[derive(Debug)]
pub struct SseParser {
    data_limit: usize,
    line: Line,
    /// The field name so far (only the first [`NAME_LIMIT`] bytes matter).
    name: Vec<u8>,
    /// The value of an `event` or `id` line (bounded by [`SMALL_LIMIT`]).
    small: Vec<u8>,
    /// A CR ended the previous chunk: a LF starting the next one belongs to it.
    after_cr: bool,
    event: Vec<u8>,
    data: Vec<u8>,
    data_len: usize,
    data_hash: Sha256,
    has_data: bool,
    last_id: Option<String>,
}

/// Where the parser is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Nothing yet: a line ending here is blank and dispatches the event.
    Start,
    /// In the field name.
    Name,
    /// In the value of a field; `fresh` until its first byte (one leading
    /// space is dropped).
    Value { field: Field, fresh: bool },
    /// A comment.
    Comment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Data,
    Event,
    Id,
    Other,
}

/// Longest field name that can matter (`event`); longer names are unknown.
const NAME_LIMIT: usize = 8;
/// Longest `event`/`id` value kept.
const SMALL_LIMIT: usize = 1024;

impl SseParser {
    pub fn new(data_limit: usize) -> SseParser {
        SseParser {
            data_limit,
            line: Line::Start,
            name: Vec::with_capacity(NAME_LIMIT),
            small: Vec::new(),
            after_cr: false,
            event: Vec::new(),
            data: Vec::new(),
            data_len: 0,
            data_hash: Sha256::new(),
            has_data: false,
            last_id: None,
        }
    }

    /// Feeds the next chunk; pushes every event it completes onto `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) {
        self.feed_inner(chunk, out, None);
    }

    /// [`Self::feed`], also marking where in `chunk` each event block ends
    /// (just after its blank line), so a relay can pass the stream on event
    /// by event, each block's bytes exactly as received.
    pub fn feed_framed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>, marks: &mut Vec<Mark>) {
        self.feed_inner(chunk, out, Some(marks));
    }

    /// The last event id the stream set (`id:` fields persist across
    /// events); `None` before any, or after an empty `id:` reset it. A
    /// stream with one can be resumed (GET with `Last-Event-ID`).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref().filter(|id| !id.is_empty())
    }

    /// Data bytes of the event being read so far (not yet dispatched).
    pub fn pending_data_len(&self) -> usize {
        self.data_len
    }

    fn feed_inner(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<SseEvent>,
        mut marks: Option<&mut Vec<Mark>>,
    ) {
        let mut rest = chunk;
        // (An empty chunk says nothing about whether a LF follows the CR.)
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line_bytes(&rest[..end]);
            let blank = self.line == Line::Start;
            let dispatched_before = out.len();
            self.end_line(out);
            let cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            if blank && let Some(marks) = marks.as_deref_mut() {
                marks.push(Mark {
                    offset: chunk.len() - rest.len(),
                    event: (out.len() > dispatched_before).then(|| out.len() - 1),
                });
            }
        }
        self.line_bytes(rest);
    }

    fn line_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.line {
                Line::Start => {
                    self.line = if bytes[0] == b':' {
                        Line::Comment
                    } else {
                        Line::Name
                    };
                }
                Line::Name => match bytes.iter().position(|&b| b == b':') {
                    Some(colon) => {
                        self.push_name(&bytes[..colon]);
                        let field = self.field();
                        if field == Field::Data {
                            self.begin_data_line();
                        }
                        self.line = Line::Value { field, fresh: true };
                        bytes = &bytes[colon + 1..];
                    }
                    None => {
                        self.push_name(bytes);
                        bytes = &[];
                    }
                },
                Line::Value { field, fresh } => {
                    if fresh {
                        self.line = Line::Value {
                            field,
                            fresh: false,
                        };
                        if bytes[0] == b' ' {
                            bytes = &bytes[1..];
                            continue;
                        }
                    }
                    match field {
                        Field::Data => self.append_data(bytes),
                        Field::Event | Field::Id => {
                            let room = SMALL_LIMIT.saturating_sub(self.small.len());
                            self.small
                                .extend_from_slice(&bytes[..bytes.len().min(room)]);
                        }
                        Field::Other => {}
                    }
                    bytes = &[];
                }
                Line::Comment => bytes = &[],
            }
        }
    }

    fn push_name(&mut self, bytes: &[u8]) {
        let room = (NAME_LIMIT + 1).saturating_sub(self.name.len());
        self.name.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn field(&self) -> Field {
        match self.name.as_slice() {
            b"data" => Field::Data,
            b"event" => Field::Event,
            b"id" => Field::Id,
            _ => Field::Other,
        }
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        match self.line {
            Line::Start => self.dispatch(out),
            Line::Comment => {}
            // A field name alone: its value is empty.
            Line::Name => match self.field() {
                Field::Data => self.begin_data_line(),
                Field::Event => self.event.clear(),
                Field::Id => self.last_id = Some(String::new()),
                Field::Other => {}
            },
            Line::Value { field, .. } => match field {
                Field::Event => self.event = std::mem::take(&mut self.small),
                // An id with NUL is ignored, as the standard says.
                Field::Id if !self.small.contains(&0) => {
                    self.last_id = Some(String::from_utf8_lossy(&self.small).into_owned());
                }
                Field::Id | Field::Data | Field::Other => {}
            },
        }
        self.line = Line::Start;
        self.name.clear();
        self.small.clear();
    }

    /// A `data` line starts: lines after the first are joined with `\n`.
    fn begin_data_line(&mut self) {
        if self.has_data {
            self.append_data(b"\n");
        }
        self.has_data = true;
    }

    fn append_data(&mut self, bytes: &[u8]) {
        self.data_len += bytes.len();
        self.data_hash.update(bytes);
        let room = self.data_limit.saturating_sub(self.data.len());
        self.data.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        if !self.has_data {
            return;
        }
        self.has_data = false;
        let hash = std::mem::replace(&mut self.data_hash, Sha256::new());
        out.push(SseEvent {
            event: if event.is_empty() {
                "message".into()
            } else {
                String::from_utf8_lossy(&event).into_owned()
            },
            data: std::mem::take(&mut self.data),
            data_len: std::mem::replace(&mut self.data_len, 0),
            data_sha256: hash.finalize().into(),
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests;
