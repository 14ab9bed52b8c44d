"""`python -m bench docs [--check]`: write the docs pages generated from the committed results (bench/report/pages),
or only check that the committed ones are current."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli import CommandError
from serve import REPO_ROOT

HELP = "write the docs pages generated from the committed results (docs/studies/, docs/reference/, ...)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="only check that the committed pages are current")
    parser.add_argument("--docs-dir", default=str(REPO_ROOT / "docs"))
    parser.add_argument("--results-dir", default=str(REPO_ROOT / "results"), help="the committed results")


def run(args: argparse.Namespace) -> int:
    from bench.report import pages

    docs, results = Path(args.docs_dir), Path(args.results_dir)
    if args.check:
        if stale := pages.stale(docs, results):
            raise CommandError(f"generated docs pages differ from their results: {', '.join(stale)}; run "
                               "`python -m bench docs`", 1)
        print(f"{len(pages.pages())} generated pages match their results")
        return 0
    changed = pages.write(docs, results)
    print(f"{len(pages.pages())} generated pages; rewritten: {', '.join(changed) or 'none'}")
    return 0
