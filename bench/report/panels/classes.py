"""The per-class table: the manifest's summary figures of each class and of all requests, exactly as recorded."""

from __future__ import annotations

import pandas as pd

from bench.report.analysis import Run
from bench.report.panels import panel, paragraph, section, table

ALL = "ALL"  # the row of all requests, as `bench show` names it


def class_table(run: Run) -> pd.DataFrame | None:
    """One row per class, then ALL; one column per field of the summary's figures."""
    summary = run.manifest.summary
    if summary is None:
        return None
    rows = {**summary.classes, ALL: summary.all}
    return pd.DataFrame([figures.model_dump() for figures in rows.values()], index=pd.Index(list(rows), name="class"))


@panel("classes", order=10)
def classes(run: Run) -> str:
    frame = class_table(run)
    if frame is None:
        return section("Per class", paragraph(
            f"No summary: the run's status is {run.manifest.status}, so it did not finish. requests.jsonl holds "
            f"{len(run.requests)} requests as they were measured; the plots below are drawn from them."))
    summary = run.manifest.summary
    assert summary is not None
    return section("Per class", paragraph(
        f"The manifest's summary over {summary.duration_s} s: latencies in seconds over answered (TTFT) or completed "
        "(ITL, end-to-end) requests; rates per second; goodput counts requests that met their class's SLO and "
        "deadline."), table(frame.T, "per-class"))
