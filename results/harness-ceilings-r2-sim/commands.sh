# A FAILED re-measurement (2026-12-03, issues 25 and 26): the -p1/-p2 runs below were written to
# results/harness-ceilings/ and moved here, because 10-46 % of their requests failed (the proxy put both simulated
# workers in cooldown after dropped streams) while other helpers' stacks loaded the shared 2-core machine (load
# averages 14-35, measure.log); the -redis runs never ran (the proxy never became healthy). No page reads this folder;
# results/harness-ceilings/ keeps the 2026-12-01 runs. The commands, as run (with --results-dir results/harness-ceilings):
# What made overhead-gpu-sim/ and harness-ceilings/, from the repository's root.
# SIMULATED engine: gpu-sim with a near-instant latency model, so that the load generator and the proxy are the limit.
# Each measuring window ran under a machine-wide measuring lock (flock); the machine (2 cores) is shared with other work,
# so `uptime` is logged before each run (measure.log holds those lines and the commands as they ran).
R=results
FAST=""
for g in heavy light; do
  FAST="$FAST --set groups.$g.sim.request_overhead_ms=0 --set groups.$g.sim.step_overhead_ms=1 --set groups.$g.sim.prefill_ms_per_token=0 --set groups.$g.sim.decode_ms_per_seq=0 --set groups.$g.sim.decode_ms_per_kv_token=0 --set groups.$g.sim.source=near-instant"
done

# 2026-12-01 (issue 13): overhead-gpu-sim/ and redis-benchmark.txt, not re-measured since.
python -m serve up --detach --profile gpu-sim $FAST || exit 1
python -m bench overhead --requests 100 --concurrency 32 --duration-s 20 --label one-process --compare two-processes --set proxy.num_workers=2 --run-id overhead-gpu-sim --results-dir $R
python -m serve down
redis-server --port 6399 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes
sleep 1
redis-benchmark -p 6399 -q -n 200000 -c 50 -t get,set,incr,hset > $R/harness-ceilings/redis-benchmark.txt
redis-cli -p 6399 shutdown nosave

# 2026-12-03 (issues 25 and 26): the -p1 and -p2 harness-*-sim runs again, with the lean client (bench run's default), plain at
# 30 requests/s and streamed at 10 (at 30 the 2-core machine was overloaded by the proxy's streaming alone).
# These ran with the stack on ports 21400-21404 (add --set workers.N.port=... --set proxy.port=... to share a machine).
python -m serve up --detach --profile gpu-sim $FAST || exit 1
for mix in harness-plain:30 harness-streamed:10; do
  for p in 1 2; do
    uptime
    python -m bench run --mix ${mix%:*} --rate-rps ${mix#*:} --duration-s 30 --processes $p --run-id ${mix%:*}-p$p-sim --results-dir $R/harness-ceilings --no-html-report
  done
done
python -m serve down
# NOT RE-MEASURED: the -redis runs below were attempted on 2026-12-03 21:31 but the stack's proxy (two processes,
# Redis) never became healthy (its uvicorn children died at start-up while other helpers' stacks filled the machine's
# memory), and the deadline came. harness-*-redis-sim/ are still the 2026-12-01 runs (30 requests/s, 45 s, the
# OpenAI-SDK client), made by:
#   python -m serve up --detach --profile gpu-sim $FAST --set proxy.num_workers=2 --set proxy.start_redis=true
#   python -m bench run --mix $mix --rate-rps 30 --duration-s 45 --processes 2 --run-id $mix-redis --results-dir $R/harness-ceilings --no-html-report
# What the re-measurement was to run:
#   python -m serve up --detach --profile gpu-sim $FAST --set proxy.num_workers=2 --set proxy.start_redis=true --set proxy.redis_port=21409
#   for mix in harness-plain:30 harness-streamed:10; do uptime; python -m bench run --mix ${mix%:*} --rate-rps ${mix#*:} --duration-s 30 --processes 2 --run-id ${mix%:*}-redis-sim --results-dir $R/harness-ceilings --no-html-report; done
#   python -m serve down
