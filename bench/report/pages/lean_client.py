"""The lean request path against the OpenAI SDK on the real CPU stack: the fidelity check again, and the default mix
with each client, before (`--client openai`) and after (the lean default), with the load generator's own lateness."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bench.lab.fidelity import FidelityRun
from bench.records import LATENESS_GOAL_MS, LATENESS_SLO_FRACTION, Manifest
from bench.report.compare import ALL, compare, repeats
from bench.report.pages import measured, page, render
from bench.report.pages.fidelity import LOCKED, _by_run, _load
from bench.rundir import read_manifest

LEAN_FIDELITY = ["fidelity-cpu-lean", "fidelity-cpu-lean-r1", "fidelity-cpu-lean-r2"]
BEFORE_AFTER = "lean-before-after"
LOAD_LOG = "session-load.txt"  # the load averages and busiest processes, noted before and after each step
FIGURES = ["ttft_p50_s", "ttft_p95_s", "e2e_p50_s", "e2e_p95_s", "goodput_rps", "slo_attainment"]

TEMPLATE = """# The lean client on the real CPU stack

The bench's default request path is now the lean one (`bench/load/lean.py`: gevent sockets and orjson); `--client
openai` is the old path through the OpenAI SDK. Two questions: does the bench still measure what `vllm bench serve`
measures, and does the default mix measure the same with either client, except where the old client's own lateness
explains a difference?

## The fidelity check, repeated

{% if fidelity %}`python -m bench fidelity --run-id {{ fidelity_ids | join("|") }}`, {{ fidelity | length }} run(s)
one after the other on one stack, measured {{ fidelity_provenance }}. **The {{ tolerance | pct }} agreement held in
{{ fidelity_agree }} of {{ fidelity | length }} run(s).** Each cell is vLLM / bench, and the bench's difference:

{{ table(fidelity_table) }}

For comparison, the{% else %}**Not re-measured with the lean client:** no `results/fidelity-cpu-lean*` folder is
committed (why: `results/README.md`). The last fidelity check is the{% endif %} three committed runs with the SDK
client ({{ locked_provenance }}), where the agreement held in {{ locked_agree }} of {{ locked | length }}:

{{ table(locked_table) }}

## The default mix, before and after

`python -m bench run --duration-s {{ duration_s }} --client CLIENT --results-dir results/{{ folder }} --run-id
default-CLIENT-rN`: the default mix (`{{ mix }}`, its own NPC count) on one stack, in this order: {{ order
}}; measured {{
runs_provenance }}. The limit is {{ fraction | pct }} of the mix's tightest latency budget ({{ budget }}, {{
budget_ms | num }} ms), stated once in `bench/records.py` (`LATENESS_SLO_FRACTION`); issue #25's goal is a p99
lateness of at most {{ goal_ms | num }} ms on the CPU stack at the default mix.

{{ table(runs_table) }}

`python -m bench compare` of the {{ openai_n }} `openai` run(s) (baseline) against the {{ lean_n }} `lean` run(s), all
classes together; each figure with its 95 % interval, and the difference:

{{ table(compare_table) }}

The load generator's p99 timer lateness was {{ openai_lag | num(1) }} ms with the SDK and {{ lean_lag | num(1) }} ms
lean (mean over the runs), a difference of {{ (lean_lag - openai_lag) | num(1) }} ms. {% if differs %}Figures whose
difference's interval excludes zero: {{ differs | join(", ") }}{% if unexplained %}, by more than the
difference in p99 lateness, so the old generator's own lateness does not explain {{ unexplained | join(", ") }}; with
one run per client, made minutes apart on a machine this loaded (below), the machine's changing load may explain it as
well as the client; repeats on a quiet machine would tell{% endif %}.{% else %}No figure's difference excludes zero; with
{{ openai_requests }} requests with the SDK and {{ lean_requests }} lean the intervals are wide, so this
shows no difference between the clients, not that there is none.{% endif %}

## Load on the machine

Other helpers were working on the same 2-core machine throughout (editing code, running unit tests, type checks and
simulated stacks); the 1-minute load average, read from `/proc/loadavg` before and after each step (`results/{{
folder }}/{{ load_log }}`, with the busiest processes at each reading), was:

{{ table(load_table) }}

{% if busiest > cores %}The 1-minute load reached {{ busiest | num(1) }} on {{ cores }} cores: every figure here, the
lateness most of all, is partly the other work on the machine; repeat on a quiet machine before taking any of them
as the stack's.{% else %}The 1-minute load stayed at or below the machine's {{ cores }} cores.{% endif %}
"""


def _lean_fidelity(results: Path) -> list[FidelityRun]:
    return [_load(results, run_id) for run_id in LEAN_FIDELITY if (results / run_id / "fidelity.json").exists()]


def _runs(folder: Path) -> list[Manifest]:
    manifests = [read_manifest(path) for path in sorted(folder.iterdir()) if (path / "manifest.json").exists()]
    return sorted([m for m in manifests if m.summary is not None], key=lambda m: m.started_at)


def _runs_table(runs: list[Manifest]) -> pd.DataFrame:
    rows = []
    for m in runs:
        assert m.summary is not None and m.summary.client is not None, m.run_id
        lateness, client = m.lateness(), m.summary.client
        assert lateness is not None
        rows.append({"run": f"`{m.run_id}`", "client": m.client or "openai", "requests": m.summary.all.requests,
                     "e2e p95": f"{m.summary.all.e2e_p95_s:.2f} s" if m.summary.all.e2e_p95_s is not None else "-",
                     "timer lateness p50 / p99 / max": f"{client.loop_lag_p50_ms:.1f} / {client.loop_lag_p99_ms:.1f} "
                                                      f"/ {client.loop_lag_max_ms:.0f} ms",
                     f"goal p99 ≤ {LATENESS_GOAL_MS:g} ms": "MET" if client.loop_lag_p99_ms <= LATENESS_GOAL_MS
                     else "MISSED",
                     "flag": f"EXCEEDS {lateness.limit_ms:g} ms" if lateness.exceeded else "within"})
    return pd.DataFrame(rows)


def _compare_table(before: list[Path], after: list[Path]) -> tuple[pd.DataFrame, list[str], dict[str, float]]:
    subjects = [repeats("openai", before), repeats("lean", after)]
    long = compare(subjects, FIGURES)
    part = long[long.cls == ALL]
    lean = part[part.subject == "lean"].set_index("figure")
    openai = part[part.subject == "openai"].set_index("figure")
    frame = pd.DataFrame({"figure": FIGURES, "openai": [openai.shown[f] for f in FIGURES],
                          "lean": [lean.shown[f] for f in FIGURES],
                          "lean - openai": [f"{lean.diff_shown[f]} ({lean.verdict[f]})" for f in FIGURES]})
    return frame, [f for f in FIGURES if lean.verdict[f] == "differs"], {f: float(lean["diff"][f]) for f in FIGURES}


def _load_table(log: Path) -> pd.DataFrame:
    rows = [{"UTC": when[11:19], "step": step, "load 1 / 5 / 15 min": " / ".join(load.split()[:3])}
            for when, step, load in re.findall(r"^== (\S+) (.+?) \| (.+)$", log.read_text(), flags=re.M)]
    return pd.DataFrame(rows)


@page("studies/lean-client.md", title="The lean client on the real CPU stack",
      summary="Fidelity repeats and the default mix with the lean client against the OpenAI SDK, with the load "
              "generator's own lateness.")
def lean_client(results: Path) -> str:
    fidelity, locked = _lean_fidelity(results), [_load(results, run_id) for run_id in LOCKED]
    folder = results / BEFORE_AFTER
    runs = _runs(folder)
    before = [folder / m.run_id for m in runs if (m.client or "openai") == "openai"]
    after = [folder / m.run_id for m in runs if m.client == "lean"]
    compare_table, differs, diffs = _compare_table(before, after)

    def mean_lag(paths: list[Path]) -> float:
        lags = [m.summary.client.loop_lag_p99_ms for m in runs if folder / m.run_id in paths
                and m.summary and m.summary.client]
        return sum(lags) / len(lags)

    load_table = _load_table(folder / LOAD_LOG)
    busiest = max(float(v.split(" / ")[0]) for v in load_table["load 1 / 5 / 15 min"])
    checks = [m.lateness() for m in runs]
    budget = next(c for c in checks if c is not None)
    assert runs[0].summary is not None
    return render(
        TEMPLATE, fidelity_ids=[r.run_id for r in fidelity], fidelity=fidelity, tolerance=locked[0].tolerance,
        fidelity_provenance=measured(fidelity) if fidelity else "", fidelity_agree=sum(bool(r.agree) for r in fidelity),
        fidelity_table=_by_run(fidelity) if fidelity else None, locked=locked, locked_provenance=measured(locked),
        locked_agree=sum(bool(r.agree) for r in locked), locked_table=_by_run(locked),
        duration_s=f"{runs[0].mix.mix.shape.duration_s:g}", folder=BEFORE_AFTER, mix=runs[0].mix.name,
        runs_provenance=measured(runs), fraction=LATENESS_SLO_FRACTION, budget=budget.tightest_budget,
        budget_ms=budget.tightest_budget_ms, goal_ms=LATENESS_GOAL_MS, runs_table=_runs_table(runs),
        openai_n=len(before), lean_n=len(after), compare_table=compare_table, differs=differs,
        openai_lag=mean_lag(before), lean_lag=mean_lag(after),
        unexplained=[f for f in differs if f.endswith("_s")
                     and abs(diffs[f]) * 1000 > abs(mean_lag(after) - mean_lag(before))], load_log=LOAD_LOG,
        order=", ".join(f"`{m.run_id}`" for m in runs),
        load_table=load_table, busiest=busiest, cores=runs[0].machine.cores,
        openai_requests=sum(m.summary.all.requests for m in runs if m.summary and folder / m.run_id in before),
        lean_requests=sum(m.summary.all.requests for m in runs if m.summary and folder / m.run_id in after))
