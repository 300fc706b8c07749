"""The paper's metrics (IV-C), computed from model outputs on answer tokens only.

- token accuracy: per example, the share of answer tokens the model predicts (argmax, teacher-forced);
  averaged over examples. US = 100 - acc(forget), RS = acc(retain), HS = their harmonic mean.
- PPL = exp(- mean over examples of each example's mean answer-token log-probability).
- ROUGE-L F1 between the teacher-forced argmax decode (or a greedy generation) and the reference answer.
- leak rate: the share of examples whose span appears in the greedy generation.
- ROC AUC of two groups of per-example scores: the membership-inference attacks' statistic, and calibration's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import rankdata


def token_accuracy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-example share of answer tokens predicted right, [B], in [0, 1]."""
    hits = (logits.argmax(-1) == targets) & mask
    return hits.sum(1).float() / mask.sum(1).float()


def mean_log_prob(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-example mean log-probability of the answer tokens, [B]."""
    log_probs = torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (log_probs * mask).sum(1) / mask.sum(1)


def perplexity(mean_log_probs: Sequence[float]) -> float:
    """exp(- mean of per-example mean log-probabilities); inf where it overflows (collapsed models)."""
    value = -sum(mean_log_probs) / len(mean_log_probs)
    return math.exp(value) if value < 700 else math.inf


def harmonic_success(us: float, rs: float) -> float:
    return 0.0 if us + rs == 0 else 2 * us * rs / (us + rs)


_scorer = None


def rouge_l(prediction: str, reference: str, measure: str = "fmeasure") -> float:
    """ROUGE-L in % (rouge-score's implementation and tokenizer): F1, or ``measure`` "recall" / "precision"."""
    global _scorer
    if _scorer is None:
        from rouge_score import rouge_scorer

        _scorer = rouge_scorer.RougeScorer(["rougeL"])
    return 100.0 * getattr(_scorer.score(reference, prediction)["rougeL"], measure)


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def contains_span(generation: str, span: str) -> bool:
    """Whether the span appears in the generation (case, runs of white space and the span's own leading and
    trailing punctuation ignored: a whole answer "Paris." leaks in "It is Paris")."""
    core = _normalize(span).strip(".,;:!?\"' ")
    return (core or _normalize(span)) in _normalize(generation)


def roc_auc(members: Sequence[float], non_members: Sequence[float]) -> float:
    """P(a member scores above a non-member), ties counted half (the Mann-Whitney U statistic, normalised)."""
    ranks = rankdata(np.concatenate([members, non_members]))
    n, m = len(members), len(non_members)
    return float((ranks[:n].sum() - n * (n + 1) / 2) / (n * m))
