"""The simulated worker's engine: vLLM's continuous batching, reduced to its arithmetic.

A step serves the running sequences first (one token each if decoding, a chunk if still prefilling), then admits
waiting requests while sequences (`max_num_seqs`), the step's token budget (`max_num_batched_tokens`) and KV
blocks allow. A prompt's leading blocks found in the prefix cache are not computed again. A sequence that needs a
new block when none is free preempts the newest running one, whose blocks are freed and which is computed again
later (vLLM's recompute). The step lasts what `SimLatency` says its work costs. Nothing here knows of time or
HTTP: the server (serve/sim/server.py) calls `schedule`, sleeps the step's duration and calls `complete`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serve.spec import SimLatency


class EngineConfig(BaseModel):
    """One simulated worker's engine, rendered from the stack spec (serve/render.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    num_blocks: int
    enable_prefix_caching: bool
    scheduling_policy: Literal["fcfs", "priority"]
    latency: SimLatency


class SharedDevice(BaseModel):
    """The core or GPU a simulated worker shares with others (the same `cpu_bind`, or the same `gpu`): a file
    of one byte a worker, set while that worker has work (serve/sim/device.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    path: str
    slot: int = Field(ge=0)
    slots: int = Field(ge=2)


class SimWorkerConfig(BaseModel):
    """Everything one simulated worker is started with: `python -m serve.sim --config JSON`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    served_model_name: str
    host: str
    port: int
    engine: EngineConfig
    device: SharedDevice | None = None


@dataclass(eq=False)
class Sequence:
    """One request in the engine. `prompt_hashes` names each full block of its prompt by everything up to it."""

    request_id: str
    prompt_tokens: int
    max_tokens: int
    prompt_hashes: list[int]
    priority: int = 0
    arrival: int = 0  # order of arrival: ties of priority go first come, first served
    output_tokens: int = 0
    state: Literal["waiting", "running", "finished", "aborted"] = "waiting"
    # While running: tokens whose KV is computed, of `target` (the prompt, plus the output so far after a preemption).
    computed: int = 0
    target: int = 0
    shared: list[int] = field(default_factory=list)  # prefix-cache blocks it holds, by hash
    private: int = 0  # blocks it holds that no other sequence can share

    @property
    def prefilling(self) -> bool:
        return self.computed < self.target

    @property
    def context(self) -> int:
        return self.prompt_tokens + self.output_tokens

    @property
    def blocks(self) -> int:
        return len(self.shared) + self.private


@dataclass
class Step:
    """What one engine step computes: (sequence, tokens) pairs, and how long that takes."""

    work: list[tuple[Sequence, int]]
    prefill_tokens: int
    decode_seqs: int
    decode_kv_tokens: int
    duration_s: float


@dataclass
class Counters:
    """What the worker's /metrics reports, under vLLM's names (serve/sim/server.py)."""

    prefix_cache_queries: int = 0  # prompt tokens looked up at admission
    prefix_cache_hits: int = 0  # of which found cached
    prompt_tokens: int = 0
    generation_tokens: int = 0
    preemptions: int = 0
    finished: dict[str, int] = field(default_factory=lambda: {"length": 0, "stop": 0, "abort": 0})


class Engine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.waiting: list[Sequence] = []
        self.running: list[Sequence] = []
        self.free_blocks = config.num_blocks
        self.refs: dict[int, int] = {}  # prefix-cache block hash -> sequences holding it
        self.evictable: OrderedDict[int, None] = OrderedDict()  # cached blocks nobody holds, oldest first
        self.counters = Counters()
        self._arrivals = 0

    # -- the queue -------------------------------------------------------------------------------------

    def add(self, seq: Sequence) -> None:
        seq.arrival, self._arrivals = self._arrivals, self._arrivals + 1
        self.waiting.append(seq)
        self.counters.prompt_tokens += seq.prompt_tokens

    def abort(self, seq: Sequence) -> None:
        """The client went away: its blocks are freed and it counts as aborted (vLLM's finished_reason=abort)."""
        if seq.state in ("finished", "aborted"):
            return
        if seq.state == "running":
            self.running.remove(seq)
            self._release(seq)
        else:
            self.waiting.remove(seq)
        seq.state = "aborted"
        self.counters.finished["abort"] += 1

    def reset_prefix_cache(self) -> bool:
        """Forget every cached block, as vLLM's /reset_prefix_cache does; refused (False) while sequences run."""
        if self.running:
            return False
        self.free_blocks += len(self.evictable)
        self.evictable.clear()
        self.refs.clear()
        return True

    @property
    def kv_usage(self) -> float:
        """Share of blocks held by running sequences (vllm:kv_cache_usage_perc); cached free blocks do not count."""
        used = self.config.num_blocks - self.free_blocks - len(self.evictable)
        return used / self.config.num_blocks

    # -- a step ----------------------------------------------------------------------------------------

    def schedule(self) -> Step:
        """Choose the next step's work and cost it; the sequences' state changes only in `complete`."""
        budget = self.config.max_num_batched_tokens
        work: list[tuple[Sequence, int]] = []
        preemptions = self.counters.preemptions
        for seq in list(self.running):
            if seq.state != "running" or budget == 0:
                continue
            tokens = min(seq.target - seq.computed, budget) if seq.prefilling else 1
            if not self._grow(seq, tokens):
                continue  # it was preempted itself
            work.append((seq, tokens))
            budget -= tokens
        # As vLLM's scheduler: a step that had to preempt admits nobody new.
        while (self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs
               and self.counters.preemptions == preemptions):
            seq = self._next_waiting()
            if not self._admit(seq, budget):
                break
            tokens = min(seq.target - seq.computed, budget)
            work.append((seq, tokens))
            budget -= tokens
        prefill = sum(n for seq, n in work if seq.prefilling)
        pairs = sum(n * (seq.computed + n / 2) for seq, n in work if seq.prefilling)  # each new token attends back
        decoding = [seq for seq, n in work if not seq.prefilling]
        kv_tokens = sum(seq.context for seq in decoding)
        lat = self.config.latency
        ms = (lat.step_overhead_ms + prefill * lat.prefill_ms_per_token + pairs * lat.prefill_ms_per_token_pair
              + len(decoding) * lat.decode_ms_per_seq + kv_tokens * lat.decode_ms_per_kv_token) if work else 0.0
        return Step(work=work, prefill_tokens=prefill, decode_seqs=len(decoding), decode_kv_tokens=kv_tokens,
                    duration_s=ms / 1000)

    def complete(self, step: Step) -> list[Sequence]:
        """Apply a step once its time has passed; returns the sequences that got a new token (finished ones too)."""
        emitted = []
        for seq, tokens in step.work:
            if seq.state != "running":  # aborted during the step
                continue
            if seq.prefilling:
                seq.computed += tokens
                if seq.prefilling:
                    continue
                self._cache_prompt_blocks(seq)
            else:
                seq.computed += 1
                seq.target += 1
            seq.output_tokens += 1  # the end of a prefill samples the first token; a decode step the next
            self.counters.generation_tokens += 1
            emitted.append(seq)
            if seq.output_tokens >= seq.max_tokens:
                self.running.remove(seq)
                self._release(seq)
                seq.state = "finished"
                self.counters.finished["length"] += 1
        return emitted

    # -- scheduling ------------------------------------------------------------------------------------

    def _next_waiting(self) -> Sequence:
        if self.config.scheduling_policy == "priority":
            return min(self.waiting, key=lambda s: (s.priority, s.arrival))
        return self.waiting[0]

    def _victim(self) -> Sequence:
        """Who is preempted when blocks run out: the newest (fcfs), or the least urgent (priority)."""
        if self.config.scheduling_policy == "priority":
            return max(self.running, key=lambda s: (s.priority, s.arrival))
        return self.running[-1]

    def _grow(self, seq: Sequence, tokens: int) -> bool:
        """Blocks for `tokens` more of `seq`, preempting others (or `seq` itself) until they fit."""
        needed = self._blocks_for(seq.computed + tokens) - seq.blocks
        while not self._allocate(needed):
            victim = self._victim()
            self._preempt(victim)
            if victim is seq:
                return False
        seq.private += max(needed, 0)
        return True

    def _admit(self, seq: Sequence, budget: int) -> bool:
        """Move `seq` to running with its cached prefix and the blocks of its first chunk, if they fit."""
        seq.target = seq.context  # after a preemption the output so far is computed again too
        hits = self._cached_prefix(seq)
        first = min(seq.target - len(hits) * self.config.block_size, budget)
        needed = self._blocks_for(len(hits) * self.config.block_size + first) - len(hits)
        available = self.free_blocks + len(self.evictable) - sum(1 for h in hits if h in self.evictable)
        if needed > available:
            return False
        for h in hits:
            self._ref(h)
        self._allocate(needed)
        seq.shared, seq.private = list(hits), needed
        seq.computed = len(hits) * self.config.block_size
        self.counters.prefix_cache_queries += seq.target
        self.counters.prefix_cache_hits += seq.computed
        self.waiting.remove(seq)
        self.running.append(seq)
        seq.state = "running"
        return True

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self._release(seq)
        seq.state, seq.computed = "waiting", 0
        self.waiting.insert(0, seq)
        self.counters.preemptions += 1

    # -- KV blocks and the prefix cache ------------------------------------------------------------------

    def _blocks_for(self, tokens: int) -> int:
        return math.ceil(tokens / self.config.block_size)

    def _cached_prefix(self, seq: Sequence) -> list[int]:
        """The leading prompt blocks in the cache; at least one prompt token is always computed (as vLLM does)."""
        if not self.config.enable_prefix_caching:
            return []
        usable = (seq.prompt_tokens - 1) // self.config.block_size
        hits = []
        for h in seq.prompt_hashes[:usable]:
            if h not in self.refs:
                break
            hits.append(h)
        return hits

    def _allocate(self, n: int) -> bool:
        """Take `n` blocks: free ones first, then the least recently used cached ones (forgetting them)."""
        if n <= 0:
            return True
        if n > self.free_blocks + len(self.evictable):
            return False
        from_free = min(n, self.free_blocks)
        self.free_blocks -= from_free
        for _ in range(n - from_free):
            h, _ = self.evictable.popitem(last=False)
            del self.refs[h]
        return True

    def _ref(self, h: int) -> None:
        self.refs[h] = self.refs.get(h, 0) + 1
        self.evictable.pop(h, None)

    def _cache_prompt_blocks(self, seq: Sequence) -> None:
        """Once its prompt is computed, a sequence's full prompt blocks become shareable (one private block
        each turns into a cached one); a block another sequence cached meanwhile stays private here."""
        if not self.config.enable_prefix_caching:
            return
        full = seq.prompt_tokens // self.config.block_size
        for h in seq.prompt_hashes[len(seq.shared):full]:
            if h in self.refs or seq.private == 0:
                break
            self.refs[h] = 1
            seq.shared.append(h)
            seq.private -= 1

    def _release(self, seq: Sequence) -> None:
        for h in seq.shared:
            self.refs[h] -= 1
            if self.refs[h] == 0:
                self.evictable[h] = None  # kept for a later prompt until its block is needed
        self.free_blocks += seq.private
        seq.shared, seq.private = [], 0
