"""Stage 3's stop rules on their own: scripted measurements, a one-tensor "model"."""

import pytest
import torch
from torch import nn

from grail.config import UnlearnConfig
from grail.stages.stops import Divergence, TargetStop, UtilityBudget, copy_weights


def _params(value: float = 0.0) -> dict[str, nn.Parameter]:
    return {"w": nn.Parameter(torch.full((3,), value))}


class _ScriptedTarget:
    """``measure`` returns the next scripted "met" of a domain (the last one once the script runs out)."""

    description = "scripted"

    def __init__(self, **script: list[bool]) -> None:
        self.script, self.calls = {d: list(v) for d, v in script.items()}, []

    def measure(self, model, domain):
        self.calls.append(domain)
        met = self.script[domain].pop(0) if len(self.script[domain]) > 1 else self.script[domain][0]
        return {"met": met}


def _targets(target, check_steps=1, left=None):
    held = []
    stop = TargetStop(None, target, ["a", "b"], check_steps, lambda: dict(left or {"a": 50.0, "b": 50.0}),
                      held.append)
    return stop, held


def test_target_stop_holds_a_domain_from_the_step_it_meets_its_target():
    target = _ScriptedTarget(a=[False, False, True], b=[False])  # a: met at the second check within the epoch
    stop, held = _targets(target)
    assert stop.start_epoch([]) == ["a", "b"] and held == []
    stop.after_step(1, last_step=False)
    assert stop.reached == {} and not stop.epoch_done
    stop.after_step(2, last_step=False)
    assert stop.reached == {"a": 2} and held == ["a"] and not stop.epoch_done
    calls = len(target.calls)
    stop.after_step(3, last_step=False)
    assert target.calls[calls:] == ["b"]  # a domain that met its target is not measured again within the epoch
    stop.after_step(4, last_step=True)  # the epoch's end measures these weights
    assert len(target.calls) == calls + 1


def test_target_stop_checks_every_check_steps_and_not_without_a_target():
    target = _ScriptedTarget(a=[False], b=[False])
    stop, _ = _targets(target, check_steps=3)
    stop.start_epoch([])
    before = len(target.calls)
    for k in (1, 2, 4, 5):
        stop.after_step(k, last_step=False)
    assert len(target.calls) == before
    stop.after_step(6, last_step=False)
    assert len(target.calls) == before + 2
    untargeted, held = _targets(None)
    assert untargeted.start == {} and untargeted.start_epoch([]) == ["a", "b"]
    untargeted.after_step(1, last_step=False)
    assert untargeted.reached == {} and held == []


def test_target_stop_verdicts():
    stop, held = _targets(_ScriptedTarget(a=[False], b=[False]))
    log = {"target": {"a": {"met": True}, "b": {"met": False}}, "left_to_ascend": {"a": 10.0, "b": 10.0}}
    assert stop.verdict(log) is None
    assert stop.start_epoch([log]) == ["b"] and held == ["a"]  # the next epoch ascends b alone, a held
    log["target"]["b"]["met"] = True
    assert stop.verdict(log) == "target met: scripted in every domain unlearned"
    log = {"target": {"a": {"met": True}, "b": {"met": False}}, "left_to_ascend": {"a": 10.0, "b": 0.0}}
    assert stop.verdict(log).startswith("nothing left to ascend")


def _budget(values, params, backoff=0, repair_steps=0, lr=1e-2):
    calls = iter(values)
    config = UnlearnConfig(utility_budget=1.5, utility_check_steps=2, budget_backoff=backoff,
                           budget_repair_steps=repair_steps, lr=lr)
    optimizer = torch.optim.SGD(list(params.values()), lr=lr)
    repairs = []

    def repair_step(j):
        repairs.append(j)
        with torch.no_grad():
            params["w"].add_(100.0)  # a repair step moves the weights

    return UtilityBudget(lambda: next(calls), config, params, optimizer, repair_step), optimizer, repairs


def test_utility_budget_goes_back_to_the_last_weights_within_it_and_backs_off():
    params = _params()
    budget, optimizer, _ = _budget([10.0, 12.0, 16.0], params, backoff=1)
    budget.start_epoch([], copy_weights(params))
    assert not budget.after_step(1, epoch_ends=False)  # not a check step: utility() not called
    with torch.no_grad():
        params["w"].fill_(1.0)
    assert not budget.after_step(2, epoch_ends=False)  # 12 <= 15: these weights are the last good ones
    with torch.no_grad():
        params["w"].fill_(2.0)
    assert budget.after_step(3, epoch_ends=True)  # 16 > 15: back to the weights of step 2
    assert torch.equal(params["w"].detach(), torch.ones(3))
    log = {}
    budget.end_epoch(log)
    assert log["budget_spent"] == {"step": 3, "utility_ppl": 16.0, "kept_step": 2, "lr_now": 5e-3}
    assert optimizer.param_groups[0]["lr"] == 5e-3 and budget.verdict(log) is None  # goes on, at half the step
    budget.start_epoch([{"utility_ppl": 12.0}], copy_weights(params))
    assert budget.last_good_ppl == 12.0


def test_utility_budget_stops_once_no_halving_is_left():
    params = _params()
    budget, optimizer, _ = _budget([10.0, 16.0], params, backoff=0)
    budget.start_epoch([], copy_weights(params))
    with torch.no_grad():
        params["w"].fill_(3.0)
    assert budget.after_step(2, epoch_ends=False)
    assert torch.equal(params["w"].detach(), torch.zeros(3))  # the epoch's start
    log = {}
    budget.end_epoch(log)
    assert optimizer.param_groups[0]["lr"] == 1e-2
    assert budget.verdict(log) == ("utility budget spent: utility-check PPL 16.0 > 1.5 x 10.0 at step 2; kept the "
                                   "weights of the epoch before")


@pytest.mark.parametrize("after_crossing,steps,spent", [([14.0, 12.0], 2, False), ([20.0, 19.0, 18.0], 3, True)])
def test_utility_budget_repairs_to_the_middle_of_the_budget_first(after_crossing, steps, spent):
    params = _params()
    budget, _, repairs = _budget([10.0, 16.0, *after_crossing], params, repair_steps=3)
    budget.start_epoch([], copy_weights(params))
    assert budget.after_step(2, epoch_ends=False) is spent  # the goal: 10 * (1 + 1.5) / 2 = 12.5
    assert repairs == list(range(1, steps + 1))
    assert budget.repairs == [{"step": 2, "repair_steps": steps, "utility_ppl": after_crossing[steps - 1]}]
    assert torch.equal(params["w"].detach(), torch.zeros(3) if spent else torch.full((3,), 100.0 * steps))


def test_divergence_reverts_to_the_epochs_start():
    params = _params()
    scores = iter([{"a": {"RS": 90.0}}])
    divergence = Divergence(lambda: next(scores), 40.0, params)
    start = copy_weights(params)
    with torch.no_grad():
        params["w"].fill_(5.0)
    assert divergence.verdict({"scores": {"a": {"RS": 60.0}}}, start) is None
    assert torch.equal(params["w"].detach(), torch.full((3,), 5.0))
    log = {"scores": {"a": {"RS": 49.0}}}
    assert divergence.verdict(log, start).startswith("diverged: a RS fell from 90.0 to 49.0")
    assert log["reverted"] and torch.equal(params["w"].detach(), torch.zeros(3))
