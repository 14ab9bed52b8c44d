"""The panels of a run's HTML page (`python -m bench report RUN_DIR`, bench/report/html.py).

Each panel is one module in this package that registers a function from the run to an HTML fragment, or to
None when the run holds no data for it (a mix run has no ticks, an interrupted run no summary):

    @panel("decisions", order=40)
    def decisions(run: Run) -> str | None:
        ...

Every module here is imported by `panels()`, so adding a panel is adding one module (and its test). The helpers
below draw a matplotlib figure into an embedded PNG and a table into HTML, so a page needs nothing from the network.
"""

from __future__ import annotations

import base64
import html
import importlib
import io
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure

from bench.report.analysis import Run

Render = Callable[[Run], str | None]


@dataclass(frozen=True)
class Panel:
    name: str
    order: int
    render: Render


_PANELS: dict[str, Panel] = {}


def panel(name: str, order: int) -> Callable[[Render], Render]:
    """Register a panel: `order` places it on the page (lower first), `name` is its section's id."""

    def register(render: Render) -> Render:
        if name in _PANELS and _PANELS[name].render.__module__ != render.__module__:
            raise ValueError(f"two panels named {name}: {_PANELS[name].render.__module__} and {render.__module__}")
        _PANELS[name] = Panel(name, order, render)
        return render

    return register


def panels() -> list[Panel]:
    """Every registered panel in page order (importing each module of this package once)."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return sorted(_PANELS.values(), key=lambda p: (p.order, p.name))


def section(title: str, *body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n" + "\n".join(body)


def image(figure: Figure, alt: str) -> str:
    """The figure as an embedded PNG (matplotlib's Agg canvas, which `Figure` uses without pyplot)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def cell(value: object) -> str:
    """A value as the records hold it: no rounding, so a table reads back as the figures it shows."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return repr(float(value))
    return str(value)


def table(frame: pd.DataFrame, table_id: str, index: bool = True) -> str:
    return frame.map(cell).to_html(table_id=table_id, index=index, border=0, escape=True)


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def run_origin(run: Run) -> float:
    """The Unix time a run's clock starts from: its server series' own origin, else its start time."""
    server = run.server
    if not server.empty and "unix_time" in server:
        return float((server.unix_time - server.t_s).median())
    return pd.Timestamp(run.manifest.started_at).timestamp()


def class_colours(names: list[str]) -> dict[str, str]:
    return {name: f"C{i % 10}" for i, name in enumerate(sorted(names))}
