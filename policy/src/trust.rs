//! Which content read from tool servers is trusted not to carry a prompt
//! injection (`policy.trusted_content`): `resources/read` and `prompts/get`
//! answers, and resources embedded in tool results, taint the session
//! unless the manifest names their upstream, their URI (for resources) or
//! their name (for prompts) here. Nothing is trusted by default.
//!
//! URI patterns are matched against the exact text of the URI: `*` matches
//! any run of characters (`/` included), everything else matches itself.
//! A URI that could name something else than it reads — with a `.` or
//! `..` path segment, a `%` escape or a `\` — never matches a pattern, so
//! `file:///docs/../etc/shadow` is not trusted by `file:///docs/*`.

/// `policy.trusted_content`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustedContent {
    /// Upstream names (the sidecar's `mcp.upstreams[].name`) whose resources
    /// and prompts are all trusted.
    pub upstreams: Vec<String>,
    /// Resource URI patterns.
    pub resources: Vec<UriPattern>,
    /// Prompt names (exact).
    pub prompts: Vec<String>,
}

impl TrustedContent {
    /// Whether the resource at `uri`, read from `upstream`, is trusted.
    pub fn resource(&self, upstream: &str, uri: &str) -> bool {
        self.upstream(upstream) || (plain_uri(uri) && self.resources.iter().any(|p| p.matches(uri)))
    }

    /// Whether the prompt `name`, got from `upstream`, is trusted.
    pub fn prompt(&self, upstream: &str, name: &str) -> bool {
        self.upstream(upstream) || self.prompts.iter().any(|p| p == name)
    }

    fn upstream(&self, upstream: &str) -> bool {
        self.upstreams.iter().any(|u| u == upstream)
    }

    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty() && self.resources.is_empty() && self.prompts.is_empty()
    }
}

/// A resource URI pattern: literal text with `*` wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriPattern {
    text: String,
}

/// Why a URI pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("must start with a URI scheme (e.g. docs://handbook/*)")]
    NoScheme,
    #[error(
        "must not contain a `.` or `..` path segment, `%` or `\\` (a URI with those never matches)"
    )]
    Ambiguous,
}

impl UriPattern {
    pub fn new(text: &str) -> Result<UriPattern, PatternError> {
        let scheme_ok = text.split_once(':').is_some_and(|(scheme, _)| {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if !scheme_ok {
            return Err(PatternError::NoScheme);
        }
        if !plain_uri(text) {
            return Err(PatternError::Ambiguous);
        }
        Ok(UriPattern { text: text.into() })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Glob match of `uri` against the pattern (`*`: any run of characters).
    pub fn matches(&self, uri: &str) -> bool {
        glob(self.text.as_bytes(), uri.as_bytes())
    }
}

/// A URI whose text is what it names: no dot segments, escapes or
/// backslashes.
fn plain_uri(uri: &str) -> bool {
    if uri.contains(['%', '\\']) {
        return false;
    }
    let path = uri.split(['?', '#']).next().unwrap_or("");
    !path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// Iterative glob with backtracking to the last `*` (linear in practice,
/// O(n·m) at worst; patterns and URIs are short).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn trusted(resources: &[&str]) -> TrustedContent {
        TrustedContent {
            upstreams: vec!["docs".into()],
            resources: resources
                .iter()
                .map(|p| UriPattern::new(p).unwrap())
                .collect(),
            prompts: vec!["summarize".into()],
        }
    }

    #[test]
    fn patterns_match_with_stars_and_nothing_else() {
        let t = trusted(&["file:///workspace/docs/*", "docs://handbook/*.md"]);
        for uri in [
            "file:///workspace/docs/a.txt",
            "file:///workspace/docs/deep/b.txt",
            "docs://handbook/intro.md",
            "docs://handbook/x/y.md",
        ] {
            assert!(t.resource("files", uri), "{uri}");
        }
        for uri in [
            "file:///workspace/docs",
            "file:///workspace/doc/a.txt",
            "file:///workspace/docs/../../etc/shadow",
            "file:///workspace/docs/./a.txt",
            "file:///workspace/docs/%2e%2e/etc/shadow",
            "file:///workspace/docs/..\\etc",
            "docs://handbook/intro.txt",
            "FILE:///workspace/docs/a.txt",
            "",
        ] {
            assert!(!t.resource("files", uri), "{uri}");
        }
    }

    #[test]
    fn a_trusted_upstream_trusts_all_its_resources_and_prompts() {
        let t = trusted(&[]);
        assert!(t.resource("docs", "anything://at/all/../x"));
        assert!(t.prompt("docs", "whatever"));
        assert!(t.prompt("other", "summarize"));
        assert!(!t.prompt("other", "summarise"));
        assert!(!TrustedContent::default().resource("docs", "docs://x"));
        assert!(TrustedContent::default().is_empty());
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(UriPattern::new("*"), Err(PatternError::NoScheme));
        assert_eq!(UriPattern::new("/etc/*"), Err(PatternError::NoScheme));
        assert_eq!(UriPattern::new("1x://a"), Err(PatternError::NoScheme));
        assert_eq!(
            UriPattern::new("file:///a/../*"),
            Err(PatternError::Ambiguous)
        );
        assert_eq!(
            UriPattern::new("file:///a%20b"),
            Err(PatternError::Ambiguous)
        );
        assert!(UriPattern::new("docs+x.y-z://*").is_ok());
    }

    #[test]
    fn glob_backtracks() {
        assert!(glob(b"a*b*c", b"aXbYbZc"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a**", b"a"));
        assert!(!glob(b"a*b", b"aXbY"));
        assert!(glob(b"*.md", b"x.md.md"));
    }
}
