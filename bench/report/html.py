"""One run as one self-contained HTML page, RUN_DIR/report.html (`python -m bench report`, bench/cli/report.py).

The page is its panels (bench/report/panels/), in order, under a title naming the run; a run against simulated
workers says SIMULATED in the title and in a banner. Images are embedded PNGs and the page loads nothing, so it
reads offline and can be mailed. `python -m bench run` writes it at the end of every run.
"""

from __future__ import annotations

import html
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from bench.rundir import SIMULATED_NOTE
from serve.common import write_atomic

if TYPE_CHECKING:  # the panels bring matplotlib, which every other command can do without
    from bench.report.analysis import Run

REPORT = "report.html"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
.simulated { background: #b00020; color: white; font-weight: bold; padding: 0.8em 1em; border-radius: 4px; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f3f3f3; }
#provenance-facts td, #versions td { text-align: left; }
img { max-width: 100%; }
.failed { color: #b00020; }
"""


def title(run: Run) -> str:
    m = run.manifest
    return f"{'SIMULATED: ' if m.simulated else ''}run {m.run_id} ({m.mix.name}, {m.status})"


def render(run: Run) -> str:
    """The page. A panel that fails to draw is replaced by its error, so one bad panel costs only itself."""
    from bench.report.panels import panels

    sections = []
    for p in panels():
        try:
            fragment = p.render(run)
        except Exception as exc:  # the rest of the page is still worth having
            fragment = (f'<h2>{html.escape(p.name)}</h2><p class="failed">this panel failed to draw: '
                        f"{html.escape(f'{type(exc).__name__}: {exc}')}</p>")
            traceback.print_exc(file=sys.stderr)
        if fragment:
            sections.append(f'<section id="{html.escape(p.name)}">\n{fragment}\n</section>')
    banner = f'<p class="simulated">{html.escape(SIMULATED_NOTE)}</p>' if run.manifest.simulated else ""
    heading = html.escape(title(run))
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{heading}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>{heading}</h1>\n{banner}\n" + "\n".join(sections)
            + "\n</body>\n</html>\n")


def write_report(run_dir: Path) -> Path:
    """Write RUN_DIR/report.html; returns its path."""
    from bench.report.analysis import load_run

    path = Path(run_dir) / REPORT
    write_atomic(path, render(load_run(run_dir)))
    return path


def report_after_run(run_dir: Path) -> Path | None:
    """The report at the end of a run: a failure to draw it is a warning, never the run's loss."""
    try:
        path = write_report(run_dir)
    except Exception as exc:  # the run's own files are written; the page is extra
        print(f"warning: could not write {Path(run_dir) / REPORT} ({type(exc).__name__}: {exc}); the run's files are "
              f"intact: try `python -m bench report {run_dir}`", file=sys.stderr, flush=True)
        return None
    print(f"  report: {path}", flush=True)
    return path
