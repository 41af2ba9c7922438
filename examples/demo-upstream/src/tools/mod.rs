//! The tools: what each one does with its arguments.
//!
//! A tool answers one text content item; failures (bad arguments, a refused
//! path, a network error) are `isError: true` results, never JSON-RPC errors,
//! so the model can read them.

mod fetch;
mod list;
pub(crate) mod sandbox;
mod wait;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub(crate) use fetch::{HttpClient, client as fetch_client};
pub(crate) use list::ToolsList;

use std::sync::Arc;

use tokio::sync::watch;

use crate::sse::EventSink;
use sandbox::Sandbox;

/// Every tool's name, in `tools/list` order.
pub const TOOL_NAMES: [&str; 8] = [
    "echo",
    "read_file",
    "write_file",
    "fetch_url",
    "slow",
    "big",
    "progress",
    "delete_everything",
];

/// The largest `big` answer: 16 MiB, well past any sane output limit.
const MAX_BIG_BYTES: u64 = 16 * 1024 * 1024;

/// The tools, a closed set (indexes into [`TOOL_NAMES`] and the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    Echo,
    ReadFile,
    WriteFile,
    FetchUrl,
    Slow,
    Big,
    Progress,
    DeleteEverything,
}

impl Tool {
    pub(crate) const ALL: [Tool; 8] = [
        Tool::Echo,
        Tool::ReadFile,
        Tool::WriteFile,
        Tool::FetchUrl,
        Tool::Slow,
        Tool::Big,
        Tool::Progress,
        Tool::DeleteEverything,
    ];

    pub(crate) fn name(self) -> &'static str {
        TOOL_NAMES[self.index()]
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|tool| tool.name() == name)
    }
}

/// What a tool answers: one text item, an error or not.
#[derive(Debug)]
pub(crate) struct ToolOutput<'a> {
    text: Cow<'a, str>,
    is_error: bool,
}

impl<'a> ToolOutput<'a> {
    pub(crate) fn ok(text: impl Into<Cow<'a, str>>) -> Self {
        ToolOutput {
            text: text.into(),
            is_error: false,
        }
    }

    pub(crate) fn error(text: impl Into<Cow<'a, str>>) -> Self {
        ToolOutput {
            text: text.into(),
            is_error: true,
        }
    }

    /// The `tools/call` result (with `resultType` under 2026-07-28).
    pub(crate) fn into_result(self, result_type: Option<&'static str>) -> CallToolResult<'a> {
        CallToolResult {
            content: [TextContent {
                kind: "text",
                text: self.text,
            }],
            is_error: self.is_error,
            result_type,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct CallToolResult<'a> {
    content: [TextContent<'a>; 1],
    #[serde(rename = "isError")]
    is_error: bool,
    #[serde(rename = "resultType", skip_serializing_if = "Option::is_none")]
    result_type: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: Cow<'a, str>,
}

/// One tool call: what it may use.
#[derive(Debug)]
pub(crate) struct Run<'a> {
    /// `read_file` and `write_file`'s root, shared with the blocking threads
    /// that touch files.
    pub sandbox: &'a Arc<Sandbox>,
    /// `fetch_url`'s pooled client.
    pub http: &'a HttpClient,
    /// Turns true when the server stops: long tools end.
    pub shutdown: &'a watch::Receiver<bool>,
    /// This POST's SSE stream, when answering in SSE.
    pub events: Option<&'a EventSink>,
    /// `params._meta.progressToken`, as sent.
    pub progress_token: Option<&'a RawValue>,
}

impl Run<'_> {
    /// Runs `tool` on `arguments` (a JSON object's text).
    pub(crate) async fn call<'a>(&self, tool: Tool, arguments: &'a str) -> ToolOutput<'a> {
        match tool {
            Tool::Echo => match parse::<Echo<'_>>(tool, arguments) {
                Ok(args) => ToolOutput::ok(args.text),
                Err(refused) => refused,
            },
            Tool::ReadFile => match parse::<ReadFile>(tool, arguments) {
                Ok(args) => sandbox::read(self.sandbox, args.path).await,
                Err(refused) => refused,
            },
            Tool::WriteFile => match parse::<WriteFile>(tool, arguments) {
                Ok(args) => sandbox::write(self.sandbox, args.path, args.content).await,
                Err(refused) => refused,
            },
            Tool::FetchUrl => match parse::<FetchUrl<'_>>(tool, arguments) {
                Ok(args) => fetch::get(self.http, &args.url).await,
                Err(refused) => refused,
            },
            Tool::Slow => match parse::<Slow>(tool, arguments) {
                Ok(args) => self.slow(args.ms).await,
                Err(refused) => refused,
            },
            Tool::Big => match parse::<Big>(tool, arguments) {
                Ok(args) if args.bytes > MAX_BIG_BYTES => ToolOutput::error(format!(
                    "bytes must be at most {MAX_BIG_BYTES}, not {}",
                    args.bytes
                )),
                // At most 16 MiB, so it fits a usize on every target we build.
                Ok(args) => ToolOutput::ok("x".repeat(usize::try_from(args.bytes).unwrap_or(0))),
                Err(refused) => refused,
            },
            Tool::Progress => match parse::<Progress>(tool, arguments) {
                Ok(args) => self.progress(args.steps).await,
                Err(refused) => refused,
            },
            Tool::DeleteEverything => match parse::<NoArguments>(tool, arguments) {
                Ok(NoArguments {}) => ToolOutput::ok("deleted nothing (demo)"),
                Err(refused) => refused,
            },
        }
    }
}

/// The arguments (a JSON object) as `A`, or the error result that says why
/// not. (Serde would also take an array for a struct: refused first.)
fn parse<'a, A: Deserialize<'a>>(tool: Tool, arguments: &'a str) -> Result<A, ToolOutput<'a>> {
    let name = tool.name();
    if !arguments.trim_start().starts_with('{') {
        return Err(ToolOutput::error(format!(
            "invalid arguments for {name}: not an object"
        )));
    }
    serde_json::from_str(arguments)
        .map_err(|e| ToolOutput::error(format!("invalid arguments for {name}: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Echo<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadFile {
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteFile {
    path: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchUrl<'a> {
    #[serde(borrow)]
    url: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Slow {
    ms: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Big {
    bytes: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Progress {
    steps: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArguments {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn tool_names_round_trip() {
        for (i, tool) in Tool::ALL.iter().enumerate() {
            assert_eq!(tool.index(), i);
            assert_eq!(Tool::from_name(tool.name()), Some(*tool));
        }
        assert_eq!(Tool::from_name("rm"), None);
    }

    #[test]
    fn results_have_one_text_item() {
        let result = ToolOutput::error("nope").into_result(Some("complete"));
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "content": [{"type": "text", "text": "nope"}],
                "isError": true,
                "resultType": "complete",
            })
        );
    }
}
