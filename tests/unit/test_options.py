"""One load-options model: the bench CLI, Locust's parser and the commands sweeps start all come from it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from bench.options import LoadOptions


def parse(argv: list[str]) -> LoadOptions:
    parser = argparse.ArgumentParser()
    LoadOptions.add_arguments(parser)
    return LoadOptions.from_args(parser.parse_args(argv))


def test_a_command_line_made_from_options_parses_back_to_them(tmp_path) -> None:
    options = LoadOptions(mix="ambient", npcs=3, duration_s=20, results_dir=tmp_path, direct="light-0")
    assert parse(options.argv()) == options
    assert parse([]) == LoadOptions()  # the flags' defaults are the model's
    assert "--direct" not in LoadOptions().argv()  # empty: through the proxy


def test_locusts_form_shows_the_load_fields_only() -> None:
    added = {}

    class LocustParser:
        def add_argument(self, flag, **kwargs):
            added[flag] = kwargs

    LoadOptions.add_arguments(LocustParser(), locust=True, mix_choices=["npc-cpu", "ambient"])
    shown = {flag for flag, kwargs in added.items() if kwargs["include_in_web_ui"]}
    assert shown == {"--mix", "--tick-policy", "--npcs", "--duration-s", "--rate-rps"}
    assert added["--mix"]["choices"] == ["npc-cpu", "ambient"] and added["--npcs"]["type"] is int
    assert added["--tick-policy"]["choices"] == ("", "overlap", "skip", "cancel")


def test_a_misspelt_or_negative_option_is_refused() -> None:
    with pytest.raises(ValidationError):
        LoadOptions.model_validate({"users": 3})
    with pytest.raises(ValidationError):
        LoadOptions(npcs=-1)
    assert LoadOptions(results_dir=Path("x")).results_dir == Path("x")


def test_the_client_choices_are_the_registered_request_paths_and_lean_is_the_default() -> None:
    import bench.load.client  # noqa: F401  (registers the paths)
    from bench.load.exchange import PATHS

    assert set(LoadOptions.CLIENTS) == set(PATHS) and LoadOptions().client == "lean"
    assert parse(["--client", "openai"]).client == "openai"
    with pytest.raises(SystemExit):
        parse(["--client", "curl"])
