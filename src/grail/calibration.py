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
- against the **base model** (``auc_base``): the same examples' scores under the model before any fine-tuning, fixed
  (without a holdout, with a warning: the forget examples' own scores under it). A model that never saw the data
  finds never-seen data of its kind at least this likely unless unlearning damaged that kind of data itself.

The forget set is **calibrated** once either AUC is at most 0.5. The first is the target; the second bounds it:
unlearning the forget set also makes the model forget what the forget set has in common with all data of its kind
(formats, style), which moves the holdout's scores under the model with the forget set's, so that alone it can
keep asking for more forgetting past a never-trained model's level (``docs/design.md``: with gradient ascent on the
built-in copyright domain, the holdout's US under the model rose from 77 to 95, above the base model's 82, and the
forget set's AUC against it stayed 1.00). Beside the AUCs: US on the forget set and on the reference under
the same model (``US_reference``), their gap, and the base model's US on the reference (``US_base``).
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
from grail.evaluation import teacher_forced
from grail.metrics import roc_auc
from grail.models import base_weights

MIN_HOLDOUT = 10
"""Fewest holdout examples calibration compares with (the AUC's null standard deviation is then at most 0.13);
with fewer, the base model's scores of the forget set are the reference."""

CALIBRATED_AUC = 0.5
"""The forget set is calibrated once its AUC against the never-seen reference is at most this: chance."""


@dataclass(frozen=True)
class NeverSeen:
    """A domain's never-seen reference (module docstring): its holdout items, scored under the model each time
    (empty when the holdout is too small), and the base model's fixed per-example scores of them (or, without a
    holdout, of the forget items)."""

    holdout: tuple[Encoded, ...]
    base_accuracy: tuple[float, ...]
    base_log_probs: tuple[float, ...]

    @property
    def kind(self) -> str:
        """``holdout`` (the holdout under the model) or ``base`` (the base model's scores only)."""
        return "holdout" if self.holdout else "base"


def never_seen(model: nn.Module, domain: str, forget: Sequence[Encoded], holdout: Sequence[Encoded], pad_id: int,
               batch_size: int, device) -> NeverSeen:
    """The domain's reference: its holdout if it has ``MIN_HOLDOUT`` examples, with the base model's scores of it;
    else (with a warning) the base model's scores of its forget examples alone."""
    enough = len(holdout) >= MIN_HOLDOUT
    if not enough:
        warnings.warn(f"domain {domain!r}: {len(holdout)} holdout examples (fewer than {MIN_HOLDOUT}); calibration "
                      "compares its forget set with the base model's scores of it instead (a model that never saw "
                      "the data, nor its format: the stop then errs towards more forgetting)", stacklevel=2)
    with base_weights(model) as base:
        accuracy, log_probs, _ = teacher_forced(base, holdout if enough else forget, pad_id, batch_size, device)
    return NeverSeen(tuple(holdout) if enough else (), tuple(accuracy), tuple(log_probs))


def calibration(model: nn.Module, forget: Sequence[Encoded], reference: NeverSeen, pad_id: int, batch_size: int,
                device) -> dict:
    """The forget set against its never-seen reference under ``model`` now: {"reference", "US", "US_reference",
    "US_base", "gap" (US - US_reference), "auc" (against the holdout under ``model``; None without one),
    "auc_base", "calibrated"}."""
    accuracy, log_probs, _ = teacher_forced(model, forget, pad_id, batch_size, device)
    us, us_base = 100.0 * (1 - mean(accuracy)), 100.0 * (1 - mean(reference.base_accuracy))
    auc_base = roc_auc(log_probs, reference.base_log_probs)
    auc, us_reference = None, us_base
    if reference.holdout:
        holdout_accuracy, holdout_log_probs, _ = teacher_forced(model, reference.holdout, pad_id, batch_size, device)
        auc, us_reference = roc_auc(log_probs, holdout_log_probs), 100.0 * (1 - mean(holdout_accuracy))
    return {"reference": reference.kind, "US": us, "US_reference": us_reference, "US_base": us_base,
            "gap": us - us_reference, "auc": auc, "auc_base": auc_base,
            "calibrated": min(a for a in (auc, auc_base) if a is not None) <= CALIBRATED_AUC}
