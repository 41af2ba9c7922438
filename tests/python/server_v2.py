"""An MCP server on the official Python SDK 2.x (MCPServer, mcp==2.3.0), Streamable HTTP.

Serves both eras on one endpoint, as the SDK does: requests whose
`MCP-Protocol-Version` header names a handshake-era version (or carry none)
take the initialize/session path (`--stateless`: no Mcp-Session-Id), and
requests at 2026-07-28 take the per-request path whatever the flags.

`--event-store` keeps every event in memory so a client can resume a stream
with GET and `Last-Event-ID`, and the `answer_after_reconnect` tool ends its
POST's stream before answering (`ctx.close_sse_stream()`), so the answer only
arrives on the resumed stream — the official conformance fixture's
`test_reconnection`.

Prints `LISTENING <port>` on stdout once it accepts connections. Besides the
MCP endpoint (`--path`, default /mcp) it serves `GET /stats` (executed tool
calls per tool name, JSON) and `GET /requests` (every HTTP request received
on the MCP endpoint: method, path, headers, body, status).
"""

import itertools

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventMessage, EventStore

import aegis_harness as h

SECRET = "the-secret-is-42"

args = h.server_args(__doc__)
stats = h.Stats()
recorder_ref = [None]

mcp = MCPServer("aegis-test-server-v2", version="2.3.0-test", log_level=args.log_level.upper())


@mcp.tool()
def echo(text: str) -> str:
    """Returns the text it was given."""
    stats.hit("echo")
    return text


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    stats.hit("add")
    return a + b


@mcp.tool()
def read_secret() -> str:
    """Returns a fixed secret string."""
    stats.hit("read_secret")
    return SECRET


@mcp.tool()
def delete_everything() -> str:
    """The dangerous one: a policy should never let this through."""
    stats.hit("delete_everything")
    return "deleted everything"


@mcp.tool()
def write_note(text: str) -> str:
    """Pretends to store a note."""
    stats.hit("write_note")
    return f"noted: {text}"


@mcp.tool()
async def count_to(n: int, ctx: Context) -> str:
    """Reports progress 1..n through the request context, then returns."""
    stats.hit("count_to")
    for i in range(1, n + 1):
        await ctx.report_progress(i, n, f"step {i} of {n}")
    return f"counted to {n}"


async def answer_after_reconnect(text: str, ctx: Context) -> str:
    """Ends this request's event stream, then answers on the resumed one."""
    stats.hit("answer_after_reconnect")
    await ctx.close_sse_stream()
    return f"after reconnecting: {text}"


if args.event_store:  # only then: other tests list the tools above exactly
    mcp.tool()(answer_after_reconnect)


class MemoryEventStore(EventStore):
    """Every event of every stream, in order (a test server's lifetime)."""

    def __init__(self):
        self._ids = itertools.count(1)
        self._events = []  # (event_id, stream_id, message | None)

    async def store_event(self, stream_id, message):
        event_id = str(next(self._ids))
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        at = next((i for i, e in enumerate(self._events) if e[0] == last_event_id), None)
        if at is None:
            return None
        stream_id = self._events[at][1]
        for event_id, stream, message in self._events[at + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


h.stats_routes(mcp, stats, recorder_ref)

if __name__ == "__main__":
    app = h.RequestRecorder(
        mcp.streamable_http_app(
            streamable_http_path=args.path,
            json_response=args.json_response,
            stateless_http=args.stateless,
            host=args.host,
            event_store=MemoryEventStore() if args.event_store else None,
            retry_interval=100 if args.event_store else None,
        )
    )
    recorder_ref[0] = app
    h.serve(app, args)
