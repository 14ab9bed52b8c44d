"""The notebooks' check that what they show is what the runs recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.report import analysis

SAMPLE = Path(__file__).resolve().parents[2] / "results" / "sweep-cpu-sample"


def test_shown_figures_that_match_the_manifests_pass_and_are_counted() -> None:
    classes = analysis.sweep_points(SAMPLE, by="classes")
    assert analysis.assert_matches_manifests(classes, SAMPLE, figures=["goodput_rps", "e2e_p95_s"]) == 2 * len(classes)


def test_a_figure_shown_wrong_is_caught() -> None:
    groups = analysis.sweep_points(SAMPLE, by="groups")
    groups.loc[groups.index[3], "e2e_p95_s"] += 0.5
    with pytest.raises(AssertionError, match="e2e_p95_s: shown"):
        analysis.assert_matches_manifests(groups, SAMPLE, "groups")


def test_a_manifest_that_its_requests_do_not_bear_out_is_caught(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    shutil.copytree(SAMPLE, sweep)
    point = analysis.sweep_index(sweep).path.iloc[0]
    manifest = json.loads((sweep / point / "manifest.json").read_text())
    manifest["summary"]["classes"]["ambient"]["e2e_p50_s"] += 1.0  # a figure edited by hand
    (sweep / point / "manifest.json").write_text(json.dumps(manifest))
    classes = analysis.sweep_points(sweep, by="classes")
    with pytest.raises(AssertionError, match="its requests give"):
        analysis.assert_matches_manifests(classes[classes.path == point], sweep, figures=["e2e_p50_s"])
