"""SIMULATED engine, real proxy: do session pins hold when more NPCs speak than LiteLLM's router cache holds?

Sends `--sessions` NPCs, each once per round for `--rounds` rounds, in the same order each round, one request
at a time, to one group of the stack in $NPCBENCH_HOME (through its proxy, `metadata.session_id` = the NPC).
So between two turns of an NPC every other NPC speaks once: the most sparse an NPC can be among N. Writes
which worker served each turn, how many NPCs were served by more than one worker, and what the proxy's router
cache held at the end (LiteLLM's `/memory-usage-in-mem-cache-items`: entries, and how many are session pins).

    python results/affinity-scale-sim/sessions.py --sessions 300 --rounds 4 --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import httpx

PIN_PREFIX = "deployment_affinity:v1:session:"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--group", default="light")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    state = json.loads(subprocess.run([sys.executable, "-m", "serve", "status", "--json"], text=True,
                                      capture_output=True, check=True).stdout)
    headers = {"Authorization": f"Bearer {state['key']}"}
    served: dict[str, list[str]] = {}
    started = time.time()
    with httpx.Client(base_url=state["proxy_url"], headers=headers, timeout=60) as client:
        for _ in range(args.rounds):
            for npc in range(args.sessions):
                reply = client.post("/v1/chat/completions", json={
                    "model": args.group, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                    "metadata": {"session_id": f"npc-{npc}"}})
                reply.raise_for_status()
                served.setdefault(f"npc-{npc}", []).append(reply.headers["x-litellm-model-id"])
        router_cache = client.get("/memory-usage-in-mem-cache-items").json()["llm_router_cache"]
    split = sorted(npc for npc, workers in served.items() if len(set(workers)) > 1)
    moves = sum(a != b for workers in served.values() for a, b in zip(workers, workers[1:], strict=False))
    record = {
        "label": args.label, "group": args.group, "sessions": args.sessions, "rounds": args.rounds,
        "requests": args.sessions * args.rounds, "duration_s": round(time.time() - started, 1),
        "npcs_split": len(split), "turns_moved": moves,
        "router_cache_entries": len(router_cache),
        "router_cache_session_pins": sum(key.startswith(PIN_PREFIX) for key in router_cache),
        "spec_proxy": state["spec"]["proxy"], "served": served,
    }
    with open(args.out, "w") as f:
        json.dump(record, f, indent=1)
    print(json.dumps({k: v for k, v in record.items() if k not in ("served", "spec_proxy")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
