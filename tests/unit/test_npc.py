"""What NPCs send: shared faction prefixes, growing conversations, and tool-call validation."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

from bench.load.client import tool_call_problem
from bench.load.npc import NPC, faction_prefix
from bench.spec import load_classes

CLASSES = load_classes("cpu")


def test_npcs_of_one_faction_share_the_system_prompt_and_differ_after_it() -> None:
    ambient = CLASSES["ambient"]
    a = NPC("npc-0", random.Random(0), faction=1).messages(ambient, 320)
    b = NPC("npc-4", random.Random(4), faction=1).messages(ambient, 320)
    c = NPC("npc-2", random.Random(2), faction=2).messages(ambient, 320)
    assert a[0] == b[0] and a[0] != c[0]
    assert a[1] != b[1]
    words = len(a[0]["content"].split()) + len(a[1]["content"].split())
    assert 0.8 * 320 < words < 1.1 * 320


def test_multi_turn_history_grows_then_starts_over() -> None:
    cls = CLASSES["multi_turn"]
    npc = NPC("npc-0", random.Random(0))
    lengths = []
    for _ in range(cls.turns + 1):
        sent = npc.messages(cls, 240)
        lengths.append(len(sent))
        npc.remember(cls, sent, "A reply.")
    assert lengths == [2, 4, 6, 8, 10, 12, 2]
    sent = npc.messages(cls, 240)
    npc.remember(cls, sent, None)  # a failed turn ends the conversation
    assert len(npc.messages(cls, 240)) == 2


def message(name: str | None, arguments: dict | str | None = None) -> SimpleNamespace:
    if name is None:
        return SimpleNamespace(tool_calls=None)
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return SimpleNamespace(tool_calls=[SimpleNamespace(function=SimpleNamespace(name=name, arguments=args))])


def test_tool_call_validation() -> None:
    assert tool_call_problem(message("scan_sector", {"sector": "B7", "depth": 2})) is None
    assert tool_call_problem(message("check_inventory", {"item": "ammo"})) is None
    assert "no tool call" in tool_call_problem(message(None))
    assert "unknown tool 'fly'" in tool_call_problem(message("fly", {}))
    assert "do not validate" in tool_call_problem(message("scan_sector", {"sector": "B7", "depth": 9}))
    assert "do not validate" in tool_call_problem(message("check_inventory", {"item": "gold"}))
    assert "do not validate" in tool_call_problem(message("send_message", '{"to": "npc-1", "text": '))


def test_fixed_class_sends_one_user_message_of_random_words() -> None:
    cls = CLASSES["fixed"]
    npc = NPC(npc_id="npc-0", rng=random.Random(0))
    messages = npc.messages(cls, 50)
    assert [m["role"] for m in messages] == ["user"] and len(messages[0]["content"].split()) == 50
    assert npc.messages(cls, 50) != messages  # random each time: no shared prefix beyond the chat template


def test_npcs_spread_over_all_of_a_class_factions() -> None:
    cls = load_classes("cpu")["ambient"].model_copy(update={"factions": 6})
    prefixes = {faction_prefix(cls, index) for index in range(12)}
    assert len(prefixes) == 6
