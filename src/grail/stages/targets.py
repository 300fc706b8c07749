"""When has a domain forgotten enough? Stage 3's forgetting targets (``unlearn.target``).

A domain whose target is met stops ascending (its retain examples keep descending), and stage 3 stops once every
domain's is; each is checked after every epoch and every ``unlearn.target_check_steps`` steps, per domain, so one
domain can stop while another goes on.

- ``CalibratedTarget`` (``target: calibrated``, the default): the forget set is no more familiar to the model than
  never-seen data of its kind (``grail.calibration``): what exact unlearning gives, not more forgetting than that.
- ``UsTarget`` (``target: us``, the paper's protocol): Unlearning Success at least ``target_us``.
(``target: none``: no target; every domain ascends for the whole epoch budget.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean

from torch import nn

from grail.batching import Encoded
from grail.calibration import CALIBRATED_AUC, NeverSeen, calibration, never_seen
from grail.config import UnlearnConfig
from grail.scoring import teacher_forced

SCORE_BATCH = 32
"""Examples per forward pass when a target scores a domain's examples."""


@dataclass
class ForgetTarget:
    """A target over the forget examples stage 3 ascends (``forget``, by domain): ``measure(model, domain)`` scores
    the domain now, {..., "met": bool}; ``description`` says what meeting it means."""

    forget: dict[str, list[Encoded]]
    pad_id: int
    device: object


@dataclass
class UsTarget(ForgetTarget):
    """Met once the domain's Unlearning Success on the examples stage 3 ascends reaches ``target_us``."""

    target_us: float

    @property
    def description(self) -> str:
        return f"US >= {self.target_us:g}"

    def measure(self, model: nn.Module, domain: str) -> dict:
        accuracy = teacher_forced(model, self.forget[domain], self.pad_id, SCORE_BATCH, self.device)[0]
        us = 100.0 * (1 - mean(accuracy))
        return {"US": us, "met": us >= self.target_us}


@dataclass
class CalibratedTarget(ForgetTarget):
    """Met once the domain's forget set is calibrated against its never-seen reference (AUC <= 0.5)."""

    references: dict[str, NeverSeen]

    @property
    def description(self) -> str:
        return f"forget set no more familiar than never-seen data (AUC <= {CALIBRATED_AUC:g})"

    def measure(self, model: nn.Module, domain: str) -> dict:
        scores = calibration(model, self.forget[domain], self.references[domain], self.pad_id, SCORE_BATCH,
                             self.device)
        met = scores.pop("calibrated")
        return {**scores, "met": met}




def forget_target(config: UnlearnConfig, model: nn.Module, forget: dict[str, list[Encoded]],
                  holdout: dict[str, Sequence[Encoded]] | None, pad_id: int, device,
                  members: dict[str, Sequence[Encoded]] | None = None) -> ForgetTarget | None:
    """The target ``config`` asks for, over the examples stage 3 ascends (None: no target, ascend for the whole
    budget). ``holdout``: each domain's never-seen examples of the forget set's kind (missing or too few: the base
    model's scores are the reference, with a warning); the calibrated target measures the ascended examples among
    ``members``, the forget examples the holdout stands for (missing: all). Call it before the first update."""
    if config.target == "none":
        return None
    if config.target == "us":
        return UsTarget(forget, pad_id, device, config.target_us)
    if members:
        kept = {d: set(members.get(d, items)) for d, items in forget.items()}
        forget = {d: [x for x in items if x in kept[d]] for d, items in forget.items()}
    references = {d: never_seen(model, d, items, (holdout or {}).get(d, ()), pad_id, SCORE_BATCH, device)
                  for d, items in forget.items()}
    return CalibratedTarget(forget, pad_id, device, references)
