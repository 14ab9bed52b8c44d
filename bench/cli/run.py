"""`python -m bench run`: a headless run of an NPC mix against the running stack, into one results folder.

    python -m bench run --mix npc-cpu [--duration-s 60] [--npcs N] [--rate-rps R]
                        [--repeats 3] [--cache reset]      repeated, from empty prefix caches
                        [--direct light-0]                  straight to one worker
                        [--processes 2]                     several Locust processes, one folder
                        [--master --expect-workers 2]       workers on other hosts (`bench worker`), one folder
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.cli import CommandError, add_run_id
from bench.cli._stack import locust_args, request_timeout_s, validate
from bench.load.child import run_until_done, stop_budget_s
from bench.options import LoadOptions
from bench.report.console import print_summary
from bench.report.html import report_after_run
from bench.report.stats import LEVEL
from bench.rundir import DIRTY_TREE_NOTE, git_info, labelled_run_id, new_run_id, read_manifest
from bench.spec import ResolvedMix
from serve import StackState

ORDER = 1
HELP = "a headless run of a mix"
SINGLE_PROCESS_SHAPES = ("tick", "trace")
MASTER_PORT = 5557  # Locust's default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    LoadOptions.add_arguments(parser)
    add_run_id(parser, "<mix>")
    parser.add_argument("--no-html-report", action="store_true", help="skip Locust's ~1 MB HTML report (CSVs are kept)")
    parser.add_argument("--repeats", type=int, default=1, help="run it N times (folders <run-id>-r0, -r1, ...) and "
                        "give each figure's confidence interval over the runs")
    parser.add_argument("--processes", type=int, default=1, help="Locust processes generating the load (Locust's "
                        "--processes: a master and N workers); the run still writes one results folder")
    hosts = parser.add_argument_group("load from several hosts (docs/how-to/scale-out.md)")
    hosts.add_argument("--master", action="store_true", help="be the Locust master of workers started with `python -m "
                       "bench worker` (on this host or others); they send their records here, into one folder")
    hosts.add_argument("--expect-workers", type=int, default=1, help="with --master: start once this many workers "
                       "have joined (later ones join the running load)")
    hosts.add_argument("--expect-workers-max-wait", type=float, default=300.0, help="with --master: seconds to wait "
                       "for them before giving up")
    hosts.add_argument("--master-bind-host", default="127.0.0.1", help="with --master: the interface workers connect "
                       "to; 0.0.0.0 or a LAN address for workers on other hosts")
    hosts.add_argument("--master-bind-port", type=int, default=MASTER_PORT, help="with --master: its port")


def run(args: argparse.Namespace) -> int:
    state, mix = validate(args)
    if args.repeats < 1:
        raise CommandError("--repeats must be at least 1")
    if args.processes < 1:
        raise CommandError("--processes must be at least 1")
    check_distribution(args, mix.mix.shape.kind)
    if git_info().dirty:
        print(f"warning: {DIRTY_TREE_NOTE}", file=sys.stderr, flush=True)
    simulated = state is not None and state.spec.simulated
    run_id = labelled_run_id(args.run_id, simulated) if args.run_id else new_run_id(mix.name, simulated=simulated)
    if state is not None and state.spec.simulated:
        print(f"warning: this stack's workers are simulated (profile {state.spec.profile}); the run is labelled "
              f"{run_id} and its manifest says so", file=sys.stderr, flush=True)
    run_dirs = [Path(args.results_dir) / (run_id if args.repeats == 1 else f"{run_id}-r{k}") for k in range(args.repeats)]
    for run_dir in run_dirs:
        if (code := run_once(args, state, mix, run_dir)) != 0:
            return code
    if len(run_dirs) > 1:
        from bench.report.compare import compare, render, repeats

        subject = repeats(run_id, run_dirs)
        print(f"\n{len(run_dirs)} repeats, each figure with its {LEVEL:.0%} interval (latency percentiles "
              "bootstrapped over the pooled requests, rates over the runs):")
        print(render([subject], compare([subject])))
    return 0


def check_distribution(args: argparse.Namespace, shape: str) -> None:
    """--processes and --master: what Locust would otherwise only find out once started."""
    if args.master and args.processes > 1:
        raise CommandError("give either --processes (workers on this host, started for you) or --master (workers "
                           "started with `python -m bench worker`), not both")
    if args.expect_workers < 1:
        raise CommandError("--expect-workers must be at least 1")
    if not 0 < args.master_bind_port < 65536:
        raise CommandError(f"--master-bind-port {args.master_bind_port}: not a port")
    several = f"--processes {args.processes}" if args.processes > 1 else "--master" if args.master else None
    if several and shape in SINGLE_PROCESS_SHAPES:
        raise CommandError(f"{several}: a {shape} shape keeps state across its NPCs (the game's tick ledger, a trace's "
                           "schedule) in one process; run it with --processes 1")


def distribution_args(args: argparse.Namespace) -> list[str]:
    """Locust's own flags for a master and its workers. With --master, rebalancing gives a late worker its share of
    the NPCs, and moves a lost worker's NPCs to the others."""
    if args.master:
        return ["--master", "--expect-workers", str(args.expect_workers), "--expect-workers-max-wait",
                f"{args.expect_workers_max_wait:g}", "--master-bind-host", args.master_bind_host,
                "--master-bind-port", str(args.master_bind_port), "--enable-rebalancing"]
    if args.processes > 1:  # Locust's own: a master and N worker processes, which send it their records
        return ["--processes", str(args.processes)]
    return []


def run_once(args: argparse.Namespace, state: StackState | None, mix: ResolvedMix, run_dir: Path) -> int:
    if state is None:  # an outside endpoint (--target)
        target = host = args.target
    else:
        host = state.base_url
        target = next(w.url for w in state.workers if w.name == args.direct) if args.direct else state.base_url
    timeout_s = request_timeout_s(state)
    print(f"running mix {mix.name} ({mix.mix.shape.kind}, {mix.mix.shape.duration_s:.0f} s) against "
          f"{target}; results -> {run_dir}", flush=True)
    command = [*locust_args(args, timeout_s), "--headless", "--only-summary", "--run-dir", str(run_dir),
               "--exit-code-on-error", "0", "--host", host, "--loglevel", "WARNING"]
    command += distribution_args(args)
    if args.master:
        print(f"waiting for {args.expect_workers} worker(s): `python -m bench worker --master-host <this host> "
              f"--master-port {args.master_bind_port}` (master listening on {args.master_bind_host})", flush=True)
    if args.no_html_report:
        command.append("--skip-html-report")
    with tempfile.TemporaryDirectory(prefix="npcbench-mix-") as folder:  # the mix as resolved and checked here
        resolved = Path(folder) / "mix.json"
        resolved.write_text(mix.model_dump_json())
        code = run_until_done([*command, "--resolved-mix", str(resolved)], stop_budget_s(timeout_s))
    if not (run_dir / "manifest.json").exists():
        raise CommandError(f"locust exited with code {code} before the run started; see its output above", 1)
    manifest = read_manifest(run_dir)
    print_summary(run_dir)
    report_after_run(run_dir)
    return {"complete": 0, "interrupted": 130}.get(manifest.status, 1)
