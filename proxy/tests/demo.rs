//! What `demo` prints for a closer look runs as printed: the README's quick
//! start has nothing installed, so under `cargo run` the demo prints `cargo
//! run -p aegis-proxy -- …`, and otherwise the binary it was started as.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use support::output;

/// The demo's "Look closer:" lines, each split into words.
fn look_closer(stdout: &str) -> Vec<Vec<String>> {
    let commands: Vec<Vec<String>> = stdout
        .split_once("\nLook closer:\n")
        .unwrap_or_else(|| panic!("no \"Look closer:\" in:\n{stdout}"))
        .1
        .lines()
        .take_while(|line| line.starts_with("  "))
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect();
    assert_eq!(commands.len(), 2, "verify and export:\n{stdout}");
    commands
}

fn demo(dir: &std::path::Path, cargo: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aegis-proxy"));
    cmd.arg("demo").arg("--dir").arg(dir);
    if cargo {
        cmd.env("CARGO", "cargo")
            .env("CARGO_PKG_NAME", "aegis-proxy");
    } else {
        cmd.env_remove("CARGO");
    }
    cmd
}

#[test]
fn the_commands_the_demo_prints_run_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(demo(dir.path(), false));
    out.expect_code(0, "demo");
    let commands = look_closer(&out.stdout);
    for words in &commands {
        assert_eq!(words[0], env!("CARGO_BIN_EXE_aegis-proxy"), "{words:?}");
    }
    let verify = output({
        let mut cmd = Command::new(&commands[0][0]);
        cmd.args(&commands[0][1..]);
        cmd
    });
    verify.expect_code(0, "the printed verify");
    let export = output({
        let mut cmd = Command::new(&commands[1][0]);
        cmd.args(&commands[1][1..]);
        cmd
    });
    export.expect_code(0, "the printed export");
    // The demo session's whole chain, one envelope per line.
    assert_eq!(export.stdout.lines().count(), 24, "{}", export.stdout);
}

#[test]
fn under_cargo_run_the_demo_prints_cargo_run_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = output(demo(dir.path(), true));
    out.expect_code(0, "demo");
    for words in look_closer(&out.stdout) {
        assert_eq!(
            words[..4],
            ["cargo", "run", "-p", "aegis-proxy"].map(String::from),
            "{words:?}"
        );
        assert_eq!(words[4], "--", "{words:?}");
    }
}
