"""The command line's dispatch: every command the parser knows has a handler, each command reaches its own, and
anything else is argparse's usage error (exit 2) before any work; bad input and Ctrl-C on a run folder end in one
line on stderr and their exit status."""

import argparse

import pytest
import yaml
from tiny_configs import TINY_RUN

from grail import cli
from grail.pipeline import Pipeline

ARGUMENTS = {"audit": ["RUN"], "attack": ["RUN"], "export": ["RUN", "OUT"]}
"""The positional arguments of the commands that have some."""


def _commands() -> list[str]:
    subcommands = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(subcommands.choices)


def test_every_command_of_the_parser_has_a_handler():
    assert sorted(_commands()) == sorted(cli.HANDLERS)


@pytest.mark.parametrize("command", sorted(cli.HANDLERS))
def test_each_command_reaches_its_own_handler(command, monkeypatch):
    reached = []

    def handler(args: argparse.Namespace) -> int:
        reached.append(args.command)
        return 42

    monkeypatch.setitem(cli.HANDLERS, command, handler)
    assert cli.main([command, *ARGUMENTS.get(command, [])]) == 42
    assert reached == [command]


@pytest.mark.parametrize("argv", [["frobnicate"], []])
def test_an_unknown_or_missing_command_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == cli.EXIT_BAD_INPUT == 2
    assert "usage: grail" in capsys.readouterr().err


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_RUN))
    return path


def test_ctrl_c_is_exit_130_with_how_to_resume_and_the_folder_is_released(tiny_config, tmp_path, monkeypatch, capsys):
    def interrupted(self, until="evaluate"):
        raise KeyboardInterrupt

    monkeypatch.setattr(Pipeline, "run", interrupted)
    folder = tmp_path / "run"
    assert cli.main(["finetune", "--config", str(tiny_config), "--out", str(folder), "--quiet"]) == 130
    assert f"grail finetune: interrupted; finished steps are saved in {folder}" in capsys.readouterr().err
    Pipeline(folder).run_folder.close()  # not held by the interrupted command


def test_a_bad_argument_is_exit_2_in_one_line_and_leaves_no_folder(tiny_config, tmp_path, capsys):
    folder = tmp_path / "run"
    argv = ["compare", "--config", str(tiny_config), "--out", str(folder), "--methods", "nope"]
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip().endswith(f"grail compare: --methods: unknown ['nope']; known: "
                                                    f"{sorted(cli.METHODS)}")
    assert not folder.exists()
