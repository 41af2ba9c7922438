# The rules of aegis-policy's `decide()` (policy/src/decide.rs), in Rego, for
# the bench comparison with regorus (bench/README.md, "Policy decisions").
#
# data.manifest is the compiled manifest (bench/src/policy.rs, rego_data):
#   tools, approval_required, domains_exact, ips, exec_bins: objects used as sets
#   domain_suffixes: [".example.com", ...]  (from "*.example.com")
#   sinks: high-risk tool-name prefixes; budgets; constraints
# input (rego_input): tool_name, args, sanitizer_key?, session{...}, and dest,
# the destination host already extracted from args.url/domain/host and
# normalised by the sidecar's destination() ({"domain": d} or {"ip": "..."};
# absent when there is none or it does not parse).
#
# The first rule that matches decides, as in decide():
# undeclared → egress → budgets → loop → taint → exec → approval → allow.
package aegis

import rego.v1

m := data.manifest

deny(reason) := {"outcome": "deny", "reason": reason, "constraints": null}

decision := deny("PERMISSION_UNDECLARED") if {
	not m.tools[input.tool_name]
} else := deny("EGRESS_DENY") if {
	network_tool
	not egress_allowed
} else := deny("BUDGET_EXCEEDED") if {
	budget_exceeded
} else := deny("LOOP_DETECTED") if {
	loop_detected
} else := deny("TAINTED_TO_HIGH_RISK") if {
	input.session.is_tainted
	sink
	not sanitized
} else := deny("EXEC_DENY") if {
	exec_tool
	not exec_allowed
} else := {"outcome": "require_approval", "reason": "APPROVAL_REQUIRED", "constraints": null} if {
	m.approval_required[input.tool_name]
} else := {"outcome": "allow", "reason": "OK", "constraints": m.constraints}

# Network tools: net, net.*, mcp.http*.
network_tool if startswith(input.tool_name, "net")

network_tool if startswith(input.tool_name, "mcp.http")

egress_allowed if m.domains_exact[input.dest.domain]

egress_allowed if {
	some suffix in m.domain_suffixes
	endswith(input.dest.domain, suffix)
}

egress_allowed if m.ips[input.dest.ip]

budget_exceeded if input.session.steps_consumed >= m.budgets.max_steps

budget_exceeded if input.session.tool_calls_consumed >= m.budgets.max_tool_calls

budget_exceeded if input.session.wall_time_ms >= m.budgets.max_wall_time_ms

loop_detected if input.session.loop_violation != ""

sink if {
	some prefix in m.sinks
	startswith(input.tool_name, prefix)
}

sanitized if {
	some key in input.session.sanitized_keys
	key == input.sanitizer_key
}

exec_tool if input.tool_name == "exec"

exec_tool if startswith(input.tool_name, "exec.")

exec_allowed if m.exec_bins[exec_binary]

# args.bin when it is a string, else the first word of args.cmd.
exec_binary := input.args.bin if {
	is_string(input.args.bin)
} else := words[0] if {
	words := [w | some w in split(input.args.cmd, " "); w != ""]
}
