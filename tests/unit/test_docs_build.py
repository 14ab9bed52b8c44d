"""The docs site builds with `mkdocs build --strict`: every page in the nav exists, no page is left out of it, and
no link or anchor points at nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serve.paths import REPO_ROOT


def nav_pages(nav: list) -> list[str]:
    """Every page path of an mkdocs nav (a list of {title: path-or-list} entries)."""
    found = []
    for entry in nav:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            found += nav_pages(value) if isinstance(value, list) else [value]
    return found


def test_mkdocs_build_strict_succeeds(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs comes with the test extra: reinstall .venv/ from its lock")
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=REPO_ROOT, capture_output=True, text=True,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # Material's end-of-life banner
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    assert (site / "index.html").exists()


def test_every_nav_entry_is_a_page_and_every_page_is_in_the_nav() -> None:
    # mkdocs.yml's !!python tags would need mkdocs' own loader; the nav is plain YAML
    config = yaml.load((REPO_ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    docs = REPO_ROOT / config.get("docs_dir", "docs")
    listed = nav_pages(config["nav"])
    written = sorted(p.relative_to(docs).as_posix() for p in docs.rglob("*.md"))
    assert len(listed) == len(set(listed)), "a page is in the nav twice"
    missing_pages = [p for p in listed if not (docs / p).exists()]
    assert not missing_pages, f"in mkdocs.yml's nav but not under docs/: {missing_pages}"
    # study pages are listed by the generated studies/index.md, not one by one in the nav
    unlisted = [p for p in written if p not in listed and not p.startswith("studies/")]
    assert not unlisted, f"under docs/ but not in mkdocs.yml's nav: {unlisted}"
