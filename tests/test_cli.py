"""The command line's dispatch: every command the parser knows has a handler, each command reaches its own, and
anything else is argparse's usage error (exit 2) before any work; bad input and Ctrl-C on a run folder end in one
line on stderr and their exit status."""

import argparse
import os
from pathlib import Path

import pytest
import yaml
from tiny_configs import TINY_RUN

from grail import cli
from grail.pipeline import Pipeline

ARGUMENTS = {"audit": ["RUN"], "attack": ["RUN"], "inspect": ["RUN"], "export": ["RUN", "OUT"]}
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


# ---- the checks of the arguments: before any work, and before a folder is made ------------------------------------
@pytest.mark.parametrize("argv,message", [
    (["compare", "--utility-budget", "1"], "grail compare: --utility-budget: a ratio > 1 to the vanilla model, got 1"),
    (["compare", "--utility-budget", "0.8"], "--utility-budget: a ratio > 1 to the vanilla model, got 0.8"),
    (["compare", "--methods", " , "], "grail compare: --methods: unknown none given"),
    (["sweep", "--k-ur", ","], "grail sweep: --k-ur: percentages in (0, 100], got none"),
    (["sweep", "--k-rr", "10,0"], "grail sweep: --k-rr: percentages in (0, 100], got [0.0]"),
    (["sweep", "--k-ur", "100.5"], "--k-ur: percentages in (0, 100], got [100.5]"),
    (["unlearn", "--device", "gpu7"], "grail unlearn: --device: 'gpu7' is not a torch device"),
])
def test_a_bad_argument_is_named_in_one_line_before_the_folder_is_made(tmp_path, capsys, argv, message):
    folder = tmp_path / "run"
    assert cli.main([*argv, "--preset", "smoke", "--out", str(folder), "--quiet"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not folder.exists()


def test_percentages_take_spaces_and_the_bounds():
    assert cli._percentages("--k-ur", " 5, 10 ,100,") == [5.0, 10.0, 100.0]
    assert cli._percentages("--k-rr", "0.5") == [0.5]


@pytest.mark.parametrize("argv", [["run", "--preset", "nope"], ["compare", "--target", "perfect"],
                                  ["export", "RUN"], ["run", "--threads", "two"]])
def test_what_argparse_refuses_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == cli.EXIT_BAD_INPUT
    assert "usage: grail" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(cli.HANDLERS))
def test_every_command_refuses_fewer_than_one_thread_before_its_handler(command, monkeypatch, capsys):
    def handler(args):
        raise AssertionError("the handler ran")

    monkeypatch.setitem(cli.HANDLERS, command, handler)
    assert cli.main([command, *ARGUMENTS.get(command, []), "--threads", "0"]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == f"grail {command}: --threads must be >= 1, got 0"


def test_a_bug_in_a_command_is_exit_3_with_its_traceback(monkeypatch, capsys):
    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(cli.HANDLERS, "audit", broken)
    assert cli.main(["audit", "RUN"]) == cli.EXIT_CRASH == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err
    assert err.strip().endswith("grail audit: unexpected error (a bug; please report it with the traceback above)")


def test_audit_and_attack_of_a_folder_that_holds_no_run_are_exit_2(tmp_path, capsys):
    assert cli.main(["audit", str(tmp_path)]) == cli.EXIT_BAD_INPUT
    assert f"grail audit: {tmp_path / 'config.yaml'}: missing" in capsys.readouterr().err
    missing = tmp_path / "nowhere"
    assert cli.main(["attack", str(missing), "--quiet"]) == cli.EXIT_BAD_INPUT
    assert f"grail attack: {missing}: not a run folder (no config.yaml)" in capsys.readouterr().err
    assert not missing.exists()  # nothing was made


@pytest.mark.parametrize("argv,folder", [
    (["run"], "runs/default"),
    (["run", "--preset", "smoke"], "runs/smoke"),
    (["run", "--config", "configs/my-setting.yaml"], "runs/my-setting"),
    (["run", "--config", "configs/my-setting.yaml", "--preset", "smoke", "--out", "elsewhere"], "elsewhere"),
])
def test_the_run_folder_is_out_or_named_after_the_config_or_preset(argv, folder):
    assert cli._run_folder(cli._parser().parse_args(argv)) == Path(folder)


def test_a_folder_with_a_config_resumes_with_it_unless_one_is_given(tmp_path):
    from grail.config import load_config

    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    existing.mkdir()
    (existing / "config.yaml").write_text("model:\n  name: tiny\n")
    parse = cli._parser().parse_args
    assert cli._run_config(parse(["run"]), existing) is None  # the folder's own
    assert cli._run_config(parse(["run"]), fresh) == load_config()  # a new folder: the default config
    assert cli._run_config(parse(["run", "--preset", "smoke"]), existing) == load_config(preset="smoke")
    config = tmp_path / "mine.yaml"
    config.write_text("unlearn:\n  lr: 0.0005\n")
    assert cli._run_config(parse(["run", "--config", str(config)]), existing).unlearn.lr == 0.0005


@pytest.mark.parametrize("error,status,line", [
    ("config", 2, "grail run: bad value"), ("data", 2, "grail run: bad value"), ("folder", 2, "grail run: bad value"),
    ("unreadable", 2, "grail run: bad value"),
    ("interrupt", 130, "grail run: interrupted; finished steps are saved in RUN. Give the same command again to "
                       "resume."),
])
def test_bad_input_and_ctrl_c_end_a_command_in_one_line_and_their_status(error, status, line, capsys):
    from grail.config import ConfigError
    from grail.data.examples import DataError
    from grail.io import UnreadableFileError
    from grail.run_folder import RunFolderError

    kinds = {"config": ConfigError, "data": DataError, "folder": RunFolderError, "unreadable": UnreadableFileError,
             "interrupt": KeyboardInterrupt}
    with cli._RunFolderErrors("run", Path("RUN")) as errors:
        raise kinds[error]("bad value")
    assert errors.status == status
    assert capsys.readouterr().err.strip() == line


def test_other_errors_pass_through_and_a_finished_body_is_exit_0():
    with pytest.raises(ZeroDivisionError), cli._RunFolderErrors("run", Path("RUN")):
        raise ZeroDivisionError("a bug")
    with cli._RunFolderErrors("run", Path("RUN")) as errors:
        pass
    assert errors.status == cli.EXIT_OK


# ---- places that cannot be written or read: one line naming the path, exit 2 ---------------------------------------
def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("where", ["under_a_file", "name_too_long"])
def test_an_out_folder_that_cannot_be_made_is_exit_2_in_one_line(tiny_config, tmp_path, capsys, where):
    (tmp_path / "file").write_text("a user's file")
    folder = tmp_path / "file" / "run" if where == "under_a_file" else tmp_path / ("x" * 300)
    assert cli.main(["finetune", "--config", str(tiny_config), "--out", str(folder), "--quiet"]) == 2
    err = _one_line(capsys)
    assert err.startswith(f"grail finetune: {folder}: cannot ") and "choose another --out" in err, err
    assert (tmp_path / "file").read_text() == "a user's file"


def _jsonl_config(tmp_path) -> tuple[Path, Path]:
    from grail.data.builtin import builtin_benchmark

    data = tmp_path / "data.jsonl"
    data.write_text(builtin_benchmark(seed=0, people=1, books=1).to_jsonl())
    config = tmp_path / "jsonl.yaml"
    config.write_text(yaml.safe_dump({**TINY_RUN, "data": {"source": "jsonl", "path": str(data)}}))
    return data, config


def test_an_unreadable_data_file_is_exit_2_naming_it(tmp_path, monkeypatch, capsys):
    import errno

    data, config = _jsonl_config(tmp_path)
    opened = Path.open

    def refuse(self, *args, **kwargs):  # what a file of another user's, mode 0600, gives
        if self == data:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    folder = tmp_path / "run"
    assert cli.main(["finetune", "--config", str(config), "--out", str(folder), "--quiet"]) == 2
    assert _one_line(capsys) == f"grail finetune: {data}: cannot read the data (Permission denied)"
    assert not folder.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 0000: needs another user")
def test_a_data_file_without_read_permission_is_exit_2_naming_it(tmp_path, capsys):
    data, config = _jsonl_config(tmp_path)
    data.chmod(0)
    assert cli.main(["finetune", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert _one_line(capsys) == f"grail finetune: {data}: cannot read the data (Permission denied)"
