//! `tools/list` answers are filtered so that the agent is not offered tools
//! its manifest does not declare (a call to one is still denied; filtering
//! only keeps the model from trying).

use serde_json::Value;

/// Removes from a `tools/list` JSON-RPC response every tool whose `name`
/// `declared` rejects; returns how many were removed. Anything that is not a
/// successful `tools/list` result (an error, no `tools` array) is left as is;
/// a tool entry without a string name is removed (it cannot be declared).
pub fn filter(response: &mut Value, declared: impl Fn(&str) -> bool) -> usize {
    let Some(tools) = response
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Value::as_array_mut)
    else {
        return 0;
    };
    let before = tools.len();
    tools.retain(|tool| {
        tool.get("name")
            .and_then(Value::as_str)
            .is_some_and(&declared)
    });
    before - tools.len()
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
        let removed = filter(&mut response, |name| ["read_file", "echo"].contains(&name));
        assert_eq!(removed, 2);
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
    fn other_answers_are_left_alone() {
        let mut error = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "x"}});
        let before = error.clone();
        assert_eq!(filter(&mut error, |_| false), 0);
        assert_eq!(error, before);
        let mut odd = json!({"jsonrpc": "2.0", "id": 1, "result": {"tools": "not a list"}});
        assert_eq!(filter(&mut odd, |_| false), 0);
    }
}
