"""An MCP client on the official Python SDK 1.x (mcp==1.30.0): Streamable HTTP + ClientSession.

Runs the steps of `--script` against `--url` after the initialize handshake and
prints one JSON object on stdout:

    {"sdk": "mcp==1.30.0", "protocol_version": ..., "server_info": {...},
     "session_id": ..., "steps": [...]}

Steps (a JSON list):
    {"op": "list_tools"}                       -> {"op", "tools": [names]}
    {"op": "call", "tool": T, "args": {...}}   -> {"op", "tool", "is_error", "text",
                                                   "content", "structured", "meta"}
    {"op": "call_progress", "tool": T, "args"} -> the call record plus "progress" (values),
                                                  "progress_at_result", "progress_before_result"
A step that raises records {"op", "error", "code"?} and the script goes on.
If connecting fails, "error" is set at the top level. Exits 0 unless the
harness itself broke (bad arguments, a bug here).
"""

import asyncio
from datetime import timedelta
from importlib.metadata import version

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

import aegis_harness as h


async def run_step(session, step, timeout):
    op = step.get("op")
    try:
        if op == "list_tools":
            result = await session.list_tools()
            return {"op": op, "tools": [t.name for t in result.tools]}
        if op == "call":
            result = await session.call_tool(
                step["tool"], step.get("args") or {}, read_timeout_seconds=timeout
            )
            rec = h.call_record(op, h.dump_model(result))
            rec["tool"] = step["tool"]
            return rec
        if op == "call_progress":
            progress = h.ProgressRecorder()
            result = await session.call_tool(
                step["tool"],
                step.get("args") or {},
                read_timeout_seconds=timeout,
                progress_callback=progress,
            )
            progress.mark_result()
            rec = h.call_record(op, h.dump_model(result))
            rec["tool"] = step["tool"]
            return progress.record(rec)
        return {"op": op, "error": f"unknown op {op!r}"}
    except Exception as exc:  # the record is the test's evidence
        return h.error_record(step, exc)


async def main():
    args = h.client_args(__doc__)
    timeout = timedelta(seconds=args.timeout)
    out = {"sdk": f"mcp=={version('mcp')}", "protocol_version": None, "server_info": None, "steps": []}
    try:
        async with create_mcp_http_client(headers=args.headers) as http:
            async with streamable_http_client(args.url, http_client=http) as (read, write, get_session_id):
                async with ClientSession(read, write, read_timeout_seconds=timeout) as session:
                    init = await session.initialize()
                    out["protocol_version"] = init.protocolVersion
                    out["server_info"] = h.dump_model(init.serverInfo)
                    out["session_id"] = get_session_id()
                    for step in args.steps:
                        out["steps"].append(await run_step(session, step, timeout))
    except Exception as exc:
        out["error"] = h.describe(exc)
    h.emit(out)


if __name__ == "__main__":
    asyncio.run(main())
