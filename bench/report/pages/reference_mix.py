"""The mix reference: the schemas of a mix file, its load shapes, the traffic classes file and a trace line, read from
bench/spec.py's and bench/shapes/'s pydantic models; the traffic kinds from bench/kinds.py; and the shipped mixes and
classes as they load."""

from __future__ import annotations

from pathlib import Path

from bench.kinds import KINDS
from bench.report.pages import page
from bench.report.schema import cell, docstring, fields_table, value_text
from bench.shapes import LoadShape
from bench.shapes.trace import TraceEvent
from bench.spec import SLO, LengthDist, Lengths, Mix, ScaleSpec, TrafficClass, load_classes, load_mix, mix_names

INTRO = """# Mix and traffic class reference

A run's traffic is a **mix** (`bench/mixes/NAME.toml`, or any `.toml` path given to `--mix`): a scale, class
weights and a load shape. The **classes** it weighs are defined once, in `bench/classes.toml`, at each scale.
This page is generated from the models that read those files (`bench/spec.py`, `bench/shapes/`,
`bench/kinds.py`) and from the shipped files themselves. What the classes, shapes and tick policies mean is in
[NPC classes and traffic kinds](../concepts/traffic.md) and [Tick policies](../concepts/ticks.md).
"""


def _section(heading: str, model: type, note: str = "", skip: tuple[str, ...] = ()) -> str:
    text = " ".join(part for part in (docstring(model), note) if part)
    return "\n".join([f"### {heading}", "", *([cell(text), ""] if text else []), fields_table(model, skip=skip), ""])


def shape_text(shape: LoadShape) -> str:
    fields = shape.model_dump(exclude={"kind", "sha256"}, exclude_none=True)
    return f"`{shape.kind}` " + ", ".join(f"{k} = {value_text(v)}" for k, v in fields.items())


def shipped_mixes() -> str:
    rows = ["| mix | scale | shape | classes (weight) | description |", "| --- | --- | --- | --- | --- |"]
    for name in mix_names():
        mix = load_mix(name).mix
        weights = ", ".join(f"`{c}` ({w:g})" for c, w in mix.weights.items() if w > 0)
        rows.append(f"| `{name}` | {mix.scale} | {cell(shape_text(mix.shape))} | {weights} | {cell(mix.description)} |")
    return "\n".join(rows)


def _lengths(dist: LengthDist) -> str:
    return f"{dist.mean} ± {dist.sd:g} [{dist.min}, {dist.max if dist.max is not None else '-'}]"


def _slo(slo: SLO) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in slo.model_dump(exclude_none=True).items()) or "-"


def shipped_classes() -> str:
    out = []
    for scale in ("cpu", "gpu"):
        rows = [f"**`{scale}` scale**", "",
                "| class | kind | group | stream | tools | priority | shared prefix | prompt tokens | output tokens | SLO |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, c in load_classes(scale).items():
            rows.append(f"| `{name}` | `{c.kind}` | {c.group} | {value_text(c.stream)} | {value_text(c.tools)} | "
                        f"{c.priority} | {c.shared_prefix_share:.0%} | {_lengths(c.prompt_tokens)} | "
                        f"{_lengths(c.output_tokens)} | {_slo(c.slo)} |")
        out.append("\n".join(rows))
    return "\n\n".join(out)


def kinds_table() -> str:
    rows = ["| kind | the prompt ends with | a class of it sets | the client |", "| --- | --- | --- | --- |"]
    for name, kind in KINDS.items():
        client = [text for flag, text in ((kind.ignore_eos, "sends `ignore_eos`"),
                                          (kind.cuts_stream, "closes the stream after `interrupt_after_tokens`"),
                                          (kind.keeps_history, "keeps the conversation, up to `turns`"),
                                          (kind.bare_prompt, "sends one user message of random words, no system prompt"))
                  if flag]
        rows.append(f"| `{name}` | {cell(kind.task)} | {', '.join(f'`{n}`' for n in kind.needs) or '-'} | "
                    f"{'; '.join(client) or 'stops at the model’s end of reply'} |")
    return "\n".join(rows)


@page("reference/mix.md", title="Mix and traffic class reference")
def mix(results: Path) -> str:
    shapes = [_section(f"`kind = \"{kind}\"`: `{model.__name__}`", model) for kind, model in LoadShape.REGISTRY.items()]
    return "\n".join([
        INTRO,
        "## Shipped mixes", "", "`python -m bench mixes` prints the same list.", "", shipped_mixes(), "",
        "## A mix file", "",
        _section("Top level: `Mix`", Mix, "`name` is the file's name unless the file sets it."),
        _section("`[lengths.CLASS]`: `Lengths`", Lengths),
        "## Load shapes (`shape = { kind = ... }`)", "",
        "`--npcs`, `--duration-s`, `--rate-rps` (poisson) and `--tick-policy` (tick) override a mix's shape for one "
        "run; a shape refuses the overrides it cannot take.", "",
        *shapes,
        "## The classes file (`bench/classes.toml`)", "",
        "Each class is a table `[NAME]` with the fields below but `name` and the lengths, SLO and kind-specific "
        "counts, which sit in its `[NAME.cpu]` and `[NAME.gpu]` tables (one per scale).", "",
        _section("`[NAME]`: `TrafficClass`", TrafficClass, skip=("name", *ScaleSpec.model_fields)),
        _section("`[NAME.cpu]`, `[NAME.gpu]`: `ScaleSpec`", ScaleSpec),
        _section("Token lengths: `LengthDist`", LengthDist),
        _section("`slo`: `SLO`", SLO),
        "## Traffic kinds (`bench/kinds.py`)", "", kinds_table(), "",
        "## Shipped classes", "", "Lengths are `mean ± sd [min, max]` tokens.", "", shipped_classes(), "",
        "## A trace line (`shape = { kind = \"trace\" }`)", "",
        _section("One JSON object per line: `TraceEvent`", TraceEvent),
    ])
