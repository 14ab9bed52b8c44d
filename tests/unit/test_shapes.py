"""Each load shape's schedule: users over time, and one NPC's pacing."""

from __future__ import annotations

import random
import time
from types import SimpleNamespace

from bench.load.npc import NPC
from bench.shapes import LoadShape
from bench.shapes.closed import ClosedLoop
from bench.shapes.poisson import Poisson
from bench.shapes.ramp import SteppedRamp
from bench.shapes.tick import TickBurst


def test_closed_loop_holds_its_users_then_ends() -> None:
    shape = ClosedLoop(users=6, duration_s=30)
    assert shape.users_at(0) == (6, 6)
    assert shape.users_at(29.9) == (6, 6)
    assert shape.users_at(30) is None


def test_stepped_ramp_adds_users_each_step_up_to_max() -> None:
    shape = SteppedRamp(start_users=2, step_users=3, step_s=10, max_users=9)
    users = [shape.users_at(t)[0] for t in (0, 9.9, 10, 20, 30)]
    assert users == [2, 2, 5, 8, 9]
    assert shape.duration_s == 40
    assert shape.users_at(40) is None


def test_poisson_arrivals_average_the_target_rate() -> None:
    shape = Poisson(rate_rps=4, users=8)
    pacer = shape.pacer(shape, SimpleNamespace(), NPC("npc-0", random.Random(3)))
    gaps = [pacer.wait_s() for _ in range(20_000)]
    per_user_rate = len(gaps) / sum(gaps)
    assert abs(per_user_rate * shape.users - 4) < 0.2


def test_poisson_npcs_start_with_a_gap_not_a_burst() -> None:
    """Locust runs a task before its first wait: without a first gap every NPC would send at t=0. The gap is
    Locust's wait (which a stopping run interrupts), not a sleep inside the task."""
    sent = []
    run = SimpleNamespace(spawn=lambda npc, **kwargs: sent.append(npc.npc_id))
    shape = Poisson(rate_rps=1, users=4)
    pacer = shape.pacer(shape, run, NPC("npc-0", random.Random(1)))
    pacer.step()  # Locust's first task: nothing is sent, so the first arrival comes after wait_s()
    assert sent == [] and pacer.wait_s() > 0
    pacer.step()
    pacer.step()
    assert sent == ["npc-0", "npc-0"]


def test_tick_npcs_wait_for_the_next_tick_of_the_shared_clock() -> None:
    shape = TickBurst(npcs=4, tick_hz=2)
    run = SimpleNamespace(t0=time.time() - 10.2, track=lambda npc, ledger: ledger)  # 10.2 s in: tick 21 is due at 10.5 s
    pacer = shape.pacer(shape, run, NPC("npc-0", random.Random(0)))
    assert pacer.next_tick == 21
    assert 0.0 < pacer.wait_s() <= 0.5
    assert shape.tick_deadline_s == 0.5
    assert TickBurst(npcs=1, tick_hz=1, deadline_s=2.0).tick_deadline_s == 2.0


def test_every_shape_module_registers_its_kind() -> None:
    assert set(LoadShape.REGISTRY) == {"closed", "poisson", "tick", "ramp", "trace"}
    for kind, shape in LoadShape.REGISTRY.items():
        assert shape.model_fields["kind"].default == kind
        assert issubclass(shape.pacer, object) and shape.npcs_field in shape.model_fields
