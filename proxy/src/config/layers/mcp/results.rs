//! `mcp.results`: what `TOOL_RESULT` keeps of a tool's result. `keep` from
//! the file or `AEGIS_MCP_RESULTS_KEEP`; `tools` and `redact_patterns` from
//! the file only. Every bad value is a problem naming its setting
//! (`mcp.results.tools.get-env`, `mcp.results.redact_patterns[2]`).

use std::collections::BTreeMap;

use super::super::{Checker, Layered, Origin};
use crate::config::DEFAULT_MCP_RESULTS_KEEP;
use crate::config::settings;
use crate::results::{Keep, Redactor, ResultsConfig};

pub(super) fn resolve(c: &mut Checker<'_>) -> ResultsConfig {
    let keep = c.get(
        &settings::MCP_RESULTS_KEEP,
        DEFAULT_MCP_RESULTS_KEEP,
        |text: String| text.parse::<Keep>(),
    );

    let mut tools = BTreeMap::new();
    let file_tools = c.file.text_map(&settings::MCP_RESULTS_TOOLS);
    for (name, mode) in file_tools.unwrap_or_default() {
        if let Err(message) = tool_name(&name) {
            c.problems
                .push(format!("mcp.results.tools: {name:?} {message}"));
            continue;
        }
        let path = format!("mcp.results.tools.{name}");
        let mode = Layered {
            value: mode,
            origin: Origin::File,
        };
        let mode = c.setting(&path, Some(mode), None, |text| {
            text.parse::<Keep>().map(Some)
        });
        if let Some(mode) = mode {
            tools.insert(name, mode);
        }
    }

    let redactor = match c.file.texts(&settings::MCP_RESULTS_REDACT_PATTERNS) {
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
