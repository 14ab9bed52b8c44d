"""`python -m bench simulate`: a mix on a profile's simulated workers in virtual time, into an ordinary run folder.

    python -m bench simulate --profile gpu-sim --mix npc-gpu [--npcs 4000] [--duration-s 3600] [--seed 1]
                             [--set proxy.routing_strategy=least-busy]

No stack runs and nothing sleeps: the mix's arrivals, the proxy's routing strategy and each simulated worker's
engine (serve/sim/engine.py) run on one virtual clock (bench/lab/simulate.py). The folder (requests.jsonl, manifest
with `engine: virtual-time`, its name ending in -sim) reads in `bench show`, `compare`, `report` and the notebooks
like a real run's. Not modelled: the proxy's CPU and queueing, HTTP, retries and fallbacks, the tick shape.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import CommandError
from bench.fit import check_fits
from bench.options import LoadOptions
from bench.report.console import print_summary
from bench.spec import load_mix
from serve import SpecError, load_profile

ORDER = 2
HELP = "a mix on a profile's simulated workers in virtual time (no stack, no sleeping)"
FLAGS = ("mix", "npcs", "duration_s", "rate_rps", "results_dir")  # LoadOptions' flags that apply here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="gpu-sim", help="a profile of simulated workers (gpu-sim, cpu-sim) or "
                        "a .toml path")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="override a profile field, "
                        "as `python -m serve up --set` (e.g. proxy.routing_strategy=least-busy)")
    for name in FLAGS:
        field = LoadOptions.model_fields[name]
        default = field.get_default(call_default_factory=True)
        kind: type = field.annotation if field.annotation in (int, float) else str  # type: ignore[assignment]
        parser.add_argument(LoadOptions.flag(name), default=default, help=field.description, type=kind)
    parser.add_argument("--seed", type=int, default=None, help="the NPCs' and the router's random seed "
                        "(default: the mix's)")
    parser.add_argument("--run-id", help="folder name under --results-dir; it ends in -sim (default: "
                        "<UTC time>-<mix>-sim)")


def run(args: argparse.Namespace) -> int:
    from bench.lab.simulate import simulate

    options = LoadOptions.model_validate({name: getattr(args, name) for name in FLAGS})
    try:
        spec = load_profile(args.profile, args.set)
    except SpecError as exc:
        raise CommandError(str(exc)) from None
    if not spec.simulated or any(g.engine != "sim" for g in spec.groups.values()):
        raise CommandError(f"profile {spec.profile} has real workers; virtual time runs a profile whose groups are "
                           "all `engine = \"sim\"` (gpu-sim, cpu-sim)")
    mix = load_mix(options.mix, options.npcs, options.rate_rps, options.duration_s)
    check_fits(mix, spec)
    sim = simulate(spec, mix, seed=args.seed, results_dir=Path(options.results_dir), run_id=args.run_id)
    assert sim.run_dir is not None
    print(f"simulated {len(sim.records)} requests of mix {mix.name} on profile {spec.profile} in virtual time: "
          f"{sim.summary.duration_s:.0f} s simulated in {sim.wall_s:.1f} s wall, {sim.cpu_s:.1f} s CPU "
          f"({sim.engine_steps} engine steps); results -> {sim.run_dir}")
    print_summary(sim.run_dir)
    return 0
