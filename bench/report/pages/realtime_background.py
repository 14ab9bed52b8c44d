"""Realtime vs background: does vLLM's priority scheduling keep background planning off the realtime classes?"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.report.compare import Subject, compare, load_subjects
from bench.report.pages import measured, page, render
from bench.report.stats import Interval
from serve import load_profile, profile_names

SWEEP, FIRST_PASS = "sweep-cpu-priority-repeats", "sweep-cpu-priority"
POLICY = "serve.groups.heavy.scheduling_policy"
JUDGED = ["e2e_p50_s", "e2e_p95_s", "goodput_rps"]  # the figures a class must move in, outside the noise

TEMPLATE = """# Realtime vs background

Does vLLM's `--scheduling-policy priority` keep background planning from delaying realtime NPC work? The `{{ mix.name
}}` mix runs {{ npcs }} NPCs in a closed loop, {{ planning_share | pct }} of their requests planning (priority {{
planning_priority }}; every other class sends {{ other_priority }}, lower runs first), with every worker on `fcfs` and
then on `priority`, {{ repeats }} runs of {{ duration_s | num }} s each from emptied prefix caches (`python -m bench sweep
bench/sweeps/cpu-priority-repeats.toml`; `results/{{ sweep }}/`, measured {{ provenance }}). Per class, e2e p50 over
the runs' pooled requests with its bootstrap 95 % interval, and the difference:

{{ table(classes) }}

{% if moved %}Outside the noise: {{ moved | join("; ") }}.{% else %}No class moved outside the noise, in e2e p50, e2e
p95 or goodput{% endif %} (`python -m bench compare results/{{ sweep }}/s0-l0 results/{{ sweep }}/s1-l0`). The first
pass (`results/{{ first_pass }}/`, {{ first_runs }} runs each on warm caches, measured {{ first_provenance }}) had
`multi_turn` {{ first_multi_turn }}; here its e2e p50 was {{ multi_turn_now }} under `priority`, on {{
multi_turn_requests }} requests a side{% if first_hint_held %}, so that hint held{% else %}, so that hint did not
hold{% endif %}.

Priority scheduling only reorders one worker's queue, and planning shares workers only with the {{ planning_group }}
group's classes: the {{ other_groups | join(", ") }} group's {{ other_classes | join(" and ") }} meet planning only as
competition for the same {{ cores }} cores, which no scheduling policy addresses. **{% if kept | length == 1
%}Every profile keeps `{{ kept[0] }}`{% else %}The profiles differ: {{ kept | join(", ") }}{% endif %}**: {% if not
moved %}neither policy measurably protects the realtime classes at this load{% else %}only the differences above moved
outside the noise{% endif %}, and what keeps background work off the realtime
path here is the group split (planning on {{ planning_group }}, {{ other_classes | join(" and ") }} on {{ other_groups |
join(", ") }}). Settling whether `priority` helps the classes that share planning's workers needs more requests of them
than a {{ duration_s | num }} s run of {{ npcs }} NPCs gives (longer runs, or a mix that puts planning on the light
workers beside the busy ambient class). LiteLLM's own request prioritisation (a beta its docs mark "for testing only")
holds a request in its queue only while no deployment of the group can take it, such as at an rpm limit; this stack
sets no limits, so every request would pass straight through, and it was not tried.
"""


def _known(x: float) -> float | None:
    """A figure read back from a comparison table, where a missing one is NaN."""
    return None if pd.isna(x) else float(x)


def _seconds(iv: Interval, signed: bool = False) -> str:
    if iv.value is None:
        return "-"
    value = f"{iv.value:{'+' if signed else ''}.1f} s"
    if iv.known:
        return f"{value} [{iv.low:.1f}, {iv.high:.1f}]"
    return f"{value} (n={iv.n}: no interval)" if iv.n else f"{value} (no interval)"


def _policy(subject: Subject) -> str:
    return str(subject.settings.get(POLICY, subject.runs[0].manifest.stack_spec.groups["heavy"].scheduling_policy))


def _policies_kept() -> list[str]:
    """The scheduling policies the shipped profiles set now, with the profiles that set each where they differ."""
    by_policy: dict[str, list[str]] = {}
    for name in profile_names():
        for policy in {g.scheduling_policy for g in load_profile(name).groups.values()}:
            by_policy.setdefault(policy, []).append(name)
    if len(by_policy) == 1:
        return list(by_policy)
    return [f"`{policy}` ({', '.join(names)})" for policy, names in sorted(by_policy.items())]


@page("studies/realtime-background.md", title="Realtime vs background",
      summary="Whether vLLM's priority scheduling keeps background planning off the realtime NPC classes.")
def realtime_background(results: Path) -> str:
    subjects = load_subjects(results / SWEEP)
    fcfs, priority = (next(s for s in subjects if _policy(s) == p) for p in ("fcfs", "priority"))
    manifest = fcfs.runs[0].manifest
    classes = manifest.mix.classes
    weights = manifest.mix.mix.weights
    table = compare([fcfs, priority], JUDGED)
    table = table[table.cls != "ALL"]

    def cell(cls: str, subject: Subject, figure: str = "e2e_p50_s", diff: bool = False) -> Interval:
        r = table[(table.cls == cls) & (table.figure == figure) & (table.subject == subject.name)].iloc[0]
        if diff:
            return Interval(value=_known(r["diff"]), low=_known(r.diff_low), high=_known(r.diff_high), n=0)
        return Interval(value=_known(r.value), low=_known(r.low), high=_known(r.high), n=int(r.n))

    def per_run(cls: str) -> str:
        counts = [int((run.requests.cls == cls).sum()) for s in (fcfs, priority) for run in s.runs]
        return f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"

    planning = max(classes, key=lambda c: classes[c].priority)
    planning_group = classes[planning].group
    order = sorted(classes, key=lambda c: (classes[c].group != planning_group, c == planning, c))
    rows = []
    for cls in order:
        spec = classes[cls]
        where = (f"{spec.group}, priority {spec.priority}" if cls == planning
                 else f"{spec.group}, beside planning" if spec.group == planning_group else spec.group)
        diff = cell(cls, priority, diff=True)
        verdict = table[(table.cls == cls) & (table.figure == "e2e_p50_s") & (table.subject == priority.name)].verdict
        rows.append({"class (group)": f"`{cls}` ({where})", "requests per run": per_run(cls),
                     "fcfs": _seconds(cell(cls, fcfs)), "priority": _seconds(cell(cls, priority)),
                     "priority - fcfs": _seconds(diff, signed=True) + (f", {verdict.iloc[0]}" if diff.known else "")})
    moved = [f"`{r.cls}` {r.figure} {r.diff_shown}" for r in table.itertuples() if r.verdict == "differs"]

    first = load_subjects(results / FIRST_PASS)
    first_fcfs, first_priority = (next(s for s in first if _policy(s) == p) for p in ("fcfs", "priority"))
    first_p50 = [[float(run.requests[(run.requests.cls == "multi_turn") & (run.requests.outcome == "ok")]
                        .e2e_s.median()) for run in s.runs] for s in (first_fcfs, first_priority)]
    faster_each = all(p < f for f, p in zip(*first_p50, strict=True))
    slower_each = all(p > f for f, p in zip(*first_p50, strict=True))
    first_multi_turn = ("faster under `priority` in every run" if faster_each else
                        "slower under `priority` in every run" if slower_each else "mixed across runs")
    now = cell("multi_turn", priority).value, cell("multi_turn", fcfs).value
    faster_now = now[0] is not None and now[1] is not None and now[0] < now[1]
    others = [c for c in order if classes[c].group != planning_group]
    return render(
        TEMPLATE, mix=manifest.mix.mix, npcs=getattr(manifest.mix.mix.shape, "users", None),
        planning_share=weights[planning] / sum(weights.values()), planning_priority=classes[planning].priority,
        other_priority=min(c.priority for c in classes.values()), repeats=len(fcfs.runs),
        duration_s=manifest.mix.mix.shape.duration_s, sweep=SWEEP,
        provenance=measured([run.manifest for s in (fcfs, priority) for run in s.runs]), classes=pd.DataFrame(rows),
        moved=moved, first_pass=FIRST_PASS, first_runs=len(first_fcfs.runs),
        first_provenance=measured([run.manifest for s in first for run in s.runs]), first_multi_turn=first_multi_turn,
        multi_turn_now="lower" if faster_now else "higher", multi_turn_requests=cell("multi_turn", fcfs).n,
        first_hint_held=faster_each and faster_now, planning_group=planning_group,
        other_groups=sorted({classes[c].group for c in others}), other_classes=[f"`{c}`" for c in others],
        cores=manifest.machine.cores, kept=_policies_kept())
