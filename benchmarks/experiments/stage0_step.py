"""Stage 0's step timed on its own, part by part, on a run folder's real data (RESULTS.md, *Time*): 4 facts forward
and backward, one replay example forward and backward, AdamW; the mean of steps 3-20. Run it with and
without ``GOMP_SPINCOUNT=1000`` to see the threads wait. Usage: python benchmarks/experiments/stage0_step.py RUN"""

import random
import sys
import time

import torch

from grail.batching import answer_logits, batches, collate, per_example_loss
from grail.pipeline import Pipeline
from grail.stages.objectives import topk_kl_loss

torch.set_num_threads(2)
run = Pipeline(sys.argv[1])
config = run.config.finetune
items = [x for xs in run.memorised_sets().values() for x in xs]
replay = run.general_replay
model = run.use_initial_weights()
model.train()
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
pad_id = run.tokenizer.pad_token_id
replayed = list(replay)
parts = dict.fromkeys(("facts forward", "facts backward", "replay forward", "replay backward", "optimizer"), 0.0)
order = list(batches(items, config.batch_size, random.Random(0)))[:20]
for step, index in enumerate(order):
    marks = [time.perf_counter()]
    batch = collate([items[i] for i in index], pad_id)
    loss = per_example_loss(answer_logits(model, batch), batch).mean()
    marks.append(time.perf_counter())
    loss.backward()
    marks.append(time.perf_counter())
    kl, _ = topk_kl_loss(model, [replayed[step % len(replayed)]], pad_id, "cpu", replay)
    marks.append(time.perf_counter())
    (config.replay_weight * kl).backward()
    marks.append(time.perf_counter())
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    marks.append(time.perf_counter())
    if step >= 2:
        for name, start, end in zip(parts, marks, marks[1:]):
            parts[name] += end - start
steps = len(order) - 2
print({name: round(seconds / steps, 3) for name, seconds in parts.items()},
      f"step {sum(parts.values()) / steps:.3f} s")
