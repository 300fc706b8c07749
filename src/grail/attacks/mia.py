"""Membership inference: does the model still treat the forget set as data it was trained on?

Members are the forget examples (every model but the oracle saw them in stage 0), non-members the holdout
examples of the same kind (no model saw them). Each attack scores an example from the model's answer-token
log-probabilities; a higher score says "member". Scores of forget vs holdout give a ROC AUC (0.5: the attack
cannot tell them apart) and the true-positive rate at a low false-positive rate. The reference is the oracle,
the model that never saw the forget set: PrivLeak = (AUC_model - AUC_oracle) / AUC_oracle (MUSE), and the
forget quality is the KS test's p-value between the model's and the oracle's per-example forget losses (TOFU).

- LOSS (Yeom et al. 2018): the mean answer-token log-probability.
- zlib (Carlini et al. 2021): that mean divided by the zlib-compressed size of the answer text in bytes, so
  text that is simply easy (repetitive) does not pass for memorised.
- Min-K% (Shi et al. 2024): the mean of the lowest k % of the token log-probabilities.
- Min-K%++ (Zhang et al. 2025): the same over each token's log-probability standardised by the mean and standard
  deviation of the log-probability under the model's own next-token distribution at that position.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import ks_2samp
from torch import nn

from grail.batching import Encoded, answer_logits, batches, collate
from grail.models import eval_mode

MIA_SCORES = ("loss", "zlib", "min_k", "min_k_plus_plus")


@dataclass(frozen=True)
class TokenStatistics:
    """One example's answer tokens: log p(x_t), and the mean and standard deviation of log p(z) for z drawn from the
    model's next-token distribution at that position."""

    log_probs: list[float]
    mu: list[float]
    sigma: list[float]


def statistics_from_logits(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> list[TokenStatistics]:
    """Per row of [B, K, V] logits: the statistics of the answer positions (``mask``)."""
    log_p = torch.log_softmax(logits.float(), -1)
    token = log_p.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    p = log_p.exp()
    mu = (p * log_p).sum(-1)
    sigma = ((p * log_p.square()).sum(-1) - mu.square()).clamp_min(1e-12).sqrt()
    return [TokenStatistics(token[r][mask[r]].tolist(), mu[r][mask[r]].tolist(), sigma[r][mask[r]].tolist())
            for r in range(logits.shape[0])]


@torch.no_grad()
def token_statistics(model: nn.Module, items: Sequence[Encoded], pad_id: int, batch_size: int,
                     device: torch.device | str) -> list[TokenStatistics]:
    out: list[TokenStatistics | None] = [None] * len(items)
    with eval_mode(model):
        for index in batches(items, batch_size):
            batch = collate([items[i] for i in index], pad_id).to(device)
            for i, stats in zip(index, statistics_from_logits(answer_logits(model, batch), batch.targets,
                                                              batch.answer_mask)):
                out[i] = stats
    return out  # type: ignore[return-value]


def _lowest_mean(values: Sequence[float], k: float) -> float:
    n = max(1, int(len(values) * k))
    return sum(sorted(values)[:n]) / n


def mia_scores(stats: TokenStatistics, text: str, k: float) -> dict[str, float]:
    """Every attack's membership score of one example (higher: more likely trained on)."""
    mean_log_prob = sum(stats.log_probs) / len(stats.log_probs)
    standardised = [(lp - m) / s for lp, m, s in zip(stats.log_probs, stats.mu, stats.sigma)]
    return {
        "loss": mean_log_prob,
        "zlib": mean_log_prob / len(zlib.compress(text.encode("utf-8"))),
        "min_k": _lowest_mean(stats.log_probs, k),
        "min_k_plus_plus": _lowest_mean(standardised, k),
    }


def tpr_at_fpr(members: Sequence[float], non_members: Sequence[float], fpr: float) -> float:
    """The share of members scored above the highest threshold that lets at most ``fpr`` of the non-members
    through (a strict threshold: a non-member tied with it is not a false positive)."""
    ranked = sorted(non_members, reverse=True)
    allowed = math.floor(fpr * len(ranked))
    threshold = ranked[allowed] if allowed < len(ranked) else -math.inf
    return sum(s > threshold for s in members) / len(members)


def bootstrap_interval(members: Sequence[float], non_members: Sequence[float],
                       statistic: Callable[[Sequence[float], Sequence[float]], float], resamples: int,
                       seed: int) -> list[float]:
    """The 95 % percentile interval of ``statistic`` over resamples (with replacement) of both groups."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(members), np.asarray(non_members)
    values = [statistic(rng.choice(a, len(a)), rng.choice(b, len(b))) for _ in range(resamples)]
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def privleak(auc_model: float, auc_oracle: float) -> float:
    """MUSE's PrivLeak: the relative gap of the model's AUC to the oracle's (0: as private as exact unlearning;
    > 0: the forget set still looks trained on)."""
    return (auc_model - auc_oracle) / auc_oracle


def forget_quality(model_losses: Sequence[float], oracle_losses: Sequence[float]) -> float:
    """TOFU's forget quality: the two-sample KS test's p-value (high: the model's forget losses could be the
    oracle's)."""
    return float(ks_2samp(model_losses, oracle_losses).pvalue)
