//! `demo-upstream`: serve the demo MCP tools until SIGINT or SIGTERM.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aegis_demo_upstream::{AnswerMode, DEFAULT_PATH, DEFAULT_SANDBOX, DemoConfig, DemoServer};
use anyhow::Context as _;
use clap::Parser;

/// Where to listen when not told: the port the README's quick start uses.
const DEFAULT_LISTEN: &str = "127.0.0.1:9000";
/// Logs off but for warnings unless `RUST_LOG` says otherwise: benchmarks
/// run through this server.
const DEFAULT_LOG_FILTER: &str = "warn";
/// What a fresh sandbox holds, so `read_file` has something to read.
const SANDBOX_README: &str = "This is the demo upstream's sandbox.\n\
read_file and write_file work inside this directory only.\n";

/// A demo MCP tool server (Streamable HTTP) for aegis-proxy.
#[derive(Debug, Parser)]
#[command(name = "demo-upstream", version)]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    listen: String,
    /// The directory read_file and write_file are confined to (created, with
    /// a README.txt, if missing).
    #[arg(long, default_value = DEFAULT_SANDBOX, value_name = "DIR")]
    sandbox: PathBuf,
    /// How requests are answered unless the x-demo-answer header says otherwise.
    #[arg(long, default_value_t = AnswerMode::Json, value_name = "json|sse")]
    answer: AnswerMode,
    /// No sessions: no Mcp-Session-Id; GET and DELETE answer 405.
    #[arg(long)]
    stateless: bool,
    /// The MCP endpoint path.
    #[arg(long, default_value = DEFAULT_PATH, value_name = "PATH")]
    path: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("demo-upstream: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo-upstream: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    // Handlers go in first, so a signal sent as soon as the URL is printed
    // drains instead of killing the process.
    let mut signals = Signals::install().context("installing signal handlers")?;
    prepare_sandbox(&args.sandbox)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let config = DemoConfig {
        path: args.path,
        sandbox: args.sandbox,
        answer: args.answer,
        stateful: !args.stateless,
    };
    let server = DemoServer::start(listener, config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", server.url()).context("writing the URL")?;
        out.flush().context("writing the URL")?;
    }
    let signal = signals.recv().await;
    tracing::info!(signal, "shutting down");
    server.shutdown().await;
    Ok(())
}

/// Creates the sandbox with a README.txt when it does not exist yet.
fn prepare_sandbox(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let readme = dir.join("README.txt");
    std::fs::write(&readme, SANDBOX_README).with_context(|| format!("writing {}", readme.display()))
}

/// SIGTERM and SIGINT, listened for from creation.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {})
    }

    /// Waits for the next stop signal; its name.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
