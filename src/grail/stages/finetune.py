"""Stage 0: the vanilla model. LoRA fine-tuning on the union of all forget and retain sets until memorised.

General replay (``grail/replay.py``) may be mixed in: every step adds, with weight ``replay_weight``, the KL
from the base model's next-token distributions on a few replay examples to the current ones, so the model
learns its facts without forgetting how it spoke before. Replay is not part of the "memorised" stop rule.

Users who bring an already-trained model skip this stage (``model.vanilla``, ``finetune.adapter_path``).
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from statistics import mean

import torch
from torch import nn
from tqdm.auto import tqdm

from grail import distributed
from grail.batching import Encoded, answer_logits, batches, collate, per_example_loss
from grail.config import FinetuneConfig
from grail.metrics import token_accuracy
from grail.stages.objectives import TopK, topk_kl_loss
from grail.training import Checkpoint, run_epochs


def finetune(model: nn.Module, datasets: dict[str, list[Encoded]], config: FinetuneConfig, *, pad_id: int,
             seed: int, checkpoint_dir: Path | None = None, fingerprint: str = "", device: str = "cpu",
             progress: bool = False, on_epoch_end=None, replay: dict[Encoded, TopK] | None = None) -> list[dict]:
    """Train the trainable parameters on all datasets (and the replay data); returns the per-epoch log.

    ``datasets`` maps a name (``privacy/forget``) to its encoded examples; ``replay`` maps each replay example to
    the base model's top-k next-token distributions on it (``objectives.topk_reference``). Stops early once
    every dataset's answer-token accuracy during the epoch reaches ``config.stop_at_accuracy``.
    """
    replay_items = list(replay or {}) if config.replay_weight else []
    replay_batch = config.replay_batch_size
    names = [name for name, items in datasets.items() for _ in items]
    items = [item for dataset in datasets.values() for item in dataset]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(items) // config.batch_size)
    total_steps = config.epochs * steps_per_epoch

    def run_epoch(epoch: int, rng: random.Random, history: list[dict]) -> dict:
        model.train()
        hits: dict[str, list[float]] = defaultdict(list)
        losses, replay_losses = [], []
        order = list(batches(items, config.batch_size, rng))
        replay_order = rng.sample(replay_items, len(replay_items))
        for step, index in enumerate(tqdm(order, desc=f"stage 0: fine-tune, epoch {epoch + 1}/{config.epochs}",
                                          disable=not progress, leave=False)):
            # Linear decay to zero over the budget: large steps to learn, small ones to settle every token.
            for group in optimizer.param_groups:
                group["lr"] = config.lr * (1 - (epoch * steps_per_epoch + step) / total_steps)
            mine = distributed.shard(index)  # several processes: each its share of the batch
            if mine:
                batch = collate([items[i] for i in mine], pad_id).to(device)
                logits = answer_logits(model, batch)
                loss = per_example_loss(logits, batch).sum() / len(index)  # this share's part of the batch mean
                loss.backward()
                losses.append(loss.item() * len(index) / len(mine))
                for i, acc in zip(mine, token_accuracy(logits.detach(), batch.targets, batch.answer_mask).tolist()):
                    hits[names[i]].append(100.0 * acc)
            if replay_order:
                start = step * replay_batch % len(replay_order)
                general = (replay_order + replay_order)[start:start + replay_batch]
                kl, logged = distributed.share_of_mean(lambda xs: topk_kl_loss(model, xs, pad_id, device, replay),
                                                       distributed.shard(general), len(general))
                if kl.requires_grad:  # this process got some of the replay examples
                    (config.replay_weight * kl).backward()
                    replay_losses.append(logged)
            distributed.sum_gradients(params)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        # Stopping is decided on every example's accuracy, so every process takes the same decision.
        every = defaultdict(list)
        for share in distributed.gather_objects(dict(hits)):
            for name, values in share.items():
                every[name] += values
        # A process that got no rows (more processes than a batch has examples) has no loss of its own to log.
        log = {"loss": mean(losses) if losses else None,
               "train_accuracy": {name: mean(v) for name, v in every.items()}}
        if replay_losses:
            log["replay_kl"] = mean(replay_losses)
        return log

    def should_stop(epoch: int, log: dict) -> str | None:
        if min(log["train_accuracy"].values()) >= config.stop_at_accuracy:
            return f"every set memorised (>= {config.stop_at_accuracy}% answer-token accuracy)"
        return None

    return run_epochs(model, optimizer, config.epochs, seed, run_epoch, should_stop,
                      Checkpoint(checkpoint_dir, fingerprint), on_epoch_end)
