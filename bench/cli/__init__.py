"""`python -m bench`'s subcommands: one module each in this package, which owns its flags and its work.

A command module defines

    HELP = "one line for `python -m bench --help`"
    ORDER = 10  # optional: where it stands in --help and the CLI reference (lower first; then by name)
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

and is found by its file name (`compare.py` is `python -m bench compare`; `_`-prefixed modules are helpers).
Adding a command is adding one module and its test.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType

from pydantic import ValidationError

from bench.errors import MixError
from serve import settings
from serve.common import error_lines


class CommandError(Exception):
    """What the user must change; printed as `error: ...` with exit code `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def commands() -> dict[str, ModuleType]:
    """Every command module of this package, by command name."""
    found = {info.name.replace("_", "-"): importlib.import_module(f"{__name__}.{info.name}")
             for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")}
    return dict(sorted(found.items(), key=lambda item: (getattr(item[1], "ORDER", 100), item[0])))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="NPC traffic against an LLM stack, and what "
                                     "its results say. `python -m bench COMMAND --help` for a command's flags.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in commands().items():
        command = sub.add_parser(name, help=module.HELP, description=module.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CommandError as exc:
        return fail(str(exc), exc.code)
    except MixError as exc:
        return fail(str(exc))
    except ValidationError as exc:  # options out of range, e.g. --npcs -1
        return fail("; ".join(error_lines(exc)))


def fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


# Flags several commands share, declared once.

def add_results_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results-dir", default=str(settings().results), help="where run folders go ($NPCBENCH_RESULTS)")


def add_run_id(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--run-id", help=f"folder name under --results-dir (default: <UTC time>-{default})")
