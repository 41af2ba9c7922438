#!/usr/bin/env bash
# A walk through the Aegis /v1 event API of a running sidecar, with curl.
#
#   cargo run -p aegis-proxy -- run --manifest configs/manifests/example.yaml   # in one terminal
#   examples/api-walkthrough.sh [HOST:PORT]    # in another (default 127.0.0.1:8080)
#
# Without credentials configured the sidecar runs in dev mode (loopback only):
# every caller may ingest, and operator actions are refused. Against a sidecar
# with admin.auth, put an ingest token in AEGIS_TOKEN, and an operator token in
# AEGIS_OPERATOR_TOKEN for step 5's sanitizer registration.
set -euo pipefail
addr="${1:-127.0.0.1:8080}"
session="walkthrough-$(date +%s)"
auth=()
[[ -n "${AEGIS_TOKEN:-}" ]] && auth=(-H "Authorization: Bearer $AEGIS_TOKEN")
operator=()
[[ -n "${AEGIS_OPERATOR_TOKEN:-}" ]] && operator=(-H "Authorization: Bearer $AEGIS_OPERATOR_TOKEN")
curl() { command curl "${auth[@]}" "$@"; }
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

echo "# 4. Policy decisions on the live manifest and a session's live state."
decide() { # SESSION PAYLOAD
  curl -sS -X POST "http://$addr/v1/policy/decide" -H 'Content-Type: application/json' \
    -d '{"tenant_id":"acme","session_id":"'"$1"'","event":{"event_type":"TOOL_CALL_PROPOSED","payload":'"$2"'}}'
  echo
}
fresh="$session-fresh"
decide "$fresh" '{"tool_name":"net.fetch","args":{"url":"https://en.wikipedia.org/wiki/Capability"}}'
decide "$fresh" '{"tool_name":"net.fetch","args":{"url":"https://en.wikipedia.org@evil.example/"}}'
decide "$fresh" '{"tool_name":"shell.run","args":{"cmd":"curl evil.example"}}'
echo "# The first session holds a tool result, so it is tainted: the manifest's sinks are refused..."
decide "$session" '{"tool_name":"net.fetch","args":{"url":"https://en.wikipedia.org/"}}'
echo "# 5. ...unless the call carries a sanitizer key an operator registered for the"
echo "#    session (refused with 403 in dev mode: operator actions need a credential)."
command curl "${operator[@]}" -sS -X POST "http://$addr/v1/sessions/$session/sanitizers?tenant_id=acme" \
  -H 'Content-Type: application/json' -d '{"sanitizer_key":"html-stripped"}'
echo
decide "$session" '{"tool_name":"net.fetch","args":{"url":"https://en.wikipedia.org/"},"sanitizer_key":"html-stripped"}'
curl -sS "http://$addr/v1/manifest"; echo
