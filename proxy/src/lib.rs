//! # aegis-proxy
//!
//! The sidecar process: it stands inline between an agent and its tools (the
//! MCP reverse proxy and the egress forward proxy), serves the Aegis `/v1` API
//! over the ledger, and exports Prometheus metrics. This crate is the only one
//! that touches HTTP, TLS and Prometheus; it never touches SQLite directly (the
//! ledger crate does).
//!
//! - [`config`]: file < `AEGIS_*` env < flags, validated all at once.
//! - [`app`]: start-up (ledger, listeners, ready file) and graceful shutdown.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics` and `/v1/...`; errors become
//!   answers in one place ([`admin::ApiError`]).
//! - [`metrics`]: the registry, passed in, never global.
//! - [`commands`]: the offline commands (`verify`, `events export`, the
//!   policy commands) and `demo`; [`cli`] defines their arguments.
//! - [`mcp`]: the MCP reverse proxy that decides and records every
//!   `tools/call` (protocol notes in `proxy/src/mcp/README.md`).
//! - [`gate`]: the decision and its ledger records, shared by MCP and
//!   egress: per-session order, policy, every envelope payload.
//! - [`front_door`]: `Host`/`Origin` checks against DNS rebinding.
//! - [`egress`]: the forward proxy for the agent's `HTTP_PROXY`/`HTTPS_PROXY`.
//! - [`results`]: what the ledger keeps of a tool's result (full, hash,
//!   redacted), per tool.
//! - [`identity`]: who a request acts for (principal, tenant, session), on
//!   both listeners: configuration, mTLS SANs, JWTs.
//! - [`listener`], [`tls`], [`peer`]: the shared accept loop, rustls
//!   configuration, and who is on the other end of a connection.
//! - [`limits`], [`loops`]: per-session rate-limit buckets, and the session
//!   reducer's rules from the live manifest.
//!
//! The request path is described in the repository's `ARCHITECTURE.md` ("One
//! tools/call, start to finish").

pub mod admin;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod egress;
pub mod front_door;
pub mod gate;
pub mod identity;
pub(crate) mod json;
pub mod limits;
pub mod listener;
pub mod loops;
pub mod mcp;
pub mod metrics;
pub mod peer;
pub mod results;
pub mod telemetry;
pub mod tls;
pub mod watch;
pub mod webhook;
