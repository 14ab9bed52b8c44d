"""The web UI's start page (`/npc`): the form a person starts a run with, in front of Locust's own pages.

Locust's React form cannot be reordered: it opens on "Number of users" and "Ramp up", both disabled at 0 when a
LoadTestShape decides the users, and puts the mix under a collapsed "Custom parameters". This page asks for the
load options first (mix, tick policy, NPCs, duration, rate), says that the mix's shape decides the users, and
starts the run as Locust's /swarm starts a shape test: the options into `parsed_options`, then
`runner.start_shape()`. Then it sends the person to Locust's own charts. Until a run has started, Locust's `/`
sends here. It is served by Locust's own Flask app (`environment.web_ui.app`), from the locustfile's init listener.

Locust's own stats count real requests only (bench/load/events.py); the NPC figures (TTFT, ITL, SLO, deadlines,
tick decisions: bench/load/figures.py) get a tab of their own, "NPC figures", through Locust's extension points:
`extendedTabs` and `extendedTables` in its template arguments, and `extended_stats` added to its `/stats/requests`
answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Response, jsonify, redirect, render_template_string, request
from pydantic import ValidationError

from bench.errors import MixError
from bench.options import LoadOptions
from bench.spec import load_mix
from serve.common import error_lines

START_PATH = "/npc"
CHARTS_URL = "/?tab=charts"  # Locust's own page, on its Charts tab
RUNNING_STATES = ("spawning", "running", "cleanup", "stopping")  # Locust's runner states while a test is on
FIGURES_TAB = "npc-figures"  # its key: Locust's page opens it as /?tab=npc-figures
FIGURES_PATH = "/npc/figures"  # the tab's rows as JSON; + ".csv": the figures as a run writes them
FIGURES_COLUMNS = {"figure": "Figure", "cls": "Class", "count": "Count", "share": "Share", "median": "Median (ms)",
                   "p95": "95%ile (ms)", "max": "Max (ms)"}


@dataclass
class MixRow:
    name: str
    kind: str = ""
    duration_s: float = 0.0
    shape: str = ""  # the [shape] table's settings
    description: str = ""


def describe_mixes(names: list[str]) -> list[MixRow]:
    """What each mix runs unless the form overrides it (a mix that does not load says why)."""
    rows = []
    for name in names:
        try:
            mix = load_mix(name).mix
        except MixError as exc:
            rows.append(MixRow(name, description=str(exc)))
            continue
        settings = mix.shape.model_dump(exclude={"kind", "sha256"}, exclude_none=True)
        rows.append(MixRow(name, mix.shape.kind, mix.shape.duration_s, ", ".join(f"{k} {v}" for k, v in settings.items()),
                           mix.description))
    return rows


def options_from_form(form: Mapping[str, str], current: LoadOptions, mix_names: list[str]) -> LoadOptions:
    """The form's load fields over the current options. An empty field is the field's default (0 or empty: the mix's
    own value). A MixError says what to change: a bad number, an unknown mix, or an override the mix's shape does
    not take (a tick policy for a closed-loop mix)."""
    values: dict[str, Any] = current.model_dump()
    for name in LoadOptions.LOAD_FIELDS:
        if name in form:
            values[name] = form[name].strip() or LoadOptions.model_fields[name].default
    if values["mix"] not in mix_names:
        raise MixError(f"unknown mix {values['mix']!r}; the mixes: {', '.join(mix_names)}")
    try:
        options = LoadOptions.model_validate(values)
    except ValidationError as exc:
        raise MixError("; ".join(error_lines(exc))) from None
    load_mix(options.mix, options.npcs, options.rate_rps, options.duration_s, options.tick_policy)
    return options


def failed_start(runner) -> str | None:
    """Why the last start did not run: the shape's first tick raised (no stack, a mix that does not fit), which
    Locust only logs. The dead shape greenlet is dropped, or Locust would refuse every later start."""
    shape = runner.shape_greenlet
    if shape is None or not shape.dead or shape.exception is None:
        return None
    runner.shape_greenlet = None
    what = "the run did not start" if runner.state == "ready" else "the run's load shape failed"
    return f"{what}: {type(shape.exception).__name__}: {shape.exception}"


def add_start_page(web_ui, mix_names: list[str]) -> None:
    """Serve the start page from Locust's web UI, and send Locust's `/` there until a run has started."""
    environment = web_ui.environment
    mixes = describe_mixes(mix_names)

    @web_ui.app.before_request
    def _to_start_page():
        if request.path == "/" and environment.runner.state == "ready":
            return redirect(START_PATH)
        return None

    @web_ui.app.route(START_PATH, methods=["GET", "POST"])
    def start_page():
        runner, parsed = environment.runner, environment.parsed_options
        current = LoadOptions.from_args(parsed)
        values = {name: str(getattr(current, name) or "") for name in LoadOptions.LOAD_FIELDS}
        error = failed_start(runner)
        starting = runner.state == "ready" and runner.shape_greenlet is not None
        running = runner.state in RUNNING_STATES
        if request.method == "POST" and not error:
            values.update({name: request.form.get(name, "") for name in LoadOptions.LOAD_FIELDS})
            if starting or running:
                error = "a run is already on: stop it on Locust's page first"
            else:
                try:
                    options = options_from_form(request.form, current, mix_names)
                except MixError as exc:
                    error = str(exc)
                else:
                    for name in LoadOptions.LOAD_FIELDS:
                        setattr(parsed, name, getattr(options, name))
                    runner.start_shape()
                    return redirect(CHARTS_URL, code=303)
        page = render_template_string(PAGE, mixes=mixes, values=values, error=error, starting=starting, running=running,
                                      mix=current.mix, host=environment.host, charts=CHARTS_URL,
                                      policies=LoadOptions.TICK_POLICIES, help=FIELD_HELP)
        return page, 400 if error and request.method == "POST" else 200


def add_figures_tab(web_ui, rows: Callable[[], list[dict[str, Any]]], csv_text: Callable[[], str]) -> None:
    """The "NPC figures" tab on Locust's page, beside its Requests tab: `rows()` live, every time Locust polls."""
    web_ui.template_args.update(
        extendedTabs=[{"title": "NPC figures", "key": FIGURES_TAB}],
        extendedTables=[{"key": FIGURES_TAB, "structure": [{"key": k, "title": t} for k, t in FIGURES_COLUMNS.items()]}],
        extendedCsvFiles=[{"href": FIGURES_PATH + ".csv", "title": "Download NPC figures CSV (SLO, deadlines, "
                           "decisions, TTFT, ITL)"}])

    @web_ui.app.after_request
    def _with_figures(response: Response) -> Response:
        if request.path == "/stats/requests" and response.is_json:
            response.set_data(json.dumps({**response.get_json(), "extended_stats": [{"key": FIGURES_TAB, "data": rows()}]}))
        return response

    @web_ui.app.route(FIGURES_PATH)
    def figures():
        return jsonify(rows())

    @web_ui.app.route(FIGURES_PATH + ".csv")
    def figures_csv():
        return Response(csv_text(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=npc_figures.csv"})


FIELD_HELP = {name: field.description for name, field in LoadOptions.model_fields.items()}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>NPC bench: start a run</title>
  {% if starting %}<meta http-equiv="refresh" content="2;url={{ charts }}">{% endif %}
  <style>
    body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
    label { display: block; font-weight: 600; margin-top: 1rem; }
    input, select { font-size: 1rem; padding: .3rem; min-width: 16rem; }
    small { display: block; color: #555; font-weight: normal; }
    .note { background: #eef4ff; border-left: 4px solid #4a6fd0; padding: .6rem 1rem; }
    .error { background: #fdecea; border-left: 4px solid #c62828; padding: .6rem 1rem; white-space: pre-wrap; }
    button { margin-top: 1.5rem; font-size: 1.1rem; padding: .5rem 2rem; }
    table { border-collapse: collapse; margin-top: 1rem; font-size: .9rem; }
    th, td { text-align: left; vertical-align: top; padding: .3rem .6rem; border-bottom: 1px solid #ddd; }
  </style>
</head>
<body>
  <h1>Start an NPC load run</h1>
  <p class="note">The mix's load shape decides how many NPCs (Locust users) run and how fast they start;
    Locust's "Number of users" and "Ramp up" do not apply. NPCs and duration below override the shape's;
    leave them empty to keep the mix's (see the table). Stack: {{ host }}</p>
  {% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
  {% if starting %}
  <p class="note">Starting mix <b>{{ mix }}</b> (loading the mix and checking that its prompts fit);
    <a href="{{ charts }}">Locust's charts</a> open when its NPCs start.</p>
  {% elif running %}
  <p class="note">A run of mix <b>{{ mix }}</b> is on: see <a href="{{ charts }}">Locust's charts</a>,
    and stop it there before starting another.</p>
  {% endif %}
  <form method="post" action="">
    <fieldset {% if starting or running %}disabled{% endif %} style="border: 0; padding: 0">
    <label for="mix">Mix <small>{{ help.mix }}</small></label>
    <select id="mix" name="mix">
      {% for m in mixes %}<option value="{{ m.name }}" {% if m.name == values.mix %}selected{% endif %}>{{ m.name }}
        {%- if m.kind %} ({{ m.kind }}, {{ '%g' % m.duration_s }} s){% endif %}</option>{% endfor %}
    </select>
    <label for="tick_policy">Tick policy <small>{{ help.tick_policy }}</small></label>
    <select id="tick_policy" name="tick_policy">
      {% for p in policies %}<option value="{{ p }}" {% if p == values.tick_policy %}selected{% endif %}>
        {{- p or "the mix's" }}</option>{% endfor %}
    </select>
    <label for="npcs">NPCs <small>{{ help.npcs }}</small></label>
    <input id="npcs" name="npcs" type="number" min="0" step="1" placeholder="the mix's" value="{{ values.npcs }}">
    <label for="duration_s">Duration, seconds <small>{{ help.duration_s }}</small></label>
    <input id="duration_s" name="duration_s" type="number" min="0" step="any" placeholder="the mix's"
           value="{{ values.duration_s }}">
    <label for="rate_rps">Arrival rate, requests/s <small>{{ help.rate_rps }}</small></label>
    <input id="rate_rps" name="rate_rps" type="number" min="0" step="any" placeholder="the mix's"
           value="{{ values.rate_rps }}">
    <div><button type="submit">Start</button></div>
    </fieldset>
  </form>
  <p><a href="{{ charts }}">Locust's charts</a> (of the last run, once one has started).</p>
  <h2>The mixes</h2>
  <table>
    <tr><th>Mix</th><th>Shape</th><th>Its settings</th><th>What it is</th></tr>
    {% for m in mixes %}<tr><td>{{ m.name }}</td><td>{{ m.kind }}</td><td>{{ m.shape }}</td><td>{{ m.description }}</td></tr>
    {% endfor %}
  </table>
</body>
</html>
"""
