"""Every notebook runs top to bottom, headless, on the committed sample results."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_runs_without_error(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()  # raises on the first cell error
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {}) for o in outputs) \
        or any(o.get("output_type") == "execute_result" for o in outputs)


def test_there_are_notebooks() -> None:
    assert len(list(NOTEBOOKS.glob("*.ipynb"))) >= 3


@pytest.mark.parametrize("name", ["02_capacity_plan", "03_kv_cache"])
def test_planning_notebooks_read_the_sweep_they_are_given(name: str, monkeypatch) -> None:
    # A GPU owner points them at their own sweep (docs/how-to/gpu-first-hour.md); here another committed one.
    monkeypatch.setenv("NPCBENCH_SWEEP", str(NOTEBOOKS.parent / "results" / "sweep-cpu-defaults"))
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                   for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "sweep-cpu-defaults" in text and "sweep-cpu-sample" not in text


def executed_text(name: str, sweep: str, monkeypatch) -> str:
    monkeypatch.setenv("NPCBENCH_SWEEP", str(NOTEBOOKS.parent / "results" / sweep))
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                   for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)


def test_a_capacity_plan_from_a_simulated_sweep_says_simulated(monkeypatch) -> None:
    # The README sends a GPU owner's first hour on gpu-sim through NPCBENCH_SWEEP; a plan drawn from simulated
    # workers must not read as a measured one.
    text = executed_text("02_capacity_plan", "sweep-gpu-sim-routing-scale", monkeypatch)
    for heading in ("sweep sweep-gpu-sim-routing-scale", "capacity plan for the hamlet", "capacity plan for the city",
                    "recommendation, from sweep-gpu-sim-routing-scale"):
        assert f"SIMULATED: {heading}" in text, heading
    assert "SIMULATED: tick plans" not in text  # the tick section reads a real sweep of its own
    assert "SIMULATED" not in executed_text("02_capacity_plan", "sweep-cpu-sample", monkeypatch)
