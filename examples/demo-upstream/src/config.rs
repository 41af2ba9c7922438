//! What the demo server is started with.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The MCP endpoint path when none is given: what MCP clients expect.
pub const DEFAULT_PATH: &str = "/mcp";
/// The sandbox directory when none is given: next to where it was started.
pub const DEFAULT_SANDBOX: &str = "./demo-sandbox";
/// The counters' path, next to (never equal to) the MCP path.
pub(crate) const STATS_PATH: &str = "/stats";

/// How requests are answered: one JSON body, or an SSE stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerMode {
    /// `Content-Type: application/json`: the response (an array for a batch).
    #[default]
    Json,
    /// `Content-Type: text/event-stream`: a priming event, then one event
    /// per message (progress notifications, then the response).
    Sse,
}

impl AnswerMode {
    /// `json` or `sse`, as in the `x-demo-answer` header and `--answer` flag.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerMode::Json => "json",
            AnswerMode::Sse => "sse",
        }
    }
}

impl fmt::Display for AnswerMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An answer mode other than `json` or `sse`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("answer mode must be `json` or `sse`")]
pub struct ParseAnswerModeError;

impl FromStr for AnswerMode {
    type Err = ParseAnswerModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("json") {
            Ok(AnswerMode::Json)
        } else if s.eq_ignore_ascii_case("sse") {
            Ok(AnswerMode::Sse)
        } else {
            Err(ParseAnswerModeError)
        }
    }
}

/// The demo server's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// The MCP endpoint path (POST, GET, DELETE), e.g. `/mcp`.
    pub path: String,
    /// The only directory `read_file` and `write_file` may touch.
    pub sandbox: PathBuf,
    /// How requests are answered unless `x-demo-answer` says otherwise.
    pub answer: AnswerMode,
    /// Mint `Mcp-Session-Id` on `initialize` and require it afterwards;
    /// serve the GET stream and DELETE. When false: no sessions, GET and
    /// DELETE answer 405.
    pub stateful: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            path: DEFAULT_PATH.to_owned(),
            sandbox: PathBuf::from(DEFAULT_SANDBOX),
            answer: AnswerMode::Json,
            stateful: true,
        }
    }
}

impl DemoConfig {
    /// Reports what cannot be served.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if !self.path.starts_with('/') {
            problems.push(format!("path {:?} must start with `/`", self.path));
        }
        if self.path == STATS_PATH {
            problems.push(format!(
                "path must not be {STATS_PATH} (the counters live there)"
            ));
        }
        if self.path.contains(['?', '#']) {
            problems.push(format!(
                "path {:?} must not hold a query or fragment",
                self.path
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("invalid demo configuration: {}", problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_modes_parse_and_print() {
        for (text, mode) in [("json", AnswerMode::Json), ("SSE", AnswerMode::Sse)] {
            assert_eq!(text.parse::<AnswerMode>(), Ok(mode));
            assert_eq!(mode.to_string(), text.to_ascii_lowercase());
        }
        assert_eq!("xml".parse::<AnswerMode>(), Err(ParseAnswerModeError));
    }

    #[test]
    fn paths_are_checked() {
        let mut config = DemoConfig::default();
        assert!(config.validate().is_ok());
        for bad in ["mcp", "/stats", "/mcp?x=1"] {
            config.path = bad.to_owned();
            assert!(config.validate().is_err(), "{bad}");
        }
    }
}
