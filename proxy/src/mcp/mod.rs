//! The MCP reverse proxy over Streamable HTTP (protocol notes in
//! `README.md` beside this file).
//!
//! - [`server`]: the listener; routes, reads and parses a POST, decides
//!   every `tools/call` in it before anything is forwarded.
//! - [`enforce`]: one call's decision and its ledger records, sequenced per
//!   session.
//! - [`relay`]: sends what was admitted upstream and relays the answer (JSON
//!   or SSE, event by event), settling each call: result recorded, timeout
//!   and output limits enforced, failures recorded.
//! - [`resume`]: requests whose POST stream ended before their answer,
//!   settled from the resumed GET stream (recorded before relaying).
//! - [`upstream`]: the pooled client and which headers cross the sidecar.
//!
//! Stage functions free of hyper types, each tested alone:
//! - [`jsonrpc`]: a POST body → single message or batch, each classified
//!   (request, notification, response) with its id kept exactly as sent.
//! - [`front_door`]: `Host` and `Origin` checked before anything else
//!   (DNS rebinding).
//! - [`identity`]: which `(tenant, user, session)` a request acts for.
//! - [`answers`]: what the agent gets instead of a forwarded call: the
//!   tool-error result of a denial, JSON-RPC errors.
//! - [`tools_list`]: removes undeclared tools from a `tools/list` result.
//! - [`inputs`]: `resources/read`, `prompts/get` and embedded resources:
//!   what is recorded of them and whether they taint.
//! - [`sse`]: parses an SSE stream as it passes, marking event boundaries.

pub mod answers;
pub mod enforce;
pub mod front_door;
pub mod identity;
pub mod inputs;
pub mod jsonrpc;
pub mod relay;
pub mod resume;
pub mod server;
pub mod sse;
pub mod tools_list;
pub mod upstream;
