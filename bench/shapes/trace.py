"""Replay a recorded game session: each request of a trace file is sent at its time, for its NPC, of its class,
with its prompt and reply lengths, whether or not earlier ones finished (as a game server sends them).

A trace is JSON Lines, one request a line, in time order (docs/concepts/traffic.md, Trace files):

    {"t_s": 0.0, "npc_id": "guard-7", "cls": "ambient", "prompt_tokens": 318, "output_tokens": 12}

`python -m bench trace RUN_DIR` writes a run's requests as one, so a session measured once can be replayed
against other serve settings; `bench/traces/sample.jsonl` was made that way from a game-loop run.
"""

from __future__ import annotations

import hashlib
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.errors import MixError
from bench.shapes.base import LoadShape, Pacer, RunContext, register
from serve import REPO_ROOT

if TYPE_CHECKING:
    from bench.load.npc import NPC
    from bench.spec import TrafficClass




class TraceEvent(BaseModel):
    """One request of a trace."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    t_s: float = Field(ge=0, description="seconds from the session's start")
    npc_id: str = Field(min_length=1)
    cls: str = Field(description="a traffic class of the mix")
    prompt_tokens: int = Field(gt=0)
    output_tokens: int = Field(gt=0, description="sent as max_tokens")


@cache
def read_trace(path: Path) -> tuple[TraceEvent, ...]:
    """A trace file's events; a clear error, naming the line, for a bad one."""
    if not path.exists():
        raise MixError(f"trace file {path} does not exist")
    events: list[TraceEvent] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            event = TraceEvent.model_validate_json(line)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in exc.errors())
            raise MixError(f"trace {path}, line {number}: {problems}") from None
        if events and event.t_s < events[-1].t_s:
            raise MixError(f"trace {path}, line {number}: t_s {event.t_s} is earlier than the line before's "
                           f"{events[-1].t_s}; sort the trace by time")
        events.append(event)
    if not events:
        raise MixError(f"trace {path} has no requests")
    return tuple(events)


class TracePacer(Pacer):
    """One of the trace's NPCs: sends each of its requests when its time comes (open loop)."""

    shape: TraceReplay

    def __init__(self, shape: TraceReplay, run: RunContext, npc: NPC) -> None:
        super().__init__(shape, run, npc)
        ids = shape.npc_ids()
        index = int(npc.npc_id.removeprefix("npc-")) % len(ids)
        npc.npc_id = ids[index]  # the trace's own id: the proxy keeps each NPC on one worker by it
        self.events = [e for e in shape.events() if e.npc_id == npc.npc_id]
        self.next = 0

    def due_at(self) -> float | None:
        if self.next >= len(self.events):
            return None
        return self.run.t0 + self.events[self.next].t_s / self.shape.speed

    def step(self) -> None:
        # Like the Poisson pacer, the gap is Locust's wait, so a stopping run is not held up by a sleeping task.
        while (due := self.due_at()) is not None and due <= time.time():
            event = self.events[self.next]
            self.run.spawn(self.npc, planned=(event.cls, event.prompt_tokens, event.output_tokens))
            self.next += 1

    def wait_s(self) -> float:
        due = self.due_at()
        return max(0.0, due - time.time()) if due is not None else self.shape.duration_s


@register
class TraceReplay(LoadShape):
    kind: Literal["trace"] = "trace"
    file: Path = Field(description="a JSON Lines trace; a relative path is from the repository's root")
    speed: float = Field(1.0, gt=0, description="2: twice as fast as recorded")
    sha256: str | None = Field(None, description="of the trace file, recorded when the mix is loaded")

    pacer: ClassVar = TracePacer
    npcs_field: ClassVar = "file"  # a trace has its own NPCs

    @model_validator(mode="before")
    @classmethod
    def _digest(cls, data: Any) -> Any:
        """Record which trace ran: its sha256, unless the data (a manifest read back) already has it."""
        if isinstance(data, dict) and data.get("sha256") is None and "file" in data:
            path = Path(data["file"]) if Path(data["file"]).is_absolute() else REPO_ROOT / data["file"]
            if path.exists():
                data = {**data, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        return data

    def check(self, classes: dict[str, TrafficClass]) -> None:
        """Every request of the trace is of one of the mix's classes and within that class's lengths."""
        for event in self.events():
            cls = classes.get(event.cls)
            if cls is None:
                raise MixError(f"trace {self.file}: class {event.cls!r} is not in the mix's weights "
                               f"({', '.join(sorted(classes))})")
            if event.prompt_tokens > cls.prompt_tokens.upper or event.output_tokens > cls.output_tokens.upper:
                raise MixError(f"trace {self.file}: a {event.cls} request at {event.t_s} s has {event.prompt_tokens} "
                               f"prompt and {event.output_tokens} output tokens, more than the class's maxima "
                               f"({cls.prompt_tokens.upper}, {cls.output_tokens.upper}); widen them in the mix's "
                               "[lengths] table")

    @property
    def path(self) -> Path:
        return self.file if self.file.is_absolute() else REPO_ROOT / self.file

    def events(self) -> tuple[TraceEvent, ...]:
        return read_trace(self.path)

    def npc_ids(self) -> list[str]:
        return sorted({e.npc_id for e in self.events()})

    @property
    def duration_s(self) -> float:
        """Until the last request is sent; the run then waits for what is still in flight."""
        return self.events()[-1].t_s / self.speed + 1.0

    def users_at(self, t: float) -> tuple[int, float] | None:
        users = len(self.npc_ids())  # all at once: Locust's spawn rate would otherwise start late NPCs late
        return (users, 1000.0) if t < self.duration_s else None

    def overrides(self, npcs: int = 0, rate_rps: float = 0.0, duration_s: float = 0.0,
                  tick_policy: str = "") -> dict[str, Any]:
        if npcs or rate_rps or duration_s or tick_policy:
            raise MixError("a trace sets its own NPCs, times and length; change the trace (or its `speed`) instead")
        return {}
