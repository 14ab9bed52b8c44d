"""What each kind of NPC request does differently, in one table: a new traffic kind is one row here (and
the classes that use it in classes.toml). The prompt (bench/load/npc.py), the client (bench/load/client.py), class
validation (bench/spec.py) and the summary (bench/report/summary.py) read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KindBehaviour:
    task: str  # the instruction that ends the prompt, after the NPC's state
    needs: tuple[str, ...] = ()  # class fields a class of this kind must set
    ignore_eos: bool = True  # the reply runs to max_tokens, so lengths follow the mix
    cuts_stream: bool = False  # the client closes the stream after interrupt_after_tokens: a newer game event
    keeps_history: bool = False  # the conversation grows turn by turn, up to the class's `turns`
    bare_prompt: bool = False  # one user message of random words and no system prompt, as vLLM's random dataset


KINDS: dict[str, KindBehaviour] = {
    "ambient": KindBehaviour(task="State your next action in a few words."),
    # A tool call ends when the call does; forcing it past EOS would only make invalid arguments.
    "tool_call": KindBehaviour(task="Decide what to do next and call exactly one tool.", needs=("tools",),
                               ignore_eos=False),
    "dialogue": KindBehaviour(task="The player says: tell me about this place. Answer in character."),
    "interrupted": KindBehaviour(task="The player says: tell me a long story about the war. Answer in character.",
                                 needs=("stream", "interrupt_after_tokens"), cuts_stream=True),
    "multi_turn": KindBehaviour(task="The player says: what news do you have?", needs=("turns",), keeps_history=True),
    "planning": KindBehaviour(task="Write a step-by-step quest plan for your faction for the next game day."),
    "fixed": KindBehaviour(task="Continue.", bare_prompt=True),
}
# Kinds whose replies must be a valid tool call (the client validates them, the summary gives their validity).
TOOL_KINDS = [name for name, kind in KINDS.items() if "tools" in kind.needs]
