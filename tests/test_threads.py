"""grail's OpenMP setting (BENCHMARKS-threads.md): set before torch loads, never over a user's own."""

import os
import subprocess
import sys

import pytest

PROBE = "import os, sys\n{before}\nfrom grail.threads import configure_threads\nconfigure_threads()\n" \
        "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"


@pytest.mark.parametrize("before,env,expected", [
    ("", {}, "10000 False"),                               # set, before torch loads
    ("", {"OMP_WAIT_POLICY": "ACTIVE"}, "None False"),     # the user's policy wins
    ("", {"GOMP_SPINCOUNT": "7"}, "7 False"),              # the user's spin count wins
    ("import torch", {}, "None True"),                     # too late: torch has read its settings
    ("import grail.cli", {}, "10000 False"),               # the command line imports nothing heavy first
])
def test_spin_count_is_set_only_before_torch_and_never_over_the_user(before, env, expected):
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run([sys.executable, "-c", PROBE.format(before=before)], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == expected.split(), done.stderr[-2000:]


def test_threads_option_sets_torch_threads_and_rejects_zero(tmp_path, capsys):
    import torch

    from grail.cli import EXIT_BAD_INPUT, main

    before = torch.get_num_threads()
    try:  # a bad --device stops the command after the threads are set
        assert main(["finetune", "--threads", "1", "--device", "nonsense", "--out", str(tmp_path / "r")]) == 2
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["finetune", "--threads", "0", "--out", str(tmp_path / "r")]) == EXIT_BAD_INPUT
    assert "--threads must be >= 1" in capsys.readouterr().err
