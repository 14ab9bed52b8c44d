"""Where the machine's CPU goes during a run: every process's CPU seconds (user + system), sampled from /proc
through psutil, with the load averages and each core's busy time. Run it beside a `python -m bench run` on the real
stack; `shares()` then sums the samples by role (a vLLM worker's API-server process, its engine-core process, the
LiteLLM proxy, the Locust load generator, everything else).

    python -m bench cpushare --out samples.jsonl --duration-s 330 --interval-s 2     (beside the runs)
    python -m bench cpushare --samples samples.jsonl --runs DIR/real-r0 ... --out DIR/cpu-share.json
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

ROLES = ("api_server", "engine_core", "model_worker", "proxy", "load", "other")
VLLM_ROLES = ("api_server", "engine_core", "model_worker")


def role(name: str, cmdline: list[str], ours: tuple[str, ...] = ()) -> str:
    """The part a process plays in the stack, from its name and command line. With `ours` (paths: the stack's
    folder, the worktree, the results folder), a proxy or load generator counts only if its command line names one
    of them: other people's stacks on the same machine are "other"."""
    joined = " ".join(cmdline)
    kind = _role(name, joined)
    if ours and kind in ("proxy", "load") and not any(marker in joined for marker in ours):
        return "other"
    return kind


def _role(name: str, joined: str) -> str:
    if "EngineCore" in name or "EngineCore" in joined:
        return "engine_core"
    if name.startswith("VLLM::Worker") or joined.startswith("VLLM::Worker"):
        return "model_worker"  # vLLM V1's executor process: the forward passes
    if "vllm" in joined and " serve" in joined:
        return "api_server"
    if "litellm" in joined:
        return "proxy"
    if "locust" in joined or "bench run" in joined or "bench.load" in joined:
        return "load"
    return "other"


def unpathed(text: str) -> str:
    """A command line as recorded: each absolute path by its last part (this machine's folders are not results)."""
    return " ".join(Path(arg).name if arg.startswith("/") else arg for arg in text.split(" "))


def sample() -> dict:
    """One sample: every process's CPU seconds so far, each core's busy seconds, the load averages."""
    procs = []
    for proc in psutil.process_iter(["pid", "ppid", "name", "cmdline", "cpu_times", "cpu_num"]):
        info = proc.info
        times = info.get("cpu_times")
        if times is None:
            continue
        cmdline = info.get("cmdline") or []
        procs.append({"pid": info["pid"], "ppid": info["ppid"], "name": info["name"],
                      "cmd": unpathed(" ".join(cmdline))[:200], "role": role(info["name"] or "", cmdline),
                      "cpu_s": round(times.user + times.system, 3), "core": info.get("cpu_num")})
    cores = [round(c.user + c.system + c.nice + c.irq + c.softirq, 3) for c in psutil.cpu_times(percpu=True)]
    return {"t": round(time.time(), 3), "load": list(os.getloadavg()), "cores_busy_s": cores, "procs": procs}


def record(out: Path, duration_s: float, interval_s: float = 1.0) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    end = time.monotonic() + duration_s
    with out.open("w") as fh:
        while time.monotonic() < end:
            fh.write(json.dumps(sample()) + "\n")
            fh.flush()
            time.sleep(interval_s)


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def worker_of(proc: dict, by_pid: dict[int, dict]) -> str | None:
    """The vLLM worker (its --port) a process belongs to: its own command line's, else its nearest ancestor's."""
    candidate: dict | None = proc
    for _ in range(4):
        if candidate is None:
            return None
        parts = candidate["cmd"].split()
        if "--port" in parts and parts.index("--port") + 1 < len(parts) and "vllm" in candidate["cmd"]:
            return parts[parts.index("--port") + 1]
        candidate = by_pid.get(candidate["ppid"])
    return None


def shares(samples: Iterable[dict], start: float | None = None, end: float | None = None,
           ours: tuple[str, ...] = ()) -> dict:
    """CPU seconds by role (and by worker port for the vLLM processes) between the first and last sample in
    [start, end], per second of that window: 1.0 is one whole core."""
    window = [s for s in samples if (start is None or s["t"] >= start) and (end is None or s["t"] <= end)]
    if len(window) < 2:
        raise ValueError("fewer than two samples in the window")
    first, last = window[0], window[-1]
    span = last["t"] - first["t"]
    before = {p["pid"]: p for p in first["procs"]}
    by_pid = {p["pid"]: p for p in last["procs"]}
    by_role: dict[str, float] = dict.fromkeys(ROLES, 0.0)
    by_worker: dict[str, dict[str, float]] = {}
    others: dict[str, float] = {}
    for proc in last["procs"]:
        used = proc["cpu_s"] - before[proc["pid"]]["cpu_s"] if proc["pid"] in before else proc["cpu_s"]
        if used <= 0:
            continue
        kind = role(proc["name"] or "", proc["cmd"].split(), ours)  # again: the roles may have been refined since
        by_role[kind] += used
        if kind == "other":
            what = f"{proc['name']}: {proc['cmd'][:60]}".rstrip(": ")
            others[what] = others.get(what, 0.0) + used
        port = worker_of(proc, by_pid)
        if port is not None and kind in VLLM_ROLES:
            by_worker.setdefault(port, dict.fromkeys(VLLM_ROLES, 0.0))[kind] += used
    cores = [b - a for a, b in zip(first["cores_busy_s"], last["cores_busy_s"], strict=True)]
    return {"window_s": round(span, 1), "cores_busy": [round(c / span, 3) for c in cores],
            "load_1m": [s["load"][0] for s in window][-1],
            "cores_by_role": {k: round(v / span, 3) for k, v in by_role.items()},
            "cores_by_worker": {port: {k: round(v / span, 3) for k, v in d.items()}
                                for port, d in sorted(by_worker.items())},
            "other_top": {what: round(used / span, 3)
                          for what, used in sorted(others.items(), key=lambda kv: -kv[1])[:10]}}


def by_run(samples: list[dict], run_dirs: list[Path], ours: tuple[str, ...] = ()) -> dict[str, dict]:
    """`shares` over each run's window (its manifest's start to end), with the load averages seen in it."""
    from datetime import datetime

    out = {}
    for run_dir in run_dirs:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        start = datetime.fromisoformat(manifest["started_at"]).timestamp()
        end = datetime.fromisoformat(manifest["ended_at"]).timestamp()
        window = [s for s in samples if start <= s["t"] <= end]
        out[run_dir.name] = {**shares(window, ours=ours), "load_avg_1_5_15": [round(x, 2) for x in window[-1]["load"]],
                             "load_1m_max": round(max(s["load"][0] for s in window), 2),
                             "started_at": manifest["started_at"], "ended_at": manifest["ended_at"]}
    return out
