//! The demo's scripted agent: a minimal MCP Streamable HTTP client of the
//! sidecar (initialize, tools/list, tools/call), JSON or SSE answers.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::REQUEST_TIMEOUT;

/// The scripted agent: a Streamable HTTP client of the sidecar.
pub(super) struct Agent {
    url: String,
    client: Client<HttpConnector, Full<Bytes>>,
    mcp_session: std::sync::Mutex<Option<String>>,
}

impl Agent {
    pub(super) fn new(mcp: SocketAddr) -> Agent {
        Agent {
            url: format!("http://{mcp}/mcp/demo"),
            client: Client::builder(TokioExecutor::new()).build_http(),
            mcp_session: std::sync::Mutex::new(None),
        }
    }

    async fn post(&self, body: &Value) -> anyhow::Result<(StatusCode, Option<String>, Vec<Value>)> {
        let mut req = Request::post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        let session = self
            .mcp_session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(id) = session {
            req = req
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let req = req.body(Full::new(Bytes::from(body.to_string())))?;
        let exchange = async {
            let response = self.client.request(req).await?;
            let status = response.status();
            let session = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let sse = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("text/event-stream"));
            let bytes = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, session, messages(&bytes, sse)))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .context("the sidecar did not answer in time")?
    }

    pub(super) async fn initialize(&self) -> anyhow::Result<()> {
        let (status, session, _) = self
            .post(
                &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "clientInfo": {"name": "aegis-demo-agent", "version": env!("CARGO_PKG_VERSION")}}}),
            )
            .await?;
        if status != StatusCode::OK {
            bail!("initialize answered {status}");
        }
        *self
            .mcp_session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = session;
        self.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(())
    }

    pub(super) async fn tool_names(&self) -> anyhow::Result<Vec<String>> {
        let (_, _, messages) = self
            .post(&json!({"jsonrpc": "2.0", "id": "list", "method": "tools/list"}))
            .await?;
        let list = messages
            .into_iter()
            .find(|m| m["id"] == "list")
            .context("no tools/list answer")?;
        Ok(list["result"]["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub(super) async fn call(&self, id: usize, tool: &str, args: &Value) -> anyhow::Result<Value> {
        let (status, _, messages) = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": args}}))
            .await?;
        if status != StatusCode::OK {
            bail!("tools/call {tool} answered HTTP {status}");
        }
        messages
            .into_iter()
            .find(|m| m["id"] == id)
            .with_context(|| format!("no answer to tools/call {tool}"))
    }
}

/// The JSON-RPC messages of an answer body (JSON, or SSE `data:` lines).
fn messages(body: &[u8], sse: bool) -> Vec<Value> {
    if !sse {
        return match serde_json::from_slice(body) {
            Ok(Value::Array(items)) => items,
            Ok(item) => vec![item],
            Err(_) => Vec::new(),
        };
    }
    String::from_utf8_lossy(body)
        .replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(str::trim_start))
                .collect();
            serde_json::from_str(&data.join("\n")).ok()
        })
        .collect()
}
