"""CPU of the sidecar's file-watch threads while calls write the ledger.

usage: python3 watch_cpu.py MCP_PORT SIDECAR_PID CALLS

Initializes one MCP session at /mcp/tools, sends CALLS `echo` calls one
after another, and prints the CPU ticks (1/100 s) each thread named like a
watcher (watch, notify, inotify, manifest) used meanwhile, and the whole
process's. Run it with the manifest in the ledger's directory (issue 14,
item 5).
"""
import json, os, socket, sys, http.client
port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def threads():
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            st = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            out[(tid, comm)] = int(st[11]) + int(st[12])
        except OSError:
            pass
    return out
c = http.client.HTTPConnection("127.0.0.1", port)
h = {"content-type": "application/json", "accept": "application/json, text/event-stream", "host": f"127.0.0.1:{port}"}
c.request("POST", "/mcp/tools", json.dumps({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}), h)
r = c.getresponse(); r.read(); h["mcp-session-id"] = r.getheader("mcp-session-id")
before = threads()
for i in range(n):
    c.request("POST", "/mcp/tools", json.dumps({"jsonrpc":"2.0","id":i+1,"method":"tools/call","params":{"name":"echo","arguments":{"text":f"{i}"}}}), h)
    r = c.getresponse(); body = r.read()
after = threads()
total = sum(after.values()) - sum(v for k, v in before.items() if k in after)
for k in sorted(after):
    if any(w in k[1].lower() for w in ("watch", "notify", "inotify", "manifest")):
        print(k[1], "ticks", after[k] - before.get(k, 0))
print("calls", n, "all threads ticks", total)
