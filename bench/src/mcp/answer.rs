//! Reading a `tools/call` answer cheaply: the JSON-RPC message answering a
//! request, whether the body is JSON or SSE, parsed into borrowed fields
//! (a 64 KiB result text is checked in place, not copied).

use std::borrow::Cow;

use http::header;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::load::Answer;

/// The shape an answer came in, from its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Json,
    Sse,
}

/// The parts of a JSON-RPC response the checks read; anything else
/// (`jsonrpc`, `_meta`, `resultType`, …) is skipped.
#[derive(Debug, Deserialize)]
pub(crate) struct Message<'a> {
    /// The bench's ids are numbers; a notification has none.
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default, borrow)]
    pub result: Option<CallResult<'a>>,
    #[serde(default)]
    pub error: Option<IgnoredAny>,
}

/// A `tools/call` result.
#[derive(Debug, Deserialize)]
pub(crate) struct CallResult<'a> {
    #[serde(default, rename = "isError")]
    pub is_error: bool,
    #[serde(default, borrow)]
    pub content: Vec<Content<'a>>,
}

/// One content item; only its text is read ("" when it has none).
#[derive(Debug, Deserialize)]
pub(crate) struct Content<'a> {
    /// A `Cow` itself, not in an `Option`: only then does serde borrow it
    /// (when it holds no escapes).
    #[serde(default, borrow)]
    pub text: Cow<'a, str>,
}

impl CallResult<'_> {
    /// The first content item's text ("" when there is none).
    pub fn text(&self) -> &str {
        self.content.first().map_or("", |c| &c.text)
    }
}

/// The answer's shape from its `Content-Type`, if JSON or SSE.
pub(crate) fn shape(answer: &Answer) -> Option<Shape> {
    let content_type = answer
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") {
        Some(Shape::Json)
    } else if content_type.starts_with("text/event-stream") {
        Some(Shape::Sse)
    } else {
        None
    }
}

/// The message answering `id` in `body`: the body itself for JSON; for
/// SSE, the event that holds it (other events — priming, notifications —
/// skipped).
pub(crate) fn message(body: &[u8], shape: Shape, id: u64) -> Result<Message<'_>, &'static str> {
    let text = std::str::from_utf8(body).map_err(|_| "not_utf8")?;
    match shape {
        Shape::Json => parse(text),
        Shape::Sse => sse_message(text, id),
    }
}

fn parse(text: &str) -> Result<Message<'_>, &'static str> {
    serde_json::from_str(text).map_err(|_| "not_json")
}

/// Among the SSE events of `text`, the message answering `id`.
fn sse_message(text: &str, id: u64) -> Result<Message<'_>, &'static str> {
    let mut data: Vec<&str> = Vec::new();
    // A final event without its blank line is not an event (WHATWG), but
    // the body has ended: it is read as well, so that a cut stream shows
    // up as a wrong answer rather than as none.
    for line in text.lines().chain(std::iter::once("")) {
        if !line.is_empty() {
            if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d));
            }
            continue;
        }
        let message = match data.as_slice() {
            [] => continue,
            [one] if one.trim().is_empty() => None,
            [one] => Some(parse(one)?),
            many => {
                let joined = many.join("\n");
                Some(parse(&joined)?.into_owned())
            }
        };
        data.clear();
        if let Some(message) = message
            && message.id == Some(id)
            && (message.result.is_some() || message.error.is_some())
        {
            return Ok(message);
        }
    }
    Err("no_answer")
}

impl Message<'_> {
    fn into_owned(self) -> Message<'static> {
        Message {
            id: self.id,
            result: self.result.map(|r| CallResult {
                is_error: r.is_error,
                content: r
                    .content
                    .into_iter()
                    .map(|c| Content {
                        text: Cow::Owned(c.text.into_owned()),
                    })
                    .collect(),
            }),
            error: self.error,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn finds_the_answer_among_sse_events() {
        let body = "id: 1\r\nretry: 1000\r\ndata:\r\n\r\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\ndata: \"result\":{\"isError\":false,\"content\":[{\"type\":\"text\",\"text\":\"xx\"}]}}\n\n";
        let message = message(body.as_bytes(), Shape::Sse, 7).unwrap();
        assert_eq!(message.id, Some(7));
        assert_eq!(message.result.unwrap().text(), "xx");
        assert_eq!(
            super::message(body.as_bytes(), Shape::Sse, 8).unwrap_err(),
            "no_answer"
        );
    }

    #[test]
    fn a_json_result_text_is_borrowed() {
        let body = br#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"xxx"}],"isError":false,"_meta":{"a":1}}}"#;
        let message = message(body, Shape::Json, 3).unwrap();
        let result = message.result.unwrap();
        assert!(matches!(result.content[0].text, Cow::Borrowed("xxx")));
        assert!(!result.is_error);
        assert!(message.error.is_none());
    }

    #[test]
    fn an_unfinished_last_event_still_counts() {
        let body = "data: {\"id\":2,\"result\":{}}";
        assert!(message(body.as_bytes(), Shape::Sse, 2).is_ok());
        assert_eq!(message(b"data: {", Shape::Sse, 2).unwrap_err(), "not_json");
    }
}
