//! The command line's parsing.

use clap::CommandFactory;
use clap::error::ErrorKind;

use super::*;

fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("aegis-proxy").chain(args.iter().copied()))
}

#[test]
fn definitions_are_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn run_without_flags_leaves_everything_to_the_config() {
    let cli = parse(&["run"]).expect("bare run parses");
    let Command::Run(flags) = cli.command else {
        panic!("expected run, got {:?}", cli.command);
    };
    assert!(flags.config.is_none() && flags.admin_listen.is_none());
    assert!(flags.ledger.is_none() && flags.ledger_synchronous.is_none());
    assert!(flags.ready_file.is_none() && flags.log_level.is_none());
    assert!(flags.log_format.is_none());
}

#[test]
fn run_flags_are_kept_raw() {
    let cli = parse(&[
        "run",
        "--config=c.yaml",
        "--admin-listen",
        "not an address",
        "--ledger",
        "l.db",
        "--ledger-synchronous",
        "sometimes",
        "--ready-file",
        "/tmp/ready",
        "--log-level",
        "debug",
        "--log-format",
        "xml",
    ])
    .expect("run flags parse without validation");
    let Command::Run(flags) = cli.command else {
        panic!("expected run, got {:?}", cli.command);
    };
    assert_eq!(flags.config, Some(PathBuf::from("c.yaml")));
    assert_eq!(flags.admin_listen.as_deref(), Some("not an address"));
    assert_eq!(flags.ledger, Some(PathBuf::from("l.db")));
    assert_eq!(flags.ledger_synchronous.as_deref(), Some("sometimes"));
    assert_eq!(flags.ready_file, Some(PathBuf::from("/tmp/ready")));
    assert_eq!(flags.log_level.as_deref(), Some("debug"));
    assert_eq!(flags.log_format.as_deref(), Some("xml"));
}

#[test]
fn verify_session_requires_tenant() {
    let err = parse(&["verify", "--ledger", "l.db", "--session", "s"])
        .expect_err("--session without --tenant is refused");
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    assert_eq!(err.exit_code(), 2);

    let cli = parse(&[
        "verify",
        "--ledger",
        "l.db",
        "--tenant",
        "t",
        "--session",
        "s",
        "--json",
    ])
    .expect("verify with tenant and session parses");
    let Command::Verify(args) = cli.command else {
        panic!("expected verify, got {:?}", cli.command);
    };
    assert_eq!(args.ledger, PathBuf::from("l.db"));
    assert_eq!(args.tenant.as_deref(), Some("t"));
    assert_eq!(args.session.as_deref(), Some("s"));
    assert!(args.json);
}

#[test]
fn verify_requires_a_ledger() {
    let err = parse(&["verify"]).expect_err("--ledger is required");
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
}

#[test]
fn events_export_needs_ledger_tenant_and_session() {
    let cli = parse(&[
        "events",
        "export",
        "--ledger",
        "l.db",
        "--tenant",
        "t",
        "--session",
        "s",
    ])
    .expect("full export parses");
    let Command::Events(EventsArgs {
        command: EventsCommand::Export(args),
    }) = cli.command
    else {
        panic!("expected events export, got {:?}", cli.command);
    };
    assert_eq!(
        (args.ledger, args.tenant.as_str(), args.session.as_str()),
        (PathBuf::from("l.db"), "t", "s")
    );

    let err = parse(&["events", "export", "--ledger", "l.db", "--tenant", "t"])
        .expect_err("--session is required");
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
    assert!(parse(&["events"]).is_err(), "events needs a subcommand");
}

#[test]
fn policy_commands_parse() {
    let cli = parse(&["manifest", "validate", "m.yaml"]).expect("validate parses");
    let Command::Manifest(ManifestArgs {
        command: ManifestCommand::Validate(args),
    }) = cli.command
    else {
        panic!("expected manifest validate, got {:?}", cli.command);
    };
    assert_eq!(args.file, PathBuf::from("m.yaml"));
    assert!(
        parse(&["manifest", "validate"]).is_err(),
        "FILE is required"
    );

    let cli =
        parse(&["decide", "--manifest", "m.json", "--event", "e.json"]).expect("decide parses");
    let Command::Decide(args) = cli.command else {
        panic!("expected decide, got {:?}", cli.command);
    };
    assert_eq!(args.manifest, PathBuf::from("m.json"));
    assert_eq!(args.event, PathBuf::from("e.json"));
    assert!(args.snapshot.is_none());
    let err = parse(&["decide", "--manifest", "m.json"]).expect_err("--event is required");
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);

    let cli = parse(&["conformance", "run", "a", "b.yaml", "--json"]).expect("run parses");
    let Command::Conformance(ConformanceArgs {
        command: ConformanceCommand::Run(args),
    }) = cli.command
    else {
        panic!("expected conformance run, got {:?}", cli.command);
    };
    assert_eq!(args.paths, [PathBuf::from("a"), PathBuf::from("b.yaml")]);
    assert!(args.json);
    let err = parse(&["conformance", "run"]).expect_err("a PATH is required");
    assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
}

#[test]
fn unknown_flags_and_commands_are_usage_errors() {
    let err = parse(&["run", "--bogus"]).expect_err("unknown flag");
    assert_eq!(err.kind(), ErrorKind::UnknownArgument);
    assert_eq!(err.exit_code(), 2);
    assert!(parse(&["frobnicate"]).is_err());
    assert!(parse(&[]).is_err(), "a command is required");
}
