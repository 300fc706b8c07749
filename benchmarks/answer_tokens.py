"""Where a run's models find the forget and holdout answers likely: per domain and set, the mean log-probability of
the end-of-answer token and of the answer's other tokens, under every model the run folder holds (the base model,
the vanilla model, GRAIL, the oracle once `grail attack` has trained it, the methods of `grail compare`).

The membership-inference attacks and the calibrated stop score the mean over all answer tokens; this splits it, so
that forgetting content (the other tokens) and unlearning the format (where an answer ends) can be told apart.

    python benchmarks/answer_tokens.py RUN [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean

from torch import nn

from grail.batching import Encoded, encode_all
from grail.inspection import held_models, model_weights
from grail.pipeline import Pipeline
from grail.stages.objectives import reference_log_probs
from grail.tables import markdown

SETS = ("forget", "holdout")


def split_means(items: list[Encoded], log_probs: list[list[float]], eos_id: int) -> dict:
    """Mean over examples of the end-of-answer token's log-probability (the answers that end with it) and of the mean
    over the other answer tokens; ``all``: the mean over every answer token, as the LOSS attack scores."""
    ended = [lp[-1] for x, lp in zip(items, log_probs) if x.answer_ids[-1] == eos_id]
    others = [mean(lp[:-1] if x.answer_ids[-1] == eos_id else lp) for x, lp in zip(items, log_probs)
              if len(lp) > (x.answer_ids[-1] == eos_id)]
    return {"end_of_answer": mean(ended) if ended else None, "other_tokens": mean(others) if others else None,
            "all": mean(mean(lp) for lp in log_probs)}


def _answer_log_probs(model: nn.Module, items: list[Encoded], pad_id: int, device) -> list[list[float]]:
    """Each item's log-probability of each of its answer tokens, in the items' order."""
    per_item = reference_log_probs(model, items, pad_id, device, full=False)
    return [per_item[x].tolist() for x in items]


def measure(run: Path) -> dict:
    """{model: {domain: {set: split_means}}} for every model the folder holds."""
    pipeline = Pipeline(run)
    pipeline.model.eval()
    m, tokenizer = pipeline.config.model, pipeline.tokenizer
    sets = {d.name: {s: encode_all(tokenizer, getattr(d, s), m.prompt_format, m.max_length) for s in SETS}
            for d in pipeline.benchmark.domains}
    out: dict = {}
    for name in held_models(pipeline):
        with model_weights(pipeline, name) as model:
            model.eval()
            out[name] = {d: {s: split_means(items, _answer_log_probs(model, items, tokenizer.pad_token_id,
                                                                     pipeline.device), tokenizer.eos_token_id)
                             for s, items in by_set.items() if items}
                         for d, by_set in sets.items()}
    return out


def render(measured: dict) -> str:
    rows = [[model, domain, name, v["end_of_answer"], v["other_tokens"], v["all"]]
            for model, domains in measured.items() for domain, by_set in domains.items()
            for name, v in by_set.items()]
    return markdown(["model", "domain", "set", "end-of-answer token", "other answer tokens", "all (LOSS)"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    args = parser.parse_args()
    measured = measure(args.run)
    print(json.dumps(measured, indent=1) if args.json else render(measured))


if __name__ == "__main__":
    main()
