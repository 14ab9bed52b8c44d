"""Latency distributions per class: the share of requests at or under each latency, with the class's SLO."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from bench.report.analysis import Run, titled
from bench.report.panels import class_colours, image, panel, section
from bench.report.panels.latency import SERIES


@panel("distributions", order=30)
def distributions(run: Run) -> str | None:
    requests = run.requests[run.requests.outcome.isin(["ok", "interrupted"])]
    if requests.empty:
        return None
    colours = class_colours(list(run.manifest.mix.classes))
    figure = Figure(figsize=(10, 4))
    axes = figure.subplots(1, len(SERIES))
    for ax, (column, budget, label) in zip(axes, SERIES, strict=True):
        for cls, part in requests.groupby("cls"):
            values = np.sort(part[column].dropna().to_numpy(dtype=float))
            if not len(values):
                continue
            colour = colours.get(str(cls), "k")
            ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", color=colour,
                    label=f"{cls} (n={len(values)})")
            if (slo := getattr(run.manifest.mix.classes[str(cls)].slo, budget, None)) is not None:
                ax.axvline(slo, ls="--", lw=1, color=colour)
        ax.set_xlabel(label)
        ax.set_ylabel("share of requests at or under")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7, loc="lower right")
    figure.suptitle(titled("Latency distributions per class (empirical CDF); dashed: the class's SLO", [run.manifest]))
    return section("Distributions", image(figure, "latency distributions per class"))
