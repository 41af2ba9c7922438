//! # aegis-proxy
//!
//! The sidecar process: it serves the Aegis `/v1` API over the ledger, exports
//! Prometheus metrics, and (in later stages) stands inline between an agent and
//! its tools. This crate is the only one that touches HTTP, TLS and
//! Prometheus; it never touches SQLite directly (the ledger crate does).
//!
//! - [`config`]: file < `AEGIS_*` env < flags, validated all at once.
//! - [`app`]: start-up (ledger, listeners, ready file) and graceful shutdown.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics` and `/v1/...`; errors become
//!   answers in one place ([`admin::ApiError`]).
//! - [`metrics`]: the registry, passed in, never global.
//! - [`commands`]: the offline `verify` and `events export` commands.
//! - [`egress`]: the forward proxy for the agent's `HTTP_PROXY`/`HTTPS_PROXY`.
//!
//! The request path is described in DESIGN.md ("One tools/call, start to finish").

pub mod admin;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod egress;
pub mod limits;
pub mod listener;
pub mod loops;
pub mod mcp;
pub mod metrics;
pub mod telemetry;
pub mod tls;
