# What made overhead-gpu-sim/ and harness-ceilings/ (2026-12-01, issue 13), from the repository's root.
# SIMULATED engine: gpu-sim with a near-instant latency model, so that the load generator and the proxy are the limit.
R=results
FAST=""
for g in heavy light; do
  FAST="$FAST --set groups.$g.sim.request_overhead_ms=0 --set groups.$g.sim.step_overhead_ms=1 --set groups.$g.sim.prefill_ms_per_token=0 --set groups.$g.sim.decode_ms_per_seq=0 --set groups.$g.sim.decode_ms_per_kv_token=0 --set groups.$g.sim.source=near-instant"
done
python -m serve up --detach --profile gpu-sim $FAST || exit 1
python -m bench overhead --requests 100 --concurrency 32 --duration-s 20 --label one-process --compare two-processes --set proxy.num_workers=2 --run-id overhead-gpu-sim --results-dir $R
for mix in harness-plain harness-streamed; do
  for p in 1 2; do
    python -m bench run --mix $mix --rate-rps 30 --duration-s 45 --processes $p --run-id $mix-p$p --results-dir $R/harness-ceilings --no-html-report
  done
done
python -m serve down
python -m serve up --detach --profile gpu-sim $FAST --set proxy.num_workers=2 --set proxy.start_redis=true || exit 1
for mix in harness-plain harness-streamed; do
  python -m bench run --mix $mix --rate-rps 30 --duration-s 45 --processes 2 --run-id $mix-redis --results-dir $R/harness-ceilings --no-html-report
done
python -m serve down
# What one Redis serves on this machine, for the scale-out plan
redis-server --port 6399 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes
sleep 1
redis-benchmark -p 6399 -q -n 200000 -c 50 -t get,set,incr,hset > $R/harness-ceilings/redis-benchmark.txt
redis-cli -p 6399 shutdown nosave
