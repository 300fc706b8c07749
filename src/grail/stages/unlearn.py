"""Stage 3: unlearning (Algorithm 1). Ascent on forget examples, descent on retain examples, F frozen exactly.

Each step takes half its batch from the forget examples and half from the retain examples of all domains
(``pools: balanced``, as in the reference code: per domain, forget and retain are first truncated to the smaller
count; ``all``: every example, the retain half drawn from all retain examples in a new order every epoch):

    loss = forget_weight * L_forget + retain_weight * mean CE(retain) [+ general_weight * KL(general)]

L_forget is the paper's gradient ascent, - mean CE(forget) (``forget_objective: ascent``), or by default
``to_base``: ascent on the forget tokens the model still finds likelier than the base model did, plus the KL to the
base model's next-token distributions on the forget answers (each forget token down to no lower than a
never-trained model's level); the baselines swap in others from ``objectives.py``. The optional third term keeps the
model's next-token distributions on general replay data (the base model's own answers to everyday
instructions) close to the base model's: general ability as a further retain set, which the paper lacks. With
``anchor_weight``, a fourth holds the forget prompts' hidden states (every layer, every position but the last) at
the vanilla model's: what a forget question is about stays represented as before (also beyond the paper).

Ascent has no natural end (the loss is unbounded) and, pushed on, wrecks the whole model. Guards:
- ``ascent_stop`` (``forget_objective: ascent``): a forget token is ascended only while it is still known.
  ``forgotten``: while the model still predicts it (argmax), exactly what Unlearning Success counts. ``reference``
  (default): while it is also likelier than under the base model before stage 0 (a model that never saw the
  data): much of a forget answer is predictable unseen (a name copied into an e-mail address, a phone number's
  dash), and pushing below that is unlearning how to copy or write. ``oracle``: while it is likelier than under
  the oracle (stage 0 without the forget sets), whether predicted or not: unlearning aimed at exact unlearning's
  model, no further.
  ``uniform`` (the paper's setting here): while its CE is below
  ln |V|, that of a uniform guess; ``never``: plain gradient ascent.
- a domain stops ascending once it has met its target (``targets.py``: by default, once its forget set is no more
  familiar to the model than never-seen data of its kind; ``target: us``, once it reaches ``target_us``) or has
  nothing left to ascend (every token forgotten or down to the base model's), and its retain examples keep
  descending; so one domain forgetting fast does not keep eroding its own retention while another domain catches
  up. The target is checked after each epoch and, with ``target_check_steps``, every that many steps within it.
  With ``to_base`` such a domain is also held where it met its target: a KL to its forget answers' next-token
  distributions of that moment (the other domains' unlearning would otherwise move it on).
- ``utility_budget``: once the perplexity of a utility-check text (never trained on, never reported) exceeds
  that multiple of the vanilla model's, the stage goes back to the last weights within it and on at half the step
  size (``budget_backoff``), or stops there; with ``budget_repair_steps``, it first tries to win the budget back
  with steps of general replay alone.

Masking policies:
- ``paper``: every update is multiplied by not-F.
- ``per-objective`` (authors' code): OP-UR is zeroed in the forget gradient, OP-RR in the retain gradient.

Frozen means bit-identical. Zeroing gradients is not enough with AdamW: its decoupled weight decay moves every
entry. So the optimizer runs without weight decay and the decay is applied here, masked; an entry whose
gradient is always zero keeps zero Adam moments, so Adam's update there is exactly zero too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

import torch
from torch import nn
from tqdm.auto import tqdm

from grail import distributed
from grail.batching import Encoded
from grail.config import UnlearnConfig
from grail.models import eval_mode, trainable_parameters
from grail.stages import objectives
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
        """The masks on each parameter's device (masks load on the CPU; a GPU's parameters cannot take them)."""
        return UpdateMasks({n: m.to(params[n].device) for n, m in self.forget.items()},
                           {n: m.to(params[n].device) for n, m in self.retain.items()}, self.per_objective)

    def movable(self) -> dict[str, torch.Tensor]:
        """Entries some objective may move."""
        return {name: self.forget[name] | self.retain[name] for name in self.forget}

    def never_moving(self) -> dict[str, torch.Tensor]:
        """Entries no objective may move: these stay bit-identical (F under ``paper``)."""
        return {name: ~movable for name, movable in self.movable().items()}


def masked_gradients(params: dict[str, nn.Parameter], forget_loss: torch.Tensor, retain_loss: torch.Tensor,
                     masks: UpdateMasks | None) -> None:
    """Each parameter's ``.grad`` = the gradient of forget_loss + retain_loss (both weighted already) ⊙ its mask:
    one backward and not-F under ``paper``; under ``per-objective`` each loss's gradient masked on its own."""
    if masks is None or not masks.per_objective:
        loss = forget_loss + retain_loss
        if loss.requires_grad:  # a process with no examples in this step contributes nothing
            loss.backward()
        if masks is not None:
            for name, param in params.items():
                if param.grad is not None:
                    param.grad.masked_fill_(~masks.forget[name], 0.0)  # masked_fill: a NaN or inf is zeroed too
        return
    for loss, keep in ((forget_loss, masks.forget), (retain_loss, masks.retain)):
        if not loss.requires_grad:
            continue
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (name, param), grad in zip(params.items(), grads):
            if grad is not None:
                grad = grad.masked_fill(~keep[name], 0.0)
                param.grad = grad if param.grad is None else param.grad + grad


def masked_update(params: dict[str, nn.Parameter], optimizer: torch.optim.Optimizer, masks: UpdateMasks | None,
                  config: UnlearnConfig) -> None:
    """θ ← θ − η·AdamW(∇L ⊙ ¬F), then decay θ ⊙ ¬F: summed over processes, clipped, decayed only where an
    objective may move (decoupled decay would move frozen entries too), stepped; gradients cleared."""
    distributed.sum_gradients(params.values())  # masks are elementwise: summing after masking is the same
    if config.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(list(params.values()), config.max_grad_norm)
    if config.weight_decay:
        factor = optimizer.param_groups[0]["lr"] * config.weight_decay  # the step size now (budget_backoff halves it)
        movable = None if masks is None else masks.movable()
        with torch.no_grad():
            for name, param in params.items():
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


def unlearn(model: nn.Module, forget: dict[str, list[Encoded]], retain: dict[str, list[Encoded]],
            config: UnlearnConfig, *, pad_id: int, seed: int, masks: UpdateMasks | None = None,
            check: Callable[[], dict[str, dict[str, float]]] | None = None,
            checkpoint_dir: Path | None = None, fingerprint: str = "", device: str = "cpu",
            progress: bool = False, on_epoch_end=None, general: dict[Encoded, objectives.TopK] | None = None,
            utility: Callable[[], float] | None = None,
            oracle_log_probs: Callable[[list[Encoded]], dict[Encoded, torch.Tensor]] | None = None,
            holdout: dict[str, list[Encoded]] | None = None) -> list[dict]:
    """Run stage 3 in place on ``model``; returns the per-epoch log.

    ``forget`` / ``retain`` map each domain to its encoded examples; ``general`` maps the replay examples to the
    base model's top-k next-token distributions, which ``config.general_weight`` keeps the model close to.
    ``holdout`` maps each domain to never-seen examples of its forget set's kind, the calibrated target's reference.
    Stop once every domain has met its target (``config.target``); ``check`` scores the model after each epoch
    ({domain: {"US": .., "RS": ..}}): stop and go back one epoch if a domain's RS fell ``divergence_rs_drop`` points
    below its value before unlearning; ``utility()`` (a perplexity) is held within ``config.utility_budget`` times its
    value before unlearning.
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
    target = forget_target(config, model, forget_pools, holdout, pad_id, device)
    start_target = {d: target.measure(model, d) for d in forget_pools} if target is not None else {}
    start_scores = check() if check is not None else None
    start_utility = utility() if utility is not None and config.utility_budget else None
    previous: dict[str, torch.Tensor] = {}
    # What the objectives need from the vanilla model, taken before the first update.
    setup = objectives.Setup(config, pad_id, device, seed, model.config.vocab_size, oracle_log_probs)
    forget_objective = objectives.FORGET_OBJECTIVES[config.forget_objective]
    retain_objective = objectives.RETAIN_OBJECTIVES[config.retain_objective]
    every_forget = [x for xs in forget_pools.values() for x in xs]
    with eval_mode(model):
        forget_prepared = forget_objective.prepare(model, every_forget, setup)
        retain_prepared = retain_objective.prepare(model, retain_pool, setup)
        anchor = objectives.anchor_reference(model, every_forget, pad_id, device) if config.anchor_weight else None

    def forget_term(items: list[Encoded]) -> tuple[torch.Tensor, float]:
        return forget_objective.loss(model, items, setup, forget_prepared)

    def retain_term(items: list[Encoded]) -> tuple[torch.Tensor, float]:
        return retain_objective.loss(model, items, setup, retain_prepared)

    def step(forget_batch: list[Encoded], retain_batch: list[Encoded], general_batch: list[Encoded],
             hold_batch: list[Encoded] = ()) -> tuple[float, float]:
        # Several processes: each takes its share of the batch, its losses weighted by that share, and the
        # gradients are summed over processes (below), so every process makes the same update.
        forget_items, retain_items = distributed.shard(forget_batch), distributed.shard(retain_batch)
        forget_loss, forget_logged = distributed.share_of_mean(forget_term, forget_items, len(forget_batch))
        if hold_batch:  # the domains at their target, held there: part of the forget objective (and its mask)
            at_target = {x: top for domain_held in held().values() for x, top in domain_held.items()}
            hold_loss, _ = distributed.share_of_mean(
                lambda xs: objectives.topk_kl_loss(model, xs, pad_id, device, at_target),
                distributed.shard(hold_batch), len(hold_batch))
            forget_loss = forget_loss + hold_loss
        retain_loss, retain_logged = distributed.share_of_mean(retain_term, retain_items, len(retain_batch))
        if general_batch:  # general replay is retain data: it joins the retain objective (and its mask)
            general_loss, _ = distributed.share_of_mean(
                lambda xs: objectives.topk_kl_loss(model, xs, pad_id, device, general),
                distributed.shard(general_batch), len(general_batch))
        else:
            general_loss = torch.zeros(())
        retain_total = config.retain_weight * retain_loss + config.general_weight * general_loss
        if anchor is not None:  # the forget prompts' states: a retain term (and its mask)
            anchor_loss, _ = distributed.share_of_mean(
                lambda xs: objectives.anchor_loss(model, xs, pad_id, device, anchor), forget_items, len(forget_batch))
            retain_total = retain_total + config.anchor_weight * anchor_loss
        masked_gradients(params, config.forget_weight * forget_loss, retain_total, masks)
        masked_update(params, optimizer, masks, config)
        return forget_logged, retain_logged

    checkpoint = Checkpoint(checkpoint_dir, fingerprint)  # it also keeps ``held`` across a resume

    def held() -> dict[str, dict[Encoded, objectives.TopK]]:
        """Per domain held at its target: its forget answers' next-token distributions when it met it."""
        return checkpoint.extra.setdefault("held", {})

    def hold(domain: str) -> None:
        if forget_objective.holds and domain not in held():
            with eval_mode(model):
                held()[domain] = objectives.topk_reference(model, forget_pools[domain], pad_id, device)

    def left_to_ascend() -> dict[str, float]:
        """Per domain, the share (%) of its forget tokens that ascent still pushes."""
        if not isinstance(forget_prepared, objectives.AscentStop):  # other objectives have no such stop
            return {d: 100.0 for d in forget_pools}
        stop = forget_prepared
        with eval_mode(model):
            return {d: objectives.ascendable_share(model, items, pad_id, device, stop.cap, stop.only_predicted,
                                                   stop.floor, stop.margin) for d, items in forget_pools.items()}

    def still_forgetting(history: list[dict]) -> list[str]:
        """Domains that have neither met their target nor run out of tokens to ascend (by the last check)."""
        last = history[-1] if history else {"target": start_target, "left_to_ascend": left_to_ascend()}
        return [d for d in forget_pools if last.get("left_to_ascend", {}).get(d, 100.0) > 0
                and not last.get("target", {}).get(d, {}).get("met", False)]

    def run_epoch(epoch: int, rng: random.Random, history: list[dict]) -> dict:
        model.train()
        previous.update({n: p.detach().clone() for n, p in params.items()})
        active = still_forgetting(history)
        domain_of = {item: d for d in active for item in forget_pools[d]}
        reached: dict[str, int] = {}  # domains that met their target within this epoch: the step
        reached_scores: dict[str, dict] = {}  # ... and the target's measurement then
        forget_pool = [item for d in active for item in forget_pools[d]]
        forget_order = rng.sample(forget_pool, len(forget_pool))
        retain_order = rng.sample(retain_pool, len(retain_pool))
        general_order = rng.sample(general_pool, len(general_pool))
        # with an objective that holds a domain at its target: every forget example, taken when its domain is held
        hold_order = rng.sample(every_forget, len(every_forget)) if forget_objective.holds else []
        for d in forget_pools:
            if d not in active:
                hold(d)
        losses = []
        steps = range(0, len(forget_order), half)
        # the latest weights known to be within the budget, and their utility-check perplexity
        last_good, last_good_step, spent = previous, 0, None
        last_good_ppl = history[-1].get("utility_ppl") if history else start_utility
        repairs: list[dict] = []
        for k, i in enumerate(tqdm(steps, desc=f"stage 3: unlearn, epoch {epoch + 1}/{config.epochs}",
                                   disable=not progress, leave=False), start=1):
            retain_start = i % len(retain_order)  # the forget and retain counts differ (a domain done, ``pools: all``)
            general_start = i % len(general_order) if general_order else 0
            forget_batch = [x for x in forget_order[i:i + half] if domain_of[x] not in reached]
            hold_start = i % len(hold_order) if hold_order else 0
            hold_batch = [x for x in hold_order[hold_start:hold_start + half] if domain_of.get(x) in (None, *reached)]
            losses.append(step(forget_batch, retain_order[retain_start:retain_start + half],
                               general_order[general_start:general_start + half], hold_batch))
            # (not after the epoch's last step: the epoch's end measures the same weights right after it)
            if target is not None and config.target_check_steps and k % config.target_check_steps == 0 \
                    and k < len(steps):
                for d in (d for d in active if d not in reached):
                    measured = target.measure(model, d)
                    if measured["met"]:
                        reached[d], reached_scores[d] = k, measured
                        hold(d)
            done = len(reached) == len(active)  # nothing left to ascend in this epoch
            every = config.utility_check_steps
            if start_utility is not None and (k == len(steps) or done or (every and k % every == 0)):
                ppl = utility()
                if ppl > config.utility_budget * start_utility and config.budget_repair_steps:
                    ppl = repair(k, i, retain_order, general_order, repairs)
                if ppl > config.utility_budget * start_utility:
                    restore(last_good)
                    spent = {"step": k, "utility_ppl": ppl, "kept_step": last_good_step}
                    break
                last_good, last_good_step, last_good_ppl = {n: p.detach().clone() for n, p in params.items()}, k, ppl
            if done:
                break
        forget_losses, retain_losses = ([x for x in xs if not math.isnan(x)] for xs in zip(*losses)) if losses \
            else ([], [])
        log = {"ascending": active, "forget_loss": mean(forget_losses) if forget_losses else None,
               "retain_loss": mean(retain_losses) if retain_losses else None, "left_to_ascend": left_to_ascend()}
        if spent is not None:
            log["budget_spent"] = spent
        if repairs:
            log["repairs"] = repairs
        if reached:
            log["target_reached_at_step"], log["target_reached"] = reached, reached_scores
        if target is not None:
            log["target"] = {d: target.measure(model, d) for d in forget_pools}
        if check is not None:
            log["scores"] = check()
        if start_utility is not None:
            log["utility_ppl"] = last_good_ppl  # of the weights the epoch ends with
        return log

    def repair(at_step: int, offset: int, retain_order: list[Encoded], general_order: list[Encoded],
               repairs: list[dict]) -> float:
        """Steps of general replay alone (no ascent; the retain descent where the run has no replay) until the
        utility-check perplexity is below the middle of the budget, at most ``budget_repair_steps``; returns the
        perplexity reached and logs the repair. Replay alone: the budget is about general text, and more descent on
        the retain facts is not what it lacks."""
        goal = start_utility * (1 + config.utility_budget) / 2
        for j in range(1, config.budget_repair_steps + 1):
            start = (offset + j * half) % len(general_order or retain_order)
            if general_order:
                step([], [], general_order[start:start + half])
            else:
                step([], retain_order[start:start + half], [])
            ppl = utility()
            if ppl <= goal:
                break
        repairs.append({"step": at_step, "repair_steps": j, "utility_ppl": ppl})
        return ppl

    def restore(weights: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(weights[n])

    def revert(log: dict) -> None:
        restore(previous)
        log["reverted"] = True

    def should_stop(epoch: int, log: dict) -> str | None:
        spent = log.get("budget_spent")  # run_epoch has already gone back to the last weights within the budget
        lr = optimizer.param_groups[0]["lr"]  # restored with the optimizer on resume: it counts the halvings
        if spent is not None and round(math.log2(config.lr / lr)) < config.budget_backoff:
            for group in optimizer.param_groups:  # go on from there, at half the step size
                group["lr"] = spent["lr_now"] = lr / 2
        elif spent is not None:
            kept = f"step {spent['kept_step']} of this epoch" if spent["kept_step"] else "the epoch before"
            return f"utility budget spent: utility-check PPL {spent['utility_ppl']:.1f} > {config.utility_budget} x " \
                   f"{start_utility:.1f} at step {spent['step']}; kept the weights of {kept}"
        scores = log.get("scores") or {}
        for domain, s in scores.items():
            if start_scores[domain]["RS"] - s["RS"] > config.divergence_rs_drop:
                revert(log)
                return f"diverged: {domain} RS fell from {start_scores[domain]['RS']:.1f} to {s['RS']:.1f}; " \
                       f"kept the weights of the epoch before"
        # Every domain's retention counts (above), but only the domains being unlearned have a target to meet.
        if target is not None and all(log["target"][d]["met"] for d in forget_pools):
            return f"target met: {target.description} in every domain unlearned"
        if not still_forgetting([log]):
            return "nothing left to ascend: every domain at its target or down to the base model"
        return None

    return run_epochs(model, optimizer, config.epochs, seed, run_epoch, should_stop,
                      checkpoint, on_epoch_end)
