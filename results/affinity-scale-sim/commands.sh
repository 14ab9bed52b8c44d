#!/usr/bin/env bash
# SIMULATED engine, real proxy. Each point: a fresh gpu-sim stack with a near-instant engine and one proxy
# process, on ports 4460-4464 (Redis 6460) in its own $NPCBENCH_HOME, then sessions.py, then `serve down`.
# Run from the repository root with PYTHONPATH=. and the project's python as $PY.
set -euo pipefail
PY=${PY:-python}
OUT=results/affinity-scale-sim
: "${NPCBENCH_HOME:?set NPCBENCH_HOME to a folder of its own, for the stack state and logs}"
export NPCBENCH_HOME
FAST=()
for G in heavy light; do
  for term in request_overhead_ms=0 step_overhead_ms=1 prefill_ms_per_token=0 decode_ms_per_seq=0 decode_ms_per_kv_token=0; do
    FAST+=(--set "groups.$G.sim.$term")
  done
done
PORTS=(--set proxy.port=4460 --set workers.0.port=4461 --set workers.1.port=4462 --set workers.2.port=4463 --set workers.3.port=4464)

point() {  # NAME SESSIONS ROUNDS [--set ...]
  local name=$1 sessions=$2 rounds=$3; shift 3
  $PY -m serve up --detach --profile gpu-sim "${PORTS[@]}" "${FAST[@]}" "$@" > /dev/null
  $PY $OUT/sessions.py --sessions "$sessions" --rounds "$rounds" --label "$name" --out "$OUT/$name.json" || true
  $PY -m serve down > /dev/null
}

# LiteLLM's own cache (200 entries): fewer NPCs than it holds, then more.
point litellm-cache-150-npcs 150 4 --set proxy.router_cache_items=200
point litellm-cache-300-npcs 300 4 --set proxy.router_cache_items=200
# Only the cache size changed: the project's default.
point cache-100000-300-npcs 300 4
# Only Redis added, LiteLLM's cache size kept: pins evicted from memory are read back from Redis.
point litellm-cache-redis-300-npcs 300 4 --set proxy.router_cache_items=200 --set proxy.start_redis=true --set proxy.redis_port=6460
