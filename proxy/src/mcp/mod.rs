//! MCP over Streamable HTTP: the stage functions of the inline path, free of
//! hyper types so that each can be tested alone. (The listener that strings
//! them together is the next step of the MCP reverse proxy.)
//!
//! - [`jsonrpc`]: a POST body → single message or batch, each classified
//!   (request, notification, response) with its id kept exactly as sent.
//! - [`identity`]: which `(tenant, user, session)` a request acts for.
//! - [`answers`]: what the agent gets instead of a forwarded call: the
//!   tool-error result of a denial, JSON-RPC errors.
//! - [`tools_list`]: removes undeclared tools from a `tools/list` result.
//! - [`sse`]: watches an SSE stream pass through, byte-for-byte untouched,
//!   for the JSON-RPC messages in its events.

pub mod answers;
pub mod identity;
pub mod jsonrpc;
pub mod sse;
pub mod tools_list;
