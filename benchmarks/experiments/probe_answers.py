"""What a run's model answers to the general probe (RESULTS.md, *Stage 0*): each question, its greedy answer as
scored (24 new tokens) and whether it counts. Usage: python benchmarks/experiments/probe_answers.py RUN [MODEL]
with MODEL a weights folder of the run (default adapter_vanilla)."""

import sys

from grail.evaluation import probe_answers
from grail.pipeline import Pipeline

run = Pipeline(sys.argv[1])
model = run.use_weights(sys.argv[2] if len(sys.argv) > 2 else "adapter_vanilla")
for question, answer, right in probe_answers(model, run.tokenizer, run.config.evaluate.batch_size, run.device):
    print("right" if right else "WRONG", repr(question), "->", repr(answer))
