"""Calibrated forgetting: has a domain's forget set become as unfamiliar to the model as data of its kind that the
model never saw, and no more?

A deletion request asks for the model that was never trained on the data (exact unlearning's model, the oracle).
Stage 3 cannot train that model (that is the retraining unlearning exists to avoid), but it can ask the question a
membership-inference attacker asks of it: can the forget examples be told from never-seen examples of the same kind
by how likely the model finds them? The statistic is the ROC AUC of the per-example mean answer-token
log-probability (the LOSS attack's score, higher = more familiar), forget set against never-seen examples:

- against the domain's **holdout under the same model** (``auc``), where the domain has at least ``MIN_HOLDOUT``
  holdout examples: examples of the forget set's kind that no model was trained on (our JSONL's ``holdout`` scope,
  KnowUnDo's ``unlearn_val``, MUSE's ``privleak/holdout``, TOFU's other authors, the built-in benchmark's further
  records and passages). For a model that never saw either set they are exchangeable, so exact unlearning gives
  AUC 0.5 in expectation;
- against the **model before unlearning** (``auc_vanilla``): the holdout's scores under the vanilla model, fixed
  when stage 3 starts. The vanilla model was fine-tuned on data of this kind but never on the holdout: the position
  the oracle (fine-tuned on the same data less the forget sets) is in towards the forget set. Unlearning moves the
  holdout's scores under the model with the forget set's (it also unlearns what the forget set has in common with
  all data of its kind), so the first reference alone can keep asking for more forgetting past a never-trained
  model's level; this one does not move.

The forget set is **calibrated** once either AUC is at most 0.5. Without a holdout of ``MIN_HOLDOUT`` examples the
reference is the **base model** (``auc_base``): the forget examples' own scores under the model before any
fine-tuning, with a warning; the base model does not know the data's kind, so that stop errs towards more forgetting.
Beside the AUCs: US on the forget set and on the holdout under the same model (``US_reference``), their gap, and the
holdout's US under the vanilla model (``US_vanilla``) and under the base model (``US_base``; the forget set's
without a holdout).
The AUC's null standard deviation is sqrt((n + m + 1) / (12 n m)): 0.13 at 10 against 10 examples, 0.09 at 20
against 20; the stop aims at its centre, not at the edge of its noise.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean

from torch import nn

from grail.batching import Encoded
from grail.metrics import roc_auc
from grail.models import base_weights
from grail.scoring import teacher_forced

MIN_HOLDOUT = 10
"""Fewest holdout examples calibration compares with (the AUC's null standard deviation is then at most 0.13);
with fewer, the base model's scores of the forget set are the reference."""

CALIBRATED_AUC = 0.5
"""The forget set is calibrated once its AUC against the never-seen reference is at most this: chance."""


@dataclass(frozen=True)
class NeverSeen:
    """A domain's never-seen reference (module docstring): its holdout items, scored under the model each time
    (empty when the holdout is too small); their fixed per-example scores under the vanilla model (empty without a
    holdout) and under the base model (without a holdout: the forget items' base scores)."""

    holdout: tuple[Encoded, ...]
    base_accuracy: tuple[float, ...]
    base_log_probs: tuple[float, ...]
    vanilla_accuracy: tuple[float, ...]
    vanilla_log_probs: tuple[float, ...]

    @property
    def kind(self) -> str:
        """``holdout`` (the holdout under the model) or ``base`` (the base model's scores only)."""
        return "holdout" if self.holdout else "base"


def never_seen(vanilla: nn.Module, domain: str, forget: Sequence[Encoded], holdout: Sequence[Encoded], pad_id: int,
               batch_size: int, device) -> NeverSeen:
    """The domain's reference, from ``vanilla`` (the model before unlearning): its holdout if it has
    ``MIN_HOLDOUT`` examples, with the vanilla and the base model's scores of it; else (with a warning) the base
    model's scores of its forget examples alone."""
    enough = len(holdout) >= MIN_HOLDOUT
    if not enough:
        warnings.warn(f"domain {domain!r}: {len(holdout)} holdout examples (fewer than {MIN_HOLDOUT}); calibration "
                      "compares its forget set with the base model's scores of it instead (a model that never saw "
                      "the data, nor its format: the stop then errs towards more forgetting)", stacklevel=2)
    vanilla_accuracy, vanilla_log_probs = (teacher_forced(vanilla, holdout, pad_id, batch_size, device)[:2]
                                           if enough else ((), ()))
    with base_weights(vanilla) as base:
        accuracy, log_probs, _ = teacher_forced(base, holdout if enough else forget, pad_id, batch_size, device)
    return NeverSeen(tuple(holdout) if enough else (), tuple(accuracy), tuple(log_probs), tuple(vanilla_accuracy),
                     tuple(vanilla_log_probs))


def calibration(model: nn.Module, forget: Sequence[Encoded], reference: NeverSeen, pad_id: int, batch_size: int,
                device) -> dict:
    """The forget set against its never-seen reference under ``model`` now: {"reference", "US", "US_reference",
    "US_vanilla", "US_base", "gap" (US - US_reference), "auc" (against the holdout under ``model``), "auc_vanilla"
    (against its scores under the vanilla model), "auc_base", "calibrated"} (without a holdout: the auc and
    vanilla entries None, US_reference = US_base)."""
    accuracy, log_probs, _ = teacher_forced(model, forget, pad_id, batch_size, device)
    us, us_base = 100.0 * (1 - mean(accuracy)), 100.0 * (1 - mean(reference.base_accuracy))
    auc_base = roc_auc(log_probs, reference.base_log_probs)
    auc = auc_vanilla = us_vanilla = None
    us_reference = us_base
    if reference.holdout:
        holdout_accuracy, holdout_log_probs, _ = teacher_forced(model, reference.holdout, pad_id, batch_size, device)
        auc, us_reference = roc_auc(log_probs, holdout_log_probs), 100.0 * (1 - mean(holdout_accuracy))
        auc_vanilla = roc_auc(log_probs, reference.vanilla_log_probs)
        us_vanilla = 100.0 * (1 - mean(reference.vanilla_accuracy))
    stops_on = (auc, auc_vanilla) if reference.holdout else (auc_base,)
    return {"reference": reference.kind, "US": us, "US_reference": us_reference, "US_vanilla": us_vanilla,
            "US_base": us_base, "gap": us - us_reference, "auc": auc, "auc_vanilla": auc_vanilla, "auc_base": auc_base,
            "calibrated": min(stops_on) <= CALIBRATED_AUC}
