"""``grail attack RUN``: every attack on every model of a run, against the oracle.

    RUN/adapter_oracle/          the oracle: stage 0 without the forget sets (what exact unlearning gives)
    RUN/evaluations/oracle.json  its scores, like every other model's
    RUN/attacks/<model>/<attack>.json  one model's raw result of one attack (per-example MIA scores, the
                                 relearning curve, scores under each precision and prompt attack) with the settings
                                 it was made with; computed once, so an interrupted attack resumes
    RUN/attacks.json             the summary against the oracle, with pass / fail per domain and attack
    RUN/attacks.md               a table per attack, one row per model, the oracle first as the reference
    RUN/relearning.png           the relearning curves

The models: the vanilla model, the oracle, GRAIL and every method already in the folder (or the named ones). A run
that brought its own vanilla model (``model.vanilla``, ``finetune.adapter_path``) has no oracle unless the folder
holds one in adapter_oracle/: its attacks are judged against the holdout instead (``attacks/report.py``).
Every attack runs on every model, but the precision attack skips the vanilla model: it was never unlearned, so
rounding its weights cannot bring anything back (its leak rate is step 0 of its relearning curve).
"""

from __future__ import annotations

import time
from statistics import mean

from torch import nn

from grail import io
from grail.attacks import prompts, relearn
from grail.attacks.evidence import folder_sha256
from grail.attacks.mia import mia_scores, token_statistics
from grail.attacks.precision import merged_copy, quantized_copy
from grail.attacks.report import attacks_markdown, summarize
from grail.batching import Encoded, encode_all
from grail.data.examples import HOLDOUT_SOURCES, DataError, Example
from grail.metrics import contains_span, rouge_l
from grail.model_names import ModelName
from grail.pipeline import Pipeline, unlearned_methods, weights_folder
from grail.scoring import generate, teacher_forced

REFERENCE_MODELS = (ModelName.ORACLE, ModelName.VANILLA)
Key = str | tuple[str, str]
"""A scored set: a domain, or (domain, prompt attack)."""


def brief(scores: dict) -> dict:
    """What is kept of ``Attacks.leak_scores``' scores of one set (not the generations)."""
    return {k: scores[k] for k in ("n", "US", "leak_rate", "leaks")}


class Attacks:
    """The attacks on one run's models (``Pipeline`` gives the folder, the data and the model)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.config = pipeline.config
        self.benchmark = pipeline.benchmark
        missing = [d.name for d in self.benchmark.domains if not d.holdout]
        if missing:
            raise DataError(f"domain(s) {missing} have no holdout examples: membership inference and the few-shot "
                            f"attack need examples of the forget set's kind that no model was trained on "
                            f"({HOLDOUT_SOURCES})")
        for domain in self.benchmark.domains:
            relearn.split_halves(len(domain.forget), self.config.seed)  # too small a forget set fails here

    def models(self, methods: list[str] | None = None) -> list[str]:
        """The oracle, the vanilla model, GRAIL (once trained) and the methods in the folder (or ``methods``)."""
        present = unlearned_methods(self.pipeline.folder)
        unknown = sorted(set(methods or []) - set(present))
        if unknown:
            raise DataError(f"--methods: {unknown} not in {self.pipeline.folder / 'methods'} (present: {present}); "
                            "train them with grail compare first")
        names = [*REFERENCE_MODELS] if self.has_oracle else [ModelName.VANILLA]
        if io.exists(self.pipeline.path(weights_folder(ModelName.GRAIL))):
            names.append(ModelName.GRAIL)
        return names + (present if methods is None else [m for m in present if m in methods])

    def run(self, methods: list[str] | None = None) -> dict:
        """Attack every model (reusing what the folder holds) and write attacks.json, attacks.md and the figure."""
        names = self.models(methods)
        if self.has_oracle:
            self.pipeline.stage0_oracle()
            self.pipeline.evaluate_model(ModelName.ORACLE)
        reports = {name: self.model_report(name) for name in names}
        summary = summarize(reports, self.config.attack, self.config.seed,
                            {d.name: d.members() for d in self.benchmark.domains})
        summary["scores"] = {name: self.pipeline.evaluate_model(name)["average"] for name in names}
        io.write_json(self.pipeline.path("attacks.json"), summary)
        io.write_text(self.pipeline.path("attacks.md"), attacks_markdown(summary))
        from grail.figures import plot_relearning

        plot_relearning(summary["relearn"], self.pipeline.path("relearning.png"))
        return summary

    @property
    def has_oracle(self) -> bool:
        """Whether the models are judged against the oracle: grail trains one unless the run brought its vanilla
        model (then only one the folder already holds counts; without it, the holdout is the reference)."""
        return not self.pipeline.brought_vanilla or io.exists(self.pipeline.path(weights_folder(ModelName.ORACLE)))

    def settings(self, name: str, attack: str) -> dict:
        """What model ``name``'s result of ``attack`` depends on: its weights (their files' SHA-256) and the
        attack's settings. A stored result made otherwise (a model trained again, an older grail's defaults) is
        computed again."""
        a = self.config.attack
        generation = {"max_new_tokens": self.config.evaluate.max_new_tokens}
        own = {"mia": {"min_k": a.min_k},
               "precision": {"precisions": a.precisions, "group_size": a.group_size, **generation},
               "prompts": {"few_shot": a.few_shot, **generation},
               "relearn": {"steps": a.relearn_steps, "lr": a.relearn_lr or self.config.finetune.lr,
                           "batch_size": a.relearn_batch_size or self.config.finetune.batch_size, **generation}}
        return {"weights": folder_sha256(self.pipeline.path(weights_folder(name))), **own[attack]}

    def model_report(self, name: str) -> dict:
        """One model's raw results: {attack: result, "seconds": {attack: s}}, each attack's stored in
        RUN/attacks/<name>/<attack>.json (computed once, so an interrupted attack resumes)."""
        plan = ["mia", "precision", "prompts", "relearn"]  # relearning last: it trains the model
        if name == ModelName.VANILLA:  # never unlearned: rounding cannot bring back what it still knows
            plan.remove("precision")
        stored = {a: self.pipeline.path(f"attacks/{name}/{a}.json") for a in plan}
        done = {a: io.read_json(path) for a, path in stored.items() if io.exists(path)}
        todo = [a for a in plan if done.get(a, {}).get("settings") != self.settings(name, a)]
        if todo:
            began = time.time()
            model = self.pipeline.use_weights(weights_folder(name))
            # what a user ships, and LoRA-free decoding is faster; relearning trains the adapter itself
            merged = merged_copy(model) if set(todo) - {"relearn"} else None
            runs = {"mia": (self.membership, merged), "precision": (self.precision, merged),
                    "prompts": (self.prompt_attacks, merged), "relearn": (self.relearning, model)}
            for attack in todo:
                run, on = runs[attack]
                started = time.time()
                result = run(on)
                done[attack] = {"settings": self.settings(name, attack), "seconds": round(time.time() - started, 1),
                                "result": result}
                io.write_json(stored[attack], done[attack])
            del merged
            self.pipeline.use_weights(weights_folder(name))
            self.pipeline.run_folder.record_time(f"attack_{name}", time.time() - began)
        return {**{a: done[a]["result"] for a in plan}, "seconds": {a: done[a]["seconds"] for a in plan}}

    # ---- the attacks --------------------------------------------------------------------------------------
    def encode(self, examples: list[Example]) -> list[Encoded]:
        """Examples as the run's model reads them (its prompt format and length)."""
        m = self.config.model
        return encode_all(self.pipeline.tokenizer, examples, m.prompt_format, m.max_length)

    def membership(self, model: nn.Module) -> dict:
        """Per domain, per set (forget, holdout): each membership score of each example."""
        tokenizer, batch = self.pipeline.tokenizer, self.config.evaluate.batch_size
        out = {}
        for domain in self.benchmark.domains:
            out[domain.name] = {}
            for name, examples in (("forget", domain.forget), ("holdout", domain.holdout)):
                stats = token_statistics(model, self.encode(examples), tokenizer.pad_token_id, batch,
                                         self.pipeline.device)
                scores = [mia_scores(s, ex.answer, self.config.attack.min_k) for s, ex in zip(stats, examples)]
                out[domain.name][name] = {key: [s[key] for s in scores] for key in scores[0]}
        return out

    def leak_scores(self, model: nn.Module, sets: dict[Key, list[Example]],
                    items: dict[Key, list[Encoded]] | None = None) -> dict[Key, dict]:
        """Per set: US (100 - answer-token accuracy, teacher-forced) and the leak rate of greedy generations, with
        the per-example leaks and generations; every set in one pass."""
        tokenizer, cfg = self.pipeline.tokenizer, self.config.evaluate
        keys = list(sets)
        encoded = [x for key in keys for x in (items[key] if items else self.encode(sets[key]))]
        examples = [ex for key in keys for ex in sets[key]]
        accuracy, _, _ = teacher_forced(model, encoded, tokenizer.pad_token_id, cfg.batch_size, self.pipeline.device)
        budgets = [min(cfg.max_new_tokens, len(x.answer_ids) + 4) for x in encoded]
        # batches of similar token budgets: a batch decodes for its longest budget
        texts = [""] * len(encoded)
        order = sorted(range(len(encoded)), key=budgets.__getitem__)
        for start in range(0, len(order), cfg.batch_size):
            chunk = order[start:start + cfg.batch_size]
            for i, text in zip(chunk, generate(model, tokenizer, [encoded[i].prompt_ids for i in chunk],
                                               [budgets[i] for i in chunk], cfg.batch_size, self.pipeline.device)):
                texts[i] = text
        out, start = {}, 0
        for key in keys:
            end = start + len(sets[key])
            leaks = [contains_span(t, ex.leak_span) for t, ex in zip(texts[start:end], examples[start:end])]
            out[key] = {"n": end - start, "US": 100.0 * (1 - mean(accuracy[start:end])),
                        "leak_rate": 100.0 * mean(leaks), "leaks": leaks, "generations": texts[start:end]}
            start = end
        return out

    def precision(self, model: nn.Module) -> dict:
        """Per domain, per format (and ``float32``: the model as it is): US and leak rate of the forget set."""
        out: dict[str, dict] = {d.name: {} for d in self.benchmark.domains}
        forget = {d.name: d.forget for d in self.benchmark.domains}
        for fmt in ["float32", *self.config.attack.precisions]:
            rounded = model if fmt == "float32" else quantized_copy(model, fmt, self.config.attack.group_size)
            for domain, scores in self.leak_scores(rounded, forget).items():
                out[domain][fmt] = brief(scores)
            del rounded
        return out

    def prompt_attacks(self, model: nn.Module) -> dict:
        """Per domain, per prompt attack: US and leak rate (prefix completion: also ROUGE-L recall and VerbMem)."""
        tokenizer, m = self.pipeline.tokenizer, self.config.model
        sets: dict[Key, list[Example]] = {}
        for domain in self.benchmark.domains:
            for name, examples in prompts.prompt_variants(domain, self.config.attack.few_shot,
                                                          self.config.seed).items():
                sets[domain.name, name] = examples
        items = {key: self.encode(examples) for key, examples in sets.items()}
        references: dict[str, list[str]] = {}
        for domain in filter(prompts.is_verbatim, self.benchmark.domains):
            key = (domain.name, "prefix_completion")
            items[key], ids = prompts.prefix_items(tokenizer, domain.forget, m.prompt_format, m.max_length)
            references[domain.name] = [tokenizer.decode(r, skip_special_tokens=True).strip() for r in ids]
            sets[key] = [Example(ex.prompt, text, text) for ex, text in zip(domain.forget, references[domain.name])]
        out: dict[str, dict] = {d.name: {} for d in self.benchmark.domains}
        for (domain, name), scores in self.leak_scores(model, sets, items).items():
            out[domain][name] = brief(scores)
            if name == "prefix_completion":
                pairs = list(zip(scores["generations"], references[domain]))
                out[domain][name]["rouge_l_recall"] = mean(rouge_l(g, t, "recall") for g, t in pairs)
                out[domain][name]["verbmem"] = mean(rouge_l(g, t) for g, t in pairs)
        return out

    def relearning(self, model: nn.Module) -> dict:
        """Fine-tune on every domain's half T; after each step count, US and leak rate on each domain's half V."""
        attack, finetune = self.config.attack, self.config.finetune
        train, measured = [], {}
        for domain in self.benchmark.domains:
            t, v = relearn.split_halves(len(domain.forget), self.config.seed)
            train += [domain.forget[i] for i in t]
            measured[domain.name] = [domain.forget[i] for i in v]
        curve = relearn.relearn(
            model, self.encode(train), attack.relearn_steps, attack.relearn_lr or finetune.lr,
            attack.relearn_batch_size or finetune.batch_size, pad_id=self.pipeline.tokenizer.pad_token_id,
            seed=self.config.seed, device=self.pipeline.device,
            measure=lambda: {d: brief(scores) for d, scores in self.leak_scores(model, measured).items()})
        return {str(k): v for k, v in curve.items()}
