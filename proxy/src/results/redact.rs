//! The patterns `keep: redact` applies to a tool result's text, and the one
//! pass that replaces every match with [`REDACTED`].
//!
//! All patterns run together in a single leftmost-first search (one
//! `regex_automata::meta::Regex` over many patterns): where two could match
//! at the same place, the earlier in the list wins, and a region is replaced
//! once. The work is linear in the text's length (Rust regex syntax has no
//! backreferences or lookaround). A pattern that can match the empty string
//! is refused: it would win, empty, where a real pattern matches, and hide it.
//!
//! The text searched is the result's JSON as the ledger would keep it (or
//! the raw first bytes of an answer too large to hold), so the built-in
//! patterns stop at JSON's `"` and `\` (the escape before `\n` inside a
//! string) as well as at whitespace.

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use regex_automata::meta::Regex;
use regex_syntax::hir::Hir;

/// What every match is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The built-in `mcp.results.redact_patterns`: a name (for the docs and the
/// tests) and the pattern. Over-redaction is the safe side here: a word that
/// happens to look like a secret loses a few characters of the record, never
/// of the agent's answer.
pub const DEFAULT_REDACT_PATTERNS: &[(&str, &str)] = &[
    // A PEM private key block (RSA, EC, OPENSSH, ENCRYPTED, PKCS#8), to its
    // END line, or to the end of the text when the text was cut before it.
    (
        "pem_private_key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)",
    ),
    // An AWS access key id (long-term AKIA, temporary ASIA, and the other
    // unique-id prefixes).
    (
        "aws_access_key_id",
        r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}",
    ),
    // A JWT: base64url header and claims, both JSON objects (`eyJ` is `{"`),
    // and the signature (empty for `alg: none`).
    (
        "jwt",
        r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
    ),
    // `Bearer <token>`, as in an Authorization header.
    ("bearer_token", r"(?i)bearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    // GitHub tokens: classic (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`) and
    // fine-grained (`github_pat_`).
    (
        "github_token",
        r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}",
    ),
    // `key=value` / `key: value` / `"key": "value"` where the key says
    // password, passwd, secret, token, api_key, access_key, private_key or
    // credential(s), in any case. The match starts at that word, so
    // `DB_PASSWORD=x` is kept as `DB_[REDACTED]`; the value runs to
    // whitespace, a quote, `\`, `,`, `;` or `&`.
    (
        "secret_assignment",
        r#"(?i)(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)[A-Za-z0-9_.-]*(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?[^\s"'\\,;&]+"#,
    ),
];

/// The compiled patterns, ready to redact a text. Compares (and prints) as
/// its pattern list.
#[derive(Clone)]
pub struct Redactor {
    patterns: Vec<String>,
    /// `None` without patterns: nothing is ever redacted.
    regex: Option<Regex>,
}

/// A pattern that cannot be used: its index in the list (`None` for the list
/// as a whole) and why, in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub index: Option<usize>,
    pub message: String,
}

static BUILTIN: LazyLock<Redactor> = LazyLock::new(|| {
    let patterns: Vec<String> = DEFAULT_REDACT_PATTERNS
        .iter()
        .map(|(_, pattern)| (*pattern).to_owned())
        .collect();
    // A unit test compiles the same list.
    Redactor::new(&patterns).expect("the built-in redaction patterns compile")
});

impl Redactor {
    /// The built-in patterns ([`DEFAULT_REDACT_PATTERNS`]).
    pub fn builtin() -> Redactor {
        BUILTIN.clone()
    }

    /// Compiles `patterns`; every unusable one is reported.
    pub fn new(patterns: &[String]) -> Result<Redactor, Vec<PatternError>> {
        let mut hirs = Vec::with_capacity(patterns.len());
        let mut errors = Vec::new();
        for (index, pattern) in patterns.iter().enumerate() {
            match parse(pattern) {
                Ok(hir) => hirs.push(hir),
                Err(message) => errors.push(PatternError {
                    index: Some(index),
                    message,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let regex = if hirs.is_empty() {
            None
        } else {
            let built = Regex::builder().build_many_from_hir(&hirs).map_err(|e| {
                vec![PatternError {
                    index: e.pattern().map(|id| id.as_usize()),
                    message: format!("cannot compile: {e}"),
                }]
            })?;
            Some(built)
        };
        Ok(Redactor {
            patterns: patterns.to_vec(),
            regex,
        })
    }

    /// The patterns, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// `text` with every match replaced by [`REDACTED`], and how many were.
    /// Borrowed when nothing matched.
    pub fn redact<'t>(&self, text: &'t str) -> (Cow<'t, str>, usize) {
        let Some(regex) = &self.regex else {
            return (Cow::Borrowed(text), 0);
        };
        let mut out = String::new();
        let mut last = 0;
        let mut count = 0;
        for found in regex.find_iter(text) {
            // Patterns are checked to match valid UTF-8 only, so a match
            // lies on character boundaries; widened if it ever did not.
            let start = floor_boundary(text, found.start()).max(last);
            let end = ceil_boundary(text, found.end());
            if end <= start {
                continue;
            }
            out.push_str(&text[last..start]);
            out.push_str(REDACTED);
            last = end;
            count += 1;
        }
        if count == 0 {
            return (Cow::Borrowed(text), 0);
        }
        out.push_str(&text[last..]);
        (Cow::Owned(out), count)
    }
}

impl PartialEq for Redactor {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for Redactor {}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("patterns", &self.patterns)
            .finish_non_exhaustive()
    }
}

/// One pattern, parsed as `regex` would, and refused if it can match the
/// empty string.
fn parse(pattern: &str) -> Result<Hir, String> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .map_err(|e| syntax_error(&e))?;
    if hir.properties().minimum_len() == Some(0) {
        return Err(format!(
            "{pattern:?} can match the empty string; a redaction pattern must match at least one character"
        ));
    }
    Ok(hir)
}

/// A syntax error in one line: what is wrong and where (the library's own
/// message spans several lines, with the pattern and a caret).
fn syntax_error(e: &regex_syntax::Error) -> String {
    let (what, at) = match e {
        regex_syntax::Error::Parse(e) => (e.kind().to_string(), e.span().start.offset),
        regex_syntax::Error::Translate(e) => (e.kind().to_string(), e.span().start.offset),
        other => (other.to_string().replace('\n', " "), 0),
    };
    format!("not a valid regular expression: {what} (at byte {at})")
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}
