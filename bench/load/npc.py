"""What an NPC sends: prompts of a target length with a shared faction prefix, conversations, and tools."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.kinds import KINDS

if TYPE_CHECKING:
    from bench.spec import TrafficClass

# Common English words that are one token each (with their leading space) in BPE vocabularies such as
# SmolLM2's and Qwen's, so a prompt of N words is close to N tokens. The server's own count is recorded.
WORDS = """the of and to in is you that it he was for on are as with his they at be this have from or one had
by word but not what all were we when your can said there use an each which she do how their if will up other
about out many then them these so some her would make like him into time has look two more write go see number
no way could people my than first water been call who oil its now find long down day did get come made may part
""".split()
# Chat-template tokens around each message (role markers, newlines), taken off the filler so totals land near target.
MESSAGE_OVERHEAD_TOKENS = 5

NPC_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "scan_sector",
            "description": "Scan a map sector for threats and resources.",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {
                    "sector": {"type": "string", "maxLength": 8},
                    "depth": {"type": "integer", "minimum": 1, "maximum": 3},
                },
                "required": ["sector", "depth"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "check_inventory",
            "description": "Check how many of an item the NPC carries.",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {"item": {"type": "string", "enum": ["food", "ammo", "medkit", "ore", "fuel"]}},
                "required": ["item"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "send_message",
            "description": "Send a short message to another NPC.",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {
                    "to": {"type": "string", "maxLength": 16},
                    "text": {"type": "string", "maxLength": 48},
                },
                "required": ["to", "text"],
                "additionalProperties": False,
            },
        },
    },
]
TOOL_SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in NPC_TOOLS}

FOLLOW_UPS = ["And then what?", "Who told you that?", "Where should I go next?", "Why does it matter?",
              "What do the others think?", "Can I trust you?"]


def filler(rng: random.Random, n_tokens: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(max(n_tokens, 0)))


_PREFIXES: dict[tuple[str, float, int, int], str] = {}


def faction_prefix(cls: TrafficClass, faction: int) -> str:
    """The doctrine every NPC of one faction shares; identical text, so vLLM's prefix cache can reuse it. Made
    once per class and faction and then the same object, which the lean client encodes once (bench/load/lean.py)."""
    n_tokens = round(cls.shared_prefix_share * cls.prompt_tokens.mean) - MESSAGE_OVERHEAD_TOKENS
    faction %= cls.factions
    key = (cls.name, cls.shared_prefix_share, cls.prompt_tokens.mean, faction)
    if (text := _PREFIXES.get(key)) is None:
        rng = random.Random(f"{cls.name}/faction/{faction}")
        text = _PREFIXES[key] = f"You are an NPC of faction {faction}. Doctrine: " + filler(rng, n_tokens)
    return text


@dataclass
class NPC:
    """One simulated NPC: its faction, its random stream, and its running conversation."""

    npc_id: str
    rng: random.Random
    faction: int = 0  # taken modulo each class's `factions`, so a class with more factions spreads NPCs over all
    history: list[dict] = field(default_factory=list)
    turn: int = 0

    def messages(self, cls: TrafficClass, prompt_tokens: int) -> list[dict]:
        """The chat messages for one request of `cls`, about `prompt_tokens` long (the first turn, for multi-turn)."""
        kind = KINDS[cls.kind]
        if kind.keeps_history and self.history:
            self.turn += 1
            return [*self.history, {"role": "user", "content": self.rng.choice(FOLLOW_UPS)}]
        self.turn = 0
        if kind.bare_prompt:  # like vLLM's random dataset: one user message of `prompt_tokens` random words
            return [{"role": "user", "content": filler(self.rng, prompt_tokens)}]
        shared = faction_prefix(cls, self.faction) if cls.shared_prefix_share else ""
        own = prompt_tokens - (round(cls.shared_prefix_share * cls.prompt_tokens.mean) if shared else 0)
        state = f"NPC {self.npc_id} state: " + filler(self.rng, own - 2 * MESSAGE_OVERHEAD_TOKENS - 16)
        system = shared or f"You are NPC {self.npc_id}."
        return [{"role": "system", "content": system}, {"role": "user", "content": f"{state}\n{kind.task}"}]

    def remember(self, cls: TrafficClass, sent: list[dict], reply: str | None) -> None:
        """Keep a multi-turn conversation going; start over after `cls.turns` turns or a failed reply (None)."""
        if not KINDS[cls.kind].keeps_history:
            return
        keep = reply is not None and self.turn + 1 < (cls.turns or 1)
        self.history = [*sent, {"role": "assistant", "content": reply}] if keep else []


def npc_identity(local: int, worker_index: int | None, processes: int | None) -> tuple[str, str, int]:
    """An NPC's id, the key of its random seed, and its faction number, from its number in its Locust process and
    that process's Locust worker index (None: the only process).
    - `--processes N` on one host (`processes`: N, and every worker index below it): `npc-(local * N + index)`,
      numbered as one process would number them.
    - workers started apart, on this host or others (`processes` None): `npc-w<index>-<local>`, unique however
      many workers join or rejoin (a restarted worker gets a new index from the master)."""
    if worker_index is None:
        return f"npc-{local}", str(local), local
    if processes and worker_index < processes:
        index = local * processes + worker_index
        return f"npc-{index}", str(index), index
    return f"npc-w{worker_index}-{local}", f"w{worker_index}-{local}", local + worker_index
