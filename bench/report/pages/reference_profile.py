"""The stack spec reference: every table and field of a profile, read from serve/spec.py's pydantic models, and the
shipped profiles as they load."""

from __future__ import annotations

from pathlib import Path

from bench.report.pages import page
from bench.report.schema import cell, docstring, fields_table, toml_tables
from serve import StackSpec, load_profile, profile_names

INTRO = """# Stack spec (profile) reference

A profile, `serve/profiles/NAME.toml` or any `.toml` path given to `--profile`, fills one `StackSpec`
(`serve/spec.py`). This page is generated from those models: each table of the file, each field with its
type, default, bounds and description. What a profile is for, and how the pieces fit, is in
[The stack spec](../concepts/stack-spec.md).

Two things sit outside the models:

- `extends = "NAME"` at the top of a profile lays its tables over the named profile's (its `workers` list
  replaces the base's whole);
- `profile` is filled with the file's name when the file does not set it.

Any field can be changed for one start without editing a file: `--set dotted.path=value` on `python -m serve
up`, `check`, `render` and `provision` (a value is read as JSON where it parses, else as a string; a list item
by its index, `workers.0.cpu_bind="0-1"`).
"""


def shipped_profiles() -> str:
    rows = ["| profile | device | workers (group: name) | models |", "| --- | --- | --- | --- |"]
    for name in profile_names():
        spec = load_profile(name)
        workers = ", ".join(f"{w.group}: `{w.name}`" for w in spec.workers)
        engines = {g.engine for g in spec.groups.values()}
        device = spec.device + (" (simulated workers)" if engines == {"sim"} else "")
        models = ", ".join(sorted({f"`{spec.models[g.model].hf_id}`" for g in spec.groups.values()}))
        rows.append(f"| `{name}` | {device} | {workers} | {models} |")
    return "\n".join(rows)


def schema_sections() -> str:
    sections = []
    for table, model in toml_tables(StackSpec):
        heading = f"`[{table}]`" if table else "Top level"
        text = docstring(model)
        sections.append("\n".join([f"### {heading}: `{model.__name__}`", "", *([cell(text), ""] if text else []),
                                   fields_table(model), ""]))
    return "\n".join(sections)


@page("reference/profile.md", title="Stack spec (profile) reference")
def profile(results: Path) -> str:
    return "\n".join([INTRO, "## Shipped profiles", "", shipped_profiles(), "",
                      "## Tables and fields", "", schema_sections()])
