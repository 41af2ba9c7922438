//! Resident memory of the real `aegis-proxy` binary: idle, and with 1,000
//! and 10,000 active sessions (each session one `tools/call` through the
//! MCP proxy to the demo tool server, so each has a chain head and reduced
//! state in memory).
//!
//! ```sh
//! cargo build --release -p aegis-proxy
//! cargo run --release -p aegis-bench --bin rss -- [--sessions 1000,10000]
//! ```
//!
//! The sidecar runs as its own process (`target/release/aegis-proxy run`,
//! found beside this binary); RSS is `VmRSS` from `/proc/PID/status`, read
//! after the calls of each step have been answered. Linux only.

#![allow(clippy::print_stdout, reason = "the report is the program's output")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aegis_demo_upstream::{AnswerMode, DemoConfig, DemoServer};
use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const MANIFEST: &str = r#"
schema: aegis.dev/manifest/v0.1
name: rss-agent
version: "1.0.0"
publisher: aegis-bench
sandbox: {required: false}
permissions:
  tools: [echo]
  budgets: {max_steps: 1000000, max_tool_calls: 1000000, max_wall_time_ms: 86400000}
policy:
  non_tainting_tools: [echo]
"#;

/// Calls in flight at once while creating sessions.
const CONCURRENCY: usize = 16;

struct Sidecar {
    child: Child,
    mcp: String,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no VmRSS value")?
        .parse()?)
}

fn binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("no directory")?.join("aegis-proxy");
    if !path.exists() {
        bail!(
            "{} is missing: run `cargo build --release -p aegis-proxy` first",
            path.display()
        );
    }
    Ok(path)
}

fn start(dir: &std::path::Path, upstream: &str) -> anyhow::Result<Sidecar> {
    let policy = dir.join("policy");
    std::fs::create_dir_all(&policy)?;
    std::fs::write(policy.join("manifest.yaml"), MANIFEST)?;
    let ready = dir.join("ready.json");
    let child = Command::new(binary()?)
        .args([
            "run",
            "--admin-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--upstream")
        .arg(format!("tools={upstream}"))
        .arg("--manifest")
        .arg(policy.join("manifest.yaml"))
        .arg("--ledger")
        .arg(dir.join("ledger.db"))
        .arg("--ready-file")
        .arg(&ready)
        .args(["--log-level", "warn"])
        // Memory per session is the point: the calls name their sessions.
        .env("AEGIS_SESSION_SCOPE", "client")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start aegis-proxy")?;
    let started = Instant::now();
    while !ready.exists() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("aegis-proxy was not ready within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready: serde_json::Value = serde_json::from_slice(&std::fs::read(&ready)?)?;
    let mcp = ready["mcp"].as_str().context("no mcp address")?.to_owned();
    Ok(Sidecar { child, mcp })
}

async fn call(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    mcp: &str,
    session: usize,
) -> anyhow::Result<()> {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"s{session}"}}}}}}"#
    );
    let req = http::Request::post(format!("http://{mcp}/mcp/tools"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("x-aegis-session-id", format!("rss-{session}"))
        .body(Full::new(Bytes::from(body)))?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .context("call timed out")??;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    if !status.is_success() || !String::from_utf8_lossy(&bytes).contains("\"isError\":false") {
        bail!("call failed: {status} {}", String::from_utf8_lossy(&bytes));
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut steps = vec![1_000usize, 10_000];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sessions" => {
                let list = args.next().context("--sessions needs a list")?;
                steps = list
                    .split(',')
                    .map(|n| n.trim().parse())
                    .collect::<Result<_, _>>()?;
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let dir = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let upstream = DemoServer::start(
            listener,
            DemoConfig {
                sandbox: dir.path().join("sandbox"),
                answer: AnswerMode::Json,
                stateful: false,
                ..DemoConfig::default()
            },
        )
        .await?;
        let sidecar = start(dir.path(), &upstream.url())?;
        let pid = sidecar.child.id();
        let client = Client::builder(TokioExecutor::new()).build_http();
        // Settle: the first call warms the pool, then idle.
        call(&client, &sidecar.mcp, usize::MAX).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = rss_kib(pid)?;
        println!("| state | sessions in memory | RSS |\n|---|---|---|");
        println!(
            "| idle (one call made) | 1 | {:.1} MB |",
            idle as f64 / 1024.0
        );
        let mut made = 0usize;
        for target in steps {
            let mut tasks = tokio::task::JoinSet::new();
            let mut next = made;
            while next < target || !tasks.is_empty() {
                while next < target && tasks.len() < CONCURRENCY {
                    let (client, mcp) = (client.clone(), sidecar.mcp.clone());
                    tasks.spawn(async move { call(&client, &mcp, next).await });
                    next += 1;
                }
                if let Some(done) = tasks.join_next().await {
                    done??;
                }
            }
            made = target;
            let rss = rss_kib(pid)?;
            println!(
                "| after calls in {target} sessions | {target} | {:.1} MB |",
                rss as f64 / 1024.0
            );
        }
        drop(sidecar);
        upstream.shutdown().await;
        anyhow::Ok(())
    })
}
