//! The declarations against what documents them: the README's
//! configuration table, the `run` flags and the defaults themselves.

use std::collections::BTreeMap;

use clap::CommandFactory;

use super::*;
use crate::cli::Cli;

/// One row of the README's configuration table, backticks dropped.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    path: String,
    env: Option<String>,
    flag: Option<String>,
    default: String,
}

/// The first `` `code` `` span of a cell.
fn code(cell: &str) -> Option<String> {
    let (_, rest) = cell.split_once('`')?;
    rest.split_once('`').map(|(code, _)| code.to_owned())
}

fn readme_rows() -> Vec<Row> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let text = std::fs::read_to_string(path).expect("read README.md");
    let (_, table) = text
        .split_once("\n| setting | env | flag | default | meaning |\n|---|---|---|---|---|\n")
        .expect("the README's configuration table");
    table
        .lines()
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let line = line.replace("\\|", "\u{0}");
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let [setting, env, flag, default, _meaning] = cells[..] else {
                panic!("a row of five cells: {line}");
            };
            Row {
                path: code(setting).unwrap_or_else(|| panic!("a setting in {line}")),
                env: code(env),
                flag: code(flag).and_then(|f| f.split(' ').next().map(str::to_owned)),
                default: default.replace('`', "").replace('\u{0}', "|"),
            }
        })
        .collect()
}

#[test]
fn the_readme_table_is_the_declarations() {
    let declared: Vec<Row> = settings::all()
        .map(|setting| Row {
            path: setting.path.to_owned(),
            env: setting.env.map(str::to_owned),
            flag: setting.flag.map(|flag| flag.name.to_owned()),
            default: setting.default.text().to_owned(),
        })
        .collect();
    let rows = readme_rows();
    for row in &rows {
        assert!(
            declared.iter().any(|d| d.path == row.path),
            "the README names {:?}, which is not declared",
            row.path
        );
    }
    for setting in &declared {
        let row = rows.iter().find(|row| row.path == setting.path);
        assert_eq!(row, Some(setting), "README row of {}", setting.path);
    }
    assert_eq!(rows.len(), declared.len(), "one row per setting");
}

#[test]
fn declarations_are_unique_and_documented() {
    let mut paths = BTreeMap::new();
    let mut envs = BTreeMap::new();
    for setting in settings::all() {
        assert!(
            paths.insert(setting.path, ()).is_none(),
            "{} twice",
            setting.path
        );
        if let Some(env) = setting.env {
            assert!(env.starts_with("AEGIS_"), "{env}");
            assert!(envs.insert(env, ()).is_none(), "{env} twice");
        }
        assert!(
            !setting.doc.is_empty() && !setting.doc.contains('\n'),
            "{}: a one-line doc",
            setting.path
        );
        assert!(!setting.default.text().is_empty(), "{}", setting.path);
    }
}

#[test]
fn every_run_flag_is_declared_and_its_help_names_the_variable() {
    let cli = Cli::command();
    let run = cli.find_subcommand("run").expect("the run command");
    let flags: Vec<_> = run
        .get_arguments()
        .filter_map(|arg| Some((format!("--{}", arg.get_long()?), arg)))
        // `--addr` is aegisd's, refused (`an_aegisd_config_file_...`).
        .filter(|(name, _)| !["--config", "--help", "--version", "--addr"].contains(&name.as_str()))
        .collect();
    for (name, arg) in &flags {
        let setting = settings::all()
            .find(|s| s.flag.is_some_and(|flag| flag.name == *name))
            .unwrap_or_else(|| panic!("{name} is declared by no setting"));
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        if let Some(env) = setting.env {
            assert!(
                help.contains(&format!("[env: {env}")),
                "{name}'s help names {env}: {help}"
            );
        }
    }
    for setting in settings::all() {
        if let Some(flag) = setting.flag {
            assert!(
                flags.iter().any(|(name, _)| *name == flag.name),
                "{} declares {}, which `run` does not take",
                setting.path,
                flag.name
            );
        }
    }
}

#[test]
fn each_flag_reaches_its_setting() {
    // Every flag given a value that its setting refuses: each problem names
    // the setting and the flag, so the declaration reads the right field.
    let flags = RunFlags {
        admin_listen: Some("x".into()),
        metrics_listen: Some("x".into()),
        ledger: Some(PathBuf::new()),
        ledger_synchronous: Some("x".into()),
        ready_file: Some(PathBuf::new()),
        log_level: Some(" ".into()),
        log_format: Some("x".into()),
        manifest: Some(PathBuf::new()),
        listen: Some("x".into()),
        default_upstream: Some("x".into()),
        enforce: Some("x".into()),
        shutdown_grace_ms: Some("x".into()),
        tls_cert: Some(PathBuf::new()),
        admin_tls_cert: Some(PathBuf::new()),
        forward_listen: Some("x".into()),
        upstream: vec!["tools=http://127.0.0.1:9000/mcp".into()],
        ..RunFlags::default()
    };
    let found = problems(load(&flags, &env(&[])));
    for setting in settings::all() {
        let Some(flag) = setting.flag else { continue };
        if (flag.value)(&flags).is_none() {
            continue;
        }
        let path = setting.path;
        let from = format!("(from {})", flag.name);
        assert!(
            found
                .iter()
                .any(|p| p.starts_with(&format!("{path}:")) && p.ends_with(&from)),
            "{path} {from} in {found:#?}"
        );
    }
}

/// The YAML of every setting at its declared default value, nested.
fn defaults_file() -> String {
    #[derive(Default)]
    struct Tree(BTreeMap<String, Tree>, Option<&'static str>);
    let mut root = Tree::default();
    for setting in settings::all() {
        // A block's leaves would turn the block (mTLS, JWT identity) on.
        if setting.path.starts_with("mcp.identity.mtls.")
            || setting.path.starts_with("mcp.identity.jwt.")
        {
            continue;
        }
        let Shown::Value(value) = setting.default else {
            continue;
        };
        let node = setting.path.split('.').fold(&mut root, |node, key| {
            node.0.entry(key.to_owned()).or_default()
        });
        node.1 = Some(value);
    }
    fn write(tree: &Tree, depth: usize, out: &mut String) {
        for (key, child) in &tree.0 {
            out.push_str(&"  ".repeat(depth));
            match child.1 {
                Some(value) => out.push_str(&format!("{key}: {value}\n")),
                None => {
                    out.push_str(&format!("{key}:\n"));
                    write(child, depth + 1, out);
                }
            }
        }
    }
    let mut out = String::new();
    write(&root, 0, &mut out);
    out
}

#[test]
fn the_declared_defaults_are_the_defaults() {
    let text = defaults_file();
    assert!(text.contains("queue_capacity: 4096"), "{text}");
    let file = yaml_file(&text);
    let config = load(&flags_with_config(file.path()), &env(&[])).expect("the defaults load");
    let expected = Config {
        source: Some(file.path().to_owned()),
        ..Config::default()
    };
    assert_eq!(config, expected, "{text}");
}
