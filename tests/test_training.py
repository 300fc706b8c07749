"""The shared epoch loop: a stage's random draws depend on its seed, not on what the process ran before."""

import re

import pytest
import torch
from torch import nn

from grail.training import Checkpoint, run_epochs


def _dropout_run(tmp_path=None, draws_before: int = 0, epochs: int = 3) -> list[dict]:
    torch.rand(draws_before)  # what another stage (stage 0) would have drawn in the same process
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(4))
        model[0].bias.zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def run_epoch(epoch, rng, history):
        loss = model(torch.ones(8, 4)).sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return {"loss": loss.item()}

    return run_epochs(model, optimizer, epochs, 7, run_epoch, lambda e, log: None, Checkpoint(tmp_path, "f"))


def test_a_stage_draws_the_same_dropout_whatever_ran_before_it():
    assert _dropout_run(draws_before=0) == _dropout_run(draws_before=1000)


def test_a_resumed_stage_continues_the_saved_random_state(tmp_path):
    whole = _dropout_run()
    assert _dropout_run(tmp_path, epochs=2) == whole[:2]  # interrupted after two epochs
    resumed = _dropout_run(tmp_path, draws_before=500)  # the resuming process has drawn other numbers
    assert resumed == whole
    assert len({log["loss"] for log in whole}) == 3


def test_a_checkpoint_keeps_what_the_epochs_keep_between_them(tmp_path):
    """``Checkpoint.extra`` (stage 3's distributions of the domains held at their target) is saved with the epoch
    and restored in place on resume: a resumed stage sees what the interrupted one had kept."""
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    saved = Checkpoint(tmp_path, "f")
    saved.extra.setdefault("held", {})["privacy"] = torch.arange(3.0)
    saved.save(model, optimizer, 0, [{"epoch": 0}])
    resumed = Checkpoint(tmp_path, "f")
    kept = resumed.extra
    assert resumed.load(model, optimizer) == (1, [{"epoch": 0}])
    assert kept is resumed.extra and torch.equal(kept["held"]["privacy"], torch.arange(3.0))
    other = Checkpoint(tmp_path, "another config")
    assert other.load(model, optimizer) == (0, []) and other.extra == {}


@pytest.mark.parametrize("damage", ["truncated", "not a checkpoint"])
def test_an_unreadable_checkpoint_is_named_in_a_warning_and_the_stage_starts_again(tmp_path, damage):
    """A checkpoint only saves progress: a damaged one is set aside and the stage gives what a fresh one gives."""
    whole = _dropout_run()
    _dropout_run(tmp_path, epochs=2)  # interrupted after two epochs
    state = tmp_path / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2] if damage == "truncated" else b"text")
    with pytest.warns(UserWarning, match=re.escape(f"{state}: unreadable checkpoint")):
        assert _dropout_run(tmp_path, draws_before=500) == whole
