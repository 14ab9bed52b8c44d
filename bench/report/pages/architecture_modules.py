"""The module map: every package and module of serve/ and bench/ with the first paragraph of its docstring, read from
the source (nothing is imported), so the map in the docs is the code's own account of itself and cannot drift."""

from __future__ import annotations

import ast
from pathlib import Path

from bench.report.pages import page
from bench.report.schema import cell
from serve import REPO_ROOT

PACKAGES = ("serve", "bench")

INTRO = """# Module map

Every package and module of `serve/` and `bench/`, with the first paragraph of its docstring. How they fit
together (the data flow from a stack spec to the notebooks) is in [Architecture](../architecture.md). A module
without a docstring shows a dash: give it one.
"""


def summary(source: Path) -> str:
    """The first paragraph of a module's docstring, on one line ('' when it has none)."""
    doc = ast.get_docstring(ast.parse(source.read_text())) or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def module_name(source: Path, root: Path) -> str:
    parts = source.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path, package: str) -> list[tuple[str, str, str]]:
    """(module, file, summary) of every Python file of `package`, packages before their modules."""
    found = []
    for source in sorted((root / package).rglob("*.py")):
        if "__pycache__" in source.parts:
            continue
        found.append((module_name(source, root), source.relative_to(root).as_posix(), summary(source)))
    return sorted(found, key=lambda row: (row[0].split("."), row[1].endswith("__init__.py") is False))


def module_map(root: Path = REPO_ROOT) -> str:
    sections = [INTRO]
    for package in PACKAGES:
        rows = modules(root, package)
        sections += [f"## `{package}/` ({len(rows)} modules)", "", "| module | what it is |", "| --- | --- |"]
        sections += [f"| `{name}` | {cell(text) or '-'} |" for name, _, text in rows]
        sections.append("")
    return "\n".join(sections)


@page("reference/modules.md", title="Module map")
def module_map_page(results: Path) -> str:
    return module_map()
