"""`python -m bench report RUN_DIR` against committed runs of each kind (a mix, a tick mix, simulated workers), each
copied to a temporary folder: the page's tables read back as the manifest's figures, SIMULATED is in the title
exactly when the workers were, and the page loads nothing from anywhere."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bench.cli import main
from bench.report import html as report
from bench.report import panels
from bench.rundir import read_manifest

RESULTS = Path(__file__).resolve().parents[2] / "results"
RUNS = {"mix": "sweep-cpu-sample/s0-l1", "tick": "sweep-cpu-tick-policies/s0-l2", "simulated": "calibration-cpu/cpu-sim-r0"}


class Tables(HTMLParser):
    """Every <table id=...> of a page as rows of cell texts (header row included), and every <img>'s src."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def value(text: str) -> object:
    if text == "-":
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def by_column(rows: list[list[str]]) -> dict[str, dict[str, object]]:
    """A transposed table (one column per class, one row per figure) as {column: {figure: value}}."""
    header = rows[0]
    body = [row for row in rows[1:] if len(row) == len(header)]  # pandas adds a row naming the index
    return {name: {row[0]: value(row[i]) for row in body} for i, name in enumerate(header) if i}


def page_of(run_dir: Path) -> str:
    assert main(["report", str(run_dir)]) == 0
    return (run_dir / "report.html").read_text()


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, str]:
    """Each kind's page, drawn once from a copy of its committed run (nothing is written into results/)."""
    drawn = {}
    for kind, path in RUNS.items():
        run_dir = tmp_path_factory.mktemp(kind) / Path(path).name
        shutil.copytree(RESULTS / path, run_dir)
        drawn[kind] = page_of(run_dir)
    return drawn


@pytest.mark.parametrize("kind", list(RUNS))
def test_the_per_class_table_is_the_manifests_summary(pages, kind: str) -> None:
    summary = read_manifest(RESULTS / RUNS[kind]).summary
    assert summary is not None
    shown = by_column(Tables(pages[kind]).tables["per-class"])
    expected = {**{name: f.model_dump() for name, f in summary.classes.items()}, "ALL": summary.all.model_dump()}
    assert shown == expected


@pytest.mark.parametrize("kind", list(RUNS))
def test_simulated_is_in_the_title_exactly_when_the_workers_were(pages, kind: str) -> None:
    manifest = read_manifest(RESULTS / RUNS[kind])
    assert manifest.simulated == (kind == "simulated")
    title = re.search(r"<title>(.*)</title>", pages[kind])
    assert title and manifest.run_id in title.group(1)
    assert ("SIMULATED" in title.group(1)) == manifest.simulated
    assert ('class="simulated"' in pages[kind]) == manifest.simulated


@pytest.mark.parametrize("kind", list(RUNS))
def test_the_page_embeds_its_images_and_loads_nothing(pages, kind: str) -> None:
    images = Tables(pages[kind]).images
    assert len(images) >= 3 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"<script|<link|<iframe|\b(?:src|href)=\"(?!data:)", pages[kind])
    assert 'class="failed"' not in pages[kind]  # every panel drew
    ids = re.findall(r' id="([^"]+)"', pages[kind])
    assert len(ids) == len(set(ids))  # sections and tables each named once


def test_a_tick_run_shows_its_decisions_and_a_mix_run_none(pages) -> None:
    assert '<section id="decisions">' not in pages["mix"]
    summary = read_manifest(RESULTS / RUNS["tick"]).summary
    assert summary is not None and summary.decisions is not None
    shown = by_column(Tables(pages["tick"]).tables["decision-figures"])
    assert shown == {"ALL": summary.decisions.model_dump(),
                     **{cls: d.model_dump() for cls, d in summary.decisions_by_class.items()}}


def test_an_interrupted_run_without_a_summary_still_gets_a_page(tmp_path) -> None:
    run_dir = tmp_path / "cut-short"
    shutil.copytree(RESULTS / RUNS["mix"], run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.update(status="interrupted", summary=None)
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    page = page_of(run_dir)
    assert "interrupted" in re.search(r"<title>(.*)</title>", page).group(1)  # type: ignore[union-attr]
    assert "No summary" in page and "per-class" not in Tables(page).tables
    assert len(Tables(page).images) >= 2  # drawn from the requests that were recorded


def test_a_panel_that_fails_costs_only_itself(tmp_path, monkeypatch) -> None:
    def broken(run):
        raise ValueError("no such column")

    run_dir = tmp_path / "run"
    shutil.copytree(RESULTS / RUNS["simulated"], run_dir)
    monkeypatch.setitem(panels._PANELS, "broken", panels.Panel("broken", 15, broken))
    page = page_of(run_dir)
    assert "this panel failed to draw: ValueError: no such column" in page and "per-class" in Tables(page).tables


def test_a_report_that_cannot_be_drawn_warns_and_leaves_the_run(tmp_path, capsys) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(RESULTS / RUNS["mix"], run_dir)
    (run_dir / "manifest.json").write_text("{not json")
    before = sorted(p.name for p in run_dir.iterdir())
    assert report.report_after_run(run_dir) is None
    assert "warning: could not write" in capsys.readouterr().err
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_a_folder_that_is_no_run_is_refused(tmp_path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no manifest.json" in capsys.readouterr().err


def test_a_sweep_folder_gets_a_page_per_run(tmp_path) -> None:
    sweep = tmp_path / "sweep-cpu-tick"
    shutil.copytree(RESULTS / "sweep-cpu-tick", sweep)
    assert main(["report", str(sweep)]) == 0
    assert sorted(p.parent.name for p in sweep.glob("*/report.html")) == ["s0-l0", "s0-l1", "s0-l2", "s0-l3"]


def test_panels_register_once_each_in_page_order() -> None:
    registered = panels.panels()
    assert [p.name for p in registered][:2] == ["classes", "latency"] and registered[-1].name == "provenance"
    with pytest.raises(ValueError, match="two panels named latency"):
        panels.panel("latency", order=1)(lambda run: None)
