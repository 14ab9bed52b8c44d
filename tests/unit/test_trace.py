"""Trace replay: a recorded session's requests sent at their times, and clear errors for a bad trace."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest

from bench.errors import MixError
from bench.load.npc import NPC
from bench.shapes.trace import TraceReplay, read_trace
from bench.spec import load_mix

EVENTS = [
    {"t_s": 0.0, "npc_id": "guard-1", "cls": "ambient", "prompt_tokens": 300, "output_tokens": 10},
    {"t_s": 0.5, "npc_id": "smith-2", "cls": "dialogue", "prompt_tokens": 300, "output_tokens": 40},
    {"t_s": 1.0, "npc_id": "guard-1", "cls": "ambient", "prompt_tokens": 310, "output_tokens": 12},
]


def write(tmp_path, events, name="trace.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    read_trace.cache_clear()
    return path


def mix_file(tmp_path, trace, weights='{ ambient = 1, dialogue = 1 }'):
    path = tmp_path / "replay.toml"
    path.write_text(f'scale = "cpu"\nweights = {weights}\nshape = {{ kind = "trace", file = "{trace}" }}\n')
    return str(path)


def test_a_trace_mix_loads_with_its_npcs_duration_and_digest(tmp_path) -> None:
    mix = load_mix(mix_file(tmp_path, write(tmp_path, EVENTS)))
    shape = mix.mix.shape
    assert shape.npc_ids() == ["guard-1", "smith-2"] and shape.users_at(0) == (2, 1000.0)
    assert shape.duration_s == 2.0 and shape.users_at(2.0) is None
    assert len(shape.sha256) == 64


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e[1].pop("cls"), "line 2: cls: Field required"),
    (lambda e: e[2].update(t_s=0.2), "line 3: t_s 0.2 is earlier than the line before's 0.5; sort the trace by time"),
    (lambda e: e[0].update(output_tokens=0), "line 1: output_tokens: Input should be greater than 0"),
    (lambda e: e[1].update(cls="planning"), "class 'planning' is not in the mix's weights (ambient, dialogue)"),
    (lambda e: e[0].update(prompt_tokens=5000), "more than the class's maxima (420, 20); widen them in the mix's"),
])
def test_a_bad_trace_is_refused_with_what_is_wrong(tmp_path, change, message) -> None:
    events = json.loads(json.dumps(EVENTS))
    change(events)
    with pytest.raises(MixError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_mix(mix_file(tmp_path, write(tmp_path, events)))


def test_a_missing_trace_file_and_load_overrides_are_refused(tmp_path) -> None:
    with pytest.raises(MixError, match="does not exist"):
        load_mix(mix_file(tmp_path, tmp_path / "nowhere.jsonl"))
    with pytest.raises(MixError, match="a trace sets its own NPCs, times and length"):
        load_mix(mix_file(tmp_path, write(tmp_path, EVENTS)), npcs=4)


def test_each_npc_sends_its_own_requests_when_they_are_due(tmp_path, monkeypatch) -> None:
    clock = SimpleNamespace(now=1000.0)
    monkeypatch.setattr("bench.shapes.trace.time", SimpleNamespace(time=lambda: clock.now))
    shape = TraceReplay(file=write(tmp_path, EVENTS))
    sent = []
    run = SimpleNamespace(t0=1000.0, spawn=lambda npc, planned: sent.append((npc.npc_id, planned)))
    pacer = shape.pacer(shape, run, NPC("npc-0", random.Random(0)))
    assert pacer.npc.npc_id == "guard-1"  # the trace's id, which the proxy's session affinity keys on
    pacer.step()
    assert sent == [("guard-1", ("ambient", 300, 10))] and pacer.wait_s() == 1.0
    clock.now += 1.0
    pacer.step()
    assert sent[-1] == ("guard-1", ("ambient", 310, 12)) and pacer.wait_s() == shape.duration_s  # nothing left
    other = shape.pacer(shape, run, NPC("npc-1", random.Random(0)))
    other.step()
    assert other.npc.npc_id == "smith-2" and sent[-1] == ("smith-2", ("dialogue", 300, 40))



def test_the_shipped_sample_trace_replays_with_its_mix() -> None:
    mix = load_mix("trace-sample")
    assert mix.mix.shape.kind == "trace" and len(mix.mix.shape.events()) > 0
