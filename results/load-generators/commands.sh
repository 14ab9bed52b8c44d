# What made load-generators/ (2026-12-03, issue 25), from the repository's root: the harness's load generator (lean
# client) and two peers, `vllm bench serve` and GuideLLM 0.8.1, against the same SIMULATED near-instant worker
# (gpu-sim's light-0, no proxy) at the same rate, 30 requests/s. Under a machine-wide measuring lock (flock); the
# machine (2 cores) is shared with other work: measure.log has `uptime` before and after each step.
# VLLM and GUIDELLM are the peers' commands: here the project venv's `vllm`
# and `guidellm` from GuideLLM's own venv; TOKENIZER a local tokenizer folder for their synthetic prompts.
VLLM=${VLLM:-vllm}
GUIDELLM=${GUIDELLM:-guidellm}
TOKENIZER=${TOKENIZER:-$HOME/.cache/npcbench/models/SmolLM2-135M-Instruct}
R=results/load-generators
FAST=""
for g in heavy light; do
  FAST="$FAST --set groups.$g.sim.request_overhead_ms=0 --set groups.$g.sim.step_overhead_ms=1 --set groups.$g.sim.prefill_ms_per_token=0 --set groups.$g.sim.decode_ms_per_seq=0 --set groups.$g.sim.decode_ms_per_kv_token=0 --set groups.$g.sim.source=near-instant"
done
# These ran with the stack on ports 21400-21404 (--set workers.1.port=21402 ...): light-0 was http://127.0.0.1:21402.
python -m serve up --detach --profile gpu-sim $FAST || exit 1
LIGHT0=$(python -m serve status --json | python -c 'import json,sys; print(next(w["url"] for w in json.load(sys.stdin)["workers"] if w["name"] == "light-0"))')
uptime
for mix in harness-plain harness-streamed; do
  python -m bench run --mix $mix --rate-rps 30 --duration-s 20 --direct light-0 --run-id lean-$mix-sim --results-dir $R --no-html-report
  uptime
done
python -m bench peers --base-url $LIGHT0 --model Qwen/Qwen3-8B-AWQ --tokenizer $TOKENIZER --vllm $VLLM --guidellm $GUIDELLM --rate-rps 30 --small 30 --large 300 --run-id peers-sim --results-dir $R
uptime
python -m serve down
