//! `tools/list` answers are filtered so that the agent is not offered tools
//! its manifest does not declare (a call to one is still denied; filtering
//! only keeps the model from trying). Every other member of the result is
//! kept as the upstream sent it (`nextCursor`, `_meta`, 2026-07-28's
//! `resultType` and `ttlMs`), except that `cacheScope: "public"` becomes
//! `"private"`: the filtered list is this agent's manifest's, and must not
//! be served to another caller from a shared cache.

use serde_json::Value;

/// What [`filter`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filtered {
    /// Tools removed.
    pub removed: usize,
    /// `cacheScope` went from `"public"` to `"private"`.
    pub made_private: bool,
}

impl Filtered {
    /// Whether the message must be re-serialised.
    pub fn changed(self) -> bool {
        self.removed > 0 || self.made_private
    }
}

/// Filters a `tools/list` answer by the live manifest of `manifests` (no
/// manifest: every call is refused, so nothing is offered); `true` when it
/// changed.
pub fn filter_live(manifests: &aegis_policy::ManifestStore, message: &mut Value) -> bool {
    let Some(live) = manifests.current() else {
        return filter(message, |_| false).changed();
    };
    filter(message, |name| live.compiled.declares(name)).changed()
}

/// Removes from a `tools/list` JSON-RPC response every tool whose `name`
/// `declared` rejects, and makes a public `cacheScope` private. Anything
/// that is not a successful `tools/list` result (an error, no `tools` array)
/// is left as is; a tool entry without a string name is removed (it cannot
/// be declared).
pub fn filter(response: &mut Value, declared: impl Fn(&str) -> bool) -> Filtered {
    let Some(result) = response.get_mut("result").and_then(Value::as_object_mut) else {
        return Filtered::default();
    };
    let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
        return Filtered::default();
    };
    let before = tools.len();
    tools.retain(|tool| {
        tool.get("name")
            .and_then(Value::as_str)
            .is_some_and(&declared)
    });
    let removed = before - tools.len();
    let mut made_private = false;
    if let Some(scope) = result.get_mut("cacheScope")
        && scope == "public"
    {
        *scope = Value::from("private");
        made_private = true;
    }
    Filtered {
        removed,
        made_private,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn undeclared_tools_are_not_offered() {
        let mut response = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "tools": [
                {"name": "read_file", "inputSchema": {"type": "object"}},
                {"name": "delete_everything", "inputSchema": {"type": "object"}},
                {"inputSchema": {}},
                {"name": "echo", "description": "kept as sent", "annotations": {"readOnlyHint": true}}
            ],
            "nextCursor": "c2"
        }});
        let filtered = filter(&mut response, |name| ["read_file", "echo"].contains(&name));
        assert_eq!(filtered.removed, 2);
        assert!(filtered.changed());
        let names: Vec<&str> = response["result"]["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["read_file", "echo"]);
        assert_eq!(response["result"]["nextCursor"], "c2", "pagination kept");
        assert_eq!(
            response["result"]["tools"][1]["annotations"]["readOnlyHint"],
            true
        );
    }

    #[test]
    fn caching_hints_are_kept_and_a_public_list_becomes_private() {
        let mut response = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "tools": [{"name": "echo"}], "resultType": "complete",
            "ttlMs": 300000, "cacheScope": "public", "_meta": {"k": 1}
        }});
        let filtered = filter(&mut response, |_| true);
        assert_eq!(filtered.removed, 0);
        assert!(filtered.made_private && filtered.changed());
        let result = &response["result"];
        assert_eq!(result["cacheScope"], "private");
        assert_eq!(result["ttlMs"], 300000);
        assert_eq!(result["resultType"], "complete");
        assert_eq!(result["_meta"], json!({"k": 1}));
        let mut private = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "tools": [], "cacheScope": "private", "ttlMs": 0}});
        let before = private.clone();
        assert!(!filter(&mut private, |_| true).changed());
        assert_eq!(private, before);
    }

    #[test]
    fn other_answers_are_left_alone() {
        let mut error = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "x"}});
        let before = error.clone();
        assert!(!filter(&mut error, |_| false).changed());
        assert_eq!(error, before);
        let mut odd = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": "not a list"}});
        assert!(!filter(&mut odd, |_| false).changed());
    }
}
