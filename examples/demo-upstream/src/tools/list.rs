//! `tools/list`: the tools with their input schemas, serialised once at start.

use serde_json::{Value, json};

use super::Tool;
use crate::mcp::Revision;

/// How long (ms) a 2026-07-28 client may cache the tool list.
pub(crate) const TOOLS_TTL_MS: u64 = 300_000;

/// The `tools/list` result as JSON text, per revision (2026-07-28 adds
/// `resultType` and the caching hints `ttlMs` and `cacheScope`, which its
/// `ListToolsResult` requires).
#[derive(Debug)]
pub(crate) struct ToolsList {
    session: String,
    stateless: String,
}

impl ToolsList {
    pub(crate) fn new() -> ToolsList {
        let tools: Vec<Value> = Tool::ALL.iter().map(|tool| describe(*tool)).collect();
        let session = json!({ "tools": tools });
        // The list never changes and holds nothing of any one caller.
        let stateless = json!({
            "tools": tools,
            "resultType": "complete",
            "ttlMs": TOOLS_TTL_MS,
            "cacheScope": "public",
        });
        ToolsList {
            session: session.to_string(),
            stateless: stateless.to_string(),
        }
    }

    pub(crate) fn get(&self, revision: Revision) -> &str {
        match revision {
            Revision::Session => &self.session,
            Revision::Stateless => &self.stateless,
        }
    }
}

fn describe(tool: Tool) -> Value {
    let (description, properties, required, annotations) = match tool {
        Tool::Echo => (
            "Answers with the given text.",
            json!({ "text": { "type": "string", "description": "The text to echo." } }),
            json!(["text"]),
            json!({ "readOnlyHint": true, "openWorldHint": false }),
        ),
        Tool::ReadFile => (
            "Reads a UTF-8 text file (at most 1 MiB) inside the sandbox directory.",
            json!({ "path": { "type": "string", "description": "A path relative to the sandbox." } }),
            json!(["path"]),
            json!({ "readOnlyHint": true, "openWorldHint": false }),
        ),
        Tool::WriteFile => (
            "Writes a text file inside the sandbox directory, creating parent directories.",
            json!({
                "path": { "type": "string", "description": "A path relative to the sandbox." },
                "content": { "type": "string", "description": "The file's new content." }
            }),
            json!(["path", "content"]),
            json!({ "readOnlyHint": false, "destructiveHint": true, "idempotentHint": true, "openWorldHint": false }),
        ),
        Tool::FetchUrl => (
            "Fetches an http:// URL with GET (5 s timeout, body capped at 64 KiB) and answers its status and body.",
            json!({ "url": { "type": "string", "description": "An http:// URL.", "format": "uri" } }),
            json!(["url"]),
            json!({ "readOnlyHint": true, "openWorldHint": true }),
        ),
        Tool::Slow => (
            "Waits the given number of milliseconds (at most 60000), then answers.",
            json!({ "ms": { "type": "integer", "minimum": 0, "maximum": 60000 } }),
            json!(["ms"]),
            json!({ "readOnlyHint": true, "openWorldHint": false }),
        ),
        Tool::Big => (
            "Answers one text of exactly the given number of bytes of 'x' (at most 16 MiB).",
            json!({ "bytes": { "type": "integer", "minimum": 0, "maximum": 16_777_216 } }),
            json!(["bytes"]),
            json!({ "readOnlyHint": true, "openWorldHint": false }),
        ),
        Tool::Progress => (
            "Reports progress the given number of times (when the call has a progressToken and is answered as SSE), then answers.",
            json!({ "steps": { "type": "integer", "minimum": 0, "maximum": 1000 } }),
            json!(["steps"]),
            json!({ "readOnlyHint": true, "openWorldHint": false }),
        ),
        Tool::DeleteEverything => (
            "Deletes everything. (A demo: it deletes nothing.)",
            json!({}),
            json!([]),
            json!({ "readOnlyHint": false, "destructiveHint": true, "openWorldHint": false }),
        ),
    };
    json!({
        "name": tool.name(),
        "description": description,
        "inputSchema": {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        },
        "annotations": annotations,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn every_tool_is_listed_with_an_object_schema() {
        let list = ToolsList::new();
        let session: Value = serde_json::from_str(list.get(Revision::Session)).unwrap();
        let tools = session["tools"].as_array().unwrap();
        assert_eq!(tools.len(), Tool::ALL.len());
        for (tool, listed) in Tool::ALL.iter().zip(tools) {
            assert_eq!(listed["name"], tool.name());
            assert_eq!(listed["inputSchema"]["type"], "object");
        }
        assert!(session.get("resultType").is_none());
        let stateless: Value = serde_json::from_str(list.get(Revision::Stateless)).unwrap();
        assert_eq!(stateless["resultType"], "complete");
        assert_eq!(stateless["ttlMs"], TOOLS_TTL_MS);
        assert_eq!(stateless["cacheScope"], "public");
        assert!(session.get("ttlMs").is_none() && session.get("cacheScope").is_none());
    }
}
