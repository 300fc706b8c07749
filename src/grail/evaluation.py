"""Scoring a model on every domain's forget and retain sets, and on the general ('otherwise') scope."""

from __future__ import annotations

import re
from collections.abc import Sequence
from statistics import mean

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from grail.batching import Encoded, answer_logits, batches, collate, encode_all
from grail.data.examples import Benchmark, Example
from grail.data.general import GENERAL_PROBE, GENERAL_TEXT
from grail.metrics import (
    contains_span,
    harmonic_success,
    mean_log_prob,
    perplexity,
    rouge_l,
    token_accuracy,
)


@torch.no_grad()
def teacher_forced(model: nn.Module, items: Sequence[Encoded], pad_id: int, batch_size: int,
                   device: torch.device | str) -> tuple[list[float], list[float], list[list[int]]]:
    """Per example: answer-token accuracy in [0, 1], mean log-probability, and the argmax decode's ids."""
    accuracy, log_prob, decoded = [0.0] * len(items), [0.0] * len(items), [[] for _ in items]
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
             max_new_tokens: Sequence[int] | int, batch_size: int, device: torch.device | str) -> list[str]:
    """Greedy continuations of token-id prompts (left-padded batches)."""
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    items = [Encoded(tuple(p), ()) for p in prompts]
    texts = [""] * len(prompts)
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
            texts[i] = tokenizer.decode(out[row, width:], skip_special_tokens=True)
    return texts


def score_set(model: nn.Module, tokenizer: PreTrainedTokenizerBase, examples: Sequence[Example],
              items: Sequence[Encoded], batch_size: int, device: torch.device | str,
              max_new_tokens: int | None = None) -> dict:
    """One dataset's scores; generation-based ones only when ``max_new_tokens`` is given."""
    accuracy, log_prob, decoded = teacher_forced(model, items, tokenizer.pad_token_id, batch_size, device)
    scores = {
        "n": len(items),
        "accuracy": 100.0 * mean(accuracy),
        "ppl": perplexity(log_prob),
        "rouge_l": mean(rouge_l(tokenizer.decode(d, skip_special_tokens=True), ex.answer)
                        for d, ex in zip(decoded, examples)),
    }
    if max_new_tokens is not None:
        budgets = [min(max_new_tokens, len(x.answer_ids) + 4) for x in items]
        texts = generate(model, tokenizer, [x.prompt_ids for x in items], budgets, batch_size, device)
        scores["rouge_l_generation"] = mean(rouge_l(t, ex.answer) for t, ex in zip(texts, examples))
        with_span = [(t, ex.span) for t, ex in zip(texts, examples) if ex.span]
        if with_span:
            scores["span_rate"] = 100.0 * mean(contains_span(t, s) for t, s in with_span)
        scores["samples"] = [{"prompt": ex.prompt, "answer": ex.answer, "generation": t}
                             for ex, t in list(zip(examples, texts))[:3]]
    return scores


def summarize(domains: dict[str, dict]) -> dict:
    """Add US / RS / HS per domain and their averages over domains (Table I's 'Avg.')."""
    for scores in domains.values():
        scores["US"] = 100.0 - scores["forget"]["accuracy"]
        scores["RS"] = scores["retain"]["accuracy"]
        scores["HS"] = harmonic_success(scores["US"], scores["RS"])
        if "span_rate" in scores["forget"]:
            scores["leak_rate"] = scores["forget"]["span_rate"]
        if "span_rate" in scores["retain"]:
            scores["retain_produced_rate"] = scores["retain"]["span_rate"]
    average = {key: mean(s[key] for s in domains.values()) for key in ("US", "RS", "HS")}
    average["success"] = mean([average["US"], average["RS"]])
    return {"domains": domains, "average": average}


def text_items(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[Encoded]:
    """Plain texts as examples whose 'answer' is every token after the first (language-model loss)."""
    items = []
    for text in texts:
        ids = tokenizer(text).input_ids
        items.append(Encoded(tuple(ids[:1]), tuple(ids[1:])))
    return items


def _accepted(text: str, answers: Sequence[str]) -> bool:
    return any(re.search(rf"(?<!\w){re.escape(a.lower())}(?!\w)", text.lower()) for a in answers)


def probe_prompts(tokenizer: PreTrainedTokenizerBase) -> list[list[int]]:
    """Probe questions as the model would be asked them: its chat template if it has one."""
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                              tokenize=True, return_dict=False) for q, _ in GENERAL_PROBE]
    return [tokenizer(q + "\n\n").input_ids for q, _ in GENERAL_PROBE]


def general_scores(model: nn.Module, tokenizer: PreTrainedTokenizerBase, batch_size: int,
                   device: torch.device | str) -> dict:
    """The offline 'otherwise' scope: probe accuracy (%) and perplexity of held-out general text."""
    answers = generate(model, tokenizer, probe_prompts(tokenizer), 24, batch_size, device)
    right = [_accepted(a, accepted) for a, (_, accepted) in zip(answers, GENERAL_PROBE)]
    _, log_prob, _ = teacher_forced(model, text_items(tokenizer, GENERAL_TEXT), tokenizer.pad_token_id, batch_size,
                                    device)
    return {"probe_accuracy": 100.0 * mean(right), "probe_n": len(right), "general_text_ppl": perplexity(log_prob),
            "probe_wrong": [q for (q, _), ok in zip(GENERAL_PROBE, right) if not ok]}


def evaluate(model: nn.Module, tokenizer: PreTrainedTokenizerBase, benchmark: Benchmark, prompt_format: str,
             max_length: int, batch_size: int, device: torch.device | str, max_new_tokens: int | None = None,
             general: bool = False, progress: bool = False) -> dict:
    """Scores of every dataset, US/RS/HS per domain and averaged, and optionally the general scope."""
    was_training = model.training
    model.eval()
    domains: dict[str, dict] = {}
    datasets = list(benchmark.datasets())
    for domain, scope, examples in tqdm(datasets, desc="evaluate", disable=not progress, leave=False):
        items = encode_all(tokenizer, examples, prompt_format, max_length)
        domains.setdefault(domain, {})[scope] = score_set(model, tokenizer, examples, items, batch_size, device,
                                                          max_new_tokens)
    result = summarize(domains)
    if general:
        result["general"] = general_scores(model, tokenizer, batch_size, device)
    model.train(was_training)
    return result
