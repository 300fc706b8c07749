"""Stage 3's two objectives, as small interchangeable pieces (GRAIL and the paper's baselines share stage 3).

Forget objectives (minimised, then weighted by ``forget_weight``):
- ``ascent``: gradient ascent, -CE of the true answer (GRAIL, GA, GA+GD, GA+KL);
- ``random_labels``: descent on the prompt with random answer tokens (Fine-tuning with Random Labels);
- ``adversarial``: descent on the prompt with, at each answer position, the vanilla model's most likely token
  other than the true one (Unlearning with Adversarial Samples);
- ``npo``: Negative Preference Optimization, -(2/beta) log sigmoid(-beta (log p - log p_ref)) of the answer;
- ``to_base``: ascent on the answer tokens the model still finds likelier than the base model (before any
  fine-tuning: a model that never saw the data) did, plus descent on the KL from the base model's next-token
  distributions to the current ones on the forget answers: each forget token brought down no lower than a
  never-trained model's level (a domain at its target is then held where it met it, ``unlearn.py``), but for the
  end-of-answer token, which every training example ends with: it keeps the vanilla model's distribution.
Retain objectives (weighted by ``retain_weight``): ``descent`` (CE) or ``kl`` (KL from the vanilla model's
next-token distributions to the current ones, on the retain answers).
General replay (stage 0 and, with ``general_weight``, stage 3): ``topk_kl_loss``, KL from the base model's
next-token distributions (their top k and the rest's mass, so a 49k vocabulary costs k numbers a token) to
the current ones: the model may learn its facts but must keep predicting general text as it did.

What an objective needs from the vanilla model (relabelled answers, reference log-probabilities) is computed
once, before the first update, and kept as tensors: the reference never changes. Each objective is registered
below (``FORGET_OBJECTIVES``, ``RETAIN_OBJECTIVES``) as that ``prepare`` step and its ``loss``: a new objective
is one entry there and its name in the config's choices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from grail.batching import Batch, Encoded, answer_logits, batches, collate, example_losses, forward
from grail.config import PREDICTED_STOPS, ConfigError, UnlearnConfig
from grail.models import base_weights


def _token_ce(model: nn.Module, items: Sequence[Encoded], pad_id: int,
              device) -> tuple[torch.Tensor, Batch, torch.Tensor]:
    """Per-token cross-entropy [B, K] (with autograd), the batch, and the logits."""
    batch = collate(items, pad_id).to(device)
    logits = answer_logits(model, batch)
    return F.cross_entropy(logits.transpose(1, 2), batch.targets, reduction="none"), batch, logits


@torch.no_grad()
def relabel(model: nn.Module, items: Sequence[Encoded], how: str, vocab_size: int, pad_id: int, device,
            generator: torch.Generator) -> list[Encoded]:
    """Forget examples with new answers: uniformly random tokens, or the model's best wrong token per position."""
    if how == "random_labels":
        return [Encoded(x.prompt_ids, tuple(torch.randint(0, vocab_size, (len(x.answer_ids),),
                                                          generator=generator).tolist())) for x in items]
    relabelled = list(items)
    for index in batches(items, 16):
        batch = collate([items[i] for i in index], pad_id).to(device)
        logits = answer_logits(model, batch)
        logits.scatter_(-1, batch.targets.unsqueeze(-1), -math.inf)  # the true token is not a candidate
        best_wrong = logits.argmax(-1)
        for row, i in enumerate(index):
            relabelled[i] = Encoded(items[i].prompt_ids, tuple(best_wrong[row][batch.answer_mask[row]].tolist()))
    return relabelled


@torch.no_grad()
def reference_log_probs(model: nn.Module, items: Sequence[Encoded], pad_id: int, device,
                        full: bool) -> dict[Encoded, torch.Tensor]:
    """Per example, the model's log-probability of each answer token, [answer length] (``full=False``: NPO's
    reference, the ascent's floor), or the whole next-token log-distribution at each answer position,
    [answer length, V] (``full=True``, for KL)."""
    out: dict[Encoded, torch.Tensor] = {}
    for index in batches(items, 16):
        batch = collate([items[i] for i in index], pad_id).to(device)
        log_probs = torch.log_softmax(answer_logits(model, batch), -1)
        for row, i in enumerate(index):
            answer = log_probs[row][batch.answer_mask[row]]
            out[items[i]] = answer.cpu() if full else answer.gather(
                -1, batch.targets[row][batch.answer_mask[row]].unsqueeze(-1)).squeeze(-1).cpu()
    return out


def _per_token(batch: Batch, values: dict[Encoded, torch.Tensor], items: Sequence[Encoded],
               fill: float) -> torch.Tensor:
    """Per-token values of each example ([its answer length]) laid out like the batch's answer tokens, [B, K]."""
    out = torch.full(batch.targets.shape, fill, device=batch.targets.device)
    out[batch.answer_mask] = torch.cat([values[x] for x in items]).to(out.device)
    return out


def ascent_loss(model: nn.Module, items: Sequence[Encoded], pad_id: int, device, cap: float,
                only_predicted: bool, floor: dict[Encoded, torch.Tensor] | None = None,
                margin: float = 0.0) -> tuple[torch.Tensor, float]:
    """-mean CE of the answer tokens still known: CE below ``cap``; if asked, still predicted (the argmax, or
    within ``margin`` nats of the best other token); given a ``floor`` (per example, each answer token's
    log-probability under a model that never saw it), still more likely than there."""
    ce, batch, logits = _token_ce(model, items, pad_id, device)
    known = ascendable(ce.detach(), logits.detach(), batch, cap, only_predicted,
                       None if floor is None else _per_token(batch, floor, items, math.inf), margin)
    tokens = batch.answer_mask.sum(1)
    logged = ((ce.detach() * batch.answer_mask).sum(1) / tokens).mean().item()
    return -((ce * known).sum(1) / tokens).mean(), logged


def ascendable(ce: torch.Tensor, logits: torch.Tensor, batch: Batch, cap: float, only_predicted: bool,
               floor: torch.Tensor | None, margin: float = 0.0) -> torch.Tensor:
    """Which answer tokens [B, K] ascent still pushes (see ``ascent_loss``)."""
    known = batch.answer_mask & (ce < cap)
    if only_predicted and margin:
        target = logits.gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
        best_other = logits.scatter(-1, batch.targets.unsqueeze(-1), -math.inf).amax(-1)
        known &= target > best_other - margin
    elif only_predicted:
        known &= logits.argmax(-1) == batch.targets
    if floor is not None:  # with a little slack: padding changes a log-probability in its last digits
        known &= -ce > floor + 1e-3
    return known


@torch.no_grad()
def ascendable_share(model: nn.Module, items: Sequence[Encoded], pad_id: int, device, cap: float,
                     only_predicted: bool, floor: dict[Encoded, torch.Tensor] | None, margin: float = 0.0) -> float:
    """The share (%) of the items' answer tokens that ``ascent_loss`` would still push."""
    pushed = total = 0
    for index in batches(items, 16):
        chunk = [items[i] for i in index]
        ce, batch, logits = _token_ce(model, chunk, pad_id, device)
        known = ascendable(ce, logits, batch, cap, only_predicted,
                           None if floor is None else _per_token(batch, floor, chunk, math.inf), margin)
        pushed, total = pushed + known.sum().item(), total + batch.answer_mask.sum().item()
    return 100.0 * pushed / max(total, 1)


def descent_loss(model: nn.Module, items: Sequence[Encoded], pad_id: int, device) -> tuple[torch.Tensor, float]:
    loss = example_losses(model, items, pad_id, device).mean()
    return loss, loss.item()


def npo_loss(model: nn.Module, items: Sequence[Encoded], pad_id: int, device, reference: dict[Encoded, torch.Tensor],
             beta: float) -> tuple[torch.Tensor, float]:
    ce, batch, _ = _token_ce(model, items, pad_id, device)
    log_p = -(ce * batch.answer_mask).sum(1)
    log_ref = torch.stack([reference[x].sum() for x in items]).to(log_p.device)
    loss = -(2.0 / beta) * F.logsigmoid(-beta * (log_p - log_ref)).mean()
    return loss, ((ce.detach() * batch.answer_mask).sum(1) / batch.answer_mask.sum(1)).mean().item()


def kl_loss(model: nn.Module, items: Sequence[Encoded], pad_id: int, device,
            reference: dict[Encoded, torch.Tensor]) -> tuple[torch.Tensor, float]:
    """Mean over answer tokens of KL(p_vanilla || p_current)."""
    batch = collate(items, pad_id).to(device)
    log_q = torch.log_softmax(answer_logits(model, batch), -1)[batch.answer_mask]  # [tokens, V]
    log_p = torch.cat([reference[x] for x in items]).to(log_q.device)
    loss = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    return loss, loss.item()


TopK = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Per answer token of one example: the reference's top-k token ids [T, k], their log-probabilities [T, k] and
the log of the probability mass outside them [T]."""


def _log_rest(top_log_probs: torch.Tensor) -> torch.Tensor:
    """log(1 - sum of the top-k probabilities), kept finite where they hold (almost) all the mass."""
    return torch.log1p(-top_log_probs.exp().sum(-1).clamp(max=1 - 1e-6))


@torch.no_grad()
def topk_reference(model: nn.Module, items: Sequence[Encoded], pad_id: int, device, k: int = 32) -> dict[Encoded, TopK]:
    """The model's (call it with the base weights) top-k next-token log-distributions on each answer token."""
    out: dict[Encoded, TopK] = {}
    for index in batches(items, 16):
        batch = collate([items[i] for i in index], pad_id).to(device)
        log_probs = torch.log_softmax(answer_logits(model, batch), -1)
        top, ids = log_probs.topk(min(k, log_probs.shape[-1]), dim=-1)
        for row, i in enumerate(index):
            mask = batch.answer_mask[row]
            out[items[i]] = (ids[row][mask].cpu(), top[row][mask].cpu(), _log_rest(top[row][mask]).cpu())
    return out


def topk_kl_loss(model: nn.Module, items: Sequence[Encoded], pad_id: int, device,
                 reference: dict[Encoded, TopK]) -> tuple[torch.Tensor, float]:
    """Mean over examples of the mean over their answer tokens of KL(p_ref || p_current), over the reference's
    top k tokens and the rest (per example first, like the CE losses, so a batch split over processes sums to
    the same loss)."""
    batch = collate(items, pad_id).to(device)
    log_q = torch.log_softmax(answer_logits(model, batch), -1)[batch.answer_mask]  # [tokens, V]
    ids, log_p, log_p_rest = (torch.cat([reference[x][j] for x in items]).to(log_q.device) for j in range(3))
    log_q_top = log_q.gather(-1, ids)
    log_q_rest = _log_rest(log_q_top)
    kl = (log_p.exp() * (log_p - log_q_top)).sum(-1) + log_p_rest.exp() * (log_p_rest - log_q_rest)
    per_example = torch.stack([part.mean() for part in kl.split(batch.answer_mask.sum(1).tolist())])
    loss = per_example.mean()
    return loss, loss.item()


# ---- the subject anchor --------------------------------------------------------------------------------------
Anchor = dict[Encoded, torch.Tensor]
"""Per forget example: the vanilla model's hidden states at every layer on its prompt's positions but the last,
[layers, prompt length - 1, hidden]."""


def _prompt_states(model: nn.Module, items: Sequence[Encoded], pad_id: int, device) -> list[torch.Tensor]:
    """Each item's hidden states (layers 1..L) on its prompt positions but the last, [L, P - 1, H] (with autograd).
    The prompt alone is run: a causal model's states there do not depend on the answer."""
    batch = collate([Encoded(x.prompt_ids[:-1], x.prompt_ids[-1:]) for x in items], pad_id).to(device)
    out = forward(model, batch, output_hidden_states=True, logits_to_keep=1)
    states = torch.stack(out.hidden_states[1:], 1)  # [B, L, T, H]
    length = batch.input_ids.shape[1]
    return [states[row, :, length - len(x.prompt_ids):length - 1].float() for row, x in enumerate(items)]


ANCHOR_REFERENCE_LIMIT_BYTES = 8 * 2**30
"""The most memory the anchor's reference states may take (float32, every layer, every prompt position but the
last, of every forget example): beyond it stage 3 refuses to start rather than run out of memory."""


@torch.no_grad()
def anchor_reference(model: nn.Module, items: Sequence[Encoded], pad_id: int, device) -> Anchor:
    """The model's (call it with the vanilla weights) prompt states of each forget example (``Anchor``)."""
    size = sum(len(x.prompt_ids) - 1 for x in items) * model.config.num_hidden_layers * model.config.hidden_size * 4
    if size > ANCHOR_REFERENCE_LIMIT_BYTES:
        raise ConfigError(
            f"unlearn.anchor_weight: the anchor keeps the vanilla model's hidden states on every forget prompt: "
            f"{len(items)} forget examples would take {size / 2**30:.1f} GiB (limit "
            f"{ANCHOR_REFERENCE_LIMIT_BYTES / 2**30:.0f} GiB); use unlearn.anchor_weight: 0, or fewer or shorter "
            f"forget prompts")
    out: Anchor = {}
    for index in batches(items, 16):
        chunk = [items[i] for i in index]
        out.update({x: s.cpu() for x, s in zip(chunk, _prompt_states(model, chunk, pad_id, device))})
    return out


def anchor_loss(model: nn.Module, items: Sequence[Encoded], pad_id: int, device,
                reference: Anchor) -> tuple[torch.Tensor, float]:
    """Mean over examples of the mean over layers and prompt positions (all but the last) of the squared distance of
    the hidden state to the vanilla model's, relative to the vanilla state's squared norm: who or what a forget
    question is about stays represented as before; only what follows the question is unlearned."""
    per_example = []
    for x, states in zip(items, _prompt_states(model, items, pad_id, device)):
        ref = reference[x].to(states.device)
        if ref.shape[1]:  # a one-token prompt has no position but its last
            per_example.append(((states - ref).pow(2).sum(-1) / ref.pow(2).sum(-1).clamp(min=1e-6)).mean())
    if not per_example:
        return torch.zeros((), device=device), math.nan
    loss = torch.stack(per_example).mean()
    return loss, loss.item()


# ---- the registry --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setup:
    """What every objective may use besides the model and the examples."""

    config: UnlearnConfig
    pad_id: int
    device: Any
    seed: int
    vocab_size: int
    oracle_log_probs: Callable[[list[Encoded]], dict[Encoded, torch.Tensor]] | None = None
    """Per example, each answer token's log-probability under the oracle (``ascent_stop: oracle``)."""
    eos_id: int | None = None
    """The token every encoded answer ends with (``batching.encode``): ``to_base`` leaves it as it was."""


@dataclass(frozen=True)
class Objective:
    """``prepare(model, items, setup)``: what the loss needs from the vanilla model, called once before the first
    update (model in eval mode); ``loss(model, items, setup, prepared)``: (loss to minimise, number to log);
    ``holds``: a domain that has met its target is held where it met it while other domains go on unlearning
    (their unlearning moves it too): stage 3 then keeps its forget answers' next-token distributions at those of
    that moment (``topk_kl_loss``); ``left_to_ascend``: how much of a domain is left to forget."""

    prepare: Callable[[nn.Module, list[Encoded], Setup], Any]
    loss: Callable[[nn.Module, list[Encoded], Setup, Any], tuple[torch.Tensor, float]]
    holds: bool = False
    left_to_ascend: Callable[[nn.Module, list[Encoded], Setup, Any], float] = lambda model, items, s, prep: 100.0
    """The share (%) of the items' answer tokens the loss still pushes (a domain at 0 is done); an objective
    without such a stop always has all of them left."""


@dataclass(frozen=True)
class AscentStop:
    """Which forget tokens ascent still pushes (``UnlearnConfig.ascent_stop``)."""

    cap: float
    only_predicted: bool
    floor: dict[Encoded, torch.Tensor] | None
    margin: float = 0.0


def needs_oracle_log_probs(config: UnlearnConfig) -> bool:
    """Whether the forget objective asks for the oracle's log-probabilities (``Setup.oracle_log_probs``): ascent
    floored at the oracle (``ascent_stop: oracle``). Only then is the oracle trained for stage 3."""
    return config.forget_objective == "ascent" and config.ascent_stop == "oracle"


def _prepare_ascent(model: nn.Module, items: list[Encoded], setup: Setup) -> AscentStop:
    stop = setup.config.ascent_stop
    floor = None  # per forget token, its log-probability under a model that never saw it: ascent goes no lower
    if stop == "reference":
        with base_weights(model) as base:
            floor = reference_log_probs(base, items, setup.pad_id, setup.device, full=False)
    if stop == "oracle":
        if setup.oracle_log_probs is None:
            raise ValueError("unlearn.ascent_stop 'oracle' needs the oracle's log-probabilities "
                             "(Setup.oracle_log_probs)")
        floor = setup.oracle_log_probs(items)
    # against the oracle, the floor alone decides: a token the oracle predicts too is not pushed below it
    return AscentStop(math.inf if stop == "never" else math.log(setup.vocab_size),
                      stop in PREDICTED_STOPS, floor, setup.config.ascent_margin)


def _relabelling(how: str) -> Callable[[nn.Module, list[Encoded], Setup], dict[Encoded, Encoded]]:
    def prepare(model: nn.Module, items: list[Encoded], setup: Setup) -> dict[Encoded, Encoded]:
        generator = torch.Generator().manual_seed(setup.seed)
        return dict(zip(items, relabel(model, items, how, setup.vocab_size, setup.pad_id, setup.device, generator)))
    return prepare


@dataclass(frozen=True)
class BaseReference:
    """The base model's view of the forget answers (``to_base``): per token, its log-probability of the answer
    token and its top-k next-token distribution."""

    log_probs: dict[Encoded, torch.Tensor]
    distributions: dict[Encoded, TopK]


def _base_reference(model: nn.Module, items: list[Encoded], setup: Setup) -> BaseReference:
    """The base model's view of each forget answer token, but of the end-of-answer token: there the reference is
    the vanilla model's own (no floor: never ascended; its distribution held). Where an answer ends is the format
    every training example taught, retain sets included, not the example: the base model, which never learnt the
    format, finds it very unlikely, and pushing it there would count as forgetting while the content stays known."""
    with base_weights(model) as base:
        floor = reference_log_probs(base, items, setup.pad_id, setup.device, full=False)
        distributions = topk_reference(base, items, setup.pad_id, setup.device)
    ended = [x for x in items if setup.eos_id is not None and x.answer_ids[-1] == setup.eos_id]
    for x, (ids, log_probs, rest) in topk_reference(model, ended, setup.pad_id, setup.device).items():
        floor[x] = torch.cat([floor[x][:-1], torch.tensor([math.inf])])
        distributions[x] = tuple(torch.cat([base_part[:-1], own[-1:]])
                                 for base_part, own in zip(distributions[x], (ids, log_probs, rest)))
    return BaseReference(floor, distributions)


def to_base_loss(model: nn.Module, items: Sequence[Encoded], pad_id: int, device,
                 reference: BaseReference) -> tuple[torch.Tensor, float]:
    """Ascent on the answer tokens the model still finds likelier than the base model did, plus the KL from the base
    model's next-token distributions to the current ones at every answer position: each forget token brought down
    to a never-trained model's level, and what surrounds it held there."""
    ascent, logged = ascent_loss(model, items, pad_id, device, math.inf, False, reference.log_probs)
    return ascent + topk_kl_loss(model, items, pad_id, device, reference.distributions)[0], logged


def _nothing(model: nn.Module, items: list[Encoded], setup: Setup) -> None:
    return None


KL_REFERENCE_LIMIT_BYTES = 8 * 2**30
"""The most memory the ``kl`` retain objective may take for the vanilla model's distributions (float32, one full
vocabulary per retain answer token): beyond it stage 3 refuses to start rather than run out of memory."""


def _kl_reference(model: nn.Module, items: list[Encoded], setup: Setup) -> dict[Encoded, torch.Tensor]:
    size = sum(len(x.answer_ids) for x in items) * setup.vocab_size * 4
    if size > KL_REFERENCE_LIMIT_BYTES:
        raise ConfigError(
            f"unlearn.retain_objective: kl keeps the vanilla model's next-token distribution at every retain answer "
            f"token: {len(items)} retain examples would take {size / 2**30:.1f} GiB (limit "
            f"{KL_REFERENCE_LIMIT_BYTES / 2**30:.0f} GiB); use unlearn.pools: balanced (retain cut to the forget "
            f"count), fewer retain examples, or unlearn.retain_objective: descent")
    return reference_log_probs(model, items, setup.pad_id, setup.device, full=True)


FORGET_OBJECTIVES: dict[str, Objective] = {
    "ascent": Objective(_prepare_ascent, lambda model, items, s, stop: ascent_loss(
        model, items, s.pad_id, s.device, stop.cap, stop.only_predicted, stop.floor, stop.margin),
        left_to_ascend=lambda model, items, s, stop: ascendable_share(
            model, items, s.pad_id, s.device, stop.cap, stop.only_predicted, stop.floor, stop.margin)),
    "random_labels": Objective(_relabelling("random_labels"), lambda model, items, s, new: descent_loss(
        model, [new[x] for x in items], s.pad_id, s.device)),
    "adversarial": Objective(_relabelling("adversarial"), lambda model, items, s, new: descent_loss(
        model, [new[x] for x in items], s.pad_id, s.device)),
    "to_base": Objective(_base_reference, lambda model, items, s, ref: to_base_loss(
        model, items, s.pad_id, s.device, ref), holds=True),
    "npo": Objective(lambda model, items, s: reference_log_probs(model, items, s.pad_id, s.device, full=False),
                     lambda model, items, s, ref: npo_loss(model, items, s.pad_id, s.device, ref, s.config.npo_beta)),
}
RETAIN_OBJECTIVES: dict[str, Objective] = {
    "descent": Objective(_nothing, lambda model, items, s, _: descent_loss(model, items, s.pad_id, s.device)),
    "kl": Objective(_kl_reference, lambda model, items, s, ref: kl_loss(model, items, s.pad_id, s.device, ref)),
}
