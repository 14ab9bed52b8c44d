"""The proxy-overhead table's arithmetic, on hand-made request rows."""

from __future__ import annotations

import pandas as pd

from bench.lab.overhead import phase_row


def test_a_proxy_phase_row_counts_errors_and_divides_cpu_by_requests() -> None:
    df = pd.DataFrame({"target": "proxy", "ok": [True, True, True, False], "latency_ms": [10.0, 20.0, 30.0, 99.0],
                       "header_ms": [1.0, 2.0, None, None]})
    row = phase_row(df, elapsed_s=2.0, cpu_s=0.08, metric=(0.006, 3.0))
    assert row["requests"] == 4 and row["errors"] == 1
    assert row["rps"] == 1.5  # the three that succeeded, over the phase
    assert row["latency_p50_ms"] == 20.0  # failed requests are not in the latency figures
    assert row["litellm_header_p50_ms"] == 1.5
    assert row["litellm_metric_mean_ms"] == 2.0  # 6 ms over 3 requests, from seconds
    assert row["proxy_cpu_ms_per_request"] == 20.0  # every request costs proxy CPU, failed ones too


def test_a_direct_phase_row_has_no_proxy_figures() -> None:
    df = pd.DataFrame({"target": "direct", "ok": [True, True], "latency_ms": [5.0, 7.0], "header_ms": [None, None]})
    row = phase_row(df, elapsed_s=1.0, cpu_s=None, metric=None)
    assert row == {"requests": 2, "errors": 0, "rps": 2.0, "latency_p50_ms": 6.0, "latency_p95_ms": 6.9}
