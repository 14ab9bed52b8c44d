"""The web UI's start page (bench/load/webform.py): its fields come first and in order, it refuses what the mix cannot run,
it starts the run the way Locust's /swarm does and sends the person to Locust's charts. Checked on a bare Flask app
(no Locust in this process: importing it patches the whole interpreter for gevent), then through `python -m bench ui`
against the fake stack, and in a headless Chromium where one is installed."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import httpx
import psutil
import pytest
from flask import Flask

from bench.errors import MixError
from bench.load.child import stop_budget_s
from bench.load.webform import CHARTS_URL, FIGURES_PATH, FIGURES_TAB, START_PATH, add_start_page, options_from_form
from bench.options import LoadOptions
from bench.rundir import read_manifest
from bench.spec import mix_names
from serve.spec import load_profile
from serve.state import state_path

FORM_FIELDS = ["mix", "tick_policy", "npcs", "duration_s", "rate_rps"]


class FormFields(HTMLParser):
    """The names of a page's form fields, in the order a person meets them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.names: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs) -> None:
        name = dict(attrs).get("name")
        if tag in ("input", "select", "textarea") and name:
            self.names.append(name)


class TableRows(HTMLParser):
    """A rendered page's table rows, each a list of its cells' text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag) -> None:
        if tag in ("td", "th") and self.cell is not None and self.rows:
            self.rows[-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data) -> None:
        if self.cell is not None:
            self.cell.append(data)


def current(tmp_path: Path) -> LoadOptions:
    return LoadOptions(results_dir=tmp_path)


def test_the_forms_fields_override_the_mix_and_empty_ones_keep_it(tmp_path) -> None:
    form = {"mix": "ambient", "tick_policy": "skip", "npcs": "2", "duration_s": "10", "rate_rps": ""}
    options = options_from_form(form, current(tmp_path), mix_names())
    assert (options.mix, options.tick_policy, options.npcs, options.duration_s, options.rate_rps) == ("ambient", "skip",
                                                                                                      2, 10.0, 0.0)
    assert options.results_dir == tmp_path  # what the form does not show stays as `bench ui` was started
    kept = options_from_form({"mix": "npc-gpu", "tick_policy": "", "npcs": "", "duration_s": " ", "rate_rps": "3"},
                             current(tmp_path), mix_names())
    assert (kept.npcs, kept.duration_s, kept.rate_rps) == (0, 0.0, 3.0)


@pytest.mark.parametrize(("form", "says"), [
    ({"mix": "no-such-mix"}, "unknown mix"),
    ({"mix": "npc-cpu", "npcs": "two"}, "npcs"),
    ({"mix": "npc-cpu", "npcs": "-1"}, "npcs"),
    ({"mix": "npc-cpu", "tick_policy": "skip"}, "tick shape"),  # a closed-loop mix has no ticks
    ({"mix": "ambient", "rate_rps": "3"}, "poisson"),
])
def test_the_form_refuses_what_the_mix_cannot_run(tmp_path, form: dict, says: str) -> None:
    with pytest.raises(MixError, match=says):
        options_from_form(form, current(tmp_path), mix_names())


class FakeRunner:
    """What the page uses of Locust's runner."""

    def __init__(self) -> None:
        self.state, self.shape_greenlet, self.starts = "ready", None, 0

    def start_shape(self) -> None:
        self.starts += 1
        self.shape_greenlet = SimpleNamespace(dead=False, exception=None)


@pytest.fixture
def page(tmp_path):
    parser = argparse.ArgumentParser()
    LoadOptions.add_arguments(parser)
    environment = SimpleNamespace(runner=FakeRunner(), parsed_options=parser.parse_args(["--results-dir", str(tmp_path)]),
                                  host="http://127.0.0.1:4000")
    web_ui = SimpleNamespace(app=Flask(__name__), environment=environment)
    add_start_page(web_ui, mix_names())
    return web_ui.app.test_client(), environment


def test_the_web_ui_opens_on_the_mix_and_says_the_shape_decides_the_users(page) -> None:
    client, environment = page
    opened = client.get("/")
    assert opened.status_code == 302 and opened.headers["location"] == START_PATH
    html = client.get(START_PATH).get_data(as_text=True)
    assert FormFields(html).names == FORM_FIELDS  # no user count or ramp
    assert "load shape decides how many NPCs" in html and 'value="npc-cpu" selected' in html
    environment.runner.state = "running"  # once a run is on, Locust's own page (its charts) is left alone
    assert client.get("/").status_code != 302


def test_start_sets_the_load_options_starts_the_shape_and_goes_to_the_charts(page) -> None:
    client, environment = page
    started = client.post(START_PATH, data={"mix": "ambient", "tick_policy": "skip", "npcs": "2", "duration_s": "10",
                                            "rate_rps": ""})
    assert started.status_code == 303 and started.headers["location"] == CHARTS_URL
    parsed = environment.parsed_options
    assert (parsed.mix, parsed.tick_policy, parsed.npcs, parsed.duration_s) == ("ambient", "skip", 2, 10.0)
    assert environment.runner.starts == 1
    # While its first tick loads the mix, the page says so and looks again; a second start is refused.
    waiting = client.get(START_PATH).get_data(as_text=True)
    assert "Starting mix <b>ambient</b>" in waiting and 'http-equiv="refresh"' in waiting
    again = client.post(START_PATH, data={"mix": "npc-cpu"})
    assert again.status_code == 400 and "already on" in again.get_data(as_text=True)
    assert environment.runner.starts == 1


def test_a_refused_or_failed_start_is_shown_on_the_form(page) -> None:
    client, environment = page
    refused = client.post(START_PATH, data={"mix": "npc-cpu", "tick_policy": "cancel", "npcs": "3"})
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400 and "tick shape" in html and environment.runner.starts == 0
    assert 'value="3"' in html  # what the person typed stays in the form
    # The shape's first tick raised (Locust only logs that): the page says why, and the next start may go.
    environment.runner.shape_greenlet = SimpleNamespace(dead=True, exception=RuntimeError("no stack is running"))
    html = client.get(START_PATH).get_data(as_text=True)
    assert "the run did not start: RuntimeError: no stack is running" in html
    assert environment.runner.shape_greenlet is None


# -- the real thing: `python -m bench ui` (Locust) against the fake stack


# How long `bench ui` may take to stop on the fake stack (the cpu profile's timeouts): Locust's stop timeout and the
# time to write the run's folder, after which it kills Locust itself (bench/load/child.py).
STOP_BUDGET_S = stop_budget_s(load_profile("cpu").proxy.timeout_s)
GUARD_S = 30  # beyond the budget, only against a hang


@dataclass
class BenchUI:
    base: str
    process: subprocess.Popen
    port: int
    output: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    return False


def stop_ui(ui: BenchUI, check: bool = True) -> None:
    """SIGTERM, as a service manager or `kill` sends. `bench ui` and its Locust must be gone within the budget; if not,
    they are killed and (`check`) the test fails."""
    processes = [psutil.Process(ui.process.pid), *psutil.Process(ui.process.pid).children(recursive=True)]
    ui.process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        ui.output = ui.process.communicate(timeout=STOP_BUDGET_S + GUARD_S)[0]
    left = [process for process in processes if alive(process)]
    for process in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    if left:
        ui.output = ui.process.communicate()[0] or ""
    print(ui.output[-3000:])
    assert not (check and left), f"bench ui or its Locust outlived {STOP_BUDGET_S + GUARD_S} s after SIGTERM: {left}"


@contextlib.contextmanager
def bench_ui(results: Path, sigint_ignored: bool = False) -> Iterator[BenchUI]:
    """`bench ui` on a free port; `sigint_ignored`: started as a shell starts a background job (`bench ui &`)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "bench", "ui", "--web-port", str(port), "--results-dir",
                                str(results), "--scrape-interval-s", "1"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None)
    ui = BenchUI(f"http://127.0.0.1:{port}", process, port)
    stopped = False
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ui.base + START_PATH, timeout=2).status_code == 200:
                    break
            time.sleep(0.5)
        yield ui
        stopped = True
        stop_ui(ui)
    finally:
        if not stopped:  # the test failed: still leave nothing running, and let its own error show
            stop_ui(ui, check=False)


def runs(results: Path, status: str) -> list[Path]:
    return [m.parent for m in results.glob("*/manifest.json") if read_manifest(m.parent).status == status]


def completed_runs(results: Path, guard_s: float = 90) -> list[Path]:
    """The complete run folders, once there is one (or after `guard_s`, a guard against a hang, not a time limit)."""
    deadline = time.monotonic() + guard_s
    while not (done := runs(results, "complete")) and time.monotonic() < deadline:
        time.sleep(0.5)
    return done


def test_bench_ui_runs_the_mix_started_from_its_form(fake_stack, tmp_path) -> None:
    with bench_ui(tmp_path / "results") as ui:
        base = ui.base
        opened = httpx.get(base + "/", follow_redirects=True, timeout=10)
        assert opened.url.path == START_PATH and FormFields(opened.text).names == FORM_FIELDS
        # With no stack, the start fails in the shape's first tick: the page says why, and the next start may go.
        state = state_path()
        hidden = state.rename(state.with_suffix(".hidden"))
        httpx.post(base + START_PATH, data={"mix": "ambient"}, timeout=10)
        deadline = time.monotonic() + 30
        while "did not start" not in (page := httpx.get(base + START_PATH, timeout=10).text) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "the run did not start: NoStackError" in page
        hidden.rename(state)
        started = httpx.post(base + START_PATH, data={"mix": "ambient", "tick_policy": "skip", "npcs": "2",
                                                      "duration_s": "4"}, timeout=10)
        assert started.status_code == 303 and started.headers["location"] == CHARTS_URL
        done = completed_runs(tmp_path / "results")
        assert done, "the run started from the form wrote no complete results folder"
        mix = read_manifest(done[0]).mix
        assert mix.name == "ambient" and mix.mix.shape.npcs == 2 and mix.mix.shape.policy == "skip"
        summary = read_manifest(done[0]).summary
        assert summary.all.requests > 0
        # Locust's header and Requests table count the requests, and nothing else; the NPC figures have a tab.
        shown = httpx.get(base + "/stats/requests", timeout=10).json()
        assert {row["method"] for row in shown["stats"]} == {"chat", ""}  # "" is Locust's Aggregated row
        assert shown["stats"][-1]["num_requests"] == summary.all.requests and shown["fail_ratio"] == 0
        tab = next(t["data"] for t in shown["extended_stats"] if t["key"] == FIGURES_TAB)
        assert tab == httpx.get(base + FIGURES_PATH, timeout=10).json()
        figures = {row["figure"]: row for row in tab}
        assert figures["requests within their class's SLO"]["count"] == summary.all.requests
        assert sum(row["count"] for row in tab if row["figure"].startswith("NPC-ticks")) == summary.decisions.npc_ticks


def test_bench_ui_stops_after_its_run_ended_and_the_stack_went_down(fake_stack, tmp_path) -> None:
    """A person who shuts everything down at once: the run is done, the stack is stopped, then `bench ui` is, started
    as a shell's background job (with SIGINT ignored: the SIGINT it passes on to Locust was once lost, and Locust ran
    on for minutes)."""
    results = tmp_path / "results"
    with bench_ui(results, sigint_ignored=True) as ui:
        started = httpx.post(ui.base + START_PATH, data={"mix": "ambient", "tick_policy": "skip", "npcs": "2",
                                                         "duration_s": "3"}, timeout=10)
        assert started.status_code == 303
        assert completed_runs(results), "the run never completed"
        fake_stack.stop()
        locust = psutil.Process(ui.process.pid).children(recursive=True)
        assert locust
    # Leaving `bench_ui` stopped it: bench ui and its Locust exited within the stop budget (bench/load/child.py).
    assert "did not exit within" not in ui.output, "Locust had to be killed: it did not stop on its own"
    assert ui.process.returncode == 0 and not any(alive(process) for process in locust)
    with socket.socket() as s:  # nothing listens on the web UI's port any more
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", ui.port))
        s.listen()


CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def browser_dom(url: str, profile: Path) -> str:
    """The page as a headless Chromium renders it, its scripts run (Locust's pages are a React app)."""
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                           "--virtual-time-budget=5000", "--dump-dom", url],
                          capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium); the page is "
                    "checked without a browser by the tests above")
def test_in_a_headless_browser_the_form_opens_on_the_mix_and_a_started_run_shows_locusts_charts(fake_stack,
                                                                                                 tmp_path) -> None:
    with bench_ui(tmp_path / "results") as ui:
        base = ui.base
        form = browser_dom(base + "/", tmp_path / "chromium")
        assert FormFields(form).names == FORM_FIELDS and "Start new load test" not in form  # not Locust's form
        started = httpx.post(base + START_PATH, data={"mix": "ambient", "npcs": "2", "duration_s": "30"}, timeout=10)
        assert started.status_code == 303
        deadline = time.monotonic() + 60
        while httpx.get(base + "/stats/requests", timeout=5).json()["state"] != "running" and time.monotonic() < deadline:
            time.sleep(0.5)
        charts = browser_dom(base + CHARTS_URL, tmp_path / "chromium")
        assert "Charts" in charts and "Stop" in charts and "Start new load test" not in charts
        httpx.post(base + "/stop", timeout=30)


def browser_screenshot(url: str, profile: Path, path: Path) -> Path:
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                    "--virtual-time-budget=5000", "--window-size=1400,900", "--hide-scrollbars", f"--screenshot={path}",
                    url], capture_output=True, text=True, timeout=60, check=True)
    return path


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium); the figures are "
                    "checked without a browser by test_bench_ui_runs_the_mix_started_from_its_form")
def test_in_a_headless_browser_the_npc_figures_have_a_tab_and_the_requests_table_only_requests(fake_stack,
                                                                                               tmp_path) -> None:
    for worker in fake_stack.values():  # streamed replies of about one tick: some fresh, some late or fallen back
        worker.reply_tokens, worker.token_gap_s = 9, 0.1
    results = tmp_path / "results"
    with bench_ui(results) as ui:
        started = httpx.post(ui.base + START_PATH, data={"mix": "ambient", "tick_policy": "cancel", "npcs": "3",
                                                         "duration_s": "6"}, timeout=10)
        assert started.status_code == 303
        assert completed_runs(results), "the run never completed"
        figures_url = f"{ui.base}/?tab={FIGURES_TAB}"
        tab = browser_dom(figures_url, tmp_path / "chromium")
        shot = browser_screenshot(figures_url, tmp_path / "chromium", tmp_path / "npc-figures-tab.png")
        print(f"screenshot of the NPC figures tab: {shot}")
        requests_tab = browser_dom(ui.base + "/?tab=stats", tmp_path / "chromium")
        print(f"screenshot of the Requests tab: "
              f"{browser_screenshot(ui.base + '/?tab=stats', tmp_path / 'chromium', tmp_path / 'requests-tab.png')}")
    summary = read_manifest(runs(results, "complete")[0]).summary
    # Locust's Requests table: the requests, by type and class, and their total; no judgement is a row there.
    requests = TableRows(requests_tab).rows
    assert requests[0][:4] == ["Type", "Name", "# Requests", "# Fails"]
    assert {row[0] for row in requests[1:]} <= {"chat", "stream", ""} and requests[-1][1] == "Aggregated"
    assert int(requests[-1][2]) == summary.all.requests and requests[-1][3] == "0"
    # The NPC figures tab: what each row is, by name, with the SLO attainment and each tick outcome's share.
    figures = TableRows(tab).rows
    assert figures[0] == ["Figure", "Class", "Count", "Share", "Median (ms)", "95%ile (ms)", "Max (ms)"]
    by_name = {(row[0], row[1]): row for row in figures[1:]}
    assert by_name["requests within their class's SLO", "ambient"][3].endswith("% met")
    ticks = [row for row in figures[1:] if row[0].startswith("NPC-ticks: ")]
    assert sum(int(row[2]) for row in ticks) == summary.decisions.npc_ticks
    assert all(row[3].endswith("of all NPC-ticks") for row in ticks)
