"""A finished run's models up close, without writing code: ``grail inspect``.

Three looks, none of which trains a model or writes into the run folder:

- ``answers``: per example of a set, the model's greedy answer beside the expected one, whether the answer's span
  comes back in it (evaluation's criterion for a leak on the forget set, "produced" elsewhere) and the
  teacher-forced answer-token accuracy (evaluation's accuracy, from which US and RS come);
- ``probe``: the model's answers to the general probe, right or wrong as evaluation counts them;
- ``pools``: which examples stage 3 trains on per domain (``training_pools`` under the method's ``unlearn.pools``)
  and which sets it never trains on.

Scores here are the same functions evaluation uses (``scoring.generate`` and ``teacher_forced``, ``contains_span``,
``probe_answers``), so a row here is what a number of report.md was averaged from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from statistics import mean
from typing import Any

from torch import nn

from grail import io
from grail.batching import encode_all
from grail.config import ConfigError
from grail.data.examples import (
    HELDOUT_SCOPE,
    HOLDOUT_SCOPE,
    KNOWLEDGE_SCOPE,
    PARAPHRASE_SET,
    SCOPES,
    SHOTS_SCOPE,
    DataError,
    Example,
)
from grail.data.general import GENERAL_PROBE, OOD_RETAIN_TEXT
from grail.evaluation import probe_answers
from grail.methods import METHODS, Method
from grail.metrics import contains_span
from grail.model_names import ModelName
from grail.models import base_weights
from grail.pipeline import Pipeline, unlearned_methods, weights_folder
from grail.run_folder import RunFolderError
from grail.scoring import generate, teacher_forced
from grail.stages.unlearn import training_pools
from grail.tables import markdown

LOOKS = ("answers", "probe", "pools")
"""What ``grail inspect --what`` shows."""
INSPECTED_SETS = (*SCOPES, HELDOUT_SCOPE, PARAPHRASE_SET, HOLDOUT_SCOPE, SHOTS_SCOPE, KNOWLEDGE_SCOPE)
"""The sets of a domain whose examples ``answers`` shows (``--scope``)."""
STAGE0_SETS = (*SCOPES, HELDOUT_SCOPE, PARAPHRASE_SET)
"""The sets stage 0 fine-tunes the vanilla model on (``Domain.measured_sets``); the others no model learns."""
_HOW_TO_TRAIN = {ModelName.VANILLA: "grail finetune", ModelName.GRAIL: "grail unlearn",
                 ModelName.ORACLE: "grail attack"}


# ---- which model, which domains -------------------------------------------------------------------------------------
def held_models(pipeline: Pipeline) -> list[str]:
    """The models whose weights the run folder holds (the base model always), by name."""
    named = [m for m in (ModelName.VANILLA, ModelName.GRAIL, ModelName.ORACLE)
             if io.exists(pipeline.path(weights_folder(m)))]
    return [ModelName.BASE, *named, *unlearned_methods(pipeline.folder)]


def check_model(pipeline: Pipeline, name: str) -> None:
    """A model name the run knows, whose weights the folder holds; else a ConfigError (unknown name) or a
    RunFolderError (known, not trained in this folder) saying how to get it."""
    if name == ModelName.BASE:
        return
    if name not in set(ModelName) and name not in METHODS and name not in unlearned_methods(pipeline.folder):
        raise ConfigError(f"--model: unknown model {name!r}; {pipeline.folder} holds {held_models(pipeline)}")
    folder = weights_folder(name)
    if not io.exists(pipeline.path(folder)):
        how = _HOW_TO_TRAIN.get(name, f"grail compare --methods {name}")
        raise RunFolderError(f"--model {name}: {pipeline.folder} has no {folder}/ ({how} trains it); it holds "
                             f"{held_models(pipeline)}")


def selected_domains(pipeline: Pipeline, domain: str | None) -> list[str]:
    """``[domain]``, or every domain of the run's data when None; an unknown one is a DataError naming it."""
    if domain is None:
        return pipeline.benchmark.domain_names
    try:
        return pipeline.benchmark.select([domain]).domain_names
    except DataError as err:
        raise DataError(f"--domain: {err}") from None


@contextlib.contextmanager
def model_weights(pipeline: Pipeline, name: str) -> Iterator[nn.Module]:
    """The pipeline's model with ``name``'s weights (``base``: before stage 0, restored after)."""
    if name == ModelName.BASE:
        with base_weights(pipeline.model) as model:
            yield model
    else:
        yield pipeline.use_weights(weights_folder(name))


def set_examples(pipeline: Pipeline, domain: str, name: str) -> list[Example]:
    """A domain's set by name: a scope, or ``forget_paraphrase`` (the forget examples asked in their second
    wording, as evaluation asks them)."""
    data = pipeline.benchmark.select([domain]).domains[0]
    return data.forget_paraphrases() if name == PARAPHRASE_SET else data.scope(name)


# ---- the looks ------------------------------------------------------------------------------------------------------
def answers(pipeline: Pipeline, model_name: str, scope: str, domains: list[str], limit: int | None) -> dict:
    """Per example of ``scope`` (the first ``limit`` of each domain): prompt, expected answer, greedy answer (in the
    run's prompt format, with evaluation's token budget), whether the answer's span came back, answer-token
    accuracy (%); and per domain, the share produced and the mean accuracy."""
    cfg, tokenizer = pipeline.config, pipeline.tokenizer
    rows: list[dict[str, Any]] = []
    summary: dict[str, dict[str, Any]] = {}
    with model_weights(pipeline, model_name) as model:
        for domain in domains:
            examples = set_examples(pipeline, domain, scope)[:limit]
            if not examples:
                continue
            items = encode_all(tokenizer, examples, cfg.model.prompt_format, cfg.model.max_length)
            accuracy, _, _ = teacher_forced(model, items, tokenizer.pad_token_id, cfg.evaluate.batch_size,
                                            pipeline.device)
            budgets = [min(cfg.evaluate.max_new_tokens, len(x.answer_ids) + 4) for x in items]
            texts = generate(model, tokenizer, [x.prompt_ids for x in items], budgets, cfg.evaluate.batch_size,
                             pipeline.device)
            produced = [contains_span(text, ex.leak_span) for text, ex in zip(texts, examples)]
            rows += [{"domain": domain, "index": i, "prompt": ex.prompt, "answer": ex.answer, "span": ex.leak_span,
                      "generation": text, "produced": hit, "accuracy": 100.0 * acc}
                     for i, (ex, text, hit, acc) in enumerate(zip(examples, texts, produced, accuracy))]
            summary[domain] = {"n": len(examples), "produced": sum(produced),
                               "produced_rate": 100.0 * mean(produced), "accuracy": 100.0 * mean(accuracy)}
    return {"what": "answers", "model": model_name, "scope": scope, "domains": summary, "rows": rows}


def probe(pipeline: Pipeline, model_name: str, limit: int | None) -> dict:
    """The model's greedy answers to the general probe (``GENERAL_PROBE``, the first ``limit``), each right or
    wrong as evaluation counts it (an accepted answer in it), and the accuracy (%) over those shown."""
    with model_weights(pipeline, model_name) as model:
        answered = probe_answers(model, pipeline.tokenizer, pipeline.config.evaluate.batch_size, pipeline.device)
    rows = [{"question": question, "accepted": list(accepted), "answer": answer, "right": right}
            for (question, answer, right), (_, accepted) in zip(answered, GENERAL_PROBE)][:limit]
    return {"what": "probe", "model": model_name, "n": len(rows),
            "accuracy": 100.0 * mean(r["right"] for r in rows),
            "wrong": [r["question"] for r in rows if not r["right"]], "rows": rows}


def stage3_method(name: str) -> Method:
    """The method whose stage 3 ``pools`` describes: ``grail`` (the run's own) or a built-in method."""
    if name in (ModelName.BASE, ModelName.VANILLA, ModelName.ORACLE):
        raise ConfigError(f"--model {name}: no stage 3 trains it; --what pools shows a method's stage 3 (grail or "
                          "another built-in method)")
    if name not in METHODS:
        raise ConfigError(f"--model {name}: not a built-in method, so its stage 3 settings are unknown here; "
                          f"known: {sorted(METHODS)}")
    return METHODS[name]


def pools(pipeline: Pipeline, method: Method, domains: list[str], limit: int | None) -> dict:
    """Per domain and set: how many examples there are, whether stage 0 trains on them, how many ``method``'s
    stage 3 trains on (drawn as ``Experiments.unlearn_method`` and ``unlearn`` draw them) and, with ``limit``, the
    first of those in data order; and the sets stage 3 never trains on."""
    cfg, benchmark = pipeline.config, pipeline.benchmark
    unlearn_cfg = dataclasses.replace(cfg.unlearn, **method.unlearn)
    groups = method.stage3_passes(benchmark.domain_names)
    unlearned = [d for group in groups for d in group]
    retain_set = "general text" if method.retain_data == "ood" else "retain"
    drawn: dict[tuple[str, str], list[int]] = {}
    for group in groups:  # one stage-3 pass each, as Experiments.unlearn_method makes them
        # training_pools draws by position and seed alone: (domain, index) pairs stand in for the encoded examples
        # (tests/test_inspection.py checks that the draw is the same)
        forget = {d: [(d, i) for i in range(len(set_examples(pipeline, d, "forget")))] for d in group}
        retain_size = {d: len(OOD_RETAIN_TEXT) if retain_set == "general text"
                       else len(set_examples(pipeline, d, "retain")) for d in group}
        retain = {d: [(d, i) for i in range(retain_size[d])] for d in group}
        forget_pools, retain_pool = training_pools(forget, retain, cfg.seed, unlearn_cfg.pools)
        for d, pool in forget_pools.items():
            drawn[(d, "forget")] = sorted(i for _, i in pool)
        for d in group:
            drawn[(d, retain_set)] = sorted(i for owner, i in retain_pool if owner == d)
    rows = []
    for domain in domains:
        sets = {name: set_examples(pipeline, domain, name) for name in INSPECTED_SETS}
        if retain_set == "general text":
            sets[retain_set] = [Example(text, "") for text in OOD_RETAIN_TEXT]
        for name, examples in sets.items():
            if not examples:
                continue
            trained = drawn.get((domain, name), [])
            rows.append({"domain": domain, "set": name, "examples": len(examples), "stage0": name in STAGE0_SETS,
                         "stage3_pool": name in ("forget", retain_set), "stage3": len(trained),
                         "stage3_indices": trained,
                         "prompts": [examples[i].prompt for i in trained[:limit or 0]]})
    replay = cfg.data.general_replay
    return {"what": "pools", "model": method.name, "pools": unlearn_cfg.pools, "seed": cfg.seed,
            "domains_unlearned": unlearned, "sequential": method.sequential, "rows": rows,
            "stage3_never_trains_on": sorted({r["set"] for r in rows if not r["stage3_pool"]}),
            "general_replay": {"instructions": replay, "stage0": bool(replay and cfg.finetune.replay_weight),
                               "stage3": bool(replay and unlearn_cfg.general_weight)}}


def inspect_run(pipeline: Pipeline, what: str, model: str, scope: str, domain: str | None,
                limit: int | None) -> dict:
    """``grail inspect``'s document: the look ``what`` at ``model`` on the opened run, with the run folder."""
    domains = selected_domains(pipeline, domain)
    if what == "pools":
        result = pools(pipeline, stage3_method(model), domains, limit)
    else:
        check_model(pipeline, model)
        result = (answers(pipeline, model, scope, domains, limit) if what == "answers"
                  else probe(pipeline, model, limit))
    return {"run": str(pipeline.folder), **result}


# ---- as text --------------------------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    """Text in one Markdown cell: white space runs as one space, pipes escaped."""
    return re.sub(r"\s+", " ", text).strip().replace("|", "\\|")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def render_markdown(document: dict) -> str:
    """``inspect_run``'s document as a reader sees it: a line of what it is, Markdown tables, a summary."""
    what, model = document["what"], document["model"]
    if what == "answers":
        lines = [f"`{model}` on the `{document['scope']}` set of {document['run']} (produced: the answer's span is "
                 f"in the greedy answer; accuracy: teacher-forced answer tokens)", ""]
        if not document["rows"]:
            return "\n".join(lines + [f"no `{document['scope']}` examples in the data"]) + "\n"
        lines.append(markdown(["domain", "#", "prompt", "expected", "greedy answer", "produced", "accuracy %"],
                              [[r["domain"], str(r["index"]), _cell(r["prompt"]), _cell(r["answer"]),
                                _cell(r["generation"]), _yes(r["produced"]), r["accuracy"]]
                               for r in document["rows"]]))
        lines += [f"{domain}: {s['produced']} of {s['n']} produced, answer-token accuracy {s['accuracy']:.2f} %"
                  for domain, s in document["domains"].items()]
        return "\n".join(lines) + "\n"
    if what == "probe":
        table = markdown(["question", "accepted", "answer", "right"],
                         [[_cell(r["question"]), _cell(", ".join(r["accepted"])), _cell(r["answer"]),
                           _yes(r["right"])] for r in document["rows"]])
        wrong = "; ".join(document["wrong"]) or "none"
        return (f"`{model}` on the general probe of {document['run']}\n\n{table}\n"
                f"accuracy {document['accuracy']:.2f} % ({document['n']} questions); wrong: {wrong}\n")
    table = markdown(["domain", "set", "examples", "stage 0 trains on", f"stage 3 ({model}) trains on"],
                     [[r["domain"], r["set"], str(r["examples"]), "all" if r["stage0"] else "none",
                       str(r["stage3"]) if r["stage3_pool"] else "never"] for r in document["rows"]])
    lines = [f"What trains on the data of {document['run']}: stage 3 of `{model}` with `unlearn.pools: "
             f"{document['pools']}` (seed {document['seed']}), unlearning {', '.join(document['domains_unlearned'])}"
             + (" one after the other" if document["sequential"] else ""), "", table,
             f"stage 3 never trains on: {', '.join(document['stage3_never_trains_on']) or 'nothing else'}"]
    replay = document["general_replay"]
    if replay["instructions"]:
        lines.append(f"general replay (the base model's answers to {replay['instructions']} instructions): stage 0 "
                     f"{_yes(replay['stage0'])}, stage 3 {_yes(replay['stage3'])}")
    for r in document["rows"]:
        if r["prompts"]:
            lines += ["", f"{r['domain']} {r['set']}: the first {len(r['prompts'])} examples stage 3 trains on"]
            lines += [f"- {_cell(p)}" for p in r["prompts"]]
    return "\n".join(lines) + "\n"
