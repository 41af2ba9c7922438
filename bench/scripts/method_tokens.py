"""Made-up HTTP method tokens against the MCP port: RSS and /metrics size before and after.

usage: python3 method_tokens.py MCP_PORT ADMIN_PORT SIDECAR_PID TOTAL

Sends TOTAL requests, each with a random 8-letter method token, over four
keep-alive connections (after 2,000 warm-up requests and one scrape, so the
series every request creates once already exist), then prints the sidecar's
VmRSS and the /metrics body size before and after. Each made-up method must
map to the one `method="other"` series (issue 13, item 9).
"""
import socket, sys, random, string, threading, re, urllib.request, os, time
port = int(sys.argv[1]); admin = int(sys.argv[2]); pid = int(sys.argv[3]); total = int(sys.argv[4])
def rss():
    for l in open(f"/proc/{pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
def metrics_size():
    return len(urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics").read())
def worker(n, seed):
    r = random.Random(seed)
    s = socket.create_connection(("127.0.0.1", port)); f = s.makefile("rb")
    for i in range(n):
        m = "".join(r.choice(string.ascii_uppercase) for _ in range(8))
        s.sendall(f"{m} /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n".encode())
        line = f.readline(); length = 0
        while True:
            h = f.readline()
            if h in (b"\r\n", b""): break
            if h.lower().startswith(b"content-length:"): length = int(h.split(b":")[1])
        f.read(length)
# warm up
worker(2000, 0)
metrics_size()
before = (rss(), metrics_size())
t = time.time()
threads = [threading.Thread(target=worker, args=(total // 4, k + 1)) for k in range(4)]
[x.start() for x in threads]; [x.join() for x in threads]
after = (rss(), metrics_size())
print(f"requests={total} secs={time.time()-t:.1f} rss_kb before={before[0]} after={after[0]} ({after[0]/before[0]:.3f}x) metrics_bytes before={before[1]} after={after[1]} ({after[1]/before[1]:.3f}x)")
