"""Tick mixes: each tick's decisions (fresh, late, fallback) and the staleness NPCs acted on (ticks.csv), with the
summary's decision figures."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from bench.report.analysis import Run, titled
from bench.report.panels import image, panel, section, table
from bench.rundir import read_ticks

DECISIONS = ("fresh", "late", "fallback")
DECISION_COLOURS = {"fresh": "tab:green", "late": "tab:orange", "fallback": "tab:red"}


def decision_table(run: Run) -> pd.DataFrame | None:
    summary = run.manifest.summary
    if summary is None or summary.decisions is None:
        return None
    rows = {"ALL": summary.decisions, **summary.decisions_by_class}
    return pd.DataFrame([d.model_dump() for d in rows.values()], index=pd.Index(list(rows), name="class"))


@panel("decisions", order=40)
def decisions(run: Run) -> str | None:
    ticks = read_ticks(run.path)
    figures = decision_table(run)
    if ticks.empty and figures is None:
        return None
    body = []
    if figures is not None:
        body.append(table(figures.T, "decision-figures"))
    if not ticks.empty:
        shares = ticks.groupby("tick").decision.value_counts(normalize=True).unstack(fill_value=0.0)
        shares = shares.reindex(columns=list(DECISIONS), fill_value=0.0)
        staleness = ticks.groupby("tick").staleness
        figure = Figure(figsize=(10, 6))
        top, bottom = figure.subplots(2, 1, sharex=True)
        top.stackplot(shares.index, *(shares[d] for d in DECISIONS), labels=list(DECISIONS),
                      colors=[DECISION_COLOURS[d] for d in DECISIONS], alpha=0.8)
        top.set_ylabel("share of NPCs")
        top.legend(fontsize=7, loc="upper right")
        for name, series in (("p50", staleness.median()), ("p95", staleness.quantile(0.95)), ("max", staleness.max())):
            bottom.plot(series.index, series, label=name)
        bottom.set_ylabel("staleness (ticks)")
        bottom.set_xlabel("tick")
        bottom.legend(fontsize=7, loc="upper right")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
        figure.suptitle(titled("Each tick's decisions and the staleness NPCs acted on", [run.manifest]))
        body.append(image(figure, "decisions and staleness over ticks"))
    return section("Decisions over ticks", *body)
