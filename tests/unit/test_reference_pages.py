"""The generated reference pages cover what they describe: every subcommand and flag, every field of every table of a
profile, every module; and they show no machine's paths or settings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from bench.cli import build_parser as bench_parser
from bench.report.pages.architecture_modules import module_map
from bench.report.pages.reference_cli import cli_markdown
from bench.report.pages.reference_mix import mix
from bench.report.pages.reference_profile import profile
from bench.report.schema import cell, toml_tables, type_name
from bench.shapes import LoadShape
from serve.__main__ import build_parser as serve_parser
from serve.paths import REPO_ROOT
from serve.spec import StackSpec


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_cli_page_has_every_subcommand_and_flag_of_both_commands() -> None:
    page = cli_markdown()
    for prog, parser in (("python -m serve", serve_parser()), ("python -m bench", bench_parser())):
        for name, sub in subcommands(parser).items():
            assert f"### `{prog} {name}`" in page
            for action in sub._actions:
                for flag in action.option_strings:
                    if flag not in ("-h", "--help"):
                        assert f"`{flag}" in page, f"{prog} {name} {flag} is missing from the CLI page"


def test_the_cli_page_shows_no_local_path_or_setting(monkeypatch, tmp_path: Path) -> None:
    plain = cli_markdown()
    monkeypatch.setenv("NPCBENCH_RESULTS", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("NPCBENCH_HOME", str(tmp_path / "home"))
    assert cli_markdown() == plain  # the page documents the defaults, not this shell's variables
    assert str(REPO_ROOT) not in plain and str(Path.home()) not in plain
    assert "| `--docs-dir DOCS_DIR` | `docs` |" in plain


def test_the_profile_page_has_every_table_and_field_of_the_stack_spec() -> None:
    page = profile(REPO_ROOT / "results")
    tables = list(toml_tables(StackSpec))
    assert {table for table, _ in tables} >= {"", "models.NAME", "groups.NAME", "groups.NAME.sim", "[workers]", "proxy",
                                                "proxy.extra_settings"}
    for table, model in tables:
        assert f"### {f'`[{table}]`' if table else 'Top level'}: `{model.__name__}`" in page
        for field in model.model_fields:
            assert f"| `{field}` |" in page, f"{model.__name__}.{field} is missing from the profile page"


def test_the_mix_page_has_every_registered_shape() -> None:
    page = mix(REPO_ROOT / "results")
    for kind, model in LoadShape.REGISTRY.items():
        assert f'### `kind = "{kind}"`: `{model.__name__}`' in page


def test_the_module_map_lists_every_module() -> None:
    page = module_map()
    files = [p for package in ("serve", "bench") for p in (REPO_ROOT / package).rglob("*.py") if "__pycache__" not in p.parts]
    rows = [line for line in page.splitlines() if line.startswith("| `serve") or line.startswith("| `bench")]
    assert len(rows) == len(files)
    assert "| `serve.spec` | The one typed description of the stack. |" in page


def test_type_names_read_as_written() -> None:
    assert type_name(int | None) == "int | None"
    assert type_name(Literal["fcfs", "priority"]) == '"fcfs" | "priority"'
    assert type_name(dict[str, list[int]]) == "dict[str, list[int]]"


def test_a_cell_escapes_pipes_and_keeps_angle_brackets_visible_outside_code() -> None:
    assert cell("a | b\n  c") == "a \\| b c"
    assert cell("<run-id> in `results/<run-id>`") == "&lt;run-id&gt; in `results/<run-id>`"
