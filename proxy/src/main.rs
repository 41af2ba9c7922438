//! `aegis-proxy`: parse arguments, load configuration, run.

use std::process::ExitCode;
use std::time::Duration;

use aegis_proxy::cli::{
    Cli, Command, ConformanceCommand, EventsCommand, ManifestCommand, RunFlags,
};
use aegis_proxy::config::{self, ProcessEnv};
use aegis_proxy::{app, commands, telemetry};
use clap::Parser as _;

/// jemalloc, not the system allocator: after a burst of connections or
/// large bodies, glibc's malloc keeps the process's high-water mark resident
/// (freed chunks below live ones are never returned); jemalloc's background
/// thread purges freed pages within its decay time (10 s), busy or idle
/// (`proxy/tests/abuse.rs` measures it).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(flags) => run(&flags),
        Command::Verify(args) => commands::verify(&args, &mut std::io::stdout().lock()),
        Command::Events(events) => match events.command {
            EventsCommand::Export(args) => commands::export(&args, &mut std::io::stdout().lock()),
        },
        Command::Manifest(manifest) => match manifest.command {
            ManifestCommand::Validate(args) => {
                commands::policy::validate(&args, &mut std::io::stdout().lock())
            }
        },
        Command::Decide(args) => commands::policy::decide(&args, &mut std::io::stdout().lock()),
        Command::Demo(args) => commands::demo::demo(&args, &mut std::io::stdout()),
        Command::Approvals(args) => {
            commands::approvals::approvals(&args, &mut std::io::stdout().lock())
        }
        Command::Conformance(conformance) => match conformance.command {
            ConformanceCommand::Run(args) => {
                commands::policy::conformance_run(&args, &mut std::io::stdout().lock())
            }
        },
    }
}

fn run(flags: &RunFlags) -> ExitCode {
    let config = match config::load(flags, &ProcessEnv) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("aegis-proxy: invalid configuration:\n{e}");
            return ExitCode::from(commands::EXIT_USAGE);
        }
    };
    telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("aegis-proxy: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let drain = config.admin.request_timeout.min(Duration::from_secs(30));
    runtime.block_on(async move {
        // Handlers go in before start-up, so that a SIGTERM sent as soon as
        // the ready file appears drains instead of killing the process.
        let mut signals = match Signals::install() {
            Ok(signals) => signals,
            Err(e) => {
                eprintln!("aegis-proxy: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let running = match app::start(config).await {
            Ok(running) => running,
            Err(e) => {
                tracing::error!("start-up failed: {e:#}");
                eprintln!("aegis-proxy: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        let signal = loop {
            match signals.recv().await {
                Signal::Hangup => {
                    let _ = running.reload_manifest().await;
                }
                Signal::Stop(name) => break name,
            }
        };
        tracing::info!(signal, "shutting down");
        // A second SIGTERM or SIGINT ends the drain delay (SIGHUPs meanwhile
        // are not reloads any more).
        let again = async move { while let Signal::Hangup = signals.recv().await {} };
        running.shutdown_after(drain, again).await;
        ExitCode::SUCCESS
    })
}

/// What a signal asks for.
enum Signal {
    /// SIGHUP: reload the manifest.
    Hangup,
    /// SIGTERM or SIGINT (named): drain and exit.
    Stop(&'static str),
}

/// SIGTERM (Kubernetes), SIGINT (a terminal) and SIGHUP (reload the
/// manifest), listened for from creation.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {})
    }

    /// Waits for the next signal.
    async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Signal::Stop("SIGTERM"),
                _ = self.int.recv() => Signal::Stop("SIGINT"),
                _ = self.hup.recv() => Signal::Hangup,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop("SIGINT")
        }
    }
}
