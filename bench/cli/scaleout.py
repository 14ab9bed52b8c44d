"""`python -m bench scaleout --npcs N --ambient-every-s S`: load-generator processes, proxy processes and Redis for a
game's load, from the harness's measured ceilings (bench/lab/scaleout.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import CommandError
from serve import settings

HELP = "load-generator processes, proxy processes and Redis for a game's load, from the harness's measured ceilings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--npcs", type=int, required=True)
    parser.add_argument("--ambient-every-s", type=float, required=True, help="seconds between an NPC's ambient ticks")
    parser.add_argument("--dialogue-share", type=float, default=0.0, help="share of NPCs in a streamed dialogue")
    parser.add_argument("--dialogue-every-s", type=float, default=10.0, help="seconds between a dialogue's turns")
    parser.add_argument("--ceilings", default=str(Path(settings().results) / "harness-ceilings"),
                        help="the harness-ceilings run folders")
    parser.add_argument("--redis-ops-per-s", type=float, help="what one Redis serves here (redis-benchmark)")
    parser.add_argument("--machine-cores", type=int, default=16, help="cores of one machine, for the machine count")


def run(args: argparse.Namespace) -> int:
    from bench.lab.scaleout import GameLoad, measured_ceilings, plan, render

    load = GameLoad(npcs=args.npcs, ambient_every_s=args.ambient_every_s, dialogue_share=args.dialogue_share,
                    dialogue_every_s=args.dialogue_every_s)
    folder = Path(args.ceilings)
    if not folder.is_dir():
        raise CommandError(f"--ceilings {folder}: no such folder; measure the harness first "
                           "(docs/studies/harness-ceilings.md)")
    if args.machine_cores < 1:
        raise CommandError("--machine-cores must be at least 1")
    print(render(plan(load, measured_ceilings(folder), args.redis_ops_per_s, args.machine_cores),
                 args.redis_ops_per_s))
    return 0
