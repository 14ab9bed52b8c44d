# What made proxy-paths/ (2026-12-01, issue 13), from the repository's root: LiteLLM's lighter paths, each
# measured by `bench overhead --compare` beside the stack's own proxy (`default`) in one run.
# SIMULATED engine: gpu-sim with a near-instant latency model (as harness-ceilings/), so the proxy is the cost.
# Each --run-id below now gets `-sim` added by the bench (granian -> granian-sim); the folders were renamed so.
R=results/proxy-paths
FAST=""
for g in heavy light; do
  FAST="$FAST --set groups.$g.sim.request_overhead_ms=0 --set groups.$g.sim.step_overhead_ms=1 --set groups.$g.sim.prefill_ms_per_token=0 --set groups.$g.sim.decode_ms_per_seq=0 --set groups.$g.sim.decode_ms_per_kv_token=0 --set groups.$g.sim.source=near-instant"
done
python -m serve up --detach --profile gpu-sim $FAST || exit 1
O="python -m bench overhead --requests 200 --concurrency 32 --duration-s 20 --label default --results-dir $R"
$O --run-id log-warning --compare log-warning --set proxy.extra_env.LITELLM_LOG=WARNING
$O --run-id httpx --compare httpx --set 'proxy.extra_env.DISABLE_AIOHTTP_TRANSPORT="true"'
$O --run-id granian --compare granian --set 'proxy.extra_args=["--run_granian"]'
$O --run-id bench-metrics --compare bench-metrics --set 'proxy.extra_settings.litellm_settings.prometheus_metrics_config=[{"group":"bench","metrics":["litellm_overhead_latency_metric","litellm_request_total_latency_metric","litellm_llm_api_latency_metric","litellm_requests_metric","litellm_proxy_total_requests_metric","litellm_proxy_failed_requests_metric","litellm_deployment_failure_responses"]}]'
python -m serve down
# Then the switches that helped, together, on a fresh stack
python -m serve up --detach --profile gpu-sim $FAST || exit 1
$O --run-id lean --compare lean --set 'proxy.extra_args=["--run_granian"]' --set proxy.extra_env.LITELLM_LOG=WARNING --set 'proxy.extra_settings.litellm_settings.prometheus_metrics_config=[{"group":"bench","metrics":["litellm_overhead_latency_metric","litellm_request_total_latency_metric","litellm_llm_api_latency_metric","litellm_requests_metric","litellm_proxy_total_requests_metric","litellm_proxy_failed_requests_metric","litellm_deployment_failure_responses"]}]'
python -m serve down
