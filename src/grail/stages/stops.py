"""When stage 3 stops: its three stop rules, each with its own state.

- ``TargetStop``: a domain stops ascending once it has met its forgetting target (``targets.py``) or has nothing
  left to ascend, and is then held where it met it (with an objective that holds); the stage stops once every
  domain has. Checked after each epoch and every ``unlearn.target_check_steps`` steps within it.
- ``UtilityBudget``: the perplexity of a utility-check text (never trained on, never reported) stays within
  ``unlearn.utility_budget`` times its value before unlearning. Crossing it goes back to the last weights within it,
  after ``budget_repair_steps`` of general replay alone have failed to win it back; the stage then goes on at half
  the step size (``budget_backoff`` times at most) or stops there.
- ``Divergence``: a domain's retention (RS) fell more than ``divergence_rs_drop`` points below its value before
  unlearning: the stage stops with the weights of the epoch before.
Each rule reads the epoch's log and returns a reason to stop, or None.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from grail.config import UnlearnConfig
from grail.stages.targets import ForgetTarget

Weights = dict[str, torch.Tensor]


def copy_weights(params: dict[str, nn.Parameter]) -> Weights:
    return {n: p.detach().clone() for n, p in params.items()}


def restore_weights(params: dict[str, nn.Parameter], weights: Weights) -> None:
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(weights[n])


class TargetStop:
    """Per domain: still forgetting, or done (target met, or nothing left to ascend).

    ``measure(model, domain)`` is the target's measurement (None: no target, every domain ascends until nothing is
    left); ``left_to_ascend()`` the objective's share of forget tokens still pushed, per domain; ``hold(domain)``
    holds a done domain where it is (a no-op for objectives that do not hold)."""

    def __init__(self, model: nn.Module, target: ForgetTarget | None, domains: list[str], check_steps: int,
                 left_to_ascend: Callable[[], dict[str, float]], hold: Callable[[str], None]) -> None:
        self.model, self.target, self.domains, self.check_steps = model, target, domains, check_steps
        self.left_to_ascend, self.hold = left_to_ascend, hold
        self.start = self.measure_all()
        self.active: list[str] = []
        self.reached: dict[str, int] = {}  # domains that met the target within this epoch: the step
        self.reached_scores: dict[str, dict] = {}  # ... and the target's measurement then

    def measure_all(self) -> dict[str, dict]:
        return {d: self.target.measure(self.model, d) for d in self.domains} if self.target is not None else {}

    def still_forgetting(self, history: list[dict]) -> list[str]:
        """Domains that have neither met their target nor run out of tokens to ascend (by the last check)."""
        last = history[-1] if history else {"target": self.start, "left_to_ascend": self.left_to_ascend()}
        return [d for d in self.domains if last.get("left_to_ascend", {}).get(d, 100.0) > 0
                and not last.get("target", {}).get(d, {}).get("met", False)]

    def start_epoch(self, history: list[dict]) -> list[str]:
        """The domains this epoch ascends; the others are held."""
        self.active, self.reached, self.reached_scores = self.still_forgetting(history), {}, {}
        for d in self.domains:
            if d not in self.active:
                self.hold(d)
        return self.active

    def after_step(self, step: int, last_step: bool) -> None:
        """Every ``check_steps`` steps (not after the epoch's last: the epoch's end measures the same weights)."""
        if self.target is None or not self.check_steps or step % self.check_steps or last_step:
            return
        for d in (d for d in self.active if d not in self.reached):
            measured = self.target.measure(self.model, d)
            if measured["met"]:
                self.reached[d], self.reached_scores[d] = step, measured
                self.hold(d)

    @property
    def epoch_done(self) -> bool:
        """Every domain this epoch ascends has met its target within it: nothing is left to ascend."""
        return len(self.reached) == len(self.active)

    def end_epoch(self, log: dict[str, Any]) -> None:
        log["left_to_ascend"] = self.left_to_ascend()
        if self.reached:
            log["target_reached_at_step"], log["target_reached"] = self.reached, self.reached_scores
        if self.target is not None:
            log["target"] = self.measure_all()

    def verdict(self, log: dict[str, Any]) -> str | None:
        # Every domain's retention counts (Divergence), but only the domains being unlearned have a target to meet.
        if self.target is not None and all(log["target"][d]["met"] for d in self.domains):
            return f"target met: {self.target.description} in every domain unlearned"
        if not self.still_forgetting([log]):
            return "nothing left to ascend: every domain at its target or down to the base model"
        return None


class UtilityBudget:
    """The utility-check perplexity held within ``config.utility_budget`` × its value before unlearning.

    ``repair_step(j)`` takes the ``j``-th step of general replay alone (after a crossing); ``optimizer``'s step size
    is halved on each backoff (restored with it on resume, so it counts the halvings)."""

    def __init__(self, utility: Callable[[], float], config: UnlearnConfig, params: dict[str, nn.Parameter],
                 optimizer: torch.optim.Optimizer, repair_step: Callable[[int], None]) -> None:
        self.utility, self.config, self.params, self.optimizer = utility, config, params, optimizer
        self.repair_step = repair_step
        self.start = utility()
        self.limit = config.utility_budget * self.start

    def start_epoch(self, history: list[dict], epoch_start: Weights) -> None:
        # the latest weights known to be within the budget, and their utility-check perplexity
        self.last_good, self.last_good_step = epoch_start, 0
        self.last_good_ppl = history[-1].get("utility_ppl") if history else self.start
        self.spent: dict[str, Any] | None = None
        self.repairs: list[dict] = []

    def after_step(self, step: int, epoch_ends: bool) -> bool:
        """Checked every ``utility_check_steps`` steps and when the epoch ends; True: the budget is spent, the
        weights are back at the last within it, and the epoch ends."""
        every = self.config.utility_check_steps
        if not (epoch_ends or (every and step % every == 0)):
            return False
        ppl = self.utility()
        if ppl > self.limit and self.config.budget_repair_steps:
            ppl = self.repair(step)
        if ppl > self.limit:
            restore_weights(self.params, self.last_good)
            self.spent = {"step": step, "utility_ppl": ppl, "kept_step": self.last_good_step}
            return True
        self.last_good, self.last_good_step, self.last_good_ppl = copy_weights(self.params), step, ppl
        return False

    def repair(self, at_step: int) -> float:
        """Steps of general replay alone until the utility-check perplexity is below the middle of the budget, at
        most ``budget_repair_steps``; returns the perplexity reached. Replay alone: the budget is about general
        text, and more descent on the retain facts is not what it lacks."""
        goal = self.start * (1 + self.config.utility_budget) / 2
        for j in range(1, self.config.budget_repair_steps + 1):
            self.repair_step(j)
            ppl = self.utility()
            if ppl <= goal:
                break
        self.repairs.append({"step": at_step, "repair_steps": j, "utility_ppl": ppl})
        return ppl

    def end_epoch(self, log: dict[str, Any]) -> None:
        """Logs the epoch's budget; a spent budget with halvings left goes on at half the step size."""
        if self.spent is not None:
            log["budget_spent"] = self.spent
            lr = self.optimizer.param_groups[0]["lr"]
            if round(math.log2(self.config.lr / lr)) < self.config.budget_backoff:
                for group in self.optimizer.param_groups:
                    group["lr"] = self.spent["lr_now"] = lr / 2
        if self.repairs:
            log["repairs"] = self.repairs

    def verdict(self, log: dict[str, Any]) -> str | None:
        spent = log.get("budget_spent")
        if spent is None or "lr_now" in spent:  # within the budget, or backed off and going on
            return None
        kept = f"step {spent['kept_step']} of this epoch" if spent["kept_step"] else "the epoch before"
        return f"utility budget spent: utility-check PPL {spent['utility_ppl']:.1f} > {self.config.utility_budget} x " \
               f"{self.start:.1f} at step {spent['step']}; kept the weights of {kept}"


class Divergence:
    """A domain's RS (``check()``: {domain: {"RS": ..}}) fell more than ``max_rs_drop`` points below its value
    before unlearning: back to the weights the epoch started from, and stop."""

    def __init__(self, check: Callable[[], dict[str, dict[str, float]]], max_rs_drop: float,
                 params: dict[str, nn.Parameter]) -> None:
        self.check, self.max_rs_drop, self.params = check, max_rs_drop, params
        self.start = check()

    def verdict(self, log: dict[str, Any], epoch_start: Weights) -> str | None:
        for domain, s in (log.get("scores") or {}).items():
            if self.start[domain]["RS"] - s["RS"] > self.max_rs_drop:
                restore_weights(self.params, epoch_start)
                log["reverted"] = True
                return f"diverged: {domain} RS fell from {self.start[domain]['RS']:.1f} to {s['RS']:.1f}; " \
                       f"kept the weights of the epoch before"
        return None
