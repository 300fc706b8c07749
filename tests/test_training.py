"""The shared epoch loop: a stage's random draws depend on its seed, not on what the process ran before."""

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
