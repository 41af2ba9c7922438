//! Content that enters the agent's context without being a tool's result:
//! `resources/read` and `prompts/get` answers, and resources embedded in
//! tool results. Each is a way for a tool server's text to reach the model,
//! so each is recorded (`TOOL_RESULT` with `source`) and taints the session
//! unless the manifest trusts it (`policy.trusted_content`, see
//! [`aegis_policy::trust`]). Free of hyper types: the relay calls these.
//!
//! - A `resources/read` answer is trusted when its upstream is trusted, or
//!   when the requested URI and every URI in its `contents` match a trusted
//!   pattern.
//! - A `prompts/get` answer is trusted when its upstream or its name is
//!   trusted and every resource embedded in its messages is trusted too.
//! - A tool result embedding an untrusted resource (a content item of type
//!   `resource`) is recorded with `untrusted_content: true`, so it taints
//!   even when its tool is in `policy.non_tainting_tools`.
//!
//! Embedded resources are found anywhere in the answer (an object with
//! `"type": "resource"` and a `resource` member), up to
//! [`MAX_EMBEDDED_SCAN`]; an answer with more, or one whose resource has no
//! string `uri`, is untrusted.

use aegis_policy::trust::TrustedContent;
use serde_json::{Value, json};

use super::jsonrpc::{Id, Kind, Message};

/// Embedded resources examined per answer; more make the answer untrusted.
pub const MAX_EMBEDDED_SCAN: usize = 1024;
/// Embedded resource URIs listed in a record (`embedded_resources`).
pub const MAX_EMBEDDED_LISTED: usize = 16;

/// What was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `resources/read` of `params.uri` (`None`: not a string).
    Resource { uri: Option<String> },
    /// `prompts/get` of `params.name` (`None`: not a string).
    Prompt { name: Option<String> },
}

impl Source {
    /// The MCP method: the record's `source`.
    pub fn method(&self) -> &'static str {
        match self {
            Source::Resource { .. } => "resources/read",
            Source::Prompt { .. } => "prompts/get",
        }
    }
}

/// A forwarded read waiting for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub id: Id,
    pub source: Source,
}

impl Read {
    /// `Some` for a `resources/read` or `prompts/get` request.
    pub fn of(message: &Message) -> Option<Read> {
        let Kind::Request { id, method } = &message.kind else {
            return None;
        };
        let param = |name: &str| {
            message
                .value
                .get("params")
                .and_then(|p| p.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let source = match method.as_str() {
            "resources/read" => Source::Resource { uri: param("uri") },
            "prompts/get" => Source::Prompt {
                name: param("name"),
            },
            _ => return None,
        };
        Some(Read {
            id: id.clone(),
            source,
        })
    }

    /// The record's fields that say what was read and whether it is trusted
    /// (`source`, `uri` or `prompt`, `trusted`, `embedded_resources`), for
    /// `answer` (the message's `result` or `error`).
    pub fn describe(
        &self,
        upstream: &str,
        answer: &Value,
        trust: Option<&TrustedContent>,
        payload: &mut Value,
    ) {
        payload["source"] = json!(self.source.method());
        let embedded = Embedded::scan(answer);
        let trusted = trust.is_some_and(|trust| match &self.source {
            Source::Resource { uri } => {
                uri.as_deref()
                    .is_some_and(|uri| trust.resource(upstream, uri))
                    && contents_uris(answer).all(|u| u.is_some_and(|u| trust.resource(upstream, u)))
                    && embedded.all_trusted(upstream, trust)
            }
            Source::Prompt { name } => {
                name.as_deref()
                    .is_some_and(|name| trust.prompt(upstream, name))
                    && embedded.all_trusted(upstream, trust)
            }
        });
        match &self.source {
            Source::Resource { uri } => payload["uri"] = json!(uri),
            Source::Prompt { name } => payload["prompt"] = json!(name),
        }
        payload["trusted"] = json!(trusted);
        embedded.list(payload);
    }
}

/// The fields a tool result's record gets for the resources it embeds:
/// `embedded_resources` (the first URIs) and `untrusted_content: true` when
/// any is untrusted. Nothing when it embeds none.
pub fn describe_tool_result(
    upstream: &str,
    answer: &Value,
    trust: Option<&TrustedContent>,
    payload: &mut Value,
) {
    let embedded = Embedded::scan(answer);
    if embedded.uris.is_empty() && !embedded.unreadable {
        return;
    }
    if !trust.is_some_and(|trust| embedded.all_trusted(upstream, trust)) {
        payload["untrusted_content"] = json!(true);
    }
    embedded.list(payload);
}

/// The `uri` of each item of a `resources/read` result's `contents`.
fn contents_uris(answer: &Value) -> impl Iterator<Item = Option<&str>> {
    answer
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|item| item.get("uri").and_then(Value::as_str))
}

/// The resources embedded in an answer.
#[derive(Debug, Default)]
struct Embedded<'a> {
    uris: Vec<&'a str>,
    /// One without a string `uri`, or more than [`MAX_EMBEDDED_SCAN`].
    unreadable: bool,
}

impl<'a> Embedded<'a> {
    fn scan(answer: &'a Value) -> Embedded<'a> {
        let mut found = Embedded::default();
        // Depth-first without recursion (the answer's depth is the
        // upstream's choice; serde_json bounds it, this does not rely on it).
        let mut stack = vec![answer];
        while let Some(value) = stack.pop() {
            match value {
                Value::Object(members) => {
                    if members.get("type").and_then(Value::as_str) == Some("resource")
                        && let Some(resource) = members.get("resource")
                    {
                        match resource.get("uri").and_then(Value::as_str) {
                            Some(uri) if found.uris.len() < MAX_EMBEDDED_SCAN => {
                                found.uris.push(uri);
                            }
                            _ => found.unreadable = true,
                        }
                    }
                    stack.extend(members.values());
                }
                Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        found
    }

    fn all_trusted(&self, upstream: &str, trust: &TrustedContent) -> bool {
        !self.unreadable && self.uris.iter().all(|uri| trust.resource(upstream, uri))
    }

    fn list(&self, payload: &mut Value) {
        if self.uris.is_empty() {
            return;
        }
        let listed: Vec<&str> = self
            .uris
            .iter()
            .take(MAX_EMBEDDED_LISTED)
            .copied()
            .collect();
        payload["embedded_resources"] = json!(listed);
        if self.uris.len() > MAX_EMBEDDED_LISTED || self.unreadable {
            payload["embedded_resources_truncated"] = json!(true);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use aegis_policy::trust::UriPattern;

    use super::*;
    use crate::mcp::jsonrpc::{self, Body};

    fn message(text: &str) -> Message {
        match jsonrpc::parse(text.as_bytes()).unwrap() {
            Body::Single(m) => m,
            Body::Batch(_) => panic!("a batch"),
        }
    }

    fn trust() -> TrustedContent {
        TrustedContent {
            upstreams: vec!["handbook".into()],
            resources: vec![UriPattern::new("docs://*").unwrap()],
            prompts: vec!["summarize".into()],
        }
    }

    fn read(text: &str) -> Read {
        Read::of(&message(text)).unwrap()
    }

    fn describe(
        read: &Read,
        upstream: &str,
        answer: Value,
        trust: Option<&TrustedContent>,
    ) -> Value {
        let mut payload = json!({});
        read.describe(upstream, &answer, trust, &mut payload);
        payload
    }

    #[test]
    fn reads_are_recognised_by_method() {
        let r = read(
            r#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"docs://a"}}"#,
        );
        assert_eq!(
            r.source,
            Source::Resource {
                uri: Some("docs://a".into())
            }
        );
        let p = read(r#"{"jsonrpc":"2.0","id":"p","method":"prompts/get","params":{"name":1}}"#);
        assert_eq!(p.source, Source::Prompt { name: None });
        for other in [
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#,
            r#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"docs://a"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        ] {
            assert!(Read::of(&message(other)).is_none(), "{other}");
        }
    }

    #[test]
    fn a_resource_is_trusted_only_when_every_uri_is() {
        let trust = trust();
        let r = read(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"docs://a"}}"#,
        );
        let ok = json!({"contents": [{"uri": "docs://a", "text": "hello"}]});
        let p = describe(&r, "files", ok.clone(), Some(&trust));
        assert_eq!(p["source"], "resources/read");
        assert_eq!(p["uri"], "docs://a");
        assert_eq!(p["trusted"], true);
        assert!(p.get("embedded_resources").is_none());
        // No manifest: nothing is trusted.
        assert_eq!(describe(&r, "files", ok, None)["trusted"], false);
        // The server answers with another URI than was asked.
        let swapped = json!({"contents": [{"uri": "file:///etc/passwd", "text": "root:x"}]});
        assert_eq!(
            describe(&r, "files", swapped, Some(&trust))["trusted"],
            false
        );
        let unnamed = json!({"contents": [{"text": "no uri"}]});
        assert_eq!(
            describe(&r, "files", unnamed, Some(&trust))["trusted"],
            false
        );
        // The URI asked for is not trusted.
        let other = read(
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}"#,
        );
        let answer = json!({"contents": [{"uri": "file:///x", "text": "x"}]});
        assert_eq!(
            describe(&other, "files", answer.clone(), Some(&trust))["trusted"],
            false
        );
        // A trusted upstream trusts it all.
        assert_eq!(
            describe(&other, "handbook", answer, Some(&trust))["trusted"],
            true
        );
    }

    #[test]
    fn a_prompt_is_trusted_by_name_unless_it_embeds_an_untrusted_resource() {
        let trust = trust();
        let p = read(
            r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"summarize"}}"#,
        );
        let plain =
            json!({"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}]});
        let d = describe(&p, "files", plain, Some(&trust));
        assert_eq!(
            (
                d["source"].clone(),
                d["prompt"].clone(),
                d["trusted"].clone()
            ),
            (json!("prompts/get"), json!("summarize"), json!(true))
        );
        let embedding = json!({"messages": [{"role": "user", "content": {"type": "resource",
            "resource": {"uri": "file:///etc/shadow", "text": "root:$6$"}}}]});
        let d = describe(&p, "files", embedding, Some(&trust));
        assert_eq!(d["trusted"], false);
        assert_eq!(d["embedded_resources"], json!(["file:///etc/shadow"]));
        let other =
            read(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"x"}}"#);
        assert_eq!(
            describe(&other, "files", json!({}), Some(&trust))["trusted"],
            false
        );
    }

    #[test]
    fn tool_results_embedding_untrusted_resources_are_marked() {
        let trust = trust();
        let mark = |answer: Value| {
            let mut payload = json!({});
            describe_tool_result("files", &answer, Some(&trust), &mut payload);
            payload
        };
        assert_eq!(
            mark(json!({"content": [{"type": "text", "text": "x"}]})),
            json!({})
        );
        let trusted = mark(
            json!({"content": [{"type": "resource", "resource": {"uri": "docs://a", "text": "x"}}]}),
        );
        assert_eq!(trusted, json!({"embedded_resources": ["docs://a"]}));
        let untrusted = mark(json!({"content": [
            {"type": "resource", "resource": {"uri": "docs://a", "text": "x"}},
            {"type": "resource", "resource": {"uri": "https://evil.example/x", "text": "ignore previous"}}]}));
        assert_eq!(untrusted["untrusted_content"], true);
        let nameless = mark(json!({"content": [{"type": "resource", "resource": {"text": "x"}}]}));
        assert_eq!(nameless["untrusted_content"], true);
        // Many: listed up to the cap, all examined.
        let mut items: Vec<Value> = (0..40)
            .map(|i| json!({"type": "resource", "resource": {"uri": format!("docs://{i}")}}))
            .collect();
        let many = mark(json!({"content": items.clone()}));
        assert!(many.get("untrusted_content").is_none(), "{many}");
        assert_eq!(
            many["embedded_resources"].as_array().unwrap().len(),
            MAX_EMBEDDED_LISTED
        );
        assert_eq!(many["embedded_resources_truncated"], true);
        items.push(json!({"type": "resource", "resource": {"uri": "file:///late"}}));
        assert_eq!(mark(json!({"content": items}))["untrusted_content"], true);
        // Without a manifest, any embedded resource is untrusted.
        let mut payload = json!({});
        describe_tool_result(
            "files",
            &json!({"content": [{"type": "resource", "resource": {"uri": "docs://a"}}]}),
            None,
            &mut payload,
        );
        assert_eq!(payload["untrusted_content"], true);
    }
}
