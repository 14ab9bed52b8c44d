"""The result records reference: the fields of a run's request records and manifest, read from bench/records.py's
pydantic models, so the format described is the one the bench writes and reads back."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from bench.records import Manifest, RequestRecord
from bench.report.pages import page
from bench.report.schema import cell, docstring, fields_table, nested_models

INTRO = """# Result records reference

The fields of a run folder's records, generated from `bench/records.py`. What each file of a folder holds,
and how to read a folder, is in [Results folders](results.md).
"""


def record_sections(root: type[BaseModel], heading: str) -> str:
    """The root model and every model nested in it, once each, in the order they are met."""
    seen: list[type[BaseModel]] = []
    queue = [root]
    while queue:
        model = queue.pop(0)
        if model in seen or model.__module__ != root.__module__:
            continue
        seen.append(model)
        queue += [child for field in model.model_fields.values() for _, child in nested_models(field.annotation)]
    sections = [f"## {heading}", ""]
    for model in seen:
        text = docstring(model)
        sections += [f"### `{model.__name__}`", "", *([cell(text), ""] if text else []), fields_table(model), ""]
    return "\n".join(sections)


@page("reference/records.md", title="Result records reference")
def records(results: Path) -> str:
    return "\n".join([INTRO, record_sections(RequestRecord, "`requests.jsonl`: one `RequestRecord` a line"),
                      record_sections(Manifest, "`manifest.json`: the `Manifest`")])
