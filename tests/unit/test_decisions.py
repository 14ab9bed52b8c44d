"""The game loop's tick policies and its decision arithmetic, on a fake clock and hand-worked ticks."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from bench.load.decisions import Cancelled, NpcTick, TickLedger, decision_figures, decisions_by_class
from bench.load.npc import NPC
from bench.records import RequestRecord
from bench.shapes.tick import TickBurst


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Request:
    """Stands in for a request's greenlet: the test ends it, or the pacer kills it."""

    def __init__(self, tick: int, stream: bool) -> None:
        self.tick, self.stream, self.dead, self.killed_with, self.value = tick, stream, False, None, None
        self.callbacks: list = []

    def link_value(self, callback) -> None:
        self.callbacks.append(callback)

    def kill(self, exception=None, block=True) -> None:
        self.killed_with, self.dead = exception, True

    def finish(self, sent_at: float, ended_at: float, outcome: str = "ok") -> None:
        self.dead = True
        self.value = RequestRecord(cls="ambient", kind="ambient", group="light", npc_id="npc-0", t_start=sent_at,
                                   e2e_s=ended_at - sent_at, max_tokens=8, outcome=outcome, tick=self.tick)
        for callback in self.callbacks:
            callback(self)


class FakeRun:
    def __init__(self, t0: float) -> None:
        self.t0, self.sent, self.ticks = t0, [], []
        self.ledgers: list[TickLedger] = []

    def spawn(self, npc, tick=None, deadline_s=None, stream=False) -> Request:
        self.sent.append(Request(tick, stream))
        return self.sent[-1]

    def track(self, npc, ledger: TickLedger) -> TickLedger:
        self.ledgers.append(ledger)
        return ledger

    def closed(self, ticks) -> None:
        self.ticks.extend(ticks)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock(1000.0)
    monkeypatch.setattr("bench.shapes.tick.time", SimpleNamespace(time=clock.time))
    monkeypatch.setattr("bench.shapes.tick.gevent.sleep", clock.sleep)
    return clock


def pacer_for(policy: str, clock: Clock, run: FakeRun):
    shape = TickBurst(npcs=1, tick_hz=1, policy=policy)
    return shape.pacer(shape, run, NPC("npc-0", random.Random(0)))


def test_skip_never_has_two_requests_in_flight(clock: Clock) -> None:
    run = FakeRun(t0=clock.now - 0.5)
    pacer = pacer_for("skip", clock, run)
    pacer.step()  # tick 1: asks
    pacer.step()  # tick 2: still thinking, skips
    assert [r.tick for r in run.sent] == [1] and pacer.ledger.skipped == 1
    run.sent[0].finish(sent_at=run.t0 + 1, ended_at=run.t0 + 2.4)
    pacer.step()  # tick 3: the reply is in, asks again
    assert [r.tick for r in run.sent] == [1, 3] and not any(r.stream for r in run.sent)


def test_cancel_closes_the_earlier_request_and_streams(clock: Clock) -> None:
    run = FakeRun(t0=clock.now - 0.5)
    pacer = pacer_for("cancel", clock, run)
    pacer.step()
    pacer.step()
    first, second = run.sent
    assert first.killed_with is Cancelled and second.killed_with is None
    assert first.stream and second.stream  # a cancelled turn's stream is closed, which stops the worker
    assert pacer.ledger.cancelled == 1


def test_overlap_asks_at_every_tick(clock: Clock) -> None:
    run = FakeRun(t0=clock.now - 0.5)
    pacer = pacer_for("overlap", clock, run)
    for _ in range(3):
        pacer.step()
    assert [r.tick for r in run.sent] == [1, 2, 3] and all(r.killed_with is None for r in run.sent)


def test_ticks_close_at_their_deadline_as_the_loop_goes(clock: Clock) -> None:
    run = FakeRun(t0=clock.now - 0.5)
    pacer = pacer_for("skip", clock, run)
    pacer.step()  # tick 1 at t0+1
    run.sent[0].finish(sent_at=run.t0 + 1, ended_at=run.t0 + 1.3)
    pacer.step()  # tick 2 at t0+2: tick 1's deadline (t0+2) has passed, so it closes, fresh
    assert [(t.tick, t.decision, t.staleness, t.cls) for t in run.ticks] == [(1, "fresh", 0, "ambient")]


def hand_worked() -> TickLedger:
    """1 Hz, deadline one tick. Tick 1's reply takes 0.4 s (fresh); tick 2's takes 1.5 s, arriving at 3.5; the NPC
    skips tick 3 (thinking); tick 4 asks and errors; tick 5 asks and is answered at 5.2."""
    ledger = TickLedger("npc-0", t0=0.0, tick_hz=1, deadline_s=1.0)
    for tick in range(1, 6):
        ledger.saw(tick)
    ledger.answered(1, "ambient", 1.0, 1.4, ok=True)
    ledger.answered(2, "ambient", 2.0, 3.5, ok=True)
    ledger.answered(4, "ambient", 4.0, 4.1, ok=False)
    ledger.answered(5, "ambient", 5.0, 5.2, ok=True)
    return ledger


def test_fresh_late_and_fallback_on_hand_worked_ticks() -> None:
    ticks = hand_worked().close()
    assert [(t.tick, t.decision, t.staleness) for t in ticks] == [
        (1, "fresh", 0),     # answered in 0.4 s, by tick 1's deadline (2.0)
        (2, "fallback", 1),  # tick 2's reply is not in by 3.0: the NPC still acts on tick 1's decision
        (3, "late", 1),      # tick 2's reply (3.5) is applied by tick 3's deadline (4.0): one tick old
        (4, "fallback", 2),  # tick 4's request failed: no decision, tick 2's gets older
        (5, "fresh", 0),
    ]


def test_a_late_reply_is_applied_once_and_an_older_one_never_replaces_a_newer() -> None:
    ledger = TickLedger("npc-0", t0=0.0, tick_hz=1, deadline_s=1.0)
    for tick in range(1, 5):
        ledger.saw(tick)
    ledger.answered(1, "ambient", 1.0, 3.9, ok=True)  # overlap: tick 1's reply arrives after tick 2's
    ledger.answered(2, "ambient", 2.0, 3.6, ok=True)
    decisions = [(t.decision, t.staleness) for t in ledger.close()]
    assert decisions == [("fallback", 1), ("fallback", 2), ("late", 1), ("fallback", 2)]


def test_no_decision_yet_is_as_old_as_the_npc() -> None:
    ledger = TickLedger("npc-0", t0=0.0, tick_hz=10, deadline_s=0.05)  # the world simulator: 50 ms of a 100 ms tick
    for tick in (7, 8, 9):
        ledger.saw(tick)
    ledger.answered(7, "ambient", 0.7, 0.78, ok=True)  # 80 ms: misses tick 7's 50 ms budget, lands in tick 8's
    assert [(t.decision, t.staleness) for t in ledger.close()] == [("fallback", 1), ("late", 1), ("fallback", 2)]


def test_ticks_close_only_once_their_deadline_has_passed() -> None:
    ledger = hand_worked()
    assert [t.tick for t in ledger.close(now=3.0)] == [1, 2]
    assert [t.tick for t in ledger.close(now=3.0)] == []
    assert [t.tick for t in ledger.close()] == [3, 4, 5]


def test_run_figures_and_thinking_share() -> None:
    ledger = hand_worked()
    ledger.skipped = 1
    figures = decision_figures(ledger.close(), [ledger])
    assert (figures.npc_ticks, figures.fresh_share, figures.late_share, figures.fallback_share) == (5, 0.4, 0.2, 0.4)
    assert (figures.staleness_p50, figures.staleness_max, figures.skipped) == (1.0, 2, 1)
    # Awaiting replies 0.4 + 1.5 + 0.1 + 0.2 s of the NPC's five ticks (1.0 to 6.0 s).
    assert figures.thinking_share == pytest.approx(2.2 / 5)
    assert decision_figures([], []) is None


def test_overlapping_requests_count_once_as_thinking() -> None:
    ledger = TickLedger("npc-0", t0=0.0, tick_hz=1, deadline_s=1.0)
    ledger.saw(1)
    ledger.saw(2)
    ledger.answered(1, "ambient", 1.0, 2.5, ok=True)
    ledger.answered(2, "ambient", 2.0, 2.8, ok=True)
    assert ledger.thinking_s() == pytest.approx(1.8)


def test_the_tick_policy_is_a_load_option_of_tick_mixes_only() -> None:
    from bench.errors import MixError
    from bench.spec import load_mix

    assert load_mix("ambient").mix.shape.policy == "overlap"
    assert load_mix("ambient", tick_policy="skip").mix.shape.policy == "skip"
    with pytest.raises(MixError, match="--tick-policy applies to a tick shape; this mix's shape is closed"):
        load_mix("npc-cpu", tick_policy="skip")


def test_decisions_per_class_count_the_ticks_that_sent_that_class() -> None:
    ticks = [NpcTick(npc_id="a", tick=0, decision="fresh", staleness=0, cls="ambient"),
             NpcTick(npc_id="a", tick=1, decision="fallback", staleness=1, cls="ambient"),
             NpcTick(npc_id="b", tick=0, decision="fresh", staleness=0, cls="dialogue"),
             NpcTick(npc_id="b", tick=1, decision="fallback", staleness=1, cls=None)]  # skipped: sent nothing
    by_class = decisions_by_class(ticks)
    assert set(by_class) == {"ambient", "dialogue"}
    assert (by_class["ambient"].npc_ticks, by_class["ambient"].fresh_share, by_class["ambient"].fallback_share) == (2, 0.5, 0.5)
    assert by_class["dialogue"].fresh_share == 1.0 and by_class["dialogue"].staleness_max == 0
    assert by_class["ambient"].skipped is None and by_class["ambient"].thinking_share is None  # per run only
