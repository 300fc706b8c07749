"""General replay: the base model's own answers to general instructions (self-generated rehearsal).

A real fine-tuned model learned its facts among much other text; fine-tuning on ~100 facts alone at a high
learning rate teaches a small model to answer everything with them. Mixing in what the base model itself says
to everyday instructions (``REPLAY_INSTRUCTIONS``) keeps its general behaviour, with no corpus to download and
for any model: stage 0 trains on it beside the facts, and stage 3 may descend on it as a further retain set.
The instructions are disjoint from the probe, and the answers are never the texts that measure the model.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from grail.batching import Encoded
from grail.data.general import REPLAY_INSTRUCTIONS
from grail.scoring import chat_prompts, generate

MAX_NEW_TOKENS = 32


def replay_instructions(count: int, seed: int) -> list[str]:
    """``count`` instructions, a fixed sample for the seed."""
    if count > len(REPLAY_INSTRUCTIONS):
        raise ValueError(f"data.general_replay: at most {len(REPLAY_INSTRUCTIONS)} replay instructions exist, "
                         f"got {count}")
    return random.Random(f"replay-{seed}").sample(REPLAY_INSTRUCTIONS, count)


@torch.no_grad()
def generate_replay(model: nn.Module, tokenizer: PreTrainedTokenizerBase, instructions: Sequence[str],
                    batch_size: int, device: torch.device | str) -> list[dict]:
    """The model's greedy answers: [{"instruction", "response", "finished"}] (finished: it ended with EOS)."""
    prompts = chat_prompts(tokenizer, instructions)
    responses = generate(model, tokenizer, prompts, MAX_NEW_TOKENS, batch_size, device, keep_ids=True)
    return [{"instruction": q, "response": tokenizer.decode(ids, skip_special_tokens=True).strip(),
             "finished": tokenizer.eos_token_id in ids} for q, ids in zip(instructions, responses)]


def replay_items(tokenizer: PreTrainedTokenizerBase, records: Sequence[dict]) -> list[Encoded]:
    """Replay records as training examples: the instruction as the model was asked it, its answer as target."""
    prompts = chat_prompts(tokenizer, [r["instruction"] for r in records])
    items = []
    for prompt, record in zip(prompts, records):
        answer = tokenizer(record["response"], add_special_tokens=False).input_ids
        if record["finished"]:
            answer.append(tokenizer.eos_token_id)
        if answer:
            items.append(Encoded(tuple(prompt), tuple(answer)))
    return items
