"""`python -m bench`: NPC traffic against the running stack.

    python -m bench run --mix npc-cpu [--duration-s 60] [--npcs N] [--rate-rps R]   headless run -> results/<run-id>/
                        [--repeats 3] [--cache reset]                             ... repeated, from empty prefix caches
                        [--direct light-0]                                        ... straight to one worker
    python -m bench ui [--mix npc-cpu]                                             web UI on 127.0.0.1:8089/npc
    python -m bench sweep FILE.toml                                                serve settings x load levels
    python -m bench show RUN_DIR [RUN_DIR ...]                                     runs' per-class summaries
    python -m bench compare A B [C ...]                                            runs or sweep points side by side
    python -m bench overhead [--label NAME]                                        what the proxy adds per request
    python -m bench fidelity [--direct light-0]                                    this bench against vllm bench serve
    python -m bench mixes                                                          the mixes and their classes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from pydantic import ValidationError

from bench.analysis import sweep_index
from bench.load.child import run_until_done, stop_budget_s, stop_timeout_s
from bench.options import LoadOptions
from bench.records import lock_mismatch
from bench.rundir import DIRTY_TREE_NOTE, git_info, labelled_run_id, new_run_id, read_manifest, read_requests
from bench.spec import MixError, check_fits, direct_worker, load_mix, mix_names
from bench.stats import LEVEL
from serve.paths import REPO_ROOT
from serve.settings import settings
from serve.spec import error_lines
from serve.state import NOT_READY, ready_state

if TYPE_CHECKING:
    from bench.calibrate import Calibration

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def ready_stack():
    state = ready_state()
    if state is None:
        raise MixError(NOT_READY)
    return state


def validate(args: argparse.Namespace):
    """Fail on bad options, a bad mix or a mix that does not fit the running stack, before Locust starts."""
    options = LoadOptions.from_args(args)
    mix = load_mix(options.mix, options.npcs, options.rate_rps, options.duration_s, options.tick_policy)
    state = ready_stack()
    check_fits(mix, state.spec)
    if args.direct:
        direct_worker(mix, state.workers, args.direct)
    if options.cache == "reset" and not state.spec.worker_dev_endpoints:
        raise MixError("--cache reset empties the workers' prefix caches through vLLM's /reset_prefix_cache, which "
                       "this stack's workers do not serve: restart it with `python -m serve up --set "
                       "worker_dev_endpoints=true`, or run with --cache keep")
    return state, mix


SINGLE_PROCESS_SHAPES = ("tick", "trace")


def locust_args(args: argparse.Namespace, request_timeout_s: float) -> list[str]:
    # --stop-timeout: at the end, requests in flight finish and are recorded instead of being cut off.
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *LoadOptions.from_args(args).argv(),
            "--stop-timeout", f"{stop_timeout_s(request_timeout_s)}s"]


def cmd_run(args: argparse.Namespace) -> int:
    state, mix = validate(args)
    if args.repeats < 1:
        return fail("--repeats must be at least 1")
    if args.processes < 1:
        return fail("--processes must be at least 1")
    if args.processes > 1 and mix.mix.shape.kind in SINGLE_PROCESS_SHAPES:
        return fail(f"--processes {args.processes}: a {mix.mix.shape.kind} shape keeps state across its NPCs (the "
                    "game's tick ledger, a trace's schedule) in one process; run it with --processes 1")
    if git_info().dirty:
        print(f"warning: {DIRTY_TREE_NOTE}", file=sys.stderr, flush=True)
    run_id = labelled_run_id(args.run_id, state.spec.simulated) if args.run_id else (
        new_run_id(mix.name, simulated=state.spec.simulated))
    if state.spec.simulated:
        print(f"warning: this stack's workers are simulated (profile {state.spec.profile}); the run is labelled "
              f"{run_id} and its manifest says so", file=sys.stderr, flush=True)
    run_dirs = [Path(args.results_dir) / (run_id if args.repeats == 1 else f"{run_id}-r{k}") for k in range(args.repeats)]
    for run_dir in run_dirs:
        if (code := run_once(args, state, mix, run_dir)) != 0:
            return code
    if len(run_dirs) > 1:
        from bench.compare import compare, render, repeats

        subject = repeats(run_id, run_dirs)
        print(f"\n{len(run_dirs)} repeats, each figure with its {LEVEL:.0%} interval (latency percentiles "
              "bootstrapped over the pooled requests, rates over the runs):")
        print(render([subject], compare([subject])))
    return 0


def run_once(args: argparse.Namespace, state, mix, run_dir: Path) -> int:
    target = next(w.url for w in state.workers if w.name == args.direct) if args.direct else state.base_url
    print(f"running mix {mix.name} ({mix.mix.shape.kind}, {mix.mix.shape.duration_s:.0f} s) against "
          f"{target}; results -> {run_dir}", flush=True)
    command = [*locust_args(args, state.spec.proxy.timeout_s), "--headless", "--only-summary", "--run-dir", str(run_dir),
               "--exit-code-on-error", "0", "--host", state.base_url, "--loglevel", "WARNING"]
    if args.processes > 1:  # Locust's own: a master and N worker processes, which send it their records
        command += ["--processes", str(args.processes)]
    if args.no_html_report:
        command.append("--skip-html-report")
    code = run_until_done(command, stop_budget_s(state.spec.proxy.timeout_s))
    if not (run_dir / "manifest.json").exists():
        return fail(f"locust exited with code {code} before the run started; see its output above", 1)
    manifest = read_manifest(run_dir)
    print_summary(run_dir)
    return {"complete": 0, "interrupted": 130}.get(manifest.status, 1)


def cmd_ui(args: argparse.Namespace) -> int:
    from bench.webform import START_PATH

    state = ready_stack()
    print(f"Web UI: http://{args.web_host}:{args.web_port}{START_PATH}  (pick a mix and start it; then Locust's own charts; "
          f"stack: {state.base_url}); Ctrl-C stops it", flush=True)
    command = [*locust_args(args, state.spec.proxy.timeout_s), "--web-host", args.web_host, "--web-port", str(args.web_port),
               "--host", state.base_url]
    return run_until_done(command, stop_budget_s(state.spec.proxy.timeout_s))


def print_summary(run_dir: Path) -> None:
    manifest = read_manifest(run_dir)
    summary = manifest.summary
    print(f"\nrun {manifest.run_id}: {manifest.status}, {manifest.duration_s} s, folder {run_dir}")
    lock = manifest.env_lock
    print(f"  environment: Python {manifest.versions.get('python')}, "
          + (f"installed from {lock.lock} (sha256 {lock.lock_sha256[:12]})" if lock else "no recorded lock"))
    if cache := manifest.cache:
        state = "emptied just before the start" if cache.reset else "warm (earlier runs' prompts may hit)" if cache.warm \
            else "cold (nothing looked up since the workers started)"
        print(f"  prefix caches at the start: {state}")
    for note in manifest.notes:
        print(f"  note: {note}")
    if summary is None:
        print("  (no summary: the run did not finish; requests.jsonl holds what was measured)")
        return
    columns = ["requests", "n_ok", "n_error", "n_timeout", "n_tool_invalid", "n_interrupted", "n_cancelled", "ttft_p95_s",
               "e2e_p50_s", "e2e_p95_s", "output_tps", "goodput_rps", "slo_attainment", "deadline_miss_rate"]
    rows = {**summary.classes, "ALL": summary.all}
    table = pd.DataFrame({name: figures.model_dump() for name, figures in rows.items()}).T[columns].astype(object)
    print(table.to_string(na_rep="-"))
    if d := summary.decisions:
        print(f"  NPC-ticks: {d.npc_ticks}: fresh {d.fresh_share:.0%}, late {d.late_share:.0%}, fallback "
              f"{d.fallback_share:.0%}; staleness p50 {d.staleness_p50:g} / p95 {d.staleness_p95:g} / max "
              f"{d.staleness_max} ticks; thinking {d.thinking_share:.0%}; skipped {d.skipped}, cancelled {d.cancelled}")
        for cls, c in summary.decisions_by_class.items():
            print(f"    {cls}: {c.npc_ticks} NPC-ticks, fresh {c.fresh_share:.0%}, late {c.late_share:.0%}, fallback "
                  f"{c.fallback_share:.0%}; staleness p95 {c.staleness_p95:g}, max {c.staleness_max}")
    if load := summary.client:
        print(f"  load generator: {load.cpu_s:g} CPU s ({load.cpu_ms_per_request} ms a request); its 100 ms timers "
              f"fired late by {load.loop_lag_p50_ms:g} ms (p50), {load.loop_lag_p99_ms:g} ms (p99), "
              f"{load.loop_lag_max_ms:g} ms (max)")
    if summary.server is None:
        return
    print(f"  output tokens: client {summary.all.output_tokens_total}, "
          f"workers' vllm:generation_tokens_total {summary.server.generation_tokens_total}")
    if summary.server.redis_commands is not None:
        print(f"  the stack's Redis processed {summary.server.redis_commands} commands "
              f"({summary.server.redis_commands / max(summary.all.requests, 1):.1f} a request)")
    if cpu := summary.server.cpu_s:
        per_request = {name: f"{seconds * 1000 / max(summary.all.requests, 1):.1f}" for name, seconds in cpu.items()}
        print(f"  CPU ms per request (each process with its children): {per_request}")
    if memory := summary.server.memory:
        print("  resident memory (MiB, each process with its children; slope over the run's second half):")
        print(pd.DataFrame({name: trend.model_dump() for name, trend in memory.items()}).T.to_string(na_rep="-"))


def run_folders(path: Path) -> list[Path]:
    """A run folder, or a sweep folder's runs that have started."""
    if not (path / "index.json").exists():
        return [path]
    return [path / point for point in sweep_index(path).path if (path / point / "manifest.json").exists()]


def cmd_show(args: argparse.Namespace) -> int:
    run_dirs = [run for path in args.run_dirs for run in run_folders(Path(path))]
    for run_dir in run_dirs:
        print_summary(run_dir)
    manifests = [read_manifest(run_dir) for run_dir in run_dirs]
    if warning := lock_mismatch({m.run_id: m.env_lock for m in manifests}):
        print(f"\nwarning: {warning}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import CompareError, compare, load_subjects, provenance_warnings, render

    try:
        subjects = [subject for path in args.paths for subject in load_subjects(path)]
        table = compare(subjects)
    except CompareError as exc:
        return fail(str(exc))
    print(f"each figure with its {LEVEL:.0%} interval; a difference whose interval holds 0 is within noise")
    print(render(subjects, table))
    if args.csv:
        table.to_csv(args.csv, index=False)
    for warning in provenance_warnings(subjects):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    """Write a run's requests as a trace (bench/shapes/trace.py), to replay the session against other settings."""
    from bench.shapes.trace import TraceEvent

    requests = read_requests(Path(args.run_dir)).sort_values("t_start")
    if requests.empty:
        return fail(f"{args.run_dir} holds no requests to make a trace of")
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


def cmd_mixes(args: argparse.Namespace) -> int:
    for name in mix_names():
        mix = load_mix(name)
        print(f"{name:14} {mix.mix.scale}  {mix.mix.shape.kind:7} {', '.join(mix.classes)}  -- {mix.mix.description}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from bench.sweep import run_sweep

    return run_sweep(Path(args.grid), Path(args.results_dir), resume=not args.restart)


def cmd_overhead(args: argparse.Namespace) -> int:
    from bench.overhead import run_overhead

    state = ready_stack()
    run_id = args.run_id or new_run_id(f"overhead-{args.label}")
    if bool(args.compare) != bool(args.set):
        return fail("--compare NAME and --set PATH=VALUE go together: the second proxy's label and its settings")
    if others := [item for item in args.set if not item.startswith("proxy.")]:
        return fail(f"--set {others[0]}: the compared proxy takes proxy.* settings; it fronts the stack's own workers")
    record = run_overhead(state, Path(args.results_dir), run_id, args.label, args.requests, args.concurrency,
                          args.duration_s, args.compare, args.set)
    print(pd.DataFrame([row.model_dump() for row in record.rows]).to_string(na_rep="-"))
    print(f"results: {Path(args.results_dir) / run_id}")
    return 0


def cmd_fidelity(args: argparse.Namespace) -> int:
    from bench.fidelity import run_fidelity
    from bench.fidelity import table as fidelity_table

    state = ready_stack()
    if not any(w.name == args.direct for w in state.workers):
        return fail(f"--direct {args.direct}: the stack's workers are {', '.join(w.name for w in state.workers)}")
    run_id = args.run_id or new_run_id("fidelity")
    workload = {"input_len": args.input_len, "output_len": args.output_len, "concurrency": args.concurrency,
                "num_prompts": args.num_prompts}
    try:
        record = run_fidelity(state, Path(args.results_dir), run_id, args.direct, workload, args.tolerance)
    except RuntimeError as exc:
        return fail(str(exc), 1)
    print(fidelity_table(record).to_string(na_rep="-"))
    verdict = "agree" if record.agree else "DO NOT agree"
    print(f"median TTFT, median ITL and output tokens/s {verdict} within {args.tolerance:.0%}; "
          f"results: {Path(args.results_dir) / run_id}")
    return 0 if record.agree else 1


def print_fits(record: Calibration) -> None:
    for worker_fit in record.fits:
        print(f"{worker_fit.worker}: {worker_fit.latency.model_dump_json(exclude={'source'})} "
              f"(rmse prefill {worker_fit.prefill_rmse_ms} ms, decode {worker_fit.decode_rmse_ms} ms)")


def cmd_calibrate(args: argparse.Namespace) -> int:
    from bench.calibrate import run_calibration

    if args.refit:  # the probes of an earlier calibration, fitted again by this code's model
        from bench.calibrate import Calibration, refit
        from serve.gpu import batched_tokens

        path = Path(args.refit)
        spec = Calibration.model_validate_json(path.read_text()).stack
        budgets = {w.name: batched_tokens(spec, w.group) for w in spec.workers}
        print_fits(refit(path, budgets))
        return 0
    state = ready_stack()
    names = [w.name for w in state.workers]
    if unknown := [w for w in args.worker if w not in names]:
        return fail(f"--worker {unknown[0]}: the stack's workers are {', '.join(names)}")
    if state.spec.simulated:
        return fail(f"profile {state.spec.profile} has simulated workers: calibrate against real vLLM workers")
    if not args.worker:
        return fail("name the workers to probe: --worker heavy-0 [--worker light-1]")
    record = run_calibration(state, args.worker, Path(args.results_dir), args.run_id or new_run_id("calibration"))
    print_fits(record)
    print(f"results: {Path(args.results_dir) / record.run_id}")
    return 0


def cmd_scaleout(args: argparse.Namespace) -> int:
    from bench.scaleout import GameLoad, measured_ceilings, plan, render

    load = GameLoad(npcs=args.npcs, ambient_every_s=args.ambient_every_s, dialogue_share=args.dialogue_share,
                    dialogue_every_s=args.dialogue_every_s)
    folder = Path(args.ceilings)
    if not folder.is_dir():
        return fail(f"--ceilings {folder}: no such folder; measure the harness first (README: the harness's ceilings)")
    print(render(plan(load, measured_ceilings(folder), args.redis_ops_per_s), args.redis_ops_per_s))
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from bench.report import pages

    docs, results = Path(args.docs_dir), Path(args.results_dir)
    if args.check:
        if stale := pages.stale(docs, results):
            return fail(f"generated docs pages differ from their results: {', '.join(stale)}; run `python -m bench docs`", 1)
        print(f"{len(pages.pages())} generated pages match their results")
        return 0
    changed = pages.write(docs, results)
    print(f"{len(pages.pages())} generated pages; rewritten: {', '.join(changed) or 'none'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="a headless run of a mix")
    LoadOptions.add_arguments(run)
    run.add_argument("--run-id", help="folder name under --results-dir (default: <UTC time>-<mix>)")
    run.add_argument("--no-html-report", action="store_true", help="skip Locust's ~1 MB HTML report (CSVs are kept)")
    run.add_argument("--repeats", type=int, default=1, help="run it N times (folders <run-id>-r0, -r1, ...) and give "
                     "each figure's confidence interval over the runs")
    run.add_argument("--processes", type=int, default=1, help="Locust processes generating the load (Locust's "
                     "--processes: a master and N workers); the run still writes one results folder")
    run.set_defaults(func=cmd_run)
    ui = sub.add_parser("ui", help="the Locust web UI")
    LoadOptions.add_arguments(ui)
    ui.add_argument("--web-host", default="127.0.0.1")
    ui.add_argument("--web-port", type=int, default=8089)
    ui.set_defaults(func=cmd_ui)
    sweep = sub.add_parser("sweep", help="restart the stack for each serve setting and run each load level")
    sweep.add_argument("grid", help="sweep file (see bench/sweeps/)")
    sweep.add_argument("--results-dir", default=str(settings().results))
    sweep.add_argument("--restart", action="store_true", help="ignore finished points instead of resuming")
    sweep.set_defaults(func=cmd_sweep)
    show = sub.add_parser("show", help="print runs' summaries, warning when they came from different locks")
    show.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run folder, or a sweep folder for all its runs")
    show.set_defaults(func=cmd_show)
    compare = sub.add_parser("compare", help="runs or sweep points side by side, per class, with the differences' "
                             "confidence intervals")
    compare.add_argument("paths", nargs="+", metavar="RUN_OR_SWEEP",
                         help="run folders, sweep points (SWEEP/s0-l1: its repeats) or sweep folders (every point); "
                         "the first is the baseline")
    compare.add_argument("--csv", metavar="FILE", help="also write the long table (one row per class, figure, subject)")
    compare.set_defaults(func=cmd_compare)
    sub.add_parser("mixes", help="list the mixes").set_defaults(func=cmd_mixes)
    trace = sub.add_parser("trace", help="write a run's requests as a trace file, to replay with a `trace` shape")
    trace.add_argument("run_dir", metavar="RUN_DIR")
    trace.add_argument("--out", required=True, help="the trace file to write (JSON Lines)")
    trace.set_defaults(func=cmd_trace)
    fidelity = sub.add_parser("fidelity", help="this bench and `vllm bench serve` on one worker, one fixed workload")
    fidelity.add_argument("--direct", metavar="WORKER", default="light-0", help="the worker both tools send to")
    fidelity.add_argument("--input-len", type=int, default=256, help="prompt tokens (random)")
    fidelity.add_argument("--output-len", type=int, default=64, help="reply tokens (ignore_eos)")
    fidelity.add_argument("--concurrency", type=int, default=4)
    fidelity.add_argument("--num-prompts", type=int, default=48, help="vLLM's requests; the bench runs as long")
    fidelity.add_argument("--tolerance", type=float, default=0.05, help="largest relative difference that agrees")
    fidelity.add_argument("--results-dir", default=str(settings().results))
    fidelity.add_argument("--run-id", help="folder name under --results-dir (default: <UTC time>-fidelity)")
    fidelity.set_defaults(func=cmd_fidelity)
    overhead = sub.add_parser("overhead", help="latency and CPU the proxy adds: direct to the workers vs through it")
    overhead.add_argument("--requests", type=int, default=200, help="requests per target at concurrency 1")
    overhead.add_argument("--concurrency", type=int, default=16, help="the closed-loop level for saturation")
    overhead.add_argument("--duration-s", type=float, default=30.0, help="seconds per target at that level")
    overhead.add_argument("--label", default="default", help="names the proxy setting measured, e.g. default, tuned")
    overhead.add_argument("--compare", metavar="NAME", help="also measure a second proxy, labelled NAME, in the same run")
    overhead.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                          help="the second proxy's settings on top of the stack's spec, e.g. proxy.num_workers=1")
    overhead.add_argument("--results-dir", default=str(settings().results))
    overhead.add_argument("--run-id", help="folder name under --results-dir (default: <UTC time>-overhead-<label>)")
    overhead.set_defaults(func=cmd_overhead)
    calibrate = sub.add_parser("calibrate", help="fit the simulated worker's latency model to real workers")
    calibrate.add_argument("--worker", action="append", default=[], help="a worker to probe (repeatable)")
    calibrate.add_argument("--refit", metavar="CALIBRATION_JSON", help="fit an earlier calibration's probes again")
    calibrate.add_argument("--results-dir", default=str(settings().results))
    calibrate.add_argument("--run-id", help="folder name under --results-dir (default: <UTC time>-calibration)")
    calibrate.set_defaults(func=cmd_calibrate)
    scaleout = sub.add_parser("scaleout", help="load-generator processes, proxy processes and Redis for a game's load, "
                              "from the harness's measured ceilings")
    scaleout.add_argument("--npcs", type=int, required=True)
    scaleout.add_argument("--ambient-every-s", type=float, required=True, help="seconds between an NPC's ambient ticks")
    scaleout.add_argument("--dialogue-share", type=float, default=0.0, help="share of NPCs in a streamed dialogue")
    scaleout.add_argument("--dialogue-every-s", type=float, default=10.0, help="seconds between a dialogue's turns")
    scaleout.add_argument("--ceilings", default=str(Path(settings().results) / "harness-ceilings"),
                          help="the harness-ceilings run folders")
    scaleout.add_argument("--redis-ops-per-s", type=float, help="what one Redis serves here (redis-benchmark)")
    scaleout.set_defaults(func=cmd_scaleout)
    docs = sub.add_parser("docs", help="write the docs pages generated from the committed results (docs/studies/, ...)")
    docs.add_argument("--check", action="store_true", help="only check that the committed pages are current")
    docs.add_argument("--docs-dir", default=str(REPO_ROOT / "docs"))
    docs.add_argument("--results-dir", default=str(REPO_ROOT / "results"))
    docs.set_defaults(func=cmd_docs)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MixError as exc:
        return fail(str(exc))
    except ValidationError as exc:  # options out of range, e.g. --npcs -1
        return fail("; ".join(error_lines(exc)))


if __name__ == "__main__":
    sys.exit(main())
