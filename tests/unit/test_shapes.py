"""Each load shape's schedule: users over time, and one NPC's pacing."""

from __future__ import annotations

import random
import time
from types import SimpleNamespace

from bench.npc import NPC
from bench.shapes import SHAPES
from bench.spec import ClosedLoop, Poisson, SteppedRamp, TickBurst


def test_closed_loop_holds_its_users_then_ends() -> None:
    shape = ClosedLoop(users=6, duration_s=30)
    assert SHAPES["closed"].users_at(shape, 0) == (6, 6)
    assert SHAPES["closed"].users_at(shape, 29.9) == (6, 6)
    assert SHAPES["closed"].users_at(shape, 30) is None


def test_stepped_ramp_adds_users_each_step_up_to_max() -> None:
    shape = SteppedRamp(start_users=2, step_users=3, step_s=10, max_users=9)
    users = [SHAPES["ramp"].users_at(shape, t)[0] for t in (0, 9.9, 10, 20, 30)]
    assert users == [2, 2, 5, 8, 9]
    assert shape.duration_s == 40
    assert SHAPES["ramp"].users_at(shape, 40) is None


def test_poisson_arrivals_average_the_target_rate() -> None:
    shape = Poisson(rate_rps=4, users=8)
    pacer = SHAPES["poisson"](shape, SimpleNamespace(), NPC("npc-0", random.Random(3)))
    gaps = [pacer.wait_s() for _ in range(20_000)]
    per_user_rate = len(gaps) / sum(gaps)
    assert abs(per_user_rate * shape.users - 4) < 0.2


def test_poisson_npcs_start_with_a_gap_not_a_burst(monkeypatch) -> None:
    """Locust runs a task before its first wait: without a first gap every NPC would send at t=0."""
    events = []
    monkeypatch.setattr("bench.shapes.gevent.sleep", lambda s: events.append(("sleep", s)))
    run = SimpleNamespace(fire=None, inflight=SimpleNamespace(spawn=lambda *a, **k: events.append(("send", None))))
    pacer = SHAPES["poisson"](Poisson(rate_rps=1, users=4), run, NPC("npc-0", random.Random(1)))
    pacer.step()
    pacer.step()
    assert [kind for kind, _ in events] == ["sleep", "send", "send"]
    assert events[0][1] > 0


def test_tick_npcs_wait_for_the_next_tick_of_the_shared_clock() -> None:
    shape = TickBurst(npcs=4, tick_hz=2)
    run = SimpleNamespace(t0=time.time() - 10.2)  # 10.2 s into the run: tick 21 is due at 10.5 s
    pacer = SHAPES["tick"](shape, run, NPC("npc-0", random.Random(0)))
    assert pacer.next_tick == 21
    assert 0.0 < pacer.wait_s() <= 0.5
    assert shape.tick_deadline_s == 0.5
    assert TickBurst(npcs=1, tick_hz=1, deadline_s=2.0).tick_deadline_s == 2.0
