"""Pydantic models as Markdown reference tables (each field: type, default, constraints, description), for the
generated reference pages (bench/report/pages/reference_profile.py, reference_mix.py)."""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from serve import REPO_ROOT

_MODULE_PREFIX = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Za-z_])")


def type_name(annotation: Any) -> str:
    """A field's type as a reader writes it: `int | None`, `dict[str, GroupSpec]`, `"fcfs" | "priority"`."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None and args:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type):
        return annotation.__name__
    return _MODULE_PREFIX.sub("", str(annotation).replace("typing.", ""))


def default_text(field: FieldInfo) -> str:
    """The default as it would be written in a TOML file, or `required`."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return f"a default `{type(value).__name__}`"
    return f"`{value_text(value)}`"


def value_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        value = str(value).replace(str(REPO_ROOT) + "/", "")
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def constraints(field: FieldInfo) -> str:
    """Bounds from the field's metadata (`> 0`, `<= 1`) and its pattern."""
    parts = []
    for item in field.metadata:
        for kind, attribute, sign in ((Gt, "gt", ">"), (Ge, "ge", ">="), (Lt, "lt", "<"), (Le, "le", "<=")):
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attribute)}")
        if pattern := getattr(item, "pattern", None):
            parts.append(f"matches `{pattern}`")
    return ", ".join(parts)


def cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped, and <name> outside code spans kept visible (Markdown would
    read it as HTML; inside a code span it already shows as written)."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    return "`".join(part if k % 2 else part.replace("<", "&lt;").replace(">", "&gt;") for k, part in enumerate(parts))


def fields_table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> str:
    """One row per field of `model`: name, type, default, constraints and description."""
    rows = ["| field | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        bounds = constraints(field)
        description = " ".join(part for part in (field.description or "", f"({bounds})" if bounds else "") if part)
        # plain text, not a code span: an escaped pipe inside one shows its backslash in MkDocs, not on GitHub
        rows.append(f"| `{name}` | {cell(type_name(field.annotation))} | {cell(default_text(field))} | "
                    f"{cell(description) or '-'} |")
    return "\n".join(rows)


def docstring(model: type) -> str:
    """The model's own docstring (not one it inherits), joined into one paragraph."""
    doc = model.__dict__.get("__doc__") or ""
    return " ".join(doc.split())


def nested_models(annotation: Any) -> Iterator[tuple[str, type[BaseModel]]]:
    """The models inside a field's type, each with how it nests: "" (a table), "dict" (a table per key) or "list"
    (an array of tables)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield "", annotation
    elif origin is dict and args:
        for how, model in nested_models(args[1]):
            yield "dict" if how == "" else how, model
    elif origin is list and args:
        for how, model in nested_models(args[0]):
            yield "list" if how == "" else how, model
    elif args:
        for arg in args:
            yield from nested_models(arg)


def toml_tables(model: type[BaseModel], path: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """Every model reachable from `model`, each with the TOML table it fills: `[proxy]`, `[groups.NAME]`,
    `[[workers]]`; depth first, in field order."""
    yield path, model
    for name, field in model.model_fields.items():
        for how, child in nested_models(field.annotation):
            dotted = f"{path}.{name}" if path else name
            if how == "dict":
                dotted += ".NAME"
            yield from toml_tables(child, f"[{dotted}]" if how == "list" else dotted)
