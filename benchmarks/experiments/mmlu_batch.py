"""MMLU's packed scoring at several batch sizes (questions a forward pass) on the base model: time and scores
(RESULTS.md, *Time*). Usage: python benchmarks/experiments/mmlu_batch.py [BATCH ...]"""

import sys
import time

import torch

from grail.config import ModelConfig
from grail.mmlu import load_mmlu, mmlu_scores, stratified_subset
from grail.models import load_base

torch.set_num_threads(2)
model, tokenizer = load_base(ModelConfig())
questions = stratified_subset(load_mmlu(), 4)
for batch in [int(b) for b in sys.argv[1:]] or [32, 16, 8, 4]:
    started = time.time()
    scores = mmlu_scores(model, tokenizer, questions, batch, "cpu")
    print(f"{batch} questions a pass: {time.time() - started:.1f} s, {scores}", flush=True)
