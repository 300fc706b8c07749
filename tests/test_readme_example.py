"""README's "Unlearning your own model" example, run as README writes it: its fenced bash and python blocks, in order,
in a fresh folder (every path in them is relative). A change to README that breaks the example fails here.

The example is written for the embedded model. On the tiny model (the default test) three things change, nothing else:
- the text ``smollm2-135m-instruct`` becomes ``tiny`` in every block (the python block's ``ModelConfig``, ``--base``);
- ``grail finetune`` gets ``--config`` with TINY_RUN (the tiny model, one person and one book, three epochs);
- ``grail unlearn`` gets ``--config`` with OWN_MODEL_SETTINGS (the tiny run's stage settings, quick attacks).
``pytest -m slow`` runs it on the embedded model itself, with only quick settings added (1 person, 1 book, few
epochs and attacks: minutes on a CPU)."""

import re
import shlex
from pathlib import Path

import pytest
import yaml
from tiny_configs import OWN_MODEL_SETTINGS, TINY_RUN, folder_digest

from grail import io
from grail.cli import main
from grail.models import EMBEDDED_MODEL, TINY_MODEL

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Unlearning your own model"

QUICK_ATTACKS = {"relearn_steps": [0, 2], "precisions": ["bfloat16"], "bootstrap": 50}
SETTINGS = {
    TINY_MODEL: {"finetune": TINY_RUN, "unlearn": OWN_MODEL_SETTINGS},
    EMBEDDED_MODEL: {
        "finetune": {"data": {"people": 1, "books": 1, "general_replay": 8}, "finetune": {"epochs": 2}},
        "unlearn": {"unlearn": {"epochs": 1}, "evaluate": {"max_new_tokens": 8, "probe": False},
                    "attack": QUICK_ATTACKS},
    },
}
"""Per model the example runs on: the ``--config`` added to ``grail finetune`` and to ``grail unlearn``."""


def example_blocks() -> list[tuple[str, str]]:
    """The section's fenced blocks in order, as (language, code)."""
    readme = README.read_text()
    start = readme.index(SECTION + "\n")
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start:end if end != -1 else None]
    return re.findall(r"^```(\w+)\n(.*?)^```", section, re.S | re.M)


def grail_commands(bash: str) -> list[list[str]]:
    """Each ``grail`` command of a bash block as its arguments (continued lines joined, comments dropped, ``&&``
    chains split). Anything but a grail command is refused: the test could not say that it works."""
    commands: list[list[str]] = []
    for line in bash.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words:
            command, words = (words[:words.index("&&")], words[words.index("&&") + 1:]) if "&&" in words \
                else (words, [])
            assert command[:1] == ["grail"], f"README's example runs {command}: only grail commands are run here"
            commands.append(command[1:])
    return commands


def test_the_example_is_on_the_embedded_model_with_every_step():
    """The blocks this test runs are there, and name the embedded model (so the substitution below takes effect)."""
    blocks = example_blocks()
    assert [language for language, _ in blocks] == ["bash", "python", "bash"]
    assert all(EMBEDDED_MODEL in code for language, code in blocks if language == "python")
    steps = [args[0] for language, code in blocks if language == "bash" for args in grail_commands(code)]
    assert steps == ["finetune", "unlearn", "attack", "audit", "export"]
    unlearn = next(args for _, code in blocks[2:] for args in grail_commands(code) if args[0] == "unlearn")
    assert unlearn[unlearn.index("--base") + 1] == EMBEDDED_MODEL


@pytest.mark.parametrize("model", [TINY_MODEL, pytest.param(EMBEDDED_MODEL, marks=pytest.mark.slow)])
def test_the_readme_example_runs_as_written(model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    configs = {}
    for command, settings in SETTINGS[model].items():
        configs[command] = tmp_path / f"{command}-settings.yaml"
        configs[command].write_text(yaml.safe_dump(settings))
    own_model = run_folder = exported = before = None
    for language, code in example_blocks():
        code = code.replace(EMBEDDED_MODEL, model)
        if language == "python":
            exec(compile(code, f"{README}: python block", "exec"), {"__name__": "readme_example"})
            continue
        assert language == "bash", language
        for args in grail_commands(code):
            if args[0] in configs:
                args += ["--config", str(configs[args[0]])]
            if args[0] == "unlearn":
                own_model, run_folder = Path(args[args.index("--model") + 1]), Path(args[args.index("--out") + 1])
                before = folder_digest(own_model)
            if args[0] == "export":
                exported = Path(args[2])
            status = main(args)
            output = capsys.readouterr()
            assert status == 0, f"grail {shlex.join(args)}: exit {status}\n{output.err[-3000:]}"
            if args[0] == "audit":
                assert "PASS: every frozen entry is bit-identical" in output.err
    assert (run_folder / "adapter_unlearned").is_dir() and (run_folder / "report.md").is_file()
    assert not (run_folder / "adapter_oracle").exists() and "stage0_finetune" not in io.read_json(
        run_folder / "timings.json")
    assert (run_folder / "attacks.md").read_text().startswith("# Attacks against the holdout (no oracle)")
    assert (exported / "model.safetensors").is_file() and (exported / "README.md").is_file()
    assert folder_digest(own_model) == before  # the user's folder is only read
