//! `mcp.results`: what `TOOL_RESULT` keeps of a tool's result. `keep` from
//! the file or `AEGIS_MCP_RESULTS_KEEP`; `tools` and `redact_patterns` from
//! the file only. Every bad value is a problem naming its setting
//! (`mcp.results.tools.get-env`, `mcp.results.redact_patterns[2]`).

use std::collections::BTreeMap;

use super::super::{Checker, from_file, over_file};
use crate::config::env::{self, Env};
use crate::config::raw::RawResults;
use crate::config::{DEFAULT_MCP_RESULTS_KEEP, ENV_MCP_RESULTS_KEEP};
use crate::results::{Keep, Redactor, ResultsConfig};

pub(super) fn resolve(raw: RawResults, env: &dyn Env, c: &mut Checker) -> ResultsConfig {
    let value = over_file(
        raw.keep,
        env::string(env, ENV_MCP_RESULTS_KEEP),
        ENV_MCP_RESULTS_KEEP,
    );
    let keep = c.setting(
        "mcp.results.keep",
        value,
        DEFAULT_MCP_RESULTS_KEEP,
        |text| text.parse::<Keep>(),
    );

    let mut tools = BTreeMap::new();
    for (name, mode) in raw.tools.unwrap_or_default() {
        if let Err(message) = tool_name(&name) {
            c.problems
                .push(format!("mcp.results.tools: {name:?} {message}"));
            continue;
        }
        let path = format!("mcp.results.tools.{name}");
        let mode = c.setting(&path, from_file(Some(mode)), None, |text| {
            text.parse::<Keep>().map(Some)
        });
        if let Some(mode) = mode {
            tools.insert(name, mode);
        }
    }

    let redactor = match raw.redact_patterns {
        None => Redactor::builtin(),
        Some(patterns) if patterns.is_empty() => {
            c.problems.push(
                "mcp.results.redact_patterns: must not be empty; omit it for the built-in list"
                    .to_owned(),
            );
            Redactor::builtin()
        }
        Some(patterns) => Redactor::new(&patterns).unwrap_or_else(|errors| {
            for error in errors {
                let at = error.index.map_or_else(String::new, |i| format!("[{i}]"));
                c.problems.push(format!(
                    "mcp.results.redact_patterns{at}: {}",
                    error.message
                ));
            }
            Redactor::builtin()
        }),
    };

    ResultsConfig {
        keep,
        tools,
        redactor,
    }
}

/// A tool name as MCP sends it: matched exactly, so surrounding spaces or
/// control characters could only be a mistake.
fn tool_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is not a tool name: it is empty".to_owned());
    }
    if name.trim() != name || name.chars().any(char::is_control) {
        return Err(
            "is not a tool name: it has surrounding spaces or control characters".to_owned(),
        );
    }
    Ok(())
}
