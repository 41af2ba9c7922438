"""Shared plumbing for the test servers and clients (no MCP imports here).

Both SDK generations (mcp 1.x and 2.x) bring starlette and uvicorn, so the
servers share: argument parsing, the per-tool call counter served at
`GET /stats`, a recorder of every HTTP request the server received served at
`GET /requests`, binding 127.0.0.1 port 0 and printing `LISTENING <port>`
once uvicorn accepts, and exiting when the parent closes our stdin.
"""

import argparse
import json
import os
import socket
import sys
import threading
from collections import Counter

# The first line a server prints on stdout once it accepts connections.
READY_PREFIX = "LISTENING"


def server_args(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 (the default) picks a free port")
    p.add_argument("--path", default="/mcp", help="the MCP endpoint's path")
    p.add_argument("--json-response", action="store_true", help="answer application/json instead of SSE")
    p.add_argument("--stateless", action="store_true", help="no Mcp-Session-Id: a fresh transport per request")
    p.add_argument(
        "--event-store",
        action="store_true",
        help="keep events in memory so a client can resume a stream (GET + Last-Event-ID)",
    )
    p.add_argument(
        "--parent-watch",
        action="store_true",
        help="exit when stdin reaches end of file (the test harness holds it open)",
    )
    p.add_argument("--log-level", default="warning")
    return p.parse_args()


class Stats:
    """Executed tool calls, per tool name."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = Counter()

    def hit(self, tool):
        with self._lock:
            self._counts[tool] += 1

    def snapshot(self):
        with self._lock:
            return dict(self._counts)


class RequestRecorder:
    """ASGI middleware: remembers each HTTP exchange (request method, path, headers,
    body; response status, headers, body up to 64 KiB as it has been sent so far).

    Requests for the harness's own routes (`/stats`, `/requests`) are not
    recorded. Header names are lowercase (ASGI); a header sent twice appears
    twice.
    """

    OWN_PATHS = ("/stats", "/requests")
    MAX_BODY = 1 << 16

    def __init__(self, app):
        self.app = app
        self._lock = threading.Lock()
        self.requests = []

    def snapshot(self):
        with self._lock:
            return [dict(r) for r in self.requests]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.OWN_PATHS:
            await self.app(scope, receive, send)
            return
        entry = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body": "",
            "status": None,
            "content_type": None,
            "response_headers": [],
            "response_body": "",
        }
        with self._lock:
            self.requests.append(entry)
        chunks = []
        out_chunks = []

        async def recording_receive():
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    entry["body"] = b"".join(chunks).decode("utf-8", "replace")
            return message

        async def recording_send(message):
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                entry["response_headers"] = [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in message.get("headers", [])
                ]
                for k, v in message.get("headers", []):
                    if k.lower() == b"content-type":
                        entry["content_type"] = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                out_chunks.append(message.get("body", b""))
                entry["response_body"] = b"".join(out_chunks)[: self.MAX_BODY].decode("utf-8", "replace")
            await send(message)

        await self.app(scope, recording_receive, recording_send)


def watch_parent():
    """Exit the whole process when stdin closes (the parent died or let go)."""

    def run():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=run, name="parent-watch", daemon=True).start()


def serve(app, args):
    """Serve `app` with uvicorn on a socket bound here; print the ready line once accepting."""
    import uvicorn

    if args.parent_watch:
        watch_parent()

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]

    class ReadyServer(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:
                print(f"{READY_PREFIX} {port}", flush=True)

    config = uvicorn.Config(app, log_level=args.log_level, lifespan="on", access_log=False)
    ReadyServer(config).run(sockets=[sock])


def stats_routes(server, stats, recorder_ref):
    """Registers `GET /stats` and `GET /requests` through the SDK's `custom_route`."""
    from starlette.responses import JSONResponse

    @server.custom_route("/stats", methods=["GET"])
    async def get_stats(_request):
        return JSONResponse(stats.snapshot())

    @server.custom_route("/requests", methods=["GET"])
    async def get_requests(_request):
        recorder = recorder_ref[0]
        return JSONResponse(recorder.snapshot() if recorder is not None else [])


# ---------------------------------------------------------------- clients


def client_args(description, modes=None):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--url", required=True, help="the MCP endpoint, e.g. http://127.0.0.1:8000/mcp")
    p.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="K=V",
        help="an HTTP header sent with every request (repeatable)",
    )
    p.add_argument(
        "--script",
        required=True,
        help="the steps: a JSON list, or the path of a file holding one",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for each request")
    if modes:
        p.add_argument("--mode", choices=modes, default=modes[0])
    args = p.parse_args()
    headers = {}
    for h in args.header:
        k, sep, v = h.partition("=")
        if not sep:
            p.error(f"--header wants K=V, got {h!r}")
        headers[k] = v
    args.headers = headers
    text = args.script
    if not text.lstrip().startswith("[") and os.path.exists(text):
        with open(text, encoding="utf-8") as f:
            text = f.read()
    args.steps = json.loads(text)
    if not isinstance(args.steps, list):
        p.error("--script must be a JSON list of steps")
    return args


def dump_model(model):
    """A pydantic model as its wire JSON (aliases, JSON mode, no unset Nones)."""
    if model is None:
        return None
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


def call_record(op, result_wire):
    """The step record of a tools/call result given as wire JSON."""
    content = result_wire.get("content", [])
    return {
        "op": op,
        "is_error": bool(result_wire.get("isError", False)),
        "text": "".join(c.get("text", "") for c in content if c.get("type") == "text"),
        "content": content,
        "structured": result_wire.get("structuredContent"),
        "meta": result_wire.get("_meta"),
    }


def leaf_exceptions(exc):
    """The exceptions inside (nested) exception groups, or `exc` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaf_exceptions(sub)]
    return [exc]


def describe(exc):
    return "; ".join(f"{type(e).__name__}: {e}" for e in leaf_exceptions(exc))


def error_record(step, exc):
    rec = {"op": step.get("op"), "error": describe(exc)}
    exc = leaf_exceptions(exc)[0]
    if "tool" in step:
        rec["tool"] = step["tool"]
    error = getattr(exc, "error", None)  # McpError / MCPError carry the JSON-RPC error
    code = getattr(error, "code", None)
    if code is None:
        code = getattr(exc, "code", None)
    if isinstance(code, int):
        rec["code"] = code
    return rec


class ProgressRecorder:
    """A progress callback that notes whether each notification came before the result."""

    def __init__(self):
        self.values = []
        self.messages = []
        self.result_seen = False
        self.late = 0

    async def __call__(self, progress, total=None, message=None):
        self.values.append(progress)
        self.messages.append(message)
        if self.result_seen:
            self.late += 1

    def record(self, base):
        base["op"] = "call_progress"
        base["progress"] = self.values
        base["progress_messages"] = self.messages
        base["progress_at_result"] = self.at_result
        base["progress_before_result"] = self.late == 0
        return base

    def mark_result(self):
        self.result_seen = True
        self.at_result = len(self.values)


def emit(output):
    sys.stdout.write(json.dumps(output) + "\n")
    sys.stdout.flush()
