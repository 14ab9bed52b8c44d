"""Locust entry point: NPC traffic mixes against the stack that `python -m serve up` runs.

    python -m bench ui                     # web UI: a start form on http://127.0.0.1:8089/npc, then Locust's charts
    python -m bench run --mix npc-cpu      # headless, with a progress line and a summary
    locust -f bench/locustfile.py --mix npc-cpu --headless     # the same, by hand

Every Locust user is one NPC. Each request picks a traffic class by the mix's weights; the mix's
load shape decides when requests go out (closed loop, Poisson arrivals, tick bursts, stepped ramp).
Each test start writes a new folder under `results/` (see bench/rundir.py).
"""

from __future__ import annotations

import csv
import itertools
import random
import resource
import sys
import time
from pathlib import Path

import gevent
import gevent.lock
import gevent.pool
import pandas as pd
from locust import LoadTestShape, User, events, task
from locust.html import get_html_report
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from bench.client import Direct, connect, send
from bench.decisions import Cancelled, NpcTick, TickLedger, decision_figures, decisions_by_class
from bench.fit import check_fits
from bench.metrics import prefix_cache_hit_rates
from bench.npc import NPC
from bench.options import LoadOptions
from bench.records import ClientLoad, Manifest, RequestRecord, RunStatus, ServerSummary, meets_slo
from bench.rundir import (
    DIRTY_TREE_NOTE,
    SIMULATED_NOTE,
    RunDir,
    cache_state,
    new_run_id,
    provenance,
    read_requests,
    read_server_metrics,
    reset_prefix_caches,
    worker_cache_config,
    worker_startup,
    write_ticks,
)
from bench.scrape import CPU_METRIC, ServerScraper, Target
from bench.shapes.tick import TickBurst
from bench.spec import ResolvedMix, direct_worker, load_mix, mix_names
from bench.summary import memory_trend, summarize
from bench.webform import add_start_page
from serve import NOT_READY, StackState, master_key, pid_alive, ready_state, redis_commands
from serve.common import now_iso

# The workers' counters the run summary compares with what the client counted.
SETTLED_COUNTERS = ("vllm:generation_tokens_total", "vllm:prompt_tokens_total", "vllm:request_success_total")


LAG_PROBE_S = 0.1
RECORDS_MESSAGE = "npc_records"  # a Locust worker process's request records, to the master
FINISH_MESSAGE = "npc_finish"  # the master's word to its workers that the run's shape has ended
SEND_EVERY_S = 0.5


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class NoStackError(RuntimeError):
    pass


class RequestFailed(Exception):
    """Shown in Locust's failure table by outcome: error, timeout, tool_invalid."""


class SLOMissed(Exception):
    pass


class DeadlineMissed(Exception):
    pass


class FellBack(Exception):
    """An NPC-tick with no new decision: the NPC ran its cached behaviour."""


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
    parser.add_argument("--skip-html-report", action="store_true", include_in_web_ui=False,
                        help="write Locust's CSVs but not its ~1 MB HTML report (for sample sets kept in git)")


@events.init.add_listener
def _start_page(environment, web_ui=None, **kwargs) -> None:
    if web_ui is not None:  # the web UI opens on our own form: mix first (bench/webform.py)
        add_start_page(web_ui, MIXES)


class LocustRun:
    """The one test that is running in this Locust process: its mix, stack, client, folder and scraper."""

    mix: ResolvedMix
    stack: StackState
    scraper: ServerScraper

    def __init__(self) -> None:
        self.prepared = False  # mix, stack and client are set (prepare runs before the test starts)
        self.dir: RunDir | None = None  # set while a test runs (in the master, with several Locust processes)
        self.runner: WorkerRunner | None = None  # set in a Locust worker process, which sends its records to the master
        self.outbox: list[RequestRecord] = []
        self.processes = 1
        self.workers_done: dict[str, ClientLoad] = {}  # in the master: each worker process's own load, at its end
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

    # -- set-up: called from the shape's first tick (which runs before test_start) and from test_start
    def prepare(self, environment) -> None:
        if self.prepared:
            return
        options = LoadOptions.from_args(environment.parsed_options)
        stack = ready_state()
        if stack is None:
            raise NoStackError(NOT_READY)
        mix = load_mix(options.mix, options.npcs, options.rate_rps, options.duration_s, options.tick_policy)
        check_fits(mix, stack.spec)
        self.mix, self.stack = mix, stack
        self.key = master_key()
        self.direct, base_url, api_key = None, stack.base_url, self.key
        if options.direct:
            worker = direct_worker(mix, stack.workers, options.direct)
            self.direct = Direct(worker.name, worker.model)
            base_url, api_key = worker.url + "/v1", "none"
        self.client = connect(options.client, base_url, api_key, timeout_s=stack.spec.proxy.timeout_s + 10)
        # LiteLLM takes a top-level `priority` for its own proxy-side scheduler, so it is only sent when the
        # group's workers schedule by priority, where it is what the operator asked for.
        self.priority_groups = {name for name, group in stack.spec.groups.items() if group.scheduling_policy == "priority"}
        self.class_names = list(mix.classes)
        self.credit = dict.fromkeys(self.class_names, 0.0)
        self.weight_sum = sum(mix.mix.weights[name] for name in self.class_names)
        self.shape_finished = False
        self.stack_lost = None
        shape = mix.mix.shape
        cap = shape.max_in_flight if isinstance(shape, TickBurst) else None
        self.slots = gevent.lock.BoundedSemaphore(cap) if cap else None
        self.ledgers, self.ticks = {}, []
        self.cache_reset = options.cache == "reset"
        if self.cache_reset:  # last, so nothing else delays the start after it
            reset_prefix_caches({w.name: w.url for w in stack.workers})
        self.t0 = time.time()
        self.prepared = True

    def start(self, environment) -> None:
        self.prepare(environment)
        self.cpu_at_start, self.loop_lags = cpu_seconds(), list[float]()
        if isinstance(environment.runner, WorkerRunner):  # one of several Locust processes: the master keeps the run
            self.runner, self.outbox = environment.runner, []
            environment.runner.register_message(FINISH_MESSAGE, lambda **kw: gevent.spawn(environment.runner.stop))
            self.processes = environment.parsed_options.processes or 1
            self.background = [gevent.spawn(self._send_loop), gevent.spawn(self._lag_loop)]
            return
        if isinstance(environment.runner, MasterRunner):
            self.workers_done = {}
            environment.runner.register_message(RECORDS_MESSAGE, self._received)
        options, run_dir = LoadOptions.from_args(environment.parsed_options), environment.parsed_options.run_dir
        run_id = Path(run_dir).name if run_dir else new_run_id(self.mix.name, simulated=self.stack.spec.simulated)
        path = Path(run_dir) if run_dir else options.results_dir / run_id
        workers = {w.name: w.url for w in self.stack.workers}
        manifest = Manifest(
            run_id=run_id, status="running", started_at=now_iso(), mix=self.mix,
            endpoints={"proxy": self.stack.base_url, **workers}, client=options.client, kv_cache=worker_cache_config(workers),
            startup=worker_startup({w.name: w.log for w in self.stack.workers if not w.external}),
            **dict(provenance(self.stack.spec, workers)),
        )
        if self.direct:
            manifest.notes.append(f"sent straight to worker {self.direct.worker} ({manifest.endpoints[self.direct.worker]}), "
                                  "bypassing the proxy")
        self.dir = RunDir(path, manifest)
        targets = [Target(w.name, w.url, pid=w.pid) for w in self.stack.workers]
        targets.append(Target("proxy", self.stack.proxy.url, {"Authorization": f"Bearer {self.key}"}, self.stack.proxy.pid))
        self.scraper = ServerScraper(path / "server_metrics.csv", targets, t0=self.t0)
        # The counters' first reading, taken here because Locust spawns the NPCs only once test_start is
        # done: a reading left to the loop raced the first requests and missed their first tokens.
        self.scraper.scrape_once()
        manifest.cache = cache_state(self.scraper.window.first, list(workers), reset=self.cache_reset)
        if manifest.git.dirty:
            manifest.notes.append(DIRTY_TREE_NOTE)
        if manifest.simulated:
            manifest.notes.insert(0, SIMULATED_NOTE)
        self.dir.write_manifest()
        self.counts = {}
        self.redis_at_start = redis_commands(self.stack.spec)
        self.background = [gevent.spawn(self._scrape_loop, options.scrape_interval_s), gevent.spawn(self._lag_loop)]
        print(f"[bench] run {run_id}: mix {self.mix.name} ({self.mix.mix.shape.kind} shape), "
              f"writing {path}", file=sys.stderr, flush=True)

    def _scrape_loop(self, interval_s: float) -> None:
        shape = self.mix.mix.shape
        while True:
            gevent.sleep(interval_s)
            self.scraper.scrape_once()
            if self.stack_lost is None and not pid_alive(self.stack.supervisor_pid):
                # The shape sees this at its next tick and ends the run, which is then marked failed.
                self.stack_lost = (f"the stack went down during the run (supervisor pid {self.stack.supervisor_pid} "
                                   "is gone); the run was stopped early")
                print(f"[bench] {self.stack_lost}", file=sys.stderr, flush=True)
            elapsed = time.time() - self.t0
            counts = " ".join(f"{k}={v}" for k, v in sorted(self.counts.items()))
            print(f"[bench] {elapsed:5.0f}/{shape.duration_s:.0f} s  in flight {len(self.inflight)}  {counts}",
                  file=sys.stderr, flush=True)

    def _keep(self, record: RequestRecord) -> None:
        assert self.dir is not None
        self.dir.add(record)
        self.counts[record.outcome] = self.counts.get(record.outcome, 0) + 1

    # -- several Locust processes (`--processes N`): workers send their records to the master, which keeps the run
    def _send_loop(self) -> None:
        while True:
            gevent.sleep(SEND_EVERY_S)
            self._send(done=False)

    def _send(self, done: bool) -> None:
        assert self.runner is not None
        batch, self.outbox = self.outbox, []
        load = self.client_load(0).model_dump() if done else None
        self.runner.send_message(RECORDS_MESSAGE, {"records": [r.model_dump(mode="json") for r in batch], "done": load})

    def _received(self, environment, msg, **kwargs) -> None:
        if self.dir is None:  # after the run was closed: said in its manifest (`_wait_for_workers`)
            return
        for item in msg.data["records"]:
            self._keep(RequestRecord.model_validate(item))
        if msg.data["done"] is not None:
            self.workers_done[msg.node_id] = ClientLoad.model_validate(msg.data["done"])

    def _wait_for_workers(self, environment) -> None:
        """Until every worker process has sent its last records (it does once its requests in flight are done)."""
        expected = environment.parsed_options.expect_workers or 1
        deadline = time.monotonic() + self.stack.spec.proxy.timeout_s + 30
        while len(self.workers_done) < expected and time.monotonic() < deadline:
            gevent.sleep(0.2)
        if len(self.workers_done) < expected:
            assert self.dir is not None
            self.dir.manifest.notes.append(f"only {len(self.workers_done)} of {expected} Locust worker processes sent "
                                           "their last records before the run was closed; the rest are missing")

    def _lag_loop(self) -> None:
        """How late the load generator's own timers fire: the error in every time it takes."""
        while True:
            asked = time.perf_counter()
            gevent.sleep(LAG_PROBE_S)
            self.loop_lags.append(time.perf_counter() - asked - LAG_PROBE_S)

    def client_load(self, requests: int) -> ClientLoad:
        """This process's CPU and timer lag. With Locust worker processes, theirs: their CPU summed with the
        master's (which only coordinates), their worst lags."""
        cpu = cpu_seconds() - self.cpu_at_start
        lags_ms = pd.Series(self.loop_lags or [0.0]) * 1000
        loads = list(self.workers_done.values()) or [ClientLoad(
            cpu_s=0.0, cpu_ms_per_request=None, loop_lag_p50_ms=round(lags_ms.quantile(0.5), 3),
            loop_lag_p99_ms=round(lags_ms.quantile(0.99), 3), loop_lag_max_ms=round(lags_ms.max(), 3))]
        cpu += sum(load.cpu_s for load in loads)
        return ClientLoad(processes=len(loads), cpu_s=round(cpu, 3),
                          cpu_ms_per_request=round(cpu * 1000 / requests, 3) if requests else None,
                          loop_lag_p50_ms=max(load.loop_lag_p50_ms for load in loads),
                          loop_lag_p99_ms=max(load.loop_lag_p99_ms for load in loads),
                          loop_lag_max_ms=max(load.loop_lag_max_ms for load in loads))

    # -- per request
    def pick_class(self):
        """Smooth weighted round-robin over the mix's weights: every class gets its share, and each
        shows up once in every cycle of the schedule (a random draw can starve a rare class in a short run)."""
        for name in self.class_names:
            self.credit[name] += self.mix.mix.weights[name]
        name = max(self.class_names, key=self.credit.__getitem__)
        self.credit[name] -= self.weight_sum
        return self.mix.classes[name]

    def fire(self, npc: NPC, tick: int | None = None, deadline_s: float | None = None, stream: bool = False,
             planned: tuple[str, int, int] | None = None) -> RequestRecord | None:
        cls = self.mix.classes[planned[0]] if planned else self.pick_class()
        if stream and not cls.stream:
            cls = cls.model_copy(update={"stream": True})
        try:
            if self.slots is not None:
                self.slots.acquire()  # a game server's LLM threads: wait for one
        except Cancelled:
            return None  # cancelled by a newer tick before a thread was free: nothing was sent
        try:
            record, _ = send(self.client, cls, npc, direct=self.direct, use_priority=cls.group in self.priority_groups,
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
        for t in ticks:  # Locust's DECISION rows per class and outcome: response time is the decision's age;
            # fallback ticks are failures; a tick that sent nothing (`skip`) is "no request"
            events.request.fire(request_type="DECISION", name=f"{t.cls or 'no request'}: {t.decision}",
                                response_time=t.staleness * period_ms,
                                response_length=0, context={},
                                exception=FellBack("fallback behaviour ran") if t.decision == "fallback" else None)

    def record(self, record: RequestRecord) -> None:
        """Keep a request's record (a Locust worker process sends it to the master) and show it in Locust's stats."""
        if self.runner is not None:
            self.outbox.append(record)
        elif self.dir is None:
            return
        else:
            self._keep(record)
        fire = events.request.fire
        ms = record.e2e_s * 1000
        failed = record.outcome in ("error", "timeout", "tool_invalid")
        fire(request_type="stream" if record.ttft_s is not None or record.outcome == "interrupted" else "chat",
             name=record.cls, response_time=ms, response_length=record.output_tokens, context={},
             exception=RequestFailed(f"{record.outcome}: {record.error}") if failed else None)
        if record.ttft_s is not None:
            fire(request_type="TTFT", name=record.cls, response_time=record.ttft_s * 1000, response_length=0,
                 context={}, exception=None)
        if record.itl_s is not None:
            fire(request_type="ITL", name=record.cls, response_time=record.itl_s * 1000, response_length=0,
                 context={}, exception=None)
        if record.outcome == "interrupted":
            fire(request_type="INTERRUPTED", name=record.cls, response_time=ms, response_length=record.output_tokens,
                 context={}, exception=None)
        elif not failed:
            fire(request_type="SLO", name=record.cls, response_time=ms, response_length=0, context={},
                 exception=None if record.slo_met else SLOMissed("SLO missed"))
        if record.deadline_missed is not None:
            fire(request_type="DEADLINE", name=record.cls, response_time=ms, response_length=0, context={},
                 exception=DeadlineMissed("missed its tick") if record.deadline_missed else None)

    # -- tear-down
    def stop(self, environment) -> None:
        run_dir = self.dir
        if run_dir is None and self.runner is None:
            return
        self.inflight.join(timeout=self.stack.spec.proxy.timeout_s)  # open-loop requests still in flight
        self.inflight.kill()
        if self.runner is not None:  # a worker process: its last records go to the master, which keeps the run
            gevent.killall(self.background)
            self._send(done=True)
            self.prepared = False
            return
        assert run_dir is not None
        if isinstance(environment.runner, MasterRunner):
            # Headless, Locust's master fires test_stop on its way to quitting, before it tells the workers to
            # stop: they would go on sending. Told now, each stops its NPCs and sends its last records. (Locust's
            # own "stop" message would do, but a worker then sleeps out the stop timeout and misses the "quit".)
            environment.runner.send_message(FINISH_MESSAGE)
            self._wait_for_workers(environment)
        gevent.killall(self.background)
        self.scraper.scrape_until_settled(SETTLED_COUNTERS)  # the last samples close the counters' window
        duration = time.time() - self.t0
        summary = summarize(read_requests(run_dir.path), duration)
        summary.server = self.server_summary(run_dir)
        summary.client = self.client_load(summary.all.requests)
        if self.ledgers:  # every NPC's last ticks, now that their replies are in
            self.closed([t for ledger in self.ledgers.values() for t in ledger.close()])
            write_ticks(run_dir, self.ticks)
            summary.decisions = decision_figures(self.ticks, list(self.ledgers.values()))
            summary.decisions_by_class = decisions_by_class(self.ticks)
        self._write_locust_reports(environment, run_dir)
        status: RunStatus = "failed" if self.stack_lost else "complete" if self.shape_finished else "interrupted"
        if self.stack_lost:
            run_dir.manifest.notes.append(self.stack_lost)
        run_dir.close(status, summary)
        self.scraper.close()
        print(f"[bench] run {run_dir.manifest.run_id} {status}: {summary.all.requests} requests, "
              f"results in {run_dir.path}", file=sys.stderr, flush=True)
        self.dir, self.prepared = None, False  # the web UI's next test may pick another mix

    def server_summary(self, run_dir: RunDir) -> ServerSummary:
        """Token counts the workers counted themselves, beside what the client counted, and each process's memory."""
        delta = self.scraper.window.delta
        workers = [w.name for w in self.stack.workers]
        per_worker = {name: delta("vllm:generation_tokens_total").get(name) for name in workers}
        redis_now = redis_commands(self.stack.spec)
        return ServerSummary(
            generation_tokens=per_worker,
            generation_tokens_total=sum(v for v in per_worker.values() if v is not None),
            prompt_tokens_total=sum(v for k, v in delta("vllm:prompt_tokens_total").items() if k in workers),
            finished_requests=sum(v for k, v in delta("vllm:request_success_total").items() if k in workers),
            preemptions=sum(v for k, v in delta("vllm:num_preemptions_total").items() if k in workers),
            prefix_cache_hit_rate=prefix_cache_hit_rates(self.scraper.window, {w.name: w.group for w in self.stack.workers}),
            memory=memory_trend(read_server_metrics(run_dir.path)),
            redis_commands=None if self.redis_at_start is None or redis_now is None else redis_now - self.redis_at_start,
            cpu_s={source: round(seconds, 3) for source, seconds in delta(CPU_METRIC).items()
                   if CPU_METRIC in self.scraper.window.last[source]},
        )

    def _write_locust_reports(self, environment, run_dir: RunDir) -> None:
        stats_csv = StatsCSV(environment, PERCENTILES_TO_REPORT)
        for name, write in (("locust_stats.csv", stats_csv.requests_csv), ("locust_failures.csv", stats_csv.failures_csv),
                            ("locust_exceptions.csv", stats_csv.exceptions_csv)):
            with open(run_dir.path / name, "w", newline="") as f:
                write(csv.writer(f))
            run_dir.manifest.files[name.removesuffix(".csv")] = name
        if not environment.parsed_options.skip_html_report:
            (run_dir.path / "locust_report.html").write_text(get_html_report(environment, show_download_link=False))
            run_dir.manifest.files["locust_report"] = "locust_report.html"


RUN = LocustRun()


@events.test_start.add_listener
def _test_start(environment, **kwargs) -> None:
    RUN.start(environment)


@events.test_stop.add_listener
def _test_stop(environment, **kwargs) -> None:
    RUN.stop(environment)


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
        if users_and_rate is None:
            RUN.shape_finished = True
        return users_and_rate


class NPCUser(User):
    """One NPC; its shape's pacer decides when it sends."""

    def on_start(self) -> None:
        index = next(RUN.npc_ids)
        if RUN.runner is not None:  # one of several Locust processes: NPC ids stay unique across them
            index = index * RUN.processes + max(RUN.runner.worker_index, 0)
        seed = RUN.mix.mix.seed
        self.npc = NPC(npc_id=f"npc-{index}", rng=random.Random(f"{seed}/{index}"), faction=index)
        shape = RUN.mix.mix.shape
        self.pacer = shape.pacer(shape, RUN, self.npc)

    def wait_time(self) -> float:
        return self.pacer.wait_s()

    @task
    def act(self) -> None:
        self.pacer.step()
