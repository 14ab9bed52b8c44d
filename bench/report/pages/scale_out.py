"""docs/studies/scale-out.md: `python -m bench scaleout` for a 4,000-NPC game, computed by bench/lab/scaleout.py from the
(SIMULATED-engine) ceilings in results/harness-ceilings/."""

from __future__ import annotations

from pathlib import Path

from bench.lab.overhead import OverheadRun
from bench.lab.scaleout import HEADROOM, OVERLOADED, GameLoad, measured_ceilings, plan
from bench.lab.scaleout import render as render_plan
from bench.report.pages import page, render
from bench.report.pages.harness_ceilings import redis_rates
from bench.report.pages.scale_provenance import SIMULATED_NOTICE, of_overhead, of_run, provenance
from bench.rundir import read_manifest

CEILINGS = "harness-ceilings"
LEAN = "proxy-paths/lean-sim"  # the lighter proxy path, measured beside the default in one run
MACHINE_CORES = 16
EXAMPLE = GameLoad(npcs=4000, ambient_every_s=2, dialogue_share=0.1, dialogue_every_s=10)

TEMPLATE = """# SIMULATED: A scale-out plan

{{ notice }}
`python -m bench scaleout` computes what surrounds the GPUs for a game's load from the
[harness's ceilings](harness-ceilings.md) (`bench/lab/scaleout.py`): each part's cores of work are its requests/s times
its CPU per request; its processes are those cores at {{ headroom | pct }} a core, and with one process per core the
processes are the cores to provision. The load generator's CPU is read from one Locust process (`-p1` runs); the
proxy's from the setup this plan prescribes, {{ redis_processes }} proxy processes sharing one Redis (`-redis` runs),
not from a single process. Machines are counted at {{ machine_cores }} cores. For a game of {{ load.npcs | num }} NPCs
with an ambient decision every {{ load.ambient_every_s | num }} s and {{ load.dialogue_share | pct }} of them in a
dialogue turn every {{ load.dialogue_every_s | num }} s, with one Redis's rate taken as the slowest command of
`redis-benchmark.txt` to the thousand ({{ redis_ops | num }} commands/s):

```
$ {{ command }}
{{ output }}
```

So a studio benchmarking that game provisions {{ plan.load_generator.processes }} cores for the load generator
({{ plan.load_generator.cores | num }} cores of work, as {{ plan.load_generator.processes }} Locust processes:
`--processes` on one machine up to its cores; across machines Locust's `--master`/`--worker`, whose folders this
project does not merge yet), {{ plan.proxy.processes }} cores for the proxy ({{ plan.proxy.cores | num }} cores of
work, as {{ plan.proxy.processes }} LiteLLM processes: `proxy.num_workers` per machine, the machines sharing one Redis
through `proxy.redis_host`, behind a load balancer), and {{ plan.redis_instances }} for Redis (at
{{ redis_share | pct }} of what it serves): {{ plan.machines }} machines of {{ machine_cores }} cores.
{% if failing and overloaded %}
**Flagged:** {{ failing }}: a share of the requests failed, so those CPU figures are no ceiling.
{% endif %}{% if overloaded %}
**Flagged:** {{ overloaded }} asked for {{ overload_threshold | pct }} or more of the machine's cores while it was
measured (the runs' own processes; other work on the machine comes on top): its CPU a request stands, but a
saturated machine may inflate it.
{% elif failing %}
**Flagged:** {{ failing }}: a share of the requests failed, so those CPU figures are no ceiling (see
[the ceilings](harness-ceilings.md)); the plan's streamed terms rest on them.
{% else %}
None of the runs read asked for {{ overload_threshold | pct }} or more of the machine's cores (their own processes).
{% endif %}

The proxy's share is set by its CPU per request, {{ proxy_plain_ms | num(1) }} ms for a plain
~{{ plain_prompt | round(-2) | num }}-token request on this machine: LiteLLM's cost, not the GPUs'. The
[`lean` switches](litellm-paths.md) took {{ lean_plain | pct }} (plain) and {{ lean_streamed | pct }} (streamed) off
the proxy's CPU a request at concurrency {{ lean_concurrency }} in `bench overhead`, at the price of the metrics the
bench does not read; if that carried over to these mixes (not measured), about {{ lean_cores | num }} of the
{{ plan.proxy.cores | num }} cores. The plan above is for the default.

These figures come from a {{ cores }}-core VM ({{ cpu_model }}) and GPU-scale prompt sizes; faster cores lower them,
and the plan is only as good as the ceilings it reads, which `results/{{ ceilings }}/commands.sh` measures again on
a studio's own machine.

## Where the figures come from

- The ceilings: {{ sources }} in `results/{{ ceilings }}/`, made by `results/{{ ceilings }}/commands.sh`.
  {{ ceilings_provenance }}
- The lean saving: `results/{{ lean }}/`, made by `results/proxy-paths/commands.sh`. {{ lean_provenance }}
- The plan is arithmetic on them, done by `bench/lab/scaleout.py` when this page is generated (the date, commit and tree
  state above are the runs' records).
"""


def lean_saving(run: OverheadRun, shape: str) -> tuple[float, int]:
    """The share of the default proxy's CPU a request that the lean one saved, at the run's highest concurrency."""
    concurrency = max(r.concurrency for r in run.rows)
    rows = {r.target: r for r in run.rows if r.shape == shape and r.concurrency == concurrency}
    default, lean = rows["proxy"].proxy_cpu_ms_per_request, rows["lean"].proxy_cpu_ms_per_request
    assert default and lean, f"{run.run_id}: no proxy CPU at concurrency {concurrency}"
    return 1 - lean / default, concurrency


@page("studies/scale-out.md", title="SIMULATED: A scale-out plan")
def scale_out(results: Path) -> str:
    folder = results / CEILINGS
    ceilings = measured_ceilings(folder)
    redis_ops = round(min(redis_rates((folder / "redis-benchmark.txt").read_text()).values()) / 1000) * 1000
    the_plan = plan(EXAMPLE, ceilings, redis_ops, MACHINE_CORES)
    lean_path = results / LEAN / "overhead.json"
    lean = OverheadRun.model_validate_json(lean_path.read_text())
    (lean_plain, concurrency), (lean_streamed, _) = lean_saving(lean, "plain"), lean_saving(lean, "stream")
    lean_cores = (the_plan.plain_rps * ceilings.proxy_ms["plain"] * lean_plain
                  + the_plan.streamed_rps * ceilings.proxy_ms["streamed"] * lean_streamed) / 1000
    records = [of_run(folder / source) for source in ceilings.sources]
    plain = next(folder / s for s in ceilings.sources if "plain-p1" in s)
    plain_manifest = read_manifest(plain)
    assert plain_manifest.summary is not None
    command = (f"python -m bench scaleout --npcs {EXAMPLE.npcs} --ambient-every-s {EXAMPLE.ambient_every_s:g} "
               f"--dialogue-share {EXAMPLE.dialogue_share:g} --dialogue-every-s {EXAMPLE.dialogue_every_s:g} "
               f"--redis-ops-per-s {redis_ops} --machine-cores {MACHINE_CORES}")
    commands = (the_plan.redis_commands_per_s or 0)
    redis_run = read_manifest(next(folder / s for s in ceilings.sources if "redis" in s))
    overloaded = ", ".join(f"`{name}` ({share:.0%} of its cores)" for name, share in ceilings.overloaded.items())
    return render(
        TEMPLATE, notice=SIMULATED_NOTICE, headroom=HEADROOM, load=EXAMPLE, redis_ops=redis_ops, command=command,
        output=render_plan(the_plan, redis_ops), plan=the_plan, redis_share=commands / redis_ops,
        proxy_plain_ms=ceilings.proxy_ms["plain"], plain_prompt=plain_manifest.summary.all.prompt_tokens_mean or 0,
        lean_plain=lean_plain, lean_streamed=lean_streamed, lean_concurrency=concurrency, lean_cores=lean_cores,
        cores=plain_manifest.machine.cores, cpu_model=plain_manifest.machine.cpu_model, ceilings=CEILINGS, lean=LEAN,
        sources=", ".join(f"`{s}`" for s in ceilings.sources), ceilings_provenance=provenance(records),
        lean_provenance=provenance([of_overhead(lean_path, "lean")]), machine_cores=MACHINE_CORES,
        redis_processes=redis_run.stack_spec.proxy.num_workers, overloaded=overloaded, overload_threshold=OVERLOADED,
        failing=", ".join(f"`{n}` ({v:.0%} failed)" for n, v in ceilings.failing.items()))
