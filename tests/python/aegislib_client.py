"""aegislib 0.2.3 (PyPI `aegislib`, `import aegis`) as a real client of the
sidecar's decision API, driven by a JSON script of steps.

    python aegislib_client.py --url http://127.0.0.1:PORT --api-key KEY --script '[...]'

Steps (each answered by one entry of the report's "steps"):

- {"op": "decide", "agent_id", "tool", "params", "session"?}
  -> {"response": DecisionResponse.model_dump()}
- {"op": "batch", "requests": [{"agent_id", "tool", "params"}, ...]}
  -> {"responses": [...]}
- {"op": "status", "decision_id"} -> {"response": DecisionStatusResponse.model_dump()}
- {"op": "guard", "agent_id", "tool", "params", "fail_mode"?}
  calls the local tool function `tool` under @aegis_guard
  -> {"returned": ..., "error": "ForbiddenError: ...", "ran": [{"tool", "kwargs"}]}
- {"op": "approval", "agent_id", "tool", "params"}: like guard; the call
  comes back pending; the script prints "PENDING" and waits (bounded) for
  aegislib's background poller to run the tool once an operator decided
  -> {"returned": <the pending text>, "callback": {"result", "error"}, "ran": [...]}

"ran" lists the tool functions that actually executed during the step. The
report is printed as one line, "REPORT <json>". Exits when the parent closes
stdin (nothing outlives a killed test).
"""

import argparse
import json
import os
import sys
import threading

from aegis import AegisConfig, DecisionClient, aegis_guard
from aegis.types import DecisionRequest, ToolCall

RAN = []
RAN_LOCK = threading.Lock()


def ran(tool, **kwargs):
    with RAN_LOCK:
        RAN.append({"tool": tool, "kwargs": kwargs})
    return {"tool": tool, "ran_with": kwargs}


# The local tools the guarded steps call: explicit signatures, as aegislib
# binds a call's arguments to its function's parameters.
def read_file(path):
    return ran("read_file", path=path)


def write_file(path, content):
    return ran("write_file", path=path, content=content)


def delete_file(path):
    return ran("delete_file", path=path)


def send_email(to, body):
    return ran("send_email", to=to, body=body)


TOOLS = {f.__name__: f for f in (read_file, write_file, delete_file, send_email)}


def watch_parent():
    """Exit when the parent closes our stdin."""
    sys.stdin.read()
    os._exit(0)


def error_text(e):
    return f"{type(e).__name__}: {e}"


def run_guard(client, step, callback=None):
    start = len(RAN)
    guarded = aegis_guard(
        client,
        step["agent_id"],
        tool_name=step["tool"],
        approval_callback=callback,
        fail_mode=step.get("fail_mode"),
    )(TOOLS[step["tool"]])
    out = {"op": step["op"]}
    try:
        out["returned"] = guarded(**step["params"])
    except Exception as e:  # the client's own answer to a refusal
        out["error"] = error_text(e)
    out["ran"] = RAN[start:]
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--url", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--script", required=True)
    p.add_argument("--wait", type=float, default=90.0, help="longest wait for an approval's poller")
    args = p.parse_args()
    threading.Thread(target=watch_parent, daemon=True).start()

    config = AegisConfig(
        api_key=args.api_key,
        base_url=args.url,
        timeout_s=30.0,
        retries=0,
        approval_polling_initial_delay_s=0.5,
        approval_polling_max_delay_s=5.0,
        approval_polling_max_attempts=200,
        install_signal_handlers=False,
    )
    client = DecisionClient(config)
    steps = []
    for step in json.loads(args.script):
        op = step["op"]
        try:
            if op == "decide":
                response = client.decide(
                    step["agent_id"], step["tool"], step["params"], session=step.get("session")
                )
                steps.append({"op": op, "response": response.model_dump()})
            elif op == "batch":
                requests = [
                    DecisionRequest(
                        agent_id=r["agent_id"], tool=ToolCall(name=r["tool"], params=r["params"])
                    )
                    for r in step["requests"]
                ]
                responses = client.decide_batch(requests)
                steps.append({"op": op, "responses": [r.model_dump() for r in responses]})
            elif op == "status":
                status = client.get_decision_status(step["decision_id"])
                steps.append({"op": op, "response": status.model_dump()})
            elif op == "guard":
                steps.append(run_guard(client, step))
            elif op == "approval":
                done = threading.Event()
                outcome = {}

                def callback(result, error, outcome=outcome, done=done):
                    outcome["result"] = result
                    outcome["error"] = None if error is None else error_text(error)
                    done.set()

                start = len(RAN)
                out = run_guard(client, step, callback)
                print("PENDING", flush=True)
                out["finished"] = done.wait(args.wait)
                out["callback"] = outcome
                out["ran"] = RAN[start:]
                steps.append(out)
            else:
                steps.append({"op": op, "error": f"unknown op {op!r}"})
        except Exception as e:
            steps.append({"op": op, "error": error_text(e)})
    print("REPORT " + json.dumps({"steps": steps}, default=str), flush=True)


if __name__ == "__main__":
    main()
