//! MCP: answering one JSON-RPC request.
//!
//! `initialize` and `server/discover` say who we are; `ping` answers `{}`;
//! `tools/list` serves a list built once at start; `tools/call` runs a tool.
//! Anything else is -32601.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::jsonrpc::{self, INVALID_PARAMS, METHOD_NOT_FOUND, Request};
pub(crate) use crate::method::Method;
use crate::sse::EventSink;
use crate::state::Shared;
use crate::tools::{self, Tool};

/// The protocol revisions this server speaks, oldest first.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"];
/// What `initialize` answers when the client asks for a revision we lack.
pub const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";
/// The stateless revision: requests carrying it need no session.
pub const STATELESS_PROTOCOL_VERSION: &str = "2026-07-28";
/// `serverInfo.name`.
pub const SERVER_NAME: &str = "aegis-demo-upstream";
const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");
const INSTRUCTIONS: &str = "A demo MCP tool server for aegis-proxy: echo, files in a sandbox \
    (read_file, write_file), fetch_url (http only), slow, big, progress and a harmless \
    delete_everything.";

/// Which revision a request was made under, from its `MCP-Protocol-Version`
/// header (absent: whatever `initialize` settled, answered the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revision {
    /// 2025-03-26 to 2025-11-25: sessions, when the server is stateful.
    Session,
    /// 2026-07-28: no session; results carry `resultType`.
    Stateless,
}

impl Revision {
    /// The revision of a header value; `None` for one we do not speak.
    pub(crate) fn from_header(value: &str) -> Option<Revision> {
        if value == STATELESS_PROTOCOL_VERSION {
            Some(Revision::Stateless)
        } else if PROTOCOL_VERSIONS.contains(&value) {
            Some(Revision::Session)
        } else {
            None
        }
    }

    fn result_type(self) -> Option<&'static str> {
        match self {
            Revision::Session => None,
            Revision::Stateless => Some("complete"),
        }
    }
}

/// Where one request is answered.
#[derive(Debug)]
pub(crate) struct CallContext<'a> {
    pub revision: Revision,
    /// The SSE stream of this POST, when answering in SSE: progress
    /// notifications go there.
    pub events: Option<&'a EventSink>,
}

/// Appends the answer to `request` (a response or an error) to `out`.
pub(crate) async fn answer(
    shared: &Shared,
    request: &Request<'_>,
    cx: &CallContext<'_>,
    out: &mut Vec<u8>,
) {
    let id = &*request.id;
    let result_type = cx.revision.result_type();
    match Method::from_name(&request.method) {
        Method::Initialize => {
            let asked = params::<InitializeParams<'_>>(request).and_then(|p| p.protocol_version);
            let version = asked
                .as_deref()
                .and_then(|v| PROTOCOL_VERSIONS.iter().find(|known| **known == v))
                .copied()
                .unwrap_or(LATEST_PROTOCOL_VERSION);
            let result = InitializeResult {
                protocol_version: version,
                capabilities: CAPABILITIES,
                server_info: SERVER_INFO,
                instructions: INSTRUCTIONS,
                result_type,
            };
            jsonrpc::write_result(out, id, &result);
        }
        Method::ServerDiscover => jsonrpc::write_result(out, id, &DiscoverResult::new()),
        Method::Ping => jsonrpc::write_result(out, id, &Empty { result_type }),
        Method::ToolsList => {
            jsonrpc::write_raw_result(out, id, shared.tools_list.get(cx.revision));
        }
        Method::ToolsCall => call_tool(shared, request, cx, out).await,
        Method::Initialized | Method::Cancelled | Method::Other => {
            let message = format!("Method not found: {}", request.method);
            jsonrpc::write_error(out, Some(id), METHOD_NOT_FOUND, &message);
        }
    }
}

async fn call_tool(
    shared: &Shared,
    request: &Request<'_>,
    cx: &CallContext<'_>,
    out: &mut Vec<u8>,
) {
    let id = &*request.id;
    let Some(call) = params::<CallParams<'_>>(request) else {
        let message = "Invalid params: tools/call needs params with a string `name`";
        return jsonrpc::write_error(out, Some(id), INVALID_PARAMS, message);
    };
    let Some(tool) = Tool::from_name(&call.name) else {
        let message = format!("Unknown tool: {}", call.name);
        return jsonrpc::write_error(out, Some(id), INVALID_PARAMS, &message);
    };
    shared.stats.count_tool(tool);
    let progress_token = call.meta.and_then(|m| m.progress_token);
    let arguments = call.arguments.map_or("{}", RawValue::get);
    let run = tools::Run {
        sandbox: &shared.sandbox,
        http: &shared.http,
        shutdown: &shared.shutdown,
        events: cx.events,
        progress_token,
    };
    let output = run.call(tool, arguments).await;
    jsonrpc::write_result(out, id, &output.into_result(cx.revision.result_type()));
}

/// The request's params as `P`; `None` when absent or not of that shape.
fn params<'a, P: Deserialize<'a>>(request: &'a Request<'_>) -> Option<P> {
    serde_json::from_str(request.params.as_deref()?.get()).ok()
}

#[derive(Deserialize)]
struct InitializeParams<'a> {
    #[serde(borrow, default, rename = "protocolVersion")]
    protocol_version: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "_meta")]
    meta: Option<CallMeta<'a>>,
}

#[derive(Deserialize)]
struct CallMeta<'a> {
    #[serde(borrow, default, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Capabilities {
    tools: ToolsCapability,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct ToolsCapability {
    #[serde(rename = "listChanged")]
    list_changed: bool,
}

const CAPABILITIES: Capabilities = Capabilities {
    tools: ToolsCapability {
        list_changed: false,
    },
};

#[derive(Debug, Clone, Copy, Serialize)]
struct ServerInfo {
    name: &'static str,
    version: &'static str,
}

const SERVER_INFO: ServerInfo = ServerInfo {
    name: SERVER_NAME,
    version: SERVER_VERSION,
};

#[derive(Serialize)]
struct InitializeResult {
    #[serde(rename = "protocolVersion")]
    protocol_version: &'static str,
    capabilities: Capabilities,
    #[serde(rename = "serverInfo")]
    server_info: ServerInfo,
    instructions: &'static str,
    #[serde(rename = "resultType", skip_serializing_if = "Option::is_none")]
    result_type: Option<&'static str>,
}

/// `server/discover` (2026-07-28): what `initialize` says, for every
/// revision at once. `serverInfo` is both a member (as in `initialize`) and
/// in `_meta`, where the final 2026-07-28 schema puts it.
#[derive(Serialize)]
struct DiscoverResult {
    #[serde(rename = "resultType")]
    result_type: &'static str,
    #[serde(rename = "supportedVersions")]
    supported_versions: [&'static str; 4],
    capabilities: Capabilities,
    #[serde(rename = "serverInfo")]
    server_info: ServerInfo,
    instructions: &'static str,
    /// Not to be cached: counters and sessions live behind it.
    #[serde(rename = "ttlMs")]
    ttl_ms: u64,
    #[serde(rename = "cacheScope")]
    cache_scope: &'static str,
    #[serde(rename = "_meta")]
    meta: DiscoverMeta,
}

#[derive(Serialize)]
struct DiscoverMeta {
    #[serde(rename = "io.modelcontextprotocol/serverInfo")]
    server_info: ServerInfo,
}

impl DiscoverResult {
    fn new() -> DiscoverResult {
        DiscoverResult {
            result_type: "complete",
            supported_versions: PROTOCOL_VERSIONS,
            capabilities: CAPABILITIES,
            server_info: SERVER_INFO,
            instructions: INSTRUCTIONS,
            ttl_ms: 0,
            cache_scope: "private",
            meta: DiscoverMeta {
                server_info: SERVER_INFO,
            },
        }
    }
}

/// `{}` (with `resultType` under 2026-07-28).
#[derive(Serialize)]
struct Empty {
    #[serde(rename = "resultType", skip_serializing_if = "Option::is_none")]
    result_type: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip() {
        for (i, method) in Method::KNOWN.iter().enumerate() {
            assert_eq!(Method::from_name(method.as_str()), *method);
            assert_eq!(method.index(), Some(i));
        }
        assert_eq!(Method::from_name("resources/list"), Method::Other);
        assert_eq!(Method::Other.index(), None);
    }

    #[test]
    fn revisions_from_headers() {
        assert_eq!(Revision::from_header("2025-06-18"), Some(Revision::Session));
        assert_eq!(
            Revision::from_header("2026-07-28"),
            Some(Revision::Stateless)
        );
        assert_eq!(Revision::from_header("2024-11-05"), None);
    }
}
