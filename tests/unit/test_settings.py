"""NPCBENCH_* variables are read in one place, with their documented defaults."""

from __future__ import annotations

from pathlib import Path

from serve import paths
from serve.settings import settings


def test_defaults_without_variables(monkeypatch) -> None:
    for name in ("HOME", "MODELS", "PROFILE", "RESULTS", "DETACHED"):
        monkeypatch.delenv(f"NPCBENCH_{name}", raising=False)
    assert paths.home() == Path.home() / ".cache" / "npcbench"
    assert paths.models_dir() == paths.home() / "models"
    assert settings().results == Path("results") and settings().profile is None and not settings().detached


def test_variables_set_the_settings(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NPCBENCH_HOME", str(tmp_path))
    monkeypatch.setenv("NPCBENCH_RESULTS", str(tmp_path / "runs"))
    monkeypatch.setenv("NPCBENCH_PROFILE", "gpu")
    monkeypatch.delenv("NPCBENCH_MODELS", raising=False)
    assert paths.stack_dir() == tmp_path / "stack" and paths.models_dir() == tmp_path / "models"
    assert settings().results == tmp_path / "runs" and settings().profile == "gpu"
    monkeypatch.setenv("NPCBENCH_MODELS", str(tmp_path / "elsewhere"))
    assert paths.models_dir() == tmp_path / "elsewhere"
