"""The command-line reference: every subcommand of `python -m serve` and `python -m bench`, read from their argparse
parsers (`build_parser()`), so a flag's name, default and help are written once, where the command takes it."""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.report.pages import page
from bench.report.schema import cell
from serve import REPO_ROOT

INTRO = """# Command-line reference

Every subcommand of the two packages, with its flags, defaults and help, as their parsers define them.
`pixi run TASK` and `python3 serve/tasks.py TASK` run the tasks of `pixi.toml`, most of which are
these commands ([Getting started](../getting-started.md)). Defaults are shown as they are with no
`NPCBENCH_*` variable set ([environment variables](#environment-variables)).
"""


@contextmanager
def _default_settings() -> Iterator[None]:
    """No NPCBENCH_* variable, so the defaults shown are the documented ones, not this machine's."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("NPCBENCH_")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def _default(action: argparse.Action) -> str:
    value = action.default
    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if value is None or value == argparse.SUPPRESS or value == []:
        return "-"
    text = str(value).replace(str(REPO_ROOT) + "/", "").replace(str(REPO_ROOT), ".")
    if text == "":
        return '`""`'
    return f"`{text}`"


def _argument(action: argparse.Action) -> str:
    if action.option_strings:
        name = ", ".join(action.option_strings)
        if action.nargs != 0:
            name += f" {action.metavar or action.dest.upper()}"
    else:
        name = str(action.metavar or action.dest)
        if action.nargs in ("+", "*"):
            name += " ..."
    return f"`{name}`"


def _help(action: argparse.Action) -> str:
    parts = [action.help or ""]
    if action.choices:
        parts.append("(one of " + ", ".join(f"`{c}`" if c else '`""`' for c in action.choices) + ")")
    if isinstance(action, argparse._AppendAction) and "repeatable" not in parts[0]:
        parts.append("(repeatable)")
    if action.required and action.option_strings:
        parts.append("(required)")
    return cell(" ".join(p for p in parts if p)) or "-"


def arguments_table(parser: argparse.ArgumentParser) -> str:
    rows = ["| argument | default | what it does |", "| --- | --- | --- |"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        rows.append(f"| {_argument(action)} | {_default(action)} | {_help(action)} |")
    return "\n".join(rows) if len(rows) > 2 else "No arguments."


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def command_section(prog: str, parser: argparse.ArgumentParser) -> str:
    lines = [f"## `{prog}`", ""]
    for name, text, sub in _subcommands(parser):
        lines += [f"### `{prog} {name}`", "", f"{text[:1].upper()}{text[1:]}." if text else "", "",
                  arguments_table(sub), ""]
    return "\n".join(lines)


def tasks_section() -> str:
    """pixi.toml's tasks, the single source of truth for them (serve/tasks.py runs the same ones without pixi)."""
    tasks = tomllib.loads((REPO_ROOT / "pixi.toml").read_text())["tasks"]
    rows = ["## Tasks (`pixi.toml`)", "",
            "`pixi run TASK [ARGS]`, or without pixi `python3 serve/tasks.py TASK [ARGS]`; extra arguments go to the "
            "task's command.", "",
            "| task | command | what it does |", "| --- | --- | --- |"]
    for name, task in tasks.items():
        task = {"cmd": task} if isinstance(task, str) else task
        after = f" (after {', '.join(task['depends-on'])})" if task.get("depends-on") else ""
        command = task["cmd"].replace("|", "\\|")
        rows.append(f"| `{name}` | `{command}`{after} | {cell(task.get('description', '')) or '-'} |")
    return "\n".join(rows) + "\n"


def settings_section() -> str:
    """The NPCBENCH_* variables, from serve/settings.py's model (the ones a person sets: those with a description)."""
    from serve import Settings

    rows = ["## Environment variables", "",
            "Read in one place, `serve/settings.py`: a command-line flag wins over its variable, and the variable over "
            "the default. Two more are read elsewhere: `LITELLM_MASTER_KEY` (the proxy key; generated once when "
            "unset) and `NPCBENCH_ENV` (the environment `serve/tasks.py` installs: `cpu`, the default, or `cuda`).",
            "", "| variable | default | what it sets |", "| --- | --- | --- |"]
    prefix = str(Settings.model_config.get("env_prefix", ""))
    for name, field in Settings.model_fields.items():
        if not field.description:
            continue  # set by the harness itself (`up --detach`), not by a person
        default = field.get_default(call_default_factory=True)
        shown = "-" if default is None else f"`{str(default).replace(str(Path.home()), '~')}`"
        rows.append(f"| `{prefix}{name.upper()}` | {shown} | {cell(field.description)} |")
    return "\n".join(rows) + "\n"


def cli_markdown() -> str:
    from bench.cli import build_parser as bench_parser
    from serve.__main__ import build_parser as serve_parser

    with _default_settings():
        parsers = [("python -m serve", serve_parser()), ("python -m bench", bench_parser())]
        variables = settings_section()
    return "\n".join([INTRO, tasks_section(), variables, *(command_section(prog, parser) for prog, parser in parsers)])


@page("reference/cli.md", title="Command-line reference")
def cli(results: Path) -> str:
    return cli_markdown()
