"""The docs' generated pages equal what the committed results render now, so no figure in them drifts from its data."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.report import pages
from serve.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs"
RESULTS = REPO_ROOT / "results"


@pytest.mark.parametrize("path", sorted(pages.pages()))
def test_each_generated_page_is_what_its_results_render(path: str) -> None:
    generator = pages.pages()[path]
    rendered = pages.banner(generator.render.__module__) + generator.render(RESULTS)  # this page only, not all of them
    committed = (DOCS / path).read_text() if (DOCS / path).exists() else ""
    assert committed == rendered, f"docs/{path} differs from its results: run `python -m bench docs` and commit it"


def test_a_template_name_missing_from_the_context_is_an_error_not_a_blank() -> None:
    with pytest.raises(Exception, match="rise_mib"):
        pages.render("rose by {{ rise_mib }} MiB")


def test_number_formats() -> None:
    assert pages.render("{{ 4034.2 | num }} / {{ 0.312 | pct }} / {{ -0.39 | signed_pct }} / {{ 0.0123 | ms }}") == \
        "4,034 / 31 % / -39 % / 12 ms"


def test_a_table_shows_missing_values_as_dashes() -> None:
    frame = pd.DataFrame({"class": ["a|b", "c"], "p50_s": [0.1234, float("nan")]})
    assert pages.table(frame).splitlines() == ["| class | p50_s |", "| --- | --- |", "| a\\|b | 0.123 |", "| c | - |"]


def test_two_generators_for_one_page_are_refused(monkeypatch) -> None:
    monkeypatch.setattr(pages, "_PAGES", {})
    pages.page("studies/x.md", "X")(lambda results: "")
    with pytest.raises(ValueError, match="two generators"):
        pages.page("studies/x.md", "again")(lambda results: "")
