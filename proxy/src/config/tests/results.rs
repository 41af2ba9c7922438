//! `mcp.results`: what `TOOL_RESULT` keeps of a result.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;
use crate::results::{DEFAULT_REDACT_PATTERNS, Keep, Redactor, ResultsConfig};

fn loaded(yaml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let file = yaml_file(yaml);
    load(&flags_with_config(file.path()), &env(vars))
}

#[test]
fn results_default_to_full_with_the_built_in_patterns() {
    let results = McpConfig::default().results;
    assert_eq!(results.keep, DEFAULT_MCP_RESULTS_KEEP);
    assert_eq!(results.keep, Keep::Full);
    assert!(results.tools.is_empty());
    let builtin: Vec<String> = DEFAULT_REDACT_PATTERNS
        .iter()
        .map(|(_, p)| (*p).to_owned())
        .collect();
    assert_eq!(results.redactor.patterns(), builtin.as_slice());
    assert_eq!(results, ResultsConfig::default());
    let config = load(&RunFlags::default(), &env(&[])).unwrap();
    assert_eq!(config.mcp.results, ResultsConfig::default());
}

#[test]
fn results_are_read_from_the_file_and_keep_from_the_environment() {
    let yaml = "mcp:\n  results:\n    keep: hash\n    tools:\n      get-env: hash\n      \
                read_logs: REDACT\n      net.http: full\n    redact_patterns:\n      - 'sk-[a-z0-9]{8,}'\n      - '(?i)passphrase=\\S+'\n";
    let config = loaded(yaml, &[]).unwrap();
    let results = &config.mcp.results;
    assert_eq!(results.keep, Keep::Hash);
    let tools: BTreeMap<String, Keep> = [
        ("get-env".to_owned(), Keep::Hash),
        ("net.http".to_owned(), Keep::Full),
        ("read_logs".to_owned(), Keep::Redact),
    ]
    .into();
    assert_eq!(results.tools, tools);
    assert_eq!(
        results.redactor.patterns(),
        [
            "sk-[a-z0-9]{8,}".to_owned(),
            "(?i)passphrase=\\S+".to_owned()
        ]
    );
    assert_eq!(results.redactor.redact("k sk-abcdef123 PassPhrase=x").1, 2);

    let config = loaded(yaml, &[(ENV_MCP_RESULTS_KEEP, " Redact ")]).unwrap();
    assert_eq!(
        config.mcp.results.keep,
        Keep::Redact,
        "the environment wins"
    );
    assert_eq!(config.mcp.results.keep_for("get-env"), Keep::Hash);
}

#[test]
fn bad_results_settings_are_named_all_at_once() {
    let yaml = "mcp:\n  results:\n    keep: everything\n    tools:\n      get-env: secret\n      \
                ' padded ': hash\n    redact_patterns:\n      - ok\n      - '(unclosed'\n      - 'x*'\n";
    let found = problems(loaded(yaml, &[]));
    assert_eq!(
        found,
        [
            "mcp.results.keep: expected \"full\", \"hash\" or \"redact\", got \"everything\"",
            "mcp.results.tools: \" padded \" is not a tool name: it has surrounding spaces or control characters",
            "mcp.results.tools.get-env: expected \"full\", \"hash\" or \"redact\", got \"secret\"",
            "mcp.results.redact_patterns[1]: not a valid regular expression: unclosed group (at byte 0)",
            "mcp.results.redact_patterns[2]: \"x*\" can match the empty string; a redaction pattern must match at least one character",
        ]
    );

    let found = problems(load(
        &RunFlags::default(),
        &env(&[(ENV_MCP_RESULTS_KEEP, "none")]),
    ));
    assert_eq!(
        found,
        [
            "mcp.results.keep: expected \"full\", \"hash\" or \"redact\", got \"none\" (from AEGIS_MCP_RESULTS_KEEP)"
        ]
    );
}

#[test]
fn an_empty_pattern_list_and_unknown_keys_are_refused() {
    let found = problems(loaded("mcp:\n  results:\n    redact_patterns: []\n", &[]));
    assert_eq!(
        found,
        ["mcp.results.redact_patterns: must not be empty; omit it for the built-in list"]
    );
    let err = loaded("mcp:\n  results:\n    keep_bytes: 10\n", &[]).unwrap_err();
    assert!(err.to_string().contains("keep_bytes"), "{err}");
}

#[test]
fn the_built_in_redactor_is_the_one_the_list_compiles_to() {
    let builtin: Vec<String> = DEFAULT_REDACT_PATTERNS
        .iter()
        .map(|(_, p)| (*p).to_owned())
        .collect();
    assert_eq!(Redactor::new(&builtin).unwrap(), Redactor::builtin());
}
