"""aegis-governance 1.4.2 (PyPI `aegis-governance`, `import aegis`) as a real
client of the sidecar's governance API, and its stdio MCP server
(`aegis-mcp-server`) driven by the MCP SDK's stdio client, from a JSON script.

    AEGIS_API_KEY=... AEGIS_BASE_URL=http://127.0.0.1:PORT \\
        python governance_client.py --script '[...]'

The client reads its key and URL from AEGIS_API_KEY / AEGIS_BASE_URL, as
`@aegis_gate` and the MCP server do. Steps (each one entry of "steps"):

- {"op": "evaluate", "args": {...}} -> {"decision": Decision as a dict}
  (args go to Aegis.evaluate, idempotency_key included)
- {"op": "gate", "args": {...}, "fail_on_halt"?: true} -> {"ran": bool,
  "error"?} for a function under @aegis_gate
- {"op": "risk_check", "args": {...}} -> {"result": ...}
- {"op": "health"} -> {"result": ...}
- {"op": "list_decisions", "limit"?} -> {"decisions": [...]}
- {"op": "get_decision", "decision_id"} -> {"decision": ...}
- {"op": "mcp", "calls": [{"tool", "args"}]} -> {"tools": [names],
  "results": [{"tool", "is_error", "text"}]}: starts aegis-mcp-server over
  stdio, lists its tools and calls each

A step that raises reports "error": "<ExceptionType>: <message>". The report
is one line: "REPORT <json>". Exits when the parent closes stdin.
"""

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import sys
import threading

from aegis import Aegis, aegis_gate


def watch_parent():
    sys.stdin.read()
    os._exit(0)


def as_dict(obj):
    if isinstance(obj, list):
        return [as_dict(o) for o in obj]
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return obj


def error_text(e):
    return f"{type(e).__name__}: {e}"


async def run_mcp(calls):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    command = shutil.which("aegis-mcp-server") or os.path.join(
        os.path.dirname(sys.executable), "aegis-mcp-server"
    )
    params = StdioServerParameters(
        command=command,
        args=[],
        env={
            "AEGIS_API_KEY": os.environ["AEGIS_API_KEY"],
            "AEGIS_BASE_URL": os.environ["AEGIS_BASE_URL"],
            "PATH": os.environ.get("PATH", ""),
        },
    )
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            results = []
            for call in calls:
                result = await session.call_tool(call["tool"], call.get("args", {}))
                text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
                results.append({"tool": call["tool"], "is_error": bool(result.isError), "text": text})
            return {"tools": sorted(t.name for t in tools.tools), "results": results}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--script", required=True)
    args = p.parse_args()
    threading.Thread(target=watch_parent, daemon=True).start()

    client = Aegis(max_retries=0)
    steps = []
    for step in json.loads(args.script):
        op = step["op"]
        out = {"op": op}
        try:
            if op == "evaluate":
                decision = client.evaluate(**step["args"])
                out["decision"] = as_dict(decision)
            elif op == "gate":
                ran = []

                @aegis_gate(fail_on_halt=step.get("fail_on_halt", True), **step["args"])
                def guarded():
                    ran.append(True)
                    return "done"

                try:
                    guarded()
                finally:
                    out["ran"] = bool(ran)
            elif op == "risk_check":
                out["result"] = as_dict(client.risk_check(**step["args"]))
            elif op == "health":
                out["result"] = as_dict(client.health())
            elif op == "list_decisions":
                out["decisions"] = as_dict(client.list_decisions(limit=step.get("limit", 50)))
            elif op == "get_decision":
                out["decision"] = as_dict(client.get_decision(step["decision_id"]))
            elif op == "mcp":
                out.update(asyncio.run(run_mcp(step["calls"])))
            else:
                out["error"] = f"unknown op {op!r}"
        except Exception as e:
            out["error"] = error_text(e)
        steps.append(out)
    print("REPORT " + json.dumps({"steps": steps}, default=str), flush=True)


if __name__ == "__main__":
    main()
