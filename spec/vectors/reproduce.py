#!/usr/bin/env python3
"""Recomputes every envelope vector in envelope-chains.json independently.

Standard library only, no part of aegis-proxy: an auditor's cross-check of
spec/envelope.md. For each envelope it builds the preimage (section "The
hash"), compares it byte for byte with the file's `preimage`, hashes it, and
checks `hash` and the `prev_hash` link. Exits 0 when every vector holds.

`json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` is
RFC 8785 exactly for these vectors, whose member names are ASCII and whose
numbers are integers below 2**53. It is not RFC 8785 in general (Python sorts
names by code point, not UTF-16 code unit, and formats floats differently);
the RFC 8785 pairs in jcs/ are checked by the Rust canonicaliser.
"""

import hashlib
import json
import pathlib
import sys

MEMBERS = ("tenant_id", "user_id", "session_id", "seq", "ts_unix_ms", "event_type", "payload")


def preimage(envelope, prev_hash):
    obj = {name: envelope[name] for name in MEMBERS}
    if envelope["seq"] > 0:
        obj["prev_hash"] = list(prev_hash)  # 32 integers, one per byte
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def main():
    path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).with_name("envelope-chains.json"))
    chains = json.loads(path.read_text(encoding="utf-8"))["chains"]
    failures = 0
    checked = 0
    for chain in chains:
        prev = None
        for envelope in chain["envelopes"]:
            where = f'{envelope["tenant_id"]}/{envelope["session_id"]} seq {envelope["seq"]}'
            if envelope["seq"] > 0 and envelope.get("prev_hash") != prev.hex():
                print(f"{where}: prev_hash {envelope.get('prev_hash')} is not the previous hash {prev.hex()}")
                failures += 1
            got = preimage(envelope, prev)
            if got != envelope["preimage"].encode("utf-8"):
                print(f"{where}: preimage differs\n  got  {got.decode()}\n  want {envelope['preimage']}")
                failures += 1
            digest = hashlib.sha256(got).digest()
            if digest.hex() != envelope["hash"]:
                print(f"{where}: hash {digest.hex()}, the file says {envelope['hash']}")
                failures += 1
            prev = digest
            checked += 1
    print(f"{checked} envelopes checked, {failures} failures")
    return 1 if failures or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
