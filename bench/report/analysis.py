"""Load result folders for the notebooks: runs, sweeps, and the figures derived from them."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.load.decisions import DecisionFigures
from bench.load.metrics import PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES, hit_rate
from bench.records import Figures, Manifest, RunSummary, lock_mismatch
from bench.report.capacity import kv_tokens
from bench.report.summary import FIGURES, summarize
from bench.rundir import read_manifest, read_requests, read_server_metrics
from serve import plan_worker


@dataclass
class Run:
    path: Path
    manifest: Manifest
    requests: pd.DataFrame
    server: pd.DataFrame

    @property
    def run_id(self) -> str:
        return self.manifest.run_id


def load_run(path: str | Path) -> Run:
    path = Path(path)
    return Run(path, read_manifest(path), read_requests(path), read_server_metrics(path))


def sweep_index(sweep_dir: str | Path) -> pd.DataFrame:
    """The sweep's points (index.json), with their settings as columns."""
    return pd.DataFrame(json.loads((Path(sweep_dir) / "index.json").read_text()))


def sweep_points(sweep_dir: str | Path, by: str = "classes") -> pd.DataFrame:
    """One row per (completed point, class) -- or per (point, group) with by="groups" -- holding the point's
    settings, its offered load, and the figures of bench/report/summary.py."""
    sweep_dir = Path(sweep_dir)
    rows, manifests = [], []
    for point in sweep_index(sweep_dir).to_dict("records"):
        if point["status"] != "complete":
            continue
        manifest = read_manifest(sweep_dir / point["path"])
        manifests.append(manifest)
        shape, summary = manifest.mix.mix.shape, manifest.summary
        if summary is None:
            continue
        for name, figures in (summary.classes if by == "classes" else summary.groups).items():
            row = {**point, {"classes": "cls", "groups": "group"}[by]: name, "shape": shape.kind,
                   "offered_npcs": getattr(shape, "users", None) or getattr(shape, "npcs", None),
                   "tick_hz": getattr(shape, "tick_hz", None), "tick_policy": getattr(shape, "policy", None),
                   "duration_s": summary.duration_s, **figures.model_dump(),
                   **(d.model_dump() if (d := decisions_of(summary, name if by == "classes" else None)) else {})}
            if by == "groups":
                row["workers"] = sum(w.group == name for w in manifest.stack_spec.workers)
                row["classes"] = [c for c, cls in manifest.mix.classes.items() if cls.group == name]
            rows.append(row)
    warn_if_mixed_locks(manifests)
    return pd.DataFrame(rows)


def sweep_manifests(sweep_dir: str | Path) -> list[Manifest]:
    """The manifests of a sweep's points that ran, for `titled`: what a plan drawn from the sweep rests on."""
    sweep_dir = Path(sweep_dir)
    return [read_manifest(sweep_dir / path) for path in sweep_index(sweep_dir).path
            if (sweep_dir / path / "manifest.json").exists()]


def titled(text: str, manifests: list[Manifest]) -> str:
    """A plot's title, which says SIMULATED when any run behind it had simulated workers (serve/sim)."""
    return f"SIMULATED: {text}" if any(m.simulated for m in manifests) else text


def routing_balance(sweep_dir: str | Path) -> tuple[pd.DataFrame, list[Manifest]]:
    """Per completed point and group: how evenly the proxy spread requests over the group's workers (the busiest
    and the idlest worker's requests, from the client's records), the group's prefix-cache hit rate (the
    workers' own counters) and its goodput; with the points' manifests, for `titled`."""
    sweep_dir = Path(sweep_dir)
    rows, manifests = [], []
    for point in sweep_index(sweep_dir).to_dict("records"):
        if point["status"] != "complete":
            continue
        manifest, requests = read_manifest(sweep_dir / point["path"]), read_requests(sweep_dir / point["path"])
        manifests.append(manifest)
        summary = manifest.summary
        assert summary is not None and summary.server is not None, point["path"]
        for group in sorted({w.group for w in manifest.stack_spec.workers}):
            names = [w.name for w in manifest.stack_spec.workers if w.group == group]
            counts = requests[requests.group == group].worker.value_counts().reindex(names, fill_value=0)
            rows.append({**point, "group": group, "npcs": getattr(manifest.mix.mix.shape, "users", None),
                         "requests": int(counts.sum()), "busiest": int(counts.max()), "idlest": int(counts.min()),
                         "max_over_min": round(counts.max() / counts.min(), 2) if counts.min() else None,
                         "prefix_cache_hit_rate": summary.server.prefix_cache_hit_rate.get(f"group:{group}"),
                         "goodput_rps": summary.groups[group].goodput_rps if group in summary.groups else None})
    return pd.DataFrame(rows), manifests


def assert_matches_manifests(table: pd.DataFrame, sweep_dir: str | Path, by: str = "classes",
                             figures: list[str] | None = None) -> int:
    """Assert that every figure a notebook shows from `table` (rows of `sweep_points`, or per-run totals with
    by="all") is its run's manifest figure, and that the manifest's figure is what the run's own request
    records give when summarized again (bench/report/summary.py). Returns how many figures were checked.

    A total summed over groups is compared within its rounding; a decision figure (staleness, fresh share) with
    the manifest's decisions, which come from `ticks.csv`, not from the request records."""
    key = {"classes": "cls", "groups": "group", "all": None}[by]
    decision_fields = set(DecisionFigures.model_fields)
    checked = 0
    for row in table.to_dict("records"):
        run_dir = Path(sweep_dir) / str(row.get("path", row["run_id"]))
        manifest = read_manifest(run_dir)
        assert manifest.summary is not None, f"{run_dir}: the run has no summary"
        again = summarize(read_requests(run_dir), manifest.summary.duration_s)
        stored = manifest.summary.all if key is None else getattr(manifest.summary, by)[row[key]]
        recomputed = again.all if key is None else getattr(again, by)[row[key]]
        for name in figures or [f for f in Figures.model_fields if f in row]:
            shown = None if pd.isna(row[name]) else row[name]
            if name in decision_fields:
                decisions = decisions_of(manifest.summary, row[key] if by == "classes" else None)
                expected = getattr(decisions, name) if decisions else None
            else:
                expected = getattr(stored, name)
                # A rate is recomputed over the summary's duration, which is kept to 0.01 s (up to 0.005 s off),
                # so it may move by that share of itself, and by its last digit.
                figure = FIGURES.get(name)
                slack = (10.0 ** -figure.digits + abs(expected or 0) * 0.005 / manifest.summary.duration_s
                         if figure and figure.per_second else 0.0)
                assert _same(expected, getattr(recomputed, name), slack), \
                    f"{run_dir} {row.get(key, 'all')} {name}: manifest {expected}, its requests give {getattr(recomputed, name)}"
            tolerance = 0.0 if key is not None else 0.002  # a sum of rounded figures against the rounded total
            assert _same(shown, expected, tolerance), \
                f"{run_dir} {row.get(key, 'all')} {name}: shown {shown}, manifest {expected}"
            checked += 1
    return checked


def _same(a: float | None, b: float | None, tolerance: float = 0.0) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= tolerance + 1e-9


def decisions_of(summary: RunSummary, cls: str | None) -> DecisionFigures | None:
    """A tick run's decision figures for one class where the run has them per class, else the run's."""
    return summary.decisions_by_class.get(cls, summary.decisions) if cls else summary.decisions


def warn_if_mixed_locks(manifests: list[Manifest]) -> None:
    """Warn, in the notebook's output, when the runs being compared came from different locked environments."""
    if warning := lock_mismatch({m.run_id: m.env_lock for m in manifests}):
        warnings.warn(warning, stacklevel=2)


def knee(curve: pd.DataFrame, x: str, y: str, min_gain: float = 0.10) -> float | None:
    """The load past which `y` (a throughput) grows by less than `min_gain` per step: the first x whose
    next step adds under 10 % (by default). None if every step still pays."""
    curve = curve.sort_values(x)
    xs, ys = curve[x].tolist(), curve[y].tolist()
    for i in range(len(xs) - 1):
        if ys[i] > 0 and ys[i + 1] < ys[i] * (1 + min_gain):
            return xs[i]
    return None


def counter_deltas(server: pd.DataFrame, metric: str) -> pd.Series:
    """Per source: last minus first value of a counter over the run."""
    series = server[server.metric == metric].sort_values("t_s").groupby("source").value
    return series.last() - series.first()


def prefix_cache_hit_rate(server: pd.DataFrame) -> pd.Series:
    """Per worker: prefix-cache hits / queries over the run (tokens), from its server_metrics.csv."""
    hits, queries = counter_deltas(server, PREFIX_CACHE_HITS), counter_deltas(server, PREFIX_CACHE_QUERIES)
    rates = {source: hit_rate(hits.to_dict(), queries.to_dict(), [source]) for source in queries.index}
    return pd.Series(rates, dtype=float, name="prefix_cache_hit_rate")


def kv_prediction_vs_vllm(manifest: Manifest) -> pd.DataFrame:
    """Per worker: the KV tokens predicted from the model's config, beside what vLLM reported at start-up
    (`vllm:cache_config_info`: num_gpu_blocks x block_size), and the error. CPU workers: from their
    VLLM_CPU_KVCACHE_SPACE. GPU workers: serve/gpu.py's memory plan on the GPU the run's machine reported, with
    each term beside what the worker's start-up log measured (weights, KV memory, CUDA graphs), where it was read."""
    spec = manifest.stack_spec
    gpus = {g.index: g for g in manifest.machine.gpus}
    rows = []
    for worker in spec.workers:
        reported = manifest.kv_cache.get(worker.name)
        group = spec.groups[worker.group]
        if not reported:
            continue
        block = int(reported["block_size"])
        vllm_tokens = int(reported["num_gpu_blocks"]) * block
        row: dict = {"worker": worker.name, "group": worker.group, "device": spec.device, "dtype": group.dtype,
                     "kv_bytes_per_token": spec.kv_bytes_per_token(worker.group), "block_size": block}
        if spec.device == "cpu" and group.kv_cache_space_gib is not None:
            row |= {"kv_space_gib": group.kv_cache_space_gib,
                    "predicted_tokens": kv_tokens(group.kv_cache_space_gib * 2**30, row["kv_bytes_per_token"], block)}
        elif spec.device == "cuda" and worker.gpu in gpus:
            plan = plan_worker(spec, worker, gpus[worker.gpu].memory_gib, block_size=block)
            logged = manifest.startup.get(worker.name)
            row |= {"gpu": str(gpus[worker.gpu]), "kv_space_gib": plan.kv_gib,
                    "logged_kv_gib": logged.available_kv_gib if logged else None,
                    "weights_gib": plan.weights_gib, "logged_weights_gib": logged.weights_gib if logged else None,
                    "cuda_graph_gib": plan.cuda_graph_gib, "logged_cuda_graph_gib": logged.cuda_graph_gib if logged else None,
                    "predicted_tokens": plan.kv_tokens}
        else:
            continue
        rows.append(row | {"vllm_tokens": vllm_tokens,
                           "error_pct": round(100 * (row["predicted_tokens"] - vllm_tokens) / vllm_tokens, 3)})
    return pd.DataFrame(rows)
