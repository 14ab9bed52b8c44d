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


def test_the_readmes_snippets_are_what_their_results_render() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert pages.fill_snippets(readme, RESULTS) == readme, "README.md's snippets differ: run `python -m bench docs`"


def test_a_snippet_the_readme_lacks_or_nobody_renders_is_an_error(monkeypatch) -> None:
    pages.pages()
    monkeypatch.setattr(pages, "_SNIPPETS", {"figure": lambda results: "42"})
    assert pages.fill_snippets("a <!-- snippet:figure -->old<!-- /snippet --> b", RESULTS) == \
        "a <!-- snippet:figure -->42<!-- /snippet --> b"
    with pytest.raises(ValueError, match="no <!-- snippet:figure -->"):
        pages.fill_snippets("no marker", RESULTS)
    with pytest.raises(ValueError, match="names snippet 'other'"):
        pages.fill_snippets("<!-- snippet:figure -->x<!-- /snippet --><!-- snippet:other --><!-- /snippet -->", RESULTS)
