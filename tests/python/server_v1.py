"""An MCP server on the official Python SDK 1.x (FastMCP, mcp==1.30.0), Streamable HTTP.

Prints `LISTENING <port>` on stdout once it accepts connections. Besides the
MCP endpoint (`--path`, default /mcp) it serves `GET /stats` (executed tool
calls per tool name, JSON) and `GET /requests` (every HTTP request received
on the MCP endpoint: method, path, headers, body, status).
"""

from mcp.server.fastmcp import Context, FastMCP

import aegis_harness as h

SECRET = "the-secret-is-42"

args = h.server_args(__doc__)
stats = h.Stats()
recorder_ref = [None]

mcp = FastMCP(
    "aegis-test-server-v1",
    host=args.host,
    port=args.port,
    streamable_http_path=args.path,
    json_response=args.json_response,
    stateless_http=args.stateless,
    log_level=args.log_level.upper(),
)


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


h.stats_routes(mcp, stats, recorder_ref)

if __name__ == "__main__":
    app = h.RequestRecorder(mcp.streamable_http_app())
    recorder_ref[0] = app
    h.serve(app, args)
