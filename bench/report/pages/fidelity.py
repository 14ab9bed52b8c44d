"""Does the bench agree with vLLM's own benchmark? `python -m bench fidelity` runs, side by side."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.lab.fidelity import FidelityRun
from bench.report.pages import _signed_pct, measured, page, render

FIRST = "fidelity-cpu"
LOCKED = ["fidelity-cpu-locked", "fidelity-cpu-locked-2", "fidelity-cpu-locked-3"]
AN_HOUR_LATER = ["fidelity-old-code", "fidelity-new-now"]

TEMPLATE = """# Does the bench agree with vLLM's own benchmark?

`python -m bench fidelity` (`pixi run fidelity`) runs `vllm bench serve` (the installed `vllm` command) and then this
project's bench (`python -m bench run --direct {{ first.worker }}`: Locust, the OpenAI SDK, the `fixed` class) on the
same worker and the same workload: random prompts of {{ first.settings.input_len }} tokens, {{
first.settings.output_len }}-token replies with `ignore_eos`, concurrency {{ first.settings.concurrency }}, vLLM's {{
first.settings.num_prompts }} requests and the bench for as long as vLLM took. Both are read by vLLM's definitions:
median TTFT, median ITL pooled over every gap between streamed chunks, output tokens over the time from the first
request's start to the last one's end. The worker's own counters show whether both sent the same workload.

## The first run

`results/{{ first.run_id }}/`, measured {{ first_provenance }}:

{{ table(first_table) }}

{% if first.agree %}They agree within {{ first.tolerance | pct }}{% else %}They do not agree within {{ first.tolerance |
pct }}{% endif %}. Two things had to be right for that: the bench records each gap between streamed chunks
(`token_gaps_s` in `requests.jsonl`), because vLLM's median ITL is over pooled gaps, not over each request's mean
(`itl_s`, the SLO's figure, which is vLLM's TPOT); and the `fixed` class sends one user message with no system prompt,
like vLLM's random dataset, so both get the chat template's default system prompt and the same prefix-cache hits. A
short run with a looser tolerance is in the tests.

## Re-measured with the locked environment, on another machine

**{% if locked_agree == 0 %}The {{ first.tolerance | pct }} agreement did not hold in any of the {{ locked | length }}
runs.{% elif locked_agree < locked | length %}The {{ first.tolerance | pct }} agreement held in {{ locked_agree }} of
the {{ locked | length }} runs only.{% else %}The {{ first.tolerance | pct }} agreement held in all {{ locked | length
}} runs.{% endif %}** The same command three times (`python -m bench fidelity --run-id fidelity-cpu-locked[-2|-3]`;
runs 1 and 2 each on a freshly started stack, run 3 right after run 2), measured {{ locked_provenance }} (lock sha256
`{{ lock_sha }}…`, recorded in each `fidelity.json`). Each cell is vLLM / bench, and the bench's difference:

{{ table(locked_table) }}

The worker's own counters show {% if locked_same_workload %}the same workload for both tools in every run ({{
locked_tokens }} prompt and output tokens per request){% else %}different workloads for the two tools: read the
`worker_*_tokens_per_request` figures in each `fidelity.json`{% endif %}. The bench's median ITL differed from
vLLM's by {{ itl_range }} in the three runs, against {{ first.differences.itl_median_ms | signed_pct(1) }} on the first
machine; its TTFT difference ranged from {{ ttft_min | signed_pct(1) }} to {{ ttft_max | signed_pct(1) }} between
runs of the same command, while vLLM's own median TTFT stayed within {{ vllm_ttft_min | num(1) }}-{{ vllm_ttft_max |
num(1) }} ms. So on this machine the two tools agree within {{ itl_tps_max | pct(1) }} on ITL and throughput, and a
single run says little about TTFT. Why the ITL differs here was not found (both pool the gaps between streamed chunks;
client CPU on the same two cores and chunk coalescing are the suspects).

## An hour later

On the same machine an hour later, the code from before the locked environments (`{{ later[0].commit }}`, run with the
same locked packages; `results/{{ later[0].run_id }}/`) and the current code then (`{{ later[1].commit }}`;
`results/{{ later[1].run_id }}/`) {% if later_agree %}both agreed within {{ first.tolerance | pct }}{% else %}did not
both agree within {{ first.tolerance | pct }}{% endif %}, measured {{ later_provenance }}:

{{ table(later_table) }}

{% if later_agree %}So the earlier gap was not the change of code; it came and went with the machine, which is why
single runs are not enough here.{% endif %}

## Reproduce

With the stack up (`python -m serve up`), `python -m bench fidelity --run-id NAME` writes `results/NAME/`. The two
commands it ran for `results/{{ later[1].run_id }}/`, as its `fidelity.json` records them (`commands`; the bench's length is
in the `fixed-mix.toml` it writes beside them, vLLM's duration):

```
{% for tool, argv in commands.items() %}{{ argv | join(" ") }}
{% endfor %}```
"""


def _load(results: Path, run_id: str) -> FidelityRun:
    return FidelityRun.model_validate_json((results / run_id / "fidelity.json").read_text())


def _side_by_side(run: FidelityRun) -> pd.DataFrame:
    """The first run's table: each figure for both tools and the bench's difference."""
    vllm, bench = run.vllm, run.bench
    assert vllm is not None and bench is not None, f"{run.run_id}: a tool did not finish"
    rows = [("median TTFT", f"{vllm.ttft_median_ms:,.1f} ms", f"{bench.ttft_median_ms:,.1f} ms",
             _signed_pct(run.differences["ttft_median_ms"], 1)),
            ("median ITL", f"{vllm.itl_median_ms:,.1f} ms", f"{bench.itl_median_ms:,.1f} ms",
             _signed_pct(run.differences["itl_median_ms"], 1)),
            ("output tokens/s", f"{vllm.output_tps:.1f}", f"{bench.output_tps:.1f}",
             _signed_pct(run.differences["output_tps"], 1)),
            ("requests, duration", f"{vllm.requests} in {vllm.duration_s:.1f} s",
             f"{bench.requests} in {bench.duration_s:.1f} s", ""),
            ("prompt / output tokens per request, by the worker", _tokens(vllm), _tokens(bench), "")]
    return pd.DataFrame(rows, columns=["", "`vllm bench serve`", "`python -m bench`", "difference"])


def _tokens(figures: object) -> str:
    prompt, output = (getattr(figures, f"worker_{k}_tokens_per_request") for k in ("prompt", "output"))
    return f"{prompt:g} / {output:g}" if prompt is not None and output is not None else "-"


def _by_run(runs: list[FidelityRun]) -> pd.DataFrame:
    """One row per run: each figure as vLLM / bench with the difference."""

    def cell(run: FidelityRun, key: str, unit: str) -> str:
        a, b = getattr(run.vllm, key), getattr(run.bench, key)
        return f"{a:,.1f} / {b:,.1f}{unit} ({_signed_pct(run.differences[key], 1)})"

    return pd.DataFrame([{"run": f"`results/{r.run_id}/`", "median TTFT vLLM / bench": cell(r, "ttft_median_ms", " ms"),
                          "median ITL vLLM / bench": cell(r, "itl_median_ms", " ms"),
                          "output tok/s vLLM / bench": cell(r, "output_tps", ""),
                          "requests vLLM / bench": f"{r.vllm.requests} / {r.bench.requests}"}  # type: ignore[union-attr]
                         for r in runs])


@page("studies/fidelity.md", title="Does the bench agree with vLLM's own benchmark?",
      summary="The bench against `vllm bench serve` on one worker and one workload: TTFT, ITL and throughput.")
def fidelity(results: Path) -> str:
    first = _load(results, FIRST)
    locked = [_load(results, run_id) for run_id in LOCKED]
    later = [_load(results, run_id) for run_id in AN_HOUR_LATER]
    itl = [r.differences["itl_median_ms"] for r in locked]
    ttft = [r.differences["ttft_median_ms"] for r in locked]
    itl_range = f"{_signed_pct(min(itl), 1)} to {_signed_pct(max(itl), 1)}"
    tokens = {(_tokens(r.vllm), _tokens(r.bench)) for r in locked}
    same_workload = all(a == b for a, b in tokens) and len({a for a, _ in tokens}) == 1
    vllm_ttft = [r.vllm.ttft_median_ms for r in locked]  # type: ignore[union-attr]
    return render(
        TEMPLATE, first=first, first_provenance=measured([first]), first_table=_side_by_side(first),
        locked=locked, locked_agree=sum(bool(r.agree) for r in locked), locked_provenance=measured(locked),
        lock_sha=(locked[0].env_lock.lock_sha256[:12] if locked[0].env_lock else "none"),
        locked_table=_by_run(locked), locked_same_workload=same_workload,
        locked_tokens=next(iter(tokens))[0] if same_workload else "",
        itl_range=itl_range, ttft_min=min(ttft), ttft_max=max(ttft), vllm_ttft_min=min(vllm_ttft),
        vllm_ttft_max=max(vllm_ttft), itl_tps_max=max(abs(r.differences[k]) for r in locked
                                                      for k in ("itl_median_ms", "output_tps")),
        later=[{"run_id": r.run_id, "commit": (r.git.commit or "")[:7]} for r in later], commands=later[-1].commands,
        later_agree=all(r.agree for r in later), later_provenance=measured(later), later_table=_by_run(later))
