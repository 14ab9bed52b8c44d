"""Every committed result folder reads back as its typed records: what the notebooks and `bench show` rely on."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from bench.lab.fidelity import FidelityRun
from bench.lab.overhead import OverheadRun
from bench.records import Provenance
from bench.rundir import read_manifest, says_simulated
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


def tracked_results() -> list[str]:
    return subprocess.run(["git", "ls-files", "results"], cwd=RESULTS.parent, capture_output=True, text=True,
                          check=True).stdout.split()


# Named before the rule held in code (only "-sim" inside the name, from the profile cpu-sim); write-ups cite them by
# these names, so they are renamed with those. The list may only shrink.
NAMED_BEFORE_THE_RULE = {"calibration-cpu/cpu-sim-shared-r0", "calibration-cpu/cpu-sim-shared-r1",
                         "calibration-cpu/cpu-sim-shared-b-r0", "calibration-cpu/cpu-sim-shared-b-r1"}


def records() -> list[Path]:
    return committed("manifest.json") + committed("overhead.json") + committed("fidelity.json")


def record_of(path: Path) -> tuple[str, Provenance]:
    """The record's run id and its provenance, which knows whether the workers were simulated."""
    if path.name == "manifest.json":
        manifest = read_manifest(path.parent)
        return manifest.run_id, manifest
    model = {"overhead.json": OverheadRun, "fidelity.json": FidelityRun}[path.name]
    record = model.model_validate_json(path.read_text())
    return record.run_id, record


@pytest.mark.parametrize("path", records(), ids=lambda p: str(p.relative_to(RESULTS)))
def test_a_record_names_itself_simulated_exactly_when_its_workers_were(path: Path) -> None:
    """`-sim` at the end of the folder's name and of the run id (`-sim-rN` for a repeat), and nowhere else."""
    folder = str(path.parent.relative_to(RESULTS))
    if folder in NAMED_BEFORE_THE_RULE:
        pytest.skip("named before the rule; renamed with the write-ups that cite it")
    run_id, record = record_of(path)
    assert says_simulated(path.parent.name) == record.simulated, f"folder {folder}: simulated={record.simulated}"
    assert says_simulated(run_id) == record.simulated, f"run id {run_id}: simulated={record.simulated}"


def test_the_records_named_before_the_rule_are_still_misnamed() -> None:
    """Once renamed, a folder leaves NAMED_BEFORE_THE_RULE, so the rule checks it again."""
    for folder in NAMED_BEFORE_THE_RULE:
        assert read_manifest(RESULTS / folder).simulated and not says_simulated(Path(folder).name), folder


@pytest.mark.parametrize("path", committed("index.json"), ids=lambda p: str(p.parent.relative_to(RESULTS)))
def test_a_sweep_index_says_which_points_were_simulated(path: Path) -> None:
    rows = json.loads(path.read_text())
    assert rows and all(row["simulated"] == read_manifest(path.parent / row["path"]).simulated for row in rows)
    csv = pd.read_csv(path.with_name("index.csv"))
    assert list(csv.simulated) == [row["simulated"] for row in rows]
    if path.with_name("intervals.csv").exists():
        intervals = pd.read_csv(path.with_name("intervals.csv"))
        by_point = {f"{path.parent.name}/{row['path']}".removesuffix(f"-r{row.get('repeat', 0)}"): row["simulated"]
                    for row in rows}
        assert intervals.subject.map(by_point).tolist() == intervals.simulated.tolist()


def test_no_locust_html_is_committed() -> None:
    """Locust's HTML report is ~1 MB a run and read by nothing here: the CSVs and the run's own records are kept
    (and `python -m bench report` draws a page from them on demand)."""
    assert not [name for name in tracked_results() if name.endswith(".html")]


def test_committed_results_carry_no_local_paths() -> None:
    """A result names what ran, not where this machine keeps it: no home folders, checkouts, scratch folders
    (/tmp) or environments, and no logs (they echo all of those)."""
    tracked = tracked_results()
    assert tracked and not [name for name in tracked if name.endswith(".log")]
    found = {name: LOCAL_PATH.findall((RESULTS.parent / name).read_text(errors="replace"))[:3] for name in tracked}
    assert not {name: paths for name, paths in found.items() if paths}
