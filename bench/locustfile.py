"""Locust entry point: NPC traffic mixes against the stack that `python -m serve up` runs.

    python -m bench ui                     # web UI: a start form on http://127.0.0.1:8089/npc, then Locust's charts
    python -m bench run --mix npc-cpu      # headless, with a progress line and a summary
    locust -f bench/locustfile.py --mix npc-cpu --headless     # the same, by hand

Every Locust user is one NPC. Each request picks a traffic class by the mix's weights; the mix's
load shape decides when requests go out (closed loop, Poisson arrivals, tick bursts, stepped ramp).
Each test start writes a new folder under `results/` (see bench/rundir.py).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import time
from pathlib import Path

import gevent
import gevent.event
import gevent.lock
import gevent.pool
from locust import LoadTestShape, User, events, task
from locust.runners import MasterRunner, WorkerRunner

from bench.fit import check_fits, check_fits_target
from bench.load.child import stop_budget_s
from bench.load.classes import ClassPicker
from bench.load.client import Direct, connect, send
from bench.load.decisions import Cancelled, NpcTick, TickLedger, decision_figures, decisions_by_class
from bench.load.events import fire_request
from bench.load.figures import NpcFigures
from bench.load.folder import new_manifest, note_start, target_manifest
from bench.load.loops import LoadCost, scrape_loop
from bench.load.npc import NPC, npc_identity
from bench.load.relay import FINISH_MESSAGE, RECORDS_MESSAGE, MasterRelay, WorkerRelay
from bench.load.reports import server_summary, write_locust_reports
from bench.load.scrape import ServerScraper, Target
from bench.load.webform import add_figures_tab, add_start_page
from bench.options import LoadOptions
from bench.records import RequestRecord, RunStatus, lateness_check, meets_slo
from bench.report.summary import summarize
from bench.rundir import RunDir, new_run_id, read_requests, reset_prefix_caches, write_ticks
from bench.shapes.tick import TickBurst
from bench.spec import ResolvedMix, direct_worker, load_mix, mix_names
from bench.target import TargetRecord, describe, metrics_sources
from serve import NOT_READY, ProxySpec, StackState, master_key, ready_state, redis_commands
from serve.common import now_iso

# The workers' counters the run summary compares with what the client counted.
SETTLED_COUNTERS = ("vllm:generation_tokens_total", "vllm:prompt_tokens_total", "vllm:request_success_total")
# The run's set-up (resolved mix, stack state: no key), which the master puts among its parsed options: Locust sends
# those to every worker with each spawn, so a worker on another host needs neither the mix file nor the stack's state.
SETUP_OPTION = "npc_setup"
# On a worker's host: the proxy's URL as seen from there, when it differs from the master's (`bench worker --proxy-url`).
PROXY_URL_ENV = "NPCBENCH_WORKER_PROXY_URL"
ROSTER_EVERY_S = 1.0


class NoStackError(RuntimeError):
    pass


def mix_choices(argv: list[str]) -> list[str]:
    """The shipped mixes, plus a mix file named on the command line (`--mix my.toml`), which the web UI
    then offers in its list too."""
    given = [b for a, b in itertools.pairwise(argv) if a == "--mix"] + [a.removeprefix("--mix=") for a in argv
                                                                 if a.startswith("--mix=")]
    return mix_names() + [g for g in given if g.endswith(".toml")]


MIXES = mix_choices(sys.argv)


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    LoadOptions.add_arguments(parser, locust=True, mix_choices=MIXES)
    parser.add_argument("--run-dir", default="", include_in_web_ui=False, help="exact folder for this run")
    parser.add_argument("--resolved-mix", default="", include_in_web_ui=False,
                        help="the mix as `bench run` resolved and checked it (JSON): used as it is, not resolved again")
    parser.add_argument("--skip-html-report", action="store_true", include_in_web_ui=False,
                        help="write Locust's CSVs but not its ~1 MB HTML report (for sample sets kept in git)")


class LocustRun:
    """The one test that is running in this Locust process, wiring bench/load's parts: set-up (`prepare`), its folder
    and loops (`start`), each request (`fire`, `record`), its end (`stop`)."""

    mix: ResolvedMix
    stack: StackState | None  # None: an outside endpoint (--target)
    target: TargetRecord | None
    scraper: ServerScraper
    picker: ClassPicker
    cost: LoadCost

    def __init__(self) -> None:
        self.prepared = False  # mix, stack and client are set (prepare runs before the test starts)
        self.dir: RunDir | None = None  # set while a test runs (in the master, with several Locust processes)
        self.relay: WorkerRelay | None = None  # set in a Locust worker process, which sends its records to the master
        self.master = MasterRelay(self._keep)  # used in the master of several Locust processes
        self.runner: WorkerRunner | None = None
        self.processes = 0  # in a worker process of `--processes N`: N
        self.inflight = gevent.pool.Group()
        self.background: list[gevent.Greenlet] = []
        self.npc_ids = itertools.count()
        self.shape_finished = False
        self.stack_lost: str | None = None  # why the run stopped early: the stack under it went down
        self.t0 = 0.0
        self.counts: dict[str, int] = {}
        self.ledgers: dict[str, TickLedger] = {}  # tick shape: each NPC's ticks
        self.ticks: list[NpcTick] = []  # ... and those closed so far
        self.slots: gevent.lock.BoundedSemaphore | None = None  # tick shape's max_in_flight: the LLM thread pool
        self.figures = NpcFigures()  # SLO, deadlines, decisions, TTFT, ITL: apart from Locust's request counts
        self.closed_down = gevent.event.Event()  # clear while stop() writes the run's folder
        self.closed_down.set()
        self.opened = False  # start() has finished opening this run (its folder, scraper and loops)
        self.redis_at_start: int | None = None

    # -- set-up: called from the shape's first tick (which runs before test_start) and from test_start
    def prepare(self, environment) -> None:
        if self.prepared:
            return
        options = LoadOptions.from_args(environment.parsed_options)
        worker = isinstance(environment.runner, WorkerRunner)
        resolved = environment.parsed_options.resolved_mix
        stack: StackState | None
        if worker and (setup := getattr(environment.parsed_options, SETUP_OPTION, None)):  # the master's, as it is
            mix, stack = setup_from_master(setup)
        else:
            stack = None if options.target else ready_state()
            if stack is None and not options.target:
                raise NoStackError(NOT_READY)
            if resolved:  # each Locust process would load the tokenizer again
                mix = ResolvedMix.model_validate_json(Path(resolved).read_text())
            else:  # the web UI's form: the mix is chosen here
                mix = load_mix(options.mix, options.npcs, options.rate_rps, options.duration_s, options.tick_policy)
                if stack is not None:
                    check_fits(mix, stack.spec)
            if isinstance(environment.runner, MasterRunner):
                setattr(environment.parsed_options, SETUP_OPTION,
                        json.dumps({"mix": mix.model_dump(mode="json"),
                                    "stack": stack.model_dump(mode="json") if stack is not None else None}))
        self.mix, self.stack, self.target, self.models = mix, stack, None, None
        self.direct = None
        if stack is None:  # an outside endpoint: its flags were checked by `bench run`; asked again here for the key
            self.target, key = describe(options.target, options.api_key_env, options.model, options.metrics,
                                        sorted({c.group for c in mix.classes.values()}))
            if not resolved and not worker:
                for warning in check_fits_target(mix, self.target.models, self.target.max_model_len,
                                                 Path(options.tokenizer) if options.tokenizer else None):
                    print(f"[bench] warning: {warning}", file=sys.stderr, flush=True)
            self.key, self.models = "", self.target.models
            base_url, api_key = self.target.url, key or "none"
            self.priority_groups: set[str] = set()
        else:
            self.key = master_key()
            base_url, api_key = stack.base_url, self.key
            if options.direct:
                worker_ = direct_worker(mix, stack.workers, options.direct)
                self.direct = Direct(worker_.name, worker_.model)
                base_url, api_key = worker_.url + "/v1", "none"
            # LiteLLM takes a top-level `priority` for its own proxy-side scheduler, so it is only sent when the
            # group's workers schedule by priority, where it is what the operator asked for.
            self.priority_groups = {name for name, group in stack.spec.groups.items()
                                    if group.scheduling_policy == "priority"}
        self.client = connect(options.client, base_url, api_key, timeout_s=self.timeout_s + 10)
        self.picker = ClassPicker(mix)
        self.shape_finished = False
        self.stack_lost = None
        self.opened = False
        shape = mix.mix.shape
        cap = shape.max_in_flight if isinstance(shape, TickBurst) else None
        self.slots = gevent.lock.BoundedSemaphore(cap) if cap else None
        self.ledgers, self.ticks = {}, []
        self.cache_reset = options.cache == "reset"
        if self.cache_reset and not worker and stack is not None:  # last: nothing delays the start after it
            reset_prefix_caches({w.name: w.url for w in stack.workers})
        self.t0 = time.time()
        self.prepared = True

    @property
    def timeout_s(self) -> float:
        """How long a request may take: the proxy's timeout, or for an outside target the proxy's default."""
        return self.stack.spec.proxy.timeout_s if self.stack is not None else ProxySpec().timeout_s

    @property
    def simulated(self) -> bool:
        return self.stack is not None and self.stack.spec.simulated

    # -- its folder and loops
    def start(self, environment) -> None:
        self.opened = False
        self._open(environment)
        self.opened = True

    def _open(self, environment) -> None:
        self.prepare(environment)
        self.cost = LoadCost()
        if isinstance(environment.runner, WorkerRunner):  # one of several Locust processes: the master keeps the run
            self.runner, self.relay = environment.runner, WorkerRelay(environment.runner)
            environment.runner.register_message(FINISH_MESSAGE, lambda **kw: gevent.spawn(environment.runner.stop))
            self.processes = environment.parsed_options.processes or 0  # --processes N here; none for `bench worker`
            self.background = [gevent.spawn(self.relay.send_loop), gevent.spawn(self.cost.lag_loop)]
            return
        self.figures.reset()
        if isinstance(environment.runner, MasterRunner):
            self.master = MasterRelay(self._keep)
            environment.runner.register_message(RECORDS_MESSAGE, self.master.received)
            self._roster(environment, started=False)  # the workers there at the start
        options, run_dir = LoadOptions.from_args(environment.parsed_options), environment.parsed_options.run_dir
        run_id = Path(run_dir).name if run_dir else new_run_id(self.mix.name, simulated=self.simulated)
        path = Path(run_dir) if run_dir else options.results_dir / run_id
        if self.stack is not None:
            manifest = new_manifest(run_id, self.mix, self.stack, self.direct, options.client)
            targets = [Target(w.name, w.url, pid=w.pid) for w in self.stack.workers]
            targets.append(Target("proxy", self.stack.proxy.url, {"Authorization": f"Bearer {self.key}"},
                                  self.stack.proxy.pid))
        else:
            assert self.target is not None
            manifest = target_manifest(run_id, self.mix, self.target, options.client)
            targets = [Target(name, url) for name, url in metrics_sources(self.target.metrics).items()]
        self.dir = RunDir(path, manifest)
        self.scraper = ServerScraper(path / "server_metrics.csv", targets, t0=self.t0)
        # The counters' first reading, taken here because Locust spawns the NPCs only once test_start is
        # done: a reading left to the loop raced the first requests and missed their first tokens.
        self.scraper.scrape_once()
        note_start(manifest, self.scraper.window.first, list(self.worker_groups), self.cache_reset)
        self.dir.write_manifest()
        self.master.open = True
        self.counts = {}
        self.redis_at_start = redis_commands(self.stack.spec) if self.stack is not None else None
        self.background = [gevent.spawn(scrape_loop, self.scraper, options.scrape_interval_s,
                                        self.stack.supervisor_pid if self.stack is not None else None,
                                        self._stack_lost, self._progress),
                           gevent.spawn(self.cost.lag_loop)]
        if isinstance(environment.runner, MasterRunner):
            self.background.append(gevent.spawn(self._roster_loop, environment))
        print(f"[bench] run {run_id}: mix {self.mix.name} ({self.mix.mix.shape.kind} shape), "
              f"writing {path}", file=sys.stderr, flush=True)

    def _roster(self, environment, started: bool = True) -> None:
        runner = environment.runner
        self.master.update_roster({c.id: c.state for c in runner.clients.values()}, runner.get_worker_index, now_iso(),
                                  started=started)

    def _roster_loop(self, environment) -> None:
        while True:
            gevent.sleep(ROSTER_EVERY_S)
            self._roster(environment)

    @property
    def worker_groups(self) -> dict[str, str]:
        """{worker: its group}: the stack's workers, or an outside target's --metrics sources (group unknown)."""
        if self.stack is not None:
            return {w.name: w.group for w in self.stack.workers}
        return dict.fromkeys(metrics_sources(self.target.metrics if self.target else []), "target")

    def _stack_lost(self, why: str) -> None:
        self.stack_lost = why

    def _progress(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
        return (f"{time.time() - self.t0:5.0f}/{self.mix.mix.shape.duration_s:.0f} s  in flight {len(self.inflight)}  "
                f"{counts}")

    def _keep(self, record: RequestRecord) -> None:
        assert self.dir is not None
        self.dir.add(record)
        self.counts[record.outcome] = self.counts.get(record.outcome, 0) + 1
        self.figures.add_record(record)

    # -- per request
    def fire(self, npc: NPC, tick: int | None = None, deadline_s: float | None = None, stream: bool = False,
             planned: tuple[str, int, int] | None = None) -> RequestRecord | None:
        cls = self.mix.classes[planned[0]] if planned else self.picker.next()
        if stream and not cls.stream:
            cls = cls.model_copy(update={"stream": True})
        try:
            if self.slots is not None:
                self.slots.acquire()  # a game server's LLM threads: wait for one
        except Cancelled:
            return None  # cancelled by a newer tick before a thread was free: nothing was sent
        try:
            record, _ = send(self.client, cls, npc, direct=self.direct, models=self.models,
                             use_priority=cls.group in self.priority_groups,
                             tick=tick, deadline_s=deadline_s, lengths=planned[1:] if planned else None)
        finally:
            if self.slots is not None:
                self.slots.release()
        record.slo_met = meets_slo(record, cls.slo)
        self.record(record)
        return record

    def spawn(self, npc: NPC, tick: int | None = None, deadline_s: float | None = None, stream: bool = False,
              planned: tuple[str, int, int] | None = None) -> gevent.Greenlet:
        """Open loop: send without waiting for the reply; the run waits for these at its end."""
        return self.inflight.spawn(self.fire, npc, tick=tick, deadline_s=deadline_s, stream=stream, planned=planned)

    def track(self, npc: NPC, ledger: TickLedger) -> TickLedger:
        self.ledgers[npc.npc_id] = ledger
        return ledger

    def closed(self, ticks: list[NpcTick]) -> None:
        if self.dir is None:
            return
        self.ticks.extend(ticks)
        period_ms = 1000 / self.mix.mix.shape.tick_hz if isinstance(self.mix.mix.shape, TickBurst) else 0.0
        self.figures.add_ticks(ticks, period_ms)

    def record(self, record: RequestRecord) -> None:
        """Keep a request's record (a Locust worker process sends it to the master, which adds it to the NPC
        figures) and count it in Locust's request stats."""
        if self.relay is not None:
            self.relay.add(record)
        elif self.dir is None:
            return
        else:
            self._keep(record)
        fire_request(record)

    # -- tear-down
    def stop(self, environment) -> None:
        if self.dir is None and self.relay is None:
            return
        if not self.opened and self.dir is not None:  # stopped (its greenlet killed) while start() was opening it
            self.dir.manifest.notes.append("the run was stopped while it was starting: nothing was measured")
            self.dir.close("interrupted")
            self.dir, self.prepared = None, False
            return
        self.closed_down.clear()
        try:
            self._close(environment)
        finally:
            self.closed_down.set()

    def wait_closed(self) -> None:
        """Until a stop() under way has written the run's folder. Locust quits by killing its runner's greenlets,
        and a run whose shape has just ended is closed in one of them: killed there, its folder stayed `running`."""
        if not self.closed_down.is_set():
            self.closed_down.wait(stop_budget_s(self.timeout_s))

    def _close(self, environment) -> None:
        run_dir = self.dir
        self.inflight.join(timeout=self.timeout_s)  # open-loop requests still in flight
        self.inflight.kill()
        if self.relay is not None:  # a worker process: its last records go to the master, which keeps the run
            gevent.killall(self.background)
            self.relay.send(done=self.cost.client_load(0, []))
            self.prepared = False
            return
        assert run_dir is not None
        if isinstance(environment.runner, MasterRunner):
            # Headless, Locust's master fires test_stop on its way to quitting, before it tells the workers to
            # stop: they would go on sending. Told now, each stops its NPCs and sends its last records. (Locust's
            # own "stop" message would do, but a worker then sleeps out the stop timeout and misses the "quit".)
            environment.runner.send_message(FINISH_MESSAGE)
            if missing := self.master.wait_for_workers(environment.parsed_options.expect_workers or 1,
                                                       self.timeout_s + 30,
                                                       refresh=lambda: self._roster(environment)):
                run_dir.manifest.notes.append(missing)
            run_dir.manifest.notes.extend(self.master.notes())
            run_dir.manifest.load_workers = sorted(self.master.roster.values(), key=lambda w: w.index)
        gevent.killall(self.background)
        self.scraper.scrape_until_settled(SETTLED_COUNTERS)  # the last samples close the counters' window
        duration = time.time() - self.t0
        summary = summarize(read_requests(run_dir.path), duration)
        redis_now = redis_commands(self.stack.spec) if self.stack is not None else None
        # An outside target with no --metrics: its servers' counts are absent, not zero.
        summary.server = server_summary(self.scraper.window, self.worker_groups, run_dir, None if self.redis_at_start
                                        is None or redis_now is None else redis_now - self.redis_at_start) \
            if self.worker_groups else None
        summary.client = self.cost.client_load(summary.all.requests, list(self.master.workers_done.values()))
        summary.lateness = lateness_check(summary.client, run_dir.manifest.mix)
        if self.ledgers:  # every NPC's last ticks, now that their replies are in
            self.closed([t for ledger in self.ledgers.values() for t in ledger.close()])
            write_ticks(run_dir, self.ticks)
            summary.decisions = decision_figures(self.ticks, list(self.ledgers.values()))
            summary.decisions_by_class = decisions_by_class(self.ticks)
        write_locust_reports(environment, run_dir, self.figures, html=not environment.parsed_options.skip_html_report)
        status: RunStatus = "failed" if self.stack_lost else "complete" if self.shape_finished else "interrupted"
        if self.stack_lost:
            run_dir.manifest.notes.append(self.stack_lost)
        self.master.open = False
        run_dir.close(status, summary)
        self.scraper.close()
        print(f"[bench] run {run_dir.manifest.run_id} {status}: {summary.all.requests} requests, "
              f"results in {run_dir.path}", file=sys.stderr, flush=True)
        self.dir, self.prepared = None, False  # the web UI's next test may pick another mix


RUN = LocustRun()


def setup_from_master(setup: str) -> tuple[ResolvedMix, StackState | None]:
    """In a worker: the mix and stack the master resolved (no stack for an outside --target); the proxy's URL as
    this host reaches it, if it differs."""
    data = json.loads(setup)
    mix = ResolvedMix.model_validate(data["mix"])
    if data["stack"] is None:
        return mix, None
    stack = StackState.model_validate(data["stack"])
    if url := os.environ.get(PROXY_URL_ENV):
        stack.proxy = stack.proxy.model_copy(update={"url": url.rstrip("/").removesuffix("/v1")})
    return mix, stack


@events.init.add_listener
def _web_pages(environment, web_ui=None, **kwargs) -> None:
    if web_ui is not None:  # the web UI opens on our own form: mix first; the NPC figures get a tab (bench/load/webform.py)
        add_start_page(web_ui, MIXES)
        add_figures_tab(web_ui, lambda: RUN.figures.tab_rows(), lambda: RUN.figures.csv_text())


@events.reset_stats.add_listener
def _reset_figures(**kwargs) -> None:  # Locust's "Reset stats" resets the NPC figures too
    RUN.figures.reset()


@events.test_start.add_listener
def _test_start(environment, **kwargs) -> None:
    RUN.start(environment)


@events.test_stop.add_listener
def _test_stop(environment, **kwargs) -> None:
    RUN.stop(environment)


@events.quitting.add_listener
def _quitting(environment, **kwargs) -> None:
    RUN.wait_closed()


class MixShape(LoadTestShape):
    """Delegates to the mix's shape (bench/shapes.py); the mix is chosen with --mix, also in the web UI."""

    def tick(self):
        assert self.runner is not None  # Locust sets it before the first tick
        RUN.prepare(self.runner.environment)
        if RUN.stack_lost:
            return None
        # The run's own clock, which the pacers share: Locust's starts before prepare() has loaded the mix and
        # counted its prompts (seconds, with a tokenizer), and would end a short run before its NPCs had started.
        users_and_rate = RUN.mix.mix.shape.users_at(time.time() - RUN.t0)
        if users_and_rate is None and not RUN.opened:
            # Locust fires test_start in its spawning greenlet, which ending the shape kills: a short run on a slow
            # stack ended inside its start, leaving no folder or a broken one. It ends once its start is done.
            users_and_rate = RUN.mix.mix.shape.users_at(0.0)
        if users_and_rate is None:
            RUN.shape_finished = True
        return users_and_rate


class NPCUser(User):
    """One NPC; its shape's pacer decides when it sends."""

    def on_start(self) -> None:
        # one of several Locust processes: NPC ids stay unique across them, on this host or others
        worker_index = None if RUN.runner is None else max(RUN.runner.worker_index, 0)
        npc_id, seed_key, faction = npc_identity(next(RUN.npc_ids), worker_index, RUN.processes)
        self.npc = NPC(npc_id=npc_id, rng=random.Random(f"{RUN.mix.mix.seed}/{seed_key}"), faction=faction)
        shape = RUN.mix.mix.shape
        self.pacer = shape.pacer(shape, RUN, self.npc)

    def wait_time(self) -> float:
        return self.pacer.wait_s()

    @task
    def act(self) -> None:
        self.pacer.step()
