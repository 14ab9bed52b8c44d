"""Every committed result folder reads back as its typed records: what the notebooks and `bench show` rely on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bench.fidelity import FidelityRun
from bench.overhead import OverheadRun
from bench.rundir import read_manifest
from serve.spec import StackSpec

RESULTS = Path(__file__).resolve().parents[2] / "results"


def committed(name: str) -> list[Path]:
    return sorted(RESULTS.glob(f"**/{name}"))


@pytest.mark.parametrize("path", committed("manifest.json"), ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_run_manifest_loads_typed(path: Path) -> None:
    manifest = read_manifest(path.parent)
    assert isinstance(manifest.stack, StackSpec) and manifest.mix.classes
    if manifest.status == "complete":
        assert manifest.summary is not None and manifest.summary.all.requests > 0
        assert set(manifest.summary.classes) <= set(manifest.mix.classes)


@pytest.mark.parametrize("path", committed("overhead.json"), ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_overhead_record_loads_typed(path: Path) -> None:
    record = OverheadRun.model_validate_json(path.read_text())
    assert record.rows and set(record.proxies) <= {row.target for row in record.rows}


@pytest.mark.parametrize("path", committed("fidelity.json"), ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_fidelity_record_loads_typed(path: Path) -> None:
    record = FidelityRun.model_validate_json(path.read_text())
    assert record.vllm is not None and record.bench is not None and record.agree is not None


def test_there_are_committed_results_to_check() -> None:
    assert len(committed("manifest.json")) > 10 and committed("overhead.json") and committed("fidelity.json")


LOCAL_PATH = re.compile(r"/root/|/home/[a-z]|/work/|/tmp/|\.venv/bin/")


def test_committed_results_carry_no_local_paths() -> None:
    """A result names what ran, not where this machine keeps it: no home folders, checkouts, scratch folders
    (/tmp) or environments, and no logs (they echo all of those)."""
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=RESULTS.parent, capture_output=True, text=True,
                             check=True).stdout.split()
    assert tracked and not [name for name in tracked if name.endswith(".log")]
    found = {name: LOCAL_PATH.findall((RESULTS.parent / name).read_text(errors="replace"))[:3] for name in tracked}
    assert not {name: paths for name, paths in found.items() if paths}
