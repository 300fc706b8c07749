"""Tokenizing examples and running the model on answer tokens only.

Batches are left-padded, so every row's answer ends at the last position; the model then computes logits
for the last K+1 positions only (``logits_to_keep``), K = the longest answer in the batch. On a 135M model
with a 49k vocabulary that skips most of the output-head work, and it keeps prompt positions out of every loss
and metric by construction.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from grail.data.examples import Example


@dataclass(frozen=True)
class Encoded:
    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.answer_ids)


def encode(tokenizer: PreTrainedTokenizerBase, example: Example, prompt_format: str = "plain",
           max_length: int = 256) -> Encoded:
    """Prompt and answer token ids; the answer ends with EOS so the model also learns where it stops."""
    if prompt_format == "chat":
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": example.prompt}],
                                               add_generation_prompt=True, tokenize=True, return_dict=False)
    else:
        prompt = tokenizer(example.prompt + "\n\n").input_ids
    answer = tokenizer(example.answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    answer = answer[: max_length - 1]
    prompt = prompt[-(max_length - len(answer)):]
    return Encoded(tuple(prompt), tuple(answer))


def encode_all(tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example], prompt_format: str = "plain",
               max_length: int = 256) -> list[Encoded]:
    return [encode(tokenizer, ex, prompt_format, max_length) for ex in examples]


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, L], left-padded
    attention_mask: torch.Tensor  # [B, L]
    targets: torch.Tensor  # [B, K]: the last K input tokens
    answer_mask: torch.Tensor  # [B, K]: True where the target is an answer token

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.targets, self.answer_mask)))


def collate(items: Sequence[Encoded], pad_id: int) -> Batch:
    length = max(len(x) for x in items)
    k = max(len(x.answer_ids) for x in items)
    input_ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(items), length), dtype=torch.long)
    answer_mask = torch.zeros((len(items), k), dtype=torch.bool)
    for row, item in enumerate(items):
        ids = item.prompt_ids + item.answer_ids
        input_ids[row, length - len(ids):] = torch.tensor(ids)
        attention_mask[row, length - len(ids):] = 1
        answer_mask[row, k - len(item.answer_ids):] = True
    return Batch(input_ids, attention_mask, input_ids[:, -k:], answer_mask)


def batches(items: Sequence[Encoded], batch_size: int, rng: random.Random | None = None) -> Iterator[list[int]]:
    """Index batches. With ``rng``: shuffled, then grouped by length (less padding), in shuffled batch order."""
    order = list(range(len(items)))
    if rng is None:
        order.sort(key=lambda i: len(items[i]))
        yield from (order[i:i + batch_size] for i in range(0, len(order), batch_size))
        return
    rng.shuffle(order)
    order.sort(key=lambda i: len(items[i]))  # stable: equal lengths keep their shuffled order
    groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(groups)
    yield from groups


def forward(model: nn.Module, batch: Batch, inputs_embeds: torch.Tensor | None = None, **kwargs):
    """The model on a left-padded batch: positions count from each row's first real token."""
    position_ids = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    inputs = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": batch.input_ids}
    return model(**inputs, attention_mask=batch.attention_mask, position_ids=position_ids, use_cache=False, **kwargs)


def answer_logits(model: nn.Module, batch: Batch, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
    """Logits predicting each of the last K tokens, [B, K, V]."""
    out = forward(model, batch, inputs_embeds, logits_to_keep=batch.targets.shape[1] + 1)
    return out.logits[:, :-1].float()


def per_example_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over each example's answer tokens, [B]."""
    ce = F.cross_entropy(logits.transpose(1, 2), batch.targets, reduction="none")
    mask = batch.answer_mask.float()
    return (ce * mask).sum(1) / mask.sum(1)


def example_losses(model: nn.Module, items: Sequence[Encoded], pad_id: int, device: torch.device | str) -> torch.Tensor:
    """Per-example mean answer-token cross-entropy of one batch of encoded examples (with autograd)."""
    batch = collate(items, pad_id).to(device)
    return per_example_loss(answer_logits(model, batch), batch)
