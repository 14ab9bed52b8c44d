"""`python -m bench`: every command module in bench/cli/ is found, owns its flags and parses its --help."""

from __future__ import annotations

import pytest

from bench import cli


def test_every_command_module_is_a_subcommand_with_help_flags_and_a_run() -> None:
    commands = cli.commands()
    assert {"run", "ui", "sweep", "show", "compare", "trace", "mixes", "overhead", "fidelity", "calibrate", "scaleout",
            "docs"} <= set(commands)
    for name, module in commands.items():
        assert module.HELP and callable(module.add_arguments) and callable(module.run), name


@pytest.mark.parametrize("name", sorted(cli.commands()))
def test_each_command_prints_its_help(name: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([name, "--help"])
    assert exit_.value.code == 0
    assert f"python -m bench {name}" in capsys.readouterr().out


def test_a_command_error_is_printed_with_its_exit_code(capsys) -> None:
    assert cli.main(["scaleout", "--npcs", "10", "--ambient-every-s", "1", "--ceilings", "/nonexistent"]) == 2
    assert "error: --ceilings /nonexistent: no such folder" in capsys.readouterr().err


def test_results_dir_and_run_id_are_declared_once_for_every_command_that_writes_a_folder() -> None:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    for name in ("run", "overhead", "fidelity", "calibrate"):
        flags = {opt for action in subparsers[name]._actions for opt in action.option_strings}
        assert {"--results-dir", "--run-id"} <= flags, name
