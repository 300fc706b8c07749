"""How a model answers encoded examples: teacher-forced scores (answer-token accuracy, mean log-probability, the
argmax decode) and greedy generation, with the chat prompts that questions are asked in.

Evaluation, MMLU, calibration, stage 3's targets, replay and the attacks all score through these, so this module
imports none of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from grail.batching import Encoded, answer_logits, batches, collate
from grail.metrics import mean_log_prob, token_accuracy
from grail.models import eval_mode


@torch.no_grad()
def teacher_forced(model: nn.Module, items: Sequence[Encoded], pad_id: int, batch_size: int,
                   device: torch.device | str) -> tuple[list[float], list[float], list[list[int]]]:
    """Per example: answer-token accuracy in [0, 1], mean log-probability, and the argmax decode's ids."""
    accuracy, log_prob, decoded = [0.0] * len(items), [0.0] * len(items), [[] for _ in items]
    with eval_mode(model):  # called mid-training too (stage 3's utility checks): scores never see dropout
        for index in batches(items, batch_size):
            batch = collate([items[i] for i in index], pad_id).to(device)
            logits = answer_logits(model, batch)
            acc = token_accuracy(logits, batch.targets, batch.answer_mask)
            lp = mean_log_prob(logits, batch.targets, batch.answer_mask)
            argmax = logits.argmax(-1)
            for row, i in enumerate(index):
                accuracy[i], log_prob[i] = acc[row].item(), lp[row].item()
                decoded[i] = argmax[row][batch.answer_mask[row]].tolist()
    return accuracy, log_prob, decoded


@torch.no_grad()
def generate(model: nn.Module, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Sequence[int]],
             max_new_tokens: Sequence[int] | int, batch_size: int, device: torch.device | str,
             keep_ids: bool = False) -> list:
    """Greedy continuations of token-id prompts (left-padded batches): texts, or (``keep_ids``) the new token
    ids up to and including the first EOS."""
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    items = [Encoded(tuple(p), ()) for p in prompts]
    texts: list = [""] * len(prompts)
    with eval_mode(model):
        for index in batches(items, batch_size):
            width = max(len(prompts[i]) for i in index)
            ids = torch.full((len(index), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, i in enumerate(index):
                ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]):] = 1
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                                 max_new_tokens=max(budgets[i] for i in index), pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
            for row, i in enumerate(index):
                new = out[row, width:width + budgets[i]].tolist()
                if tokenizer.eos_token_id in new:
                    new = new[:new.index(tokenizer.eos_token_id) + 1]
                texts[i] = new if keep_ids else tokenizer.decode(new, skip_special_tokens=True)
    return texts


def chat_prompts(tokenizer: PreTrainedTokenizerBase, questions: Sequence[str]) -> list[list[int]]:
    """Questions as the model would be asked them: its chat template if it has one."""
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                              tokenize=True, return_dict=False) for q in questions]
    return [tokenizer(q + "\n\n").input_ids for q in questions]
