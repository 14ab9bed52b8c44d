"""Load result folders for the notebooks: runs, sweeps, and the figures derived from them."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.capacity import kv_tokens
from bench.metrics import PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES, hit_rate
from bench.records import Manifest, lock_mismatch
from bench.rundir import read_manifest, read_requests, read_server_metrics


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
    settings, its offered load, and the figures of bench/summary.py."""
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
                   "tick_hz": getattr(shape, "tick_hz", None), "duration_s": summary.duration_s, **figures.model_dump()}
            if by == "groups":
                row["workers"] = sum(w.group == name for w in manifest.stack.workers)
                row["classes"] = [c for c, cls in manifest.mix.classes.items() if cls.group == name]
            rows.append(row)
    warn_if_mixed_locks(manifests)
    return pd.DataFrame(rows)


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
    """Per worker: KV tokens predicted from the model's config and the worker's KV space, beside what vLLM
    reported at start-up (`vllm:cache_config_info`), and the error. CPU workers: VLLM_CPU_KVCACHE_SPACE."""
    spec = manifest.stack
    rows = []
    for worker in spec.workers:
        reported = manifest.kv_cache.get(worker.name)
        group = spec.groups[worker.group]
        if not reported or group.kv_cache_space_gib is None:
            continue
        block = int(reported["block_size"])
        predicted = kv_tokens(group.kv_cache_space_gib * 2**30, spec.kv_bytes_per_token(worker.group), block)
        measured = int(reported["kv_cache_size_tokens"])
        rows.append({"worker": worker.name, "group": worker.group, "dtype": group.dtype,
                     "kv_space_gib": group.kv_cache_space_gib, "kv_bytes_per_token": spec.kv_bytes_per_token(worker.group),
                     "block_size": block, "predicted_tokens": predicted, "vllm_tokens": measured,
                     "error_pct": round(100 * (predicted - measured) / measured, 3)})
    return pd.DataFrame(rows)
