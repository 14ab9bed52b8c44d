"""`python -m bench trace RUN_DIR --out FILE`: a run's requests as a trace (bench/shapes/trace.py), to replay the
session against other settings."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import CommandError
from bench.rundir import read_requests

HELP = "write a run's requests as a trace file, to replay with a `trace` shape"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR")
    parser.add_argument("--out", required=True, help="the trace file to write (JSON Lines)")


def run(args: argparse.Namespace) -> int:
    from bench.shapes.trace import TraceEvent

    requests = read_requests(Path(args.run_dir)).sort_values("t_start")
    if requests.empty:
        raise CommandError(f"{args.run_dir} holds no requests to make a trace of")
    start = requests.t_start.iloc[0]
    drawn = requests.prompt_tokens_drawn.fillna(requests.prompt_tokens)  # folders from before drawn lengths were kept
    lines = [TraceEvent(t_s=round(row.t_start - start, 3), npc_id=row.npc_id, cls=row.cls,
                        prompt_tokens=int(prompt), output_tokens=int(row.max_tokens)).model_dump_json()
             for row, prompt in zip(requests.itertuples(), drawn, strict=True)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} requests of {requests.npc_id.nunique()} NPCs over {requests.t_start.iloc[-1] - start:.1f} s "
          f"-> {out}")
    return 0
