#!/usr/bin/env bash
# A walk through the Aegis /v1 event API of a running sidecar, with curl.
#
#   cargo run -p aegis-proxy -- run            # in one terminal
#   examples/api-walkthrough.sh [HOST:PORT]    # in another (default 127.0.0.1:8080)
set -euo pipefail
addr="${1:-127.0.0.1:8080}"
session="walkthrough-$(date +%s)"
post() {
  curl -sS -X POST "http://$addr/v1/events" -H 'Content-Type: application/json' -d "$1"
  echo
}

echo "# 1. Record events; the sidecar seals each at the session's head and answers after commit."
post '{"tenant_id":"acme","user_id":"u1","session_id":"'"$session"'","event_type":"MODEL_CALL_STARTED","payload":{"model_id":"gpt-4o","call_id":"m1"}}'
post '{"tenant_id":"acme","user_id":"u1","session_id":"'"$session"'","event_type":"TOOL_CALL_PROPOSED","payload":{"tool_name":"read_file","call_id":"t1","args":{"path":"/workspace/report.txt"}}}'
post '{"tenant_id":"acme","user_id":"u1","session_id":"'"$session"'","event_type":"TOOL_RESULT","payload":{"call_id":"t1","result":"ok"}}'

echo "# 2. A stale seq is refused with 409 and the current head."
post '{"tenant_id":"acme","session_id":"'"$session"'","seq":0,"event_type":"TERMINATION"}'

echo "# 3. The chain, the session's consumption, and its verification."
curl -sS "http://$addr/v1/events?tenant_id=acme&session_id=$session"; echo
curl -sS "http://$addr/v1/sessions/$session/snapshot?tenant_id=acme"; echo
curl -sS "http://$addr/v1/sessions/$session/verify?tenant_id=acme"; echo
