"""The serve/bench boundary: bench uses serve's public surface (the `serve` package and `serve.common`) only,
and serve never imports bench, so data flows one way and serve's insides can change without breaking bench."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import serve
from serve.paths import REPO_ROOT

BENCH_MAY_IMPORT = {"serve", "serve.common"}
# The CLI reference documents `python -m serve`'s own flags, which only its parser knows.
DOCUMENTS_SERVE_CLI = {("bench/report/pages/reference_cli.py", "serve.__main__")}


def imported_modules(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of each import in a file; `import a.b` gives ("a.b", [])."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def sources(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", sources("bench"), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_bench_imports_only_serves_public_surface(path: Path) -> None:
    for line, module, names in imported_modules(path):
        if (str(path.relative_to(REPO_ROOT)), module) in DOCUMENTS_SERVE_CLI:
            continue
        if module == "serve" or module.startswith("serve."):
            assert module in BENCH_MAY_IMPORT, (f"{path.relative_to(REPO_ROOT)}:{line} imports {module}; import it "
                                                "from `serve` (add it to serve/__init__.py if it belongs to the surface)")
            if module == "serve":
                assert set(names) <= set(serve.__all__), f"{path.relative_to(REPO_ROOT)}:{line}: {names} not in serve.__all__"


@pytest.mark.parametrize("path", sources("serve"), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_serve_never_imports_bench(path: Path) -> None:
    assert not [m for _, m, _ in imported_modules(path) if m == "bench" or m.startswith("bench.")]


def test_serve_common_imports_nothing_of_the_project() -> None:
    modules = [m for _, m, _ in imported_modules(REPO_ROOT / "serve" / "common.py")]
    assert not [m for m in modules if m.split(".")[0] in ("serve", "bench")]


def test_the_public_surface_is_importable_as_listed() -> None:
    assert [name for name in serve.__all__ if not hasattr(serve, name)] == []
