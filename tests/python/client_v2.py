"""An MCP client on the official Python SDK 2.x (mcp==2.3.0): `mcp.Client` over Streamable HTTP.

`--mode` picks how the client connects:
    handshake  the initialize handshake (Client mode="legacy"), as a 2025-era client
    stateless  the 2026-07-28 per-request protocol, adopted directly (Client mode="2026-07-28"):
               no initialize, no server/discover, no Mcp-Session-Id
    auto       the SDK default: probe `server/discover` at 2026-07-28, fall back to initialize

Runs the steps of `--script` against `--url` and prints one JSON object on stdout:

    {"sdk": "mcp==2.3.0", "mode": ..., "protocol_version": ..., "server_info": {...} | null,
     "steps": [...]}

Steps (a JSON list):
    {"op": "list_tools"}                       -> {"op", "tools": [names]}
    {"op": "call", "tool": T, "args": {...}}   -> {"op", "tool", "is_error", "text",
                                                   "content", "structured", "meta"}
    {"op": "call_progress", "tool": T, "args"} -> the call record plus "progress" (values),
                                                  "progress_at_result", "progress_before_result"
A step that raises records {"op", "error", "code"?} and the script goes on.
If connecting fails, "error" is set at the top level. Exits 0 unless the
harness itself broke (bad arguments, a bug here). The client's response cache
is off, so every step reaches the wire.
"""

import asyncio
from importlib.metadata import version

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types.version import LATEST_MODERN_VERSION

import aegis_harness as h

MODES = {"handshake": "legacy", "stateless": LATEST_MODERN_VERSION, "auto": "auto"}


async def run_step(client, step, timeout):
    op = step.get("op")
    try:
        if op == "list_tools":
            result = await client.list_tools()
            return {"op": op, "tools": [t.name for t in result.tools]}
        if op == "call":
            result = await client.call_tool(step["tool"], step.get("args") or {}, read_timeout_seconds=timeout)
            rec = h.call_record(op, h.dump_model(result))
            rec["tool"] = step["tool"]
            return rec
        if op == "call_progress":
            progress = h.ProgressRecorder()
            result = await client.call_tool(
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
    args = h.client_args(__doc__, modes=list(MODES))
    out = {
        "sdk": f"mcp=={version('mcp')}",
        "mode": args.mode,
        "protocol_version": None,
        "server_info": None,
        "steps": [],
    }
    try:
        async with create_mcp_http_client(headers=args.headers) as http:
            transport = streamable_http_client(args.url, http_client=http)
            client = Client(transport, mode=MODES[args.mode], read_timeout_seconds=args.timeout, cache=None)
            async with client:
                out["protocol_version"] = client.protocol_version
                out["server_info"] = h.dump_model(client.server_info)
                for step in args.steps:
                    out["steps"].append(await run_step(client, step, args.timeout))
    except Exception as exc:
        out["error"] = h.describe(exc)
    h.emit(out)


if __name__ == "__main__":
    asyncio.run(main())
