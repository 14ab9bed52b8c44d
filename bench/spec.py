"""Typed NPC traffic: the classes (what a request looks like, and its SLOs) and mixes (load shapes: bench/shapes/).

`bench/classes.toml` defines each traffic class once, with lengths and SLOs per scale
(`cpu`: the small model's context; `gpu`: the reference deployment's prefill-heavy traffic).
A mix (`bench/mixes/*.toml`) picks a scale, class weights and a load shape.
"""

from __future__ import annotations

import random
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bench.errors import MixError
from bench.kinds import KINDS
from bench.shapes import Shape
from serve.common import error_lines, named_toml

BENCH_DIR = Path(__file__).parent
CLASSES_FILE = BENCH_DIR / "classes.toml"
MIXES_DIR = BENCH_DIR / "mixes"
Scale = Literal["cpu", "gpu"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LengthDist(_Strict):
    """Token counts drawn from a normal distribution clipped to [min, max]."""

    mean: int = Field(gt=0)
    sd: float = Field(0, ge=0)
    min: int = Field(1, ge=1)
    max: int | None = None

    def sample(self, rng: random.Random) -> int:
        value = round(rng.gauss(self.mean, self.sd)) if self.sd else self.mean
        return max(self.min, min(value, self.max or value))

    @property
    def upper(self) -> int:
        return self.max or int(self.mean + 4 * self.sd)


class SLO(_Strict):
    """Latency budgets each request must meet to count towards goodput; unset ones are not checked. Folders
    written before the rename call them ttft_p95_s, e2e_p95_s and itl_p95_s; those still load."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    ttft_max_s: float | None = Field(None, gt=0, validation_alias=AliasChoices("ttft_max_s", "ttft_p95_s"),
                                     description="per request: time to first token")
    e2e_max_s: float | None = Field(None, gt=0, validation_alias=AliasChoices("e2e_max_s", "e2e_p95_s"),
                                    description="per request: end-to-end latency")
    itl_max_s: float | None = Field(None, gt=0, validation_alias=AliasChoices("itl_max_s", "itl_p95_s"),
                                    description="per request: mean inter-token latency")


class ScaleSpec(_Strict):
    prompt_tokens: LengthDist
    output_tokens: LengthDist
    slo: SLO
    interrupt_after_tokens: int | None = Field(None, gt=0, description="interrupted: close the stream after this many")
    turns: int | None = Field(None, gt=1, description="multi_turn: turns before the conversation starts over")


class TrafficClass(_Strict):
    """One kind of NPC request, at one scale."""

    name: str
    kind: str = Field(description="one of bench/kinds.py's KINDS")
    group: Literal["heavy", "light"]
    stream: bool
    tools: bool = False
    priority: int = Field(0, description="lower runs first on workers with --scheduling-policy priority")
    shared_prefix_share: float = Field(0.0, ge=0, le=1, description="share of the prompt common to a faction")
    factions: int = Field(4, ge=1, description="distinct shared prefixes")
    prompt_tokens: LengthDist
    output_tokens: LengthDist
    slo: SLO
    interrupt_after_tokens: int | None = None
    turns: int | None = None

    @model_validator(mode="after")
    def _kind_needs(self) -> TrafficClass:
        if self.kind not in KINDS:
            raise ValueError(f"class {self.name}: unknown kind {self.kind!r}; kinds: {', '.join(KINDS)}")
        if missing := [need for need in KINDS[self.kind].needs if not getattr(self, need)]:
            raise ValueError(f"class {self.name}: a class of kind {self.kind} sets {' and '.join(missing)}")
        return self


class Lengths(_Strict):
    """A mix's own prompt and output lengths for one of its classes, in place of the class's."""

    prompt_tokens: LengthDist | None = None
    output_tokens: LengthDist | None = None


class Mix(_Strict):
    name: str
    description: str = ""
    scale: Scale
    weights: dict[str, float] = Field(description="class name -> relative weight")
    shape: Shape
    seed: int = 0
    lengths: dict[str, Lengths] = Field(default_factory=dict, description="class name -> lengths for this mix")
    classes: dict[str, TrafficClass] = Field(
        default_factory=dict, description="the mix's own NPC classes, name -> a class's fields at the mix's scale "
        "(kind, group, stream, tools, shared_prefix_share, prompt_tokens, output_tokens, slo, ...); one named as a "
        "class of bench/classes.toml replaces it in this mix")

    @field_validator("classes", mode="before")
    @classmethod
    def _named(cls, classes: object) -> object:
        """A class's name is its key in the table."""
        if isinstance(classes, dict):
            return {name: {**body, "name": name} if isinstance(body, dict) else body for name, body in classes.items()}
        return classes

    @model_validator(mode="after")
    def _weights(self) -> Mix:
        if not self.weights or any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        return self


class ResolvedMix(_Strict):
    """A mix with its classes resolved at its scale: everything a run needs, recorded in its manifest."""

    mix: Mix
    classes: dict[str, TrafficClass]

    @property
    def name(self) -> str:
        return self.mix.name


def _errors(exc: ValidationError) -> str:
    return "\n".join(f"  - {line}" for line in error_lines(exc))


def load_classes(scale: Scale, path: Path = CLASSES_FILE) -> dict[str, TrafficClass]:
    raw = tomllib.loads(path.read_text())
    classes = {}
    for name, body in raw.items():
        body = dict(body)
        scales = {s: body.pop(s) for s in ("cpu", "gpu") if s in body}
        if scale not in scales:
            raise MixError(f"class {name} in {path} has no [{name}.{scale}] table")
        try:
            at_scale = ScaleSpec.model_validate(scales[scale]).model_dump(exclude_unset=True)
            classes[name] = TrafficClass.model_validate({"name": name, **body, **at_scale})
        except ValidationError as exc:
            raise MixError(f"invalid class {name} ({scale}) in {path}:\n{_errors(exc)}") from None
    return classes


def mix_names() -> list[str]:
    return sorted(p.stem for p in MIXES_DIR.glob("*.toml"))


def load_mix(name_or_path: str, npcs: int = 0, rate_rps: float = 0.0, duration_s: float = 0.0,
             tick_policy: str = "") -> ResolvedMix:
    """A named mix (`bench/mixes/NAME.toml`) or a .toml path; non-zero npcs, rate_rps, duration_s and a non-empty
    tick_policy override its shape."""
    path = named_toml(name_or_path, MIXES_DIR, "mix", MixError)
    data = tomllib.loads(path.read_text())
    data.setdefault("name", path.stem)
    try:
        mix = Mix.model_validate(data)
        if overrides := mix.shape.overrides(npcs, rate_rps, duration_s, tick_policy):
            mix = Mix.model_validate({**data, "shape": {**data["shape"], **overrides}})
    except ValidationError as exc:
        raise MixError(f"invalid mix {path}:\n{_errors(exc)}") from None
    classes = {**load_classes(mix.scale), **mix.classes}
    unknown = sorted(set(mix.weights) - set(classes))
    if unknown:
        raise MixError(f"mix {mix.name}: unknown classes {', '.join(unknown)}; known: {', '.join(sorted(classes))}")
    if unknown := sorted(set(mix.lengths) - set(mix.weights)):
        raise MixError(f"mix {mix.name}: [lengths] names {', '.join(unknown)}, which the mix does not weigh")
    used = {name: replace_lengths(classes[name], mix.lengths.get(name)) for name, weight in mix.weights.items() if weight > 0}
    mix.shape.check(used)
    return ResolvedMix(mix=mix, classes=used)


def replace_lengths(cls: TrafficClass, lengths: Lengths | None) -> TrafficClass:
    if lengths is None:
        return cls
    return cls.model_copy(update={field: getattr(lengths, field) for field in lengths.model_fields_set})


def direct_worker(mix: ResolvedMix, workers: list, name: str):
    """The worker a `--direct` run sends to straight (one of the stack's `WorkerState`s); it must serve every
    class of the mix."""
    worker = next((w for w in workers if w.name == name), None)
    if worker is None:
        raise MixError(f"--direct {name}: the stack's workers are {', '.join(w.name for w in workers)}")
    if others := sorted({c.group for c in mix.classes.values()} - {worker.group}):
        raise MixError(f"--direct {name} serves the {worker.group} group, but mix {mix.name} has "
                       f"{', '.join(others)} classes too")
    return worker
