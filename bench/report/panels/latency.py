"""Latency over the run, per class: each request's TTFT and end-to-end time at its start, with its class's SLO."""

from __future__ import annotations

from matplotlib.figure import Figure

from bench.report.analysis import Run, titled
from bench.report.panels import class_colours, image, panel, run_origin, section

SERIES = (("ttft_s", "ttft_max_s", "TTFT (s)"), ("e2e_s", "e2e_max_s", "end-to-end (s)"))


@panel("latency", order=20)
def latency(run: Run) -> str | None:
    requests = run.requests[run.requests.outcome.isin(["ok", "interrupted"])]
    if requests.empty:
        return None
    t = requests.t_start - run_origin(run)
    colours = class_colours(list(run.manifest.mix.classes))
    figure = Figure(figsize=(10, 6.5))
    axes = figure.subplots(len(SERIES), 1, sharex=True)
    for ax, (column, budget, label) in zip(axes, SERIES, strict=True):
        for cls, part in requests.groupby("cls"):
            values = part[column].dropna()
            if values.empty:
                continue
            ax.plot(t[values.index], values, ".", ms=3, alpha=0.6, color=colours.get(str(cls), "k"), label=str(cls))
            if (slo := getattr(run.manifest.mix.classes[str(cls)].slo, budget, None)) is not None:
                ax.axhline(slo, ls="--", lw=1, color=colours.get(str(cls), "k"), label=f"{cls} SLO {slo:g} s")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7, loc="upper left", ncols=2)
    axes[-1].set_xlabel("seconds since the run started (request start)")
    figure.suptitle(titled("Latency over time per class; dashed: the class's SLO", [run.manifest]))
    return section("Latency over time", image(figure, "TTFT and end-to-end latency over time per class"))
