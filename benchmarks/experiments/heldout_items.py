"""Where held-out retention goes, fact by fact (RESULTS.md, *What the held-out figure hides*): for each held-out
retain fact of a domain, the teacher-forced answer-token accuracy and the model's argmax at the first answer token,
for the vanilla and the unlearned model of a run folder. Usage:
python benchmarks/experiments/heldout_items.py RUN_FOLDER [DOMAIN]"""

import sys

import torch

from grail.batching import encode_all
from grail.evaluation import teacher_forced
from grail.pipeline import Pipeline

run = Pipeline(sys.argv[1])
name = sys.argv[2] if len(sys.argv) > 2 else "privacy"
domain = next(d for d in run.benchmark.domains if d.name == name)
items = encode_all(run.tokenizer, domain.retain_heldout, run.config.model.prompt_format, run.config.model.max_length)
for weights in ("adapter_vanilla", "adapter_unlearned"):
    model = run.use_weights(weights).eval()
    accuracy = teacher_forced(model, items, run.tokenizer.pad_token_id, 32, run.device)[0]
    print(weights)
    for example, item, right in zip(domain.retain_heldout, items, accuracy):
        with torch.no_grad():
            logits = model(torch.tensor([item.prompt_ids], device=run.device)).logits[0, -1]
        first, argmax = (run.tokenizer.decode([t]) for t in (item.answer_ids[0], int(logits.argmax())))
        print(f"  {100 * right:5.1f} %  {example.prompt!r} -> {example.answer!r}: "
              f"first token {first!r}, argmax {argmax!r}")
