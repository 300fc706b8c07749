"""Stage 3: unlearning (Algorithm 1). Ascent on forget examples, descent on retain examples, F frozen exactly.

Each step (``unlearn``, top to bottom: batch, loss, masked step, stop checks) takes half its batch from the forget
examples and half from the retain examples of all domains, and makes the paper's update

    θ ← θ − η · AdamW(∇L ⊙ ¬F),   L = forget_weight · L_forget + retain_weight · CE(retain)
                                      [+ general_weight · KL(general) + anchor_weight · anchor]

L_forget is the paper's gradient ascent (``forget_objective: ascent``) or by default ``to_base``: ascent on the
forget tokens the model still finds likelier than the base model did, plus the KL to the base model's next-token
distributions on the forget answers (no forget token pushed below a never-trained model's level; the end-of-answer
token, the format, left as the vanilla model has it); the baselines
swap in others (``objectives.py``). The optional terms, beyond the paper: general replay (the base model's own
answers to everyday instructions) kept at the base model's distributions, general ability as a further retain
set; and the anchor, the forget prompts' hidden states held at the vanilla model's (what a forget question is
about stays represented as before).

``pools: all`` trains on every example, the retain half drawn from all retain examples in a new order every
epoch; ``balanced`` (the reference code) first truncates each domain's forget and retain sets to the smaller count.
Ascent has no natural end; when to stop is ``stops.py``: per domain at its forgetting target (then held there),
within the utility budget, before retention diverges.

Masking policies:
- ``paper``: every update is multiplied by not-F.
- ``per-objective`` (authors' code): OP-UR is zeroed in the forget gradient, OP-RR in the retain gradient.

Frozen means bit-identical. Zeroing gradients is not enough with AdamW: its decoupled weight decay moves every
entry. So the optimizer runs without weight decay and the decay is applied here, masked; an entry whose
gradient is always zero keeps zero Adam moments, so Adam's update there is exactly zero too.

Several processes split every batch (``distributed``). The model may also be sharded by FSDP2
(``grail.sharding.shard_model``; its parameters are then DTensors): the masks are cut to each process's shards,
every masked operation acts on the local shards, and FSDP2's backward has summed the gradients already.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

import torch
from torch import nn
from tqdm.auto import tqdm

from grail import distributed, sharding
from grail.batching import Encoded
from grail.config import UnlearnConfig
from grail.models import eval_mode, trainable_parameters
from grail.stages import objectives
from grail.stages.stops import Divergence, TargetStop, UtilityBudget, Weights, copy_weights
from grail.stages.targets import forget_target
from grail.training import Checkpoint, run_epochs


@dataclass
class UpdateMasks:
    """Per trainable tensor: which entries each objective's gradient may move (True = may move)."""

    forget: dict[str, torch.Tensor]
    retain: dict[str, torch.Tensor]
    per_objective: bool = False
    """False (``paper``): one mask, not-F, on the whole update. True (``per-objective``): each objective's
    gradient gets its own mask before the two are summed."""

    @classmethod
    def for_policy(cls, masks: dict[str, dict[str, torch.Tensor]] | None, policy: str,
                   use_op_ur: bool = True, use_op_rr: bool = True) -> UpdateMasks | None:
        """``masks`` as stage 2 returns them; None (no masks) lets everything move (plain GA + GD)."""
        if masks is None:
            return None
        if policy == "paper":
            keep = {name: ~frozen for name, frozen in masks["frozen"].items()}
            return cls(keep, keep)
        none = {name: torch.zeros_like(m) for name, m in masks["frozen"].items()}
        op_ur = masks["op_ur"] if use_op_ur else none
        op_rr = masks["op_rr"] if use_op_rr else none
        return cls({n: ~m for n, m in op_ur.items()}, {n: ~m for n, m in op_rr.items()}, per_objective=True)

    def on(self, params: dict[str, nn.Parameter]) -> UpdateMasks:
        """The masks on each parameter's device (masks load on the CPU; a GPU's parameters cannot take them); for
        a sharded model (FSDP2, ``grail.sharding``), each cut to this process's shard of its parameter."""
        forget = sharding.shard_masks(self.forget, params)
        retain = forget if self.retain is self.forget else sharding.shard_masks(self.retain, params)  # ``paper``: one
        return UpdateMasks(forget, retain, self.per_objective)

    def movable(self) -> dict[str, torch.Tensor]:
        """Entries some objective may move."""
        return {name: self.forget[name] | self.retain[name] for name in self.forget}

    def never_moving(self) -> dict[str, torch.Tensor]:
        """Entries no objective may move: these stay bit-identical (F under ``paper``)."""
        return {name: ~movable for name, movable in self.movable().items()}


def masked_gradients(params: dict[str, nn.Parameter], forget_loss: torch.Tensor, retain_loss: torch.Tensor,
                     masks: UpdateMasks | None) -> None:
    """Each parameter's ``.grad`` = the gradient of forget_loss + retain_loss (both weighted already) ⊙ its mask:
    one backward and not-F under ``paper``; under ``per-objective`` each loss's gradient masked on its own. On a
    sharded model the masks are the shards' (``UpdateMasks.on``) and apply to the local shards of the gradients."""
    if masks is None or not masks.per_objective:
        loss = forget_loss + retain_loss
        if loss.requires_grad:  # a process with no examples in this step contributes nothing
            loss.backward()
        if masks is not None:
            for name, param in params.items():
                if param.grad is not None:  # masked_fill: a NaN or inf is zeroed too
                    sharding.local(param.grad).masked_fill_(~masks.forget[name], 0.0)
        return
    for loss, keep in ((forget_loss, masks.forget), (retain_loss, masks.retain)):
        if not loss.requires_grad:
            continue
        for (name, param), grad in zip(params.items(), _gradients(params, loss)):
            if grad is not None:
                grad = grad.clone()  # autograd may hand one tensor to several parameters
                sharding.local(grad).masked_fill_(~keep[name], 0.0)
                param.grad = grad if param.grad is None else param.grad + grad


def _gradients(params: dict[str, nn.Parameter], loss: torch.Tensor) -> list[torch.Tensor | None]:
    """d loss / d parameter, each (None where the loss does not reach it); ``.grad`` is left as it was. A sharded
    model's gradients come only from a backward (FSDP2 reduce-scatters them into ``.grad``)."""
    if not sharding.is_sharded(params.values()):
        return list(torch.autograd.grad(loss, list(params.values()), allow_unused=True))
    kept = [param.grad for param in params.values()]
    for param in params.values():
        param.grad = None
    loss.backward()
    grads = [param.grad for param in params.values()]
    for param, grad in zip(params.values(), kept):
        param.grad = grad
    return grads


def masked_update(params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer, masks: UpdateMasks | None,
                  config: UnlearnConfig) -> None:
    """θ ← θ − η·AdamW(∇L ⊙ ¬F), then decay θ ⊙ ¬F: summed over processes, clipped, decayed only where an
    objective may move (decoupled decay would move frozen entries too), stepped; gradients cleared. A sharded
    model's gradients are summed already (FSDP2's backward); its clipping takes the norm over all shards."""
    if not sharding.is_sharded(params.values()):
        distributed.sum_gradients(params.values())  # masks are elementwise: summing after masking is the same
    if config.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(list(params.values()), config.max_grad_norm)
    if config.weight_decay:
        factor = optimizer.param_groups[0]["lr"] * config.weight_decay  # the step size now (budget_backoff halves it)
        movable = None if masks is None else masks.movable()
        with torch.no_grad():
            for name, param in params.items():
                param = sharding.local(param)  # masks of a sharded model are the local shards'
                if movable is None:
                    param.mul_(1 - factor)
                else:
                    param.sub_(param * movable[name], alpha=factor)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def training_pools(forget: dict[str, list[Encoded]], retain: dict[str, list[Encoded]], seed: int,
                   pools: str) -> tuple[dict[str, list[Encoded]], list[Encoded]]:
    """The examples stage 3 trains on: (forget by domain, retain of all domains). ``balanced``: each domain's
    forget and retain sets truncated to the smaller size (a random subset of the larger); ``all``: every one."""
    rng = random.Random(seed)
    forget_pools, retain_pool = {}, []
    for domain in forget:
        n_forget = n_retain = min(len(forget[domain]), len(retain[domain]))
        if pools == "all":
            n_forget, n_retain = len(forget[domain]), len(retain[domain])
        forget_pools[domain] = rng.sample(forget[domain], n_forget)
        retain_pool += rng.sample(retain[domain], n_retain)
    return forget_pools, retain_pool


@dataclass
class StepBatch:
    """One step's examples: forget (ascended), retain (descended), general replay, and forget examples of domains
    held at their target."""

    forget: list[Encoded]
    retain: list[Encoded]
    general: list[Encoded] = field(default_factory=list)
    hold: list[Encoded] = field(default_factory=list)


class UnlearningLoss:
    """The loss of one step, split into the part the forget mask applies to and the part the retain mask does:

        forget part = forget_weight * (L_forget + KL to the held domains' distributions)
        retain part = retain_weight * L_retain + general_weight * KL(general) + anchor_weight * anchor

    What each term needs from the vanilla model (reference log-probabilities, relabelled answers, the anchor's
    states) is computed here, before the first update."""

    def __init__(self, model: nn.Module, config: UnlearnConfig, setup: objectives.Setup,
                 forget_pools: dict[str, list[Encoded]], retain_pool: list[Encoded],
                 general: dict[Encoded, objectives.TopK] | None, held: Callable[[], dict]) -> None:
        self.model, self.config, self.setup, self.forget_pools = model, config, setup, forget_pools
        self.general, self.held = general, held  # ``held()``: per held domain, its distributions (see ``hold``)
        self.sharded = sharding.is_sharded(model.parameters())  # every process in every forward (``share``)
        self.forget_objective = objectives.FORGET_OBJECTIVES[config.forget_objective]
        self.retain_objective = objectives.RETAIN_OBJECTIVES[config.retain_objective]
        every_forget = [x for xs in forget_pools.values() for x in xs]
        with eval_mode(model):
            self.forget_prepared = self.forget_objective.prepare(model, every_forget, setup)
            self.retain_prepared = self.retain_objective.prepare(model, retain_pool, setup)
            self.anchor = objectives.anchor_reference(model, every_forget, setup.pad_id, setup.device) \
                if config.anchor_weight else None

    def __call__(self, batch: StepBatch) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
        """(forget part, retain part, (forget loss, retain loss) to log). Several processes: each takes its share of
        the batch, its losses weighted by that share; the gradients are summed over processes (``masked_update``),
        so every process makes the same update."""
        model, s, config = self.model, self.setup, self.config

        def share(term: Callable[[list[Encoded]], tuple[torch.Tensor, float]],
                  items: list[Encoded]) -> tuple[torch.Tensor, float]:
            """``term`` on this process's share of ``items``, weighted by the share (a sharded model: a process
            without a share runs a stand-in, weighted 0, since every process takes part in every forward)."""
            return distributed.share_of_mean(term, distributed.shard(items), len(items),
                                             stand_in=items[:1] if self.sharded else None)

        forget_loss, forget_logged = share(lambda xs: self.forget_objective.loss(model, xs, s, self.forget_prepared),
                                           batch.forget)
        if batch.hold:  # the domains at their target, held there: part of the forget objective (and its mask)
            at_target = {x: top for domain_held in self.held().values() for x, top in domain_held.items()}
            hold_loss, _ = share(lambda xs: objectives.topk_kl_loss(model, xs, s.pad_id, s.device, at_target),
                                 batch.hold)
            forget_loss = forget_loss + hold_loss
        retain_loss, retain_logged = share(lambda xs: self.retain_objective.loss(model, xs, s, self.retain_prepared),
                                           batch.retain)
        if batch.general:  # general replay is retain data: it joins the retain objective (and its mask)
            general_loss, _ = share(lambda xs: objectives.topk_kl_loss(model, xs, s.pad_id, s.device, self.general),
                                    batch.general)
        else:
            general_loss = torch.zeros(())
        retain_part = config.retain_weight * retain_loss + config.general_weight * general_loss
        if self.anchor is not None:  # the forget prompts' states: a retain term (and its mask)
            anchor_loss, _ = share(lambda xs: objectives.anchor_loss(model, xs, s.pad_id, s.device, self.anchor),
                                   batch.forget)
            retain_part = retain_part + config.anchor_weight * anchor_loss
        return config.forget_weight * forget_loss, retain_part, (forget_logged, retain_logged)

    def hold(self, domain: str) -> bool:
        """Keep ``domain`` where it is from now on: its forget answers' next-token distributions of this moment
        (objectives that hold; taken once). Whether it was newly held."""
        if not self.forget_objective.holds or domain in self.held():
            return False
        with eval_mode(self.model):
            self.held()[domain] = objectives.topk_reference(self.model, self.forget_pools[domain],
                                                            self.setup.pad_id, self.setup.device)
        return True

    def left_to_ascend(self) -> dict[str, float]:
        """Per domain, the share (%) of its forget tokens the forget objective still pushes."""
        with eval_mode(self.model):
            return {d: self.forget_objective.left_to_ascend(self.model, items, self.setup, self.forget_prepared)
                    for d, items in self.forget_pools.items()}


@dataclass
class EpochOrder:
    """An epoch's example orders; step ``i`` takes the forget examples at ``i * half`` and, cycling, as many retain,
    general replay and held examples (their counts differ from the forget count)."""

    forget: list[Encoded]
    retain: list[Encoded]
    general: list[Encoded]
    hold: list[Encoded]
    half: int

    def __len__(self) -> int:
        return -(-len(self.forget) // self.half)

    def batch(self, step: int, domain_of: dict[Encoded, str], done: Collection[str]) -> StepBatch:
        """Step ``step``'s examples (from 0); ``done``: domains that met their target within the epoch, whose
        examples leave the ascent and join the held ones."""
        i, half = step * self.half, self.half

        def cycled(order: list[Encoded]) -> list[Encoded]:
            start = i % len(order) if order else 0
            return order[start:start + half]

        return StepBatch([x for x in self.forget[i:i + half] if domain_of[x] not in done], cycled(self.retain),
                         cycled(self.general), [x for x in cycled(self.hold) if domain_of.get(x) in (None, *done)])


def unlearn(model: nn.Module, forget: dict[str, list[Encoded]], retain: dict[str, list[Encoded]],
            config: UnlearnConfig, *, pad_id: int, seed: int, masks: UpdateMasks | None = None,
            check: Callable[[], dict[str, dict[str, float]]] | None = None,
            checkpoint_dir: Path | None = None, fingerprint: str = "", device: str = "cpu",
            progress: bool = False, on_epoch_end: Callable[[int], None] | None = None,
            general: dict[Encoded, objectives.TopK] | None = None, utility: Callable[[], float] | None = None,
            oracle_log_probs: Callable[[list[Encoded]], dict[Encoded, torch.Tensor]] | None = None,
            holdout: dict[str, list[Encoded]] | None = None,
            members: dict[str, list[Encoded]] | None = None, eos_id: int | None = None) -> list[dict]:
    """Run stage 3 in place on ``model``; returns the per-epoch log.

    ``forget`` / ``retain`` map each domain to its encoded examples; ``general`` maps the replay examples to the
    base model's top-k next-token distributions, which ``config.general_weight`` keeps the model close to;
    ``holdout`` maps each domain to never-seen examples of its forget set's kind, the calibrated target's reference,
    and ``members`` to the forget examples it stands for (``Domain.members``; missing: every one).
    The stop rules (``stops.py``): every domain at its target (``config.target``); ``check()`` ({domain: {"RS": ..}},
    after each epoch) against divergence; ``utility()`` (a perplexity) within ``config.utility_budget``.
    """
    if config.general_weight and not general:
        raise ValueError("unlearn.general_weight > 0 needs general replay data (data.general_replay > 0)")
    params = trainable_parameters(model)
    masks = None if masks is None else masks.on(params)
    # Decay is applied by hand (masked, in masked_update), so AdamW itself must not decay.
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.lr, weight_decay=0.0)
    forget_pools, retain_pool = training_pools(forget, retain, seed, config.pools)
    general_pool = list(general or {}) if config.general_weight else []
    half = config.batch_size // 2
    checkpoint = Checkpoint(checkpoint_dir, fingerprint)  # it also keeps the held distributions across a resume
    held = lambda: checkpoint.extra.setdefault("held", {})  # noqa: E731
    target = forget_target(config, model, forget_pools, holdout, pad_id, device, members)  # before any update
    setup = objectives.Setup(config, pad_id, device, seed, model.config.vocab_size, oracle_log_probs, eos_id)
    # the targets' and the checks' starting values, then the objectives' references: all before the first update
    targets = TargetStop(model, target, list(forget_pools), config.target_check_steps,
                         left_to_ascend=lambda: loss.left_to_ascend(), hold=lambda d: hold(d))
    divergence = Divergence(check, config.divergence_rs_drop, params) if check is not None else None
    budget = UtilityBudget(utility, config, params, optimizer, lambda j: repair_step(j)) \
        if utility is not None and config.utility_budget else None
    loss = UnlearningLoss(model, config, setup, forget_pools, retain_pool, general, held)
    every_forget = [x for xs in forget_pools.values() for x in xs]
    epoch_start: Weights = {}

    def hold(domain: str) -> None:
        """Hold ``domain`` where it met its target. Adam's first moment still carries the ascent of the steps before
        (for about 1 / (1 - beta1) steps) and would push the domain on past its target: a domain newly held clears
        it. The second moment, the step's scale, stays."""
        if loss.hold(domain):
            for state in optimizer.state.values():
                if "exp_avg" in state:
                    state["exp_avg"].zero_()

    def step(batch: StepBatch) -> tuple[float, float]:
        """The paper's update: θ ← θ − η·AdamW(∇L ⊙ ¬F)."""
        forget_part, retain_part, logged = loss(batch)
        masked_gradients(params, forget_part, retain_part, masks)
        masked_update(params, optimizer, masks, config)
        return logged

    order: EpochOrder | None = None
    position = 0

    def repair_step(j: int) -> None:
        """General replay alone (the retain descent where the run has no replay), after the step at ``position``."""
        offset = (position + j * half) % len(order.general or order.retain)
        if order.general:
            step(StepBatch([], [], order.general[offset:offset + half]))
        else:
            step(StepBatch([], order.retain[offset:offset + half]))

    def run_epoch(epoch: int, rng: random.Random, history: list[dict]) -> dict:
        nonlocal order, position
        model.train()
        epoch_start.update(copy_weights(params))
        active = targets.start_epoch(history)  # the domains done are held from here on
        domain_of = {item: d for d in active for item in forget_pools[d]}
        forget_pool = [item for d in active for item in forget_pools[d]]
        order = EpochOrder(rng.sample(forget_pool, len(forget_pool)), rng.sample(retain_pool, len(retain_pool)),
                           rng.sample(general_pool, len(general_pool)),
                           # with an objective that holds: every forget example, taken when its domain is held
                           rng.sample(every_forget, len(every_forget)) if loss.forget_objective.holds else [], half)
        if budget is not None:
            budget.start_epoch(history, epoch_start)
        losses = []
        for k in tqdm(range(1, len(order) + 1), desc=f"stage 3: unlearn, epoch {epoch + 1}/{config.epochs}",
                      disable=not progress, leave=False):
            position = (k - 1) * half
            losses.append(step(order.batch(k - 1, domain_of, targets.reached)))
            targets.after_step(k, last_step=k == len(order))
            if budget is not None and budget.after_step(k, epoch_ends=k == len(order) or targets.epoch_done):
                break
            if targets.epoch_done:
                break
        forget_losses, retain_losses = ([x for x in xs if not math.isnan(x)] for xs in zip(*losses)) if losses \
            else ([], [])
        log = {"ascending": active, "forget_loss": mean(forget_losses) if forget_losses else None,
               "retain_loss": mean(retain_losses) if retain_losses else None}
        targets.end_epoch(log)
        if budget is not None:
            budget.end_epoch(log)
        if check is not None:
            log["scores"] = check()
        if budget is not None:
            log["utility_ppl"] = budget.last_good_ppl  # of the weights the epoch ends with
        return log

    def should_stop(epoch: int, log: dict) -> str | None:
        return (budget.verdict(log) if budget is not None else None) \
            or (divergence.verdict(log, epoch_start) if divergence is not None else None) \
            or targets.verdict(log)

    return run_epochs(model, optimizer, config.epochs, seed, run_epoch, should_stop, checkpoint, on_epoch_end)
