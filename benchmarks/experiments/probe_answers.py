"""What a run's model answers to the general probe (RESULTS.md, *Stage 0*): each question, its greedy answer as
scored (24 new tokens) and whether it counts. Usage: python benchmarks/experiments/probe_answers.py RUN [MODEL]
with MODEL a weights folder of the run (default adapter_vanilla)."""

import sys

from grail.data.general import GENERAL_PROBE
from grail.evaluation import _accepted, chat_prompts, generate
from grail.pipeline import Pipeline

run = Pipeline(sys.argv[1])
model = run.use_weights(sys.argv[2] if len(sys.argv) > 2 else "adapter_vanilla")
questions = [q for q, _ in GENERAL_PROBE]
answers = generate(model, run.tokenizer, chat_prompts(run.tokenizer, questions), 24, run.config.evaluate.batch_size,
                   run.device)
for (question, accepted), answer in zip(GENERAL_PROBE, answers):
    print("right" if _accepted(answer, accepted) else "WRONG", repr(question), "->", repr(answer))
