"""The CPU study pages show what their raw records give: one key figure per page recomputed here from the run's own
files (requests.jsonl, ticks.csv, fidelity.json, requests.csv) with pandas, not through the page's code."""

from __future__ import annotations

import json

import pandas as pd

from bench.report import pages
from serve.paths import REPO_ROOT

RESULTS = REPO_ROOT / "results"


def rendered(path: str) -> str:
    return pages.pages()[path].render(RESULTS)


def test_headline_fresh_shares_are_the_ticks_records() -> None:
    page = rendered("studies/headline-ambient-1hz.md")
    sweep = RESULTS / "sweep-cpu-tick-policies"
    for point in json.loads((sweep / "index.json").read_text()):
        ticks = pd.read_csv(sweep / point["path"] / "ticks.csv")
        fresh = (ticks.decision == "fresh").mean()
        row = f"| {point['load.npcs']} | {point['load.tick_policy']} | {fresh * 100:.0f} % |"
        assert row in page, row
    ok = (pd.read_json(RESULTS / "sweep-cpu-tick-10hz" / "s0-l2" / "requests.jsonl", lines=True).outcome == "ok").sum()
    assert f"under `cancel`, {ok} of" in page
