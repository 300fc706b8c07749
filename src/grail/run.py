"""A run folder and the GRAIL pipeline over it: data -> stage 0 -> 1 -> 2 -> 3 -> evaluation -> report.

Every step writes its output atomically and is skipped when its output is already there, so an interrupted
run resumes where it stopped (training stages also resume mid-stage, from their last finished epoch). A
folder that holds a run of another config is never written to.

    RUN/config.yaml                 the resolved config
    RUN/data.jsonl                  the data used, in our JSONL format
    RUN/general_replay.jsonl        the base model's own answers to general instructions (replay data)
    RUN/adapter_vanilla/            stage 0 (peft format)
    RUN/importance.safetensors      stage 1: "<domain>/<scope>:<param>" -> importance scores
    RUN/masks.safetensors           stage 2: "op_ur.<param>", "op_rr.<param>", "frozen.<param>" -> bool masks
    RUN/adapter_unlearned/          stage 3 (peft format)
    RUN/evaluations/<model>.json    scores of each model (base: no generation-based scores)
    RUN/results.json, RUN/report.md
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from functools import cached_property, reduce
from operator import or_
from pathlib import Path

import torch
import yaml
from torch import nn

from grail import distributed, io
from grail.audit import audit
from grail.batching import Encoded, encode_all
from grail.compare import BUDGET as UTILITY_BUDGET
from grail.compare import write_comparison, write_general_table
from grail.config import ConfigError, RunConfig, build_config
from grail.data.builtin import builtin_benchmark
from grail.data.examples import Benchmark
from grail.data.general import OOD_RETAIN_TEXT
from grail.data.loaders import load_jsonl, load_knowundo_dir, load_knowundo_hub
from grail.evaluation import evaluate, text_items, utility_check_ppl
from grail.figures import plot_jaccard, plot_pareto, plot_scatter, plot_sweep, top_sets
from grail.general_eval import general_ability, task_manager
from grail.methods import Method, get_method, sweep_methods
from grail.models import base_weights, cache_dir, load_base, load_trainable_state, make_trainable, save_trainable
from grail.replay import generate_replay, replay_instructions, replay_items
from grail.report import results_document, write_report
from grail.stages.finetune import finetune
from grail.stages.gradients import gradient_means, importance, importance_by_dataset
from grail.stages.localize import (
    GENERAL_DATASET,
    Localizer,
    flatten_masks,
    localize,
    memflex_frozen,
    memflex_selection,
    unflatten_masks,
)
from grail.stages.objectives import TopK, topk_reference
from grail.stages.unlearn import UpdateMasks, unlearn

STAGES = ("finetune", "localize", "unlearn", "evaluate")


class RunFolderError(RuntimeError):
    """The folder cannot hold this run (another config's run, or not a run folder)."""


def load_benchmark(config: RunConfig) -> Benchmark:
    data = config.data
    if data.source == "builtin":
        benchmark = builtin_benchmark(config.seed, data.people, data.books)
    elif data.source == "jsonl":
        benchmark = load_jsonl(data.path)
    elif data.source == "knowundo":
        benchmark = load_knowundo_dir(data.path, data.domains or ["privacy", "copyright"], data.split)
    else:
        benchmark = load_knowundo_hub(data.domains or ["privacy", "copyright"], data.split,
                                      data.path or "zjunlp/KnowUnDo")
    return benchmark.select(data.domains) if data.domains else benchmark


def _config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            diffs += _config_differences(a[key], b[key], path + ".")
        elif a.get(key) != b.get(key):
            diffs.append(f"{path}: {a.get(key)!r} -> {b.get(key)!r}")
    return diffs


class Run:
    """One run folder. ``Run(folder, config)`` creates or resumes it; ``Run(folder)`` opens an existing one."""

    def __init__(self, folder: str | Path, config: RunConfig | None = None, progress: bool = False,
                 device: str | None = None, on_epoch_end: Callable[[str, int], None] | None = None) -> None:
        self.folder = Path(folder)
        self.progress = progress and distributed.is_main()
        self.device = device or distributed.default_device()
        self.on_epoch_end = on_epoch_end
        config_file = self.folder / "config.yaml"
        has_config, occupied = distributed.main_value(  # what process 0 sees decides, for every process
            (config_file.is_file(), self.folder.exists() and any(self.folder.iterdir())))
        if has_config:
            stored = build_config(yaml.safe_load(config_file.read_text()), source=str(config_file))
            if config is not None and config.to_dict() != stored.to_dict():
                diffs = _config_differences(stored.to_dict(), config.to_dict())
                raise RunFolderError(f"{self.folder} holds a run of another config ({'; '.join(diffs[:5])}); "
                                     "choose another --out, or resume it without --config/--preset")
            self.config = stored
        elif config is None:
            raise RunFolderError(f"{self.folder}: not a run folder (no config.yaml)")
        elif occupied:
            raise RunFolderError(f"{self.folder} exists and is not a grail run folder; refusing to write into it")
        else:
            self.config = config
            io.write_text(config_file, config.to_yaml())
        self.timings_file = self.folder / "timings.json"

    # ---- inputs -------------------------------------------------------------------------------------------
    @cached_property
    def benchmark(self) -> Benchmark:
        benchmark = load_benchmark(self.config)
        if not io.exists(self.folder / "data.jsonl"):
            io.write_text(self.folder / "data.jsonl", benchmark.to_jsonl())
        return benchmark

    @cached_property
    def _base(self) -> tuple[nn.Module, object]:
        torch.manual_seed(self.config.seed)  # LoRA's initialisation
        base, tokenizer = load_base(self.config.model, self.config.seed)
        model = make_trainable(base, self.config.model, self.config.finetune.adapter_path)
        return model.to(self.device), tokenizer

    @property
    def model(self) -> nn.Module:
        return self._base[0]

    @property
    def tokenizer(self):
        return self._base[1]

    def encoded(self) -> dict[str, dict[str, list[Encoded]]]:
        """{scope: {domain: encoded examples}}."""
        m = self.config.model
        out: dict[str, dict[str, list[Encoded]]] = {"forget": {}, "retain": {}}
        for domain, scope, examples in self.benchmark.datasets():
            out[scope][domain] = encode_all(self.tokenizer, examples, m.prompt_format, m.max_length)
        return out

    def datasets(self) -> dict[str, list[Encoded]]:
        """{"<domain>/<scope>": encoded examples}, the paper's D_x (and ``general/retain``, the replay data, when
        localization protects general ability)."""
        enc = self.encoded()
        sets = {f"{d}/{s}": enc[s][d] for d in self.benchmark.domain_names for s in ("forget", "retain")}
        if self.config.localize.protect_general:
            sets[GENERAL_DATASET] = list(self.general_replay)
        return sets

    def memorised_sets(self) -> dict[str, list[Encoded]]:
        """{"<domain>/<set>": encoded examples} of every set the vanilla model learns: the D_x and what only
        measures unlearning (held-out retain facts, forget paraphrases)."""
        m = self.config.model
        return {f"{d}/{name}": encode_all(self.tokenizer, examples, m.prompt_format, m.max_length)
                for d, name, examples in self.benchmark.measured_sets()}

    @cached_property
    def general_replay(self) -> dict[Encoded, TopK]:
        """The base model's own answers to ``data.general_replay`` general instructions (written once per run), each
        with the base model's top-k next-token distributions on it: what replay keeps the model close to."""
        count = self.config.data.general_replay
        if not count:
            return {}
        path = self.path("general_replay.jsonl")
        with base_weights(self.model) as base:
            if not io.exists(path):
                io.write_jsonl(path, generate_replay(base, self.tokenizer, replay_instructions(count, self.config.seed),
                                                     self.config.evaluate.batch_size, self.device))
            base.eval()
            return topk_reference(base, replay_items(self.tokenizer, io.read_jsonl(path)), self.tokenizer.pad_token_id,
                                  self.device)

    @cached_property
    def mmlu_questions(self) -> list:
        """The run's fixed MMLU subset (empty when MMLU is off)."""
        per_subject = self.config.evaluate.mmlu_per_subject
        if per_subject == 0 or not self.config.evaluate.probe:
            return []
        from grail.mmlu import load_mmlu, stratified_subset

        return stratified_subset(load_mmlu(), per_subject)

    def path(self, name: str) -> Path:
        return self.folder / name

    def _record_time(self, step: str, seconds: float) -> None:
        timings = io.read_json(self.timings_file) if self.timings_file.is_file() else {}
        timings[step] = round(seconds, 1)
        io.write_json(self.timings_file, timings)

    def _epoch_hook(self, stage: str):
        return None if self.on_epoch_end is None else (lambda epoch: self.on_epoch_end(stage, epoch))

    def use_weights(self, name: str) -> nn.Module:
        """The model with the trainable weights saved in RUN/<name> (e.g. adapter_vanilla)."""
        load_trainable_state(self.model, self.path(name))
        return self.model

    # ---- stages -------------------------------------------------------------------------------------------
    def stage0_vanilla(self) -> None:
        """The vanilla model: the user's adapter, a cached one of the same config, or fine-tune now."""
        target = self.path("adapter_vanilla")
        if io.exists(target):
            return
        started = time.time()
        if self.config.finetune.adapter_path:  # a copy: the user's adapter is never written to
            with io.staged_dir(target) as tmp:
                save_trainable(self.model, tmp)
            return
        # Keyed by the data's content too: the same data config can name different data (an edited JSONL file).
        data_hash = hashlib.sha256(self.benchmark.to_jsonl().encode()).hexdigest()[:16]
        key = f"{self.config.fingerprint('seed', 'model', 'data', 'finetune')}-{data_hash}"
        cached = cache_dir() / "vanilla" / key
        if not io.exists(cached):
            replay = self.general_replay if self.config.finetune.replay_weight else None
            log = finetune(self.model, self.memorised_sets(), self.config.finetune,
                           pad_id=self.tokenizer.pad_token_id, seed=self.config.seed,
                           checkpoint_dir=self.path("checkpoints/finetune"), fingerprint=key, device=self.device,
                           progress=self.progress, on_epoch_end=self._epoch_hook("finetune"), replay=replay)
            with io.staged_dir(target) as tmp:
                save_trainable(self.model, tmp)
                io.write_json(tmp / "training_log.json", log)
            io.copy_dir(target, cached)
            self._record_time("stage0_finetune", time.time() - started)
        else:
            io.copy_dir(cached, target)
            self._record_time("stage0_finetune", 0.0)

    def stage1_gradients(self) -> dict[str, dict[str, torch.Tensor]]:
        path = self.path("importance.safetensors")
        if io.exists(path):
            return io.load_by_dataset(path)
        if self.config.gradients.one_dataset_at_a_time:
            raise ConfigError("this needs the importance scores of stage 1, which gradients.one_dataset_at_a_time "
                              "does not keep; run it on a folder without that option")
        self.stage0_vanilla()
        started = time.time()
        model = self.use_weights("adapter_vanilla")
        scores = importance(model, self.datasets(), self.config.gradients, len(self.tokenizer),
                            self.tokenizer.pad_token_id, self.config.seed, self.device, self.progress)
        io.save_by_dataset(path, scores, {"statistic": self.config.gradients.statistic})
        self._record_time("stage1_gradients", time.time() - started)
        return scores

    def stage2_masks(self) -> dict[str, dict[str, torch.Tensor]]:
        path = self.path("masks.safetensors")
        if io.exists(path):
            return unflatten_masks(io.load_tensors(path))
        if self.config.gradients.one_dataset_at_a_time:
            return self._stages12_one_dataset_at_a_time(path)
        scores = self.stage1_gradients()
        started = time.time()
        masks = localize(scores, self.benchmark.domain_names, self.config.localize)
        io.save_tensors(path, flatten_masks(masks))
        self._record_time("stage2_localize", time.time() - started)
        return masks

    def _stages12_one_dataset_at_a_time(self, path: Path) -> dict[str, dict[str, torch.Tensor]]:
        """Stages 1 and 2 with one dataset's scores in memory at a time; only the masks are kept."""
        self.stage0_vanilla()
        started = time.time()
        localizer = Localizer(self.benchmark.domain_names, self.config.localize)
        for dataset, scores in importance_by_dataset(
                self.use_weights("adapter_vanilla"), self.datasets(), self.config.gradients, len(self.tokenizer),
                self.tokenizer.pad_token_id, self.config.seed, self.device, self.progress):
            localizer.add(dataset, scores)
            del scores  # before the next dataset's are computed
        masks = localizer.masks()
        io.save_tensors(path, flatten_masks(masks))
        self._record_time("stages12_one_dataset_at_a_time", time.time() - started)
        return masks

    def stage3_unlearn(self) -> None:
        self.unlearn_method(get_method("grail"))

    def method_folder(self, name: str) -> Path:
        """Where a method's adapter lives: GRAIL's is the run's own adapter_unlearned, the others' in methods/."""
        return self.folder if name == "grail" else self.path(f"methods/{name}")

    def memflex_masks(self) -> dict[str, dict[str, torch.Tensor]]:
        """Memflex's whole-tensor frozen masks, from signed-mean random-label gradients (cached)."""
        path = self.path("memflex_gradients.safetensors")
        if not io.exists(path):
            model = self.use_weights("adapter_vanilla")
            generator = torch.Generator().manual_seed(self.config.seed)
            means = {name: gradient_means(model, items, self.config.gradients, len(self.tokenizer),
                                          self.tokenizer.pad_token_id, generator, False, self.device)
                     for name, items in self.datasets().items()}
            io.save_by_dataset(path, means)
        means = io.load_by_dataset(path)
        loc = self.config.localize
        selections = [memflex_selection(means[f"{d}/forget"], means[f"{d}/retain"], loc.memflex_mu, loc.memflex_sigma)
                      for d in self.benchmark.domain_names]
        shapes = {name: t.shape for name, t in means[f"{self.benchmark.domain_names[0]}/forget"].items()}
        frozen = memflex_frozen(selections, shapes)
        return {"op_ur": {n: torch.zeros_like(m) for n, m in frozen.items()},  # Memflex has no OP sets
                "op_rr": {n: torch.zeros_like(m) for n, m in frozen.items()}, "frozen": frozen}

    def unlearn_method(self, method: Method) -> Path:
        """Stage 3 with ``method``'s objective, masks and retain data, from the vanilla adapter."""
        folder = self.method_folder(method.name)
        target = folder / "adapter_unlearned"
        if io.exists(target):
            return target
        cfg = self.config
        unlearn_cfg = dataclasses.replace(cfg.unlearn, **method.unlearn)
        localize_cfg = dataclasses.replace(cfg.localize, **method.localize)
        domains = list(method.domains or self.benchmark.domain_names)
        self.benchmark.select(domains)  # unknown domains fail here, before any work
        # Phases: (name, domains unlearned, masks); one phase unless the method goes domain by domain.
        if method.sequential:
            phases = [(f"{method.name}-{d}", [d], localize(self.stage1_gradients(), [d], localize_cfg))
                      for d in domains]
        else:
            masks = None
            if method.masks == "grail":
                masks = self.stage2_masks() if not method.localize and method.domains is None else \
                    localize(self.stage1_gradients(), domains, localize_cfg)
            elif method.masks == "grail-per-domain":
                per_domain = [localize(self.stage1_gradients(), [d], localize_cfg) for d in domains]
                masks = {kind: {p: reduce(or_, (m[kind][p] for m in per_domain)) for p in per_domain[0][kind]}
                         for kind in per_domain[0]}
            elif method.masks == "memflex":
                masks = self.memflex_masks()
            phases = [(method.name, domains, masks)]
        started = time.time()
        model = self.use_weights("adapter_vanilla")  # a matching checkpoint then overrides these weights
        encoded = self.encoded()

        def check() -> dict[str, dict[str, float]]:
            scores = evaluate(model, self.tokenizer, self.benchmark, cfg.model.prompt_format, cfg.model.max_length,
                              cfg.evaluate.batch_size, self.device, measured=False)
            return {d: {"US": s["US"], "RS": s["RS"]} for d, s in scores["domains"].items()}

        def utility() -> float:
            return utility_check_ppl(model, self.tokenizer, cfg.evaluate.batch_size, self.device)

        general = self.general_replay if unlearn_cfg.general_weight else None

        log = []
        for phase, phase_domains, masks in phases:
            if masks is not None and folder != self.folder:
                suffix = f"_{phase_domains[0]}" if method.sequential else ""
                io.save_tensors(folder / f"masks{suffix}.safetensors", flatten_masks(masks))
            forget = {d: encoded["forget"][d] for d in phase_domains}
            retain = {d: encoded["retain"][d] for d in phase_domains}
            if method.retain_data == "ood":
                general = text_items(self.tokenizer, OOD_RETAIN_TEXT)
                retain = {d: general for d in retain}
            policy_masks = UpdateMasks.for_policy(masks, unlearn_cfg.policy, localize_cfg.use_op_ur,
                                                  localize_cfg.use_op_rr)
            checkpoints = self.path("checkpoints/unlearn" if phase == "grail" else f"checkpoints/{phase}")
            log += unlearn(model, forget, retain, unlearn_cfg, pad_id=self.tokenizer.pad_token_id, seed=cfg.seed,
                           masks=policy_masks, check=check, checkpoint_dir=checkpoints,
                           fingerprint=f"{cfg.fingerprint()}-{phase}", device=self.device, progress=self.progress,
                           on_epoch_end=self._epoch_hook("unlearn"), general=general, utility=utility)
        with io.staged_dir(target) as tmp:
            save_trainable(model, tmp)
            io.write_json(tmp / "training_log.json", log)
        self._record_time("stage3_unlearn" if method.name == "grail" else f"unlearn_{method.name}",
                          time.time() - started)
        return target

    # ---- evaluation and report ----------------------------------------------------------------------------
    def evaluate_model(self, name: str) -> dict:
        """Scores of ``base`` (the model before stage 0; teacher-forced and general scores, no generation),
        ``vanilla``, ``unlearned`` (GRAIL) or a method's model (cached in RUN/evaluations/<name>.json)."""
        path = self.path(f"evaluations/{name}.json")
        if io.exists(path):
            return io.read_json(path)
        started = time.time()
        cfg = self.config
        if name == "base":  # a model that never saw the data: what forgetting can honestly aim for
            with base_weights(self.model) as base:
                scores = evaluate(base, self.tokenizer, self.benchmark, cfg.model.prompt_format, cfg.model.max_length,
                                  cfg.evaluate.batch_size, self.device, None, general=cfg.evaluate.probe,
                                  mmlu_questions=self.mmlu_questions)
            io.write_json(path, scores)
            self._record_time("evaluate_base", time.time() - started)
            return io.read_json(path)
        weights = f"adapter_{name}" if name in ("vanilla", "unlearned") else f"methods/{name}/adapter_unlearned"
        model = self.use_weights(weights)
        scores = evaluate(model, self.tokenizer, self.benchmark, cfg.model.prompt_format, cfg.model.max_length,
                          cfg.evaluate.batch_size, self.device,
                          cfg.evaluate.max_new_tokens if cfg.evaluate.generate else None,
                          general=cfg.evaluate.probe, progress=self.progress, mmlu_questions=self.mmlu_questions)
        io.write_json(path, scores)
        self._record_time(f"evaluate_{name}", time.time() - started)
        return io.read_json(path)

    def results(self) -> dict:
        evaluations = {"base": self.evaluate_model("base"), "vanilla": self.evaluate_model("vanilla"),
                       "grail": self.evaluate_model("unlearned")}
        unlearn_log = io.read_json(self.path("adapter_unlearned/training_log.json"))
        document = results_document(self.config, evaluations, self.stage2_masks(), unlearn_log,
                                    audit(self.folder), io.read_json(self.timings_file))
        io.write_json(self.path("results.json"), document)
        write_report(self.path("report.md"), document)
        return document

    def method_scores(self, methods: list[Method], utility_budget: float | None = None) -> dict[str, dict]:
        """Run (or reuse) each method; the base, vanilla and their scores, by name. With ``utility_budget``, each
        method stops at its last epoch within that multiple of the vanilla's utility-check perplexity (stored
        apart, as ``methods/<name>-budget<b>``; keyed by the method's own name here)."""
        self.run("unlearn")
        scores = {"base": self.evaluate_model("base"), "vanilla": self.evaluate_model("vanilla")}
        for method in methods:
            own_budget = dataclasses.replace(self.config.unlearn, **method.unlearn).utility_budget
            stored = method if utility_budget in (None, own_budget) else dataclasses.replace(  # else: already is
                method, name=f"{method.name}-budget{utility_budget:g}",
                unlearn={**method.unlearn, "utility_budget": utility_budget})
            self.unlearn_method(stored)
            scores[method.name] = self.evaluate_model("unlearned" if stored.name == "grail" else stored.name)
        return scores

    def sweep(self, k_ur: list[float], k_rr: list[float]) -> dict[str, dict]:
        """GRAIL over k_UR and k_RR (paper Fig. 4): RUN/comparison/fig4_sweep.png and sweep.json."""
        loc = self.config.localize
        methods = sweep_methods(k_ur, k_rr, loc.k_ur, loc.k_rr)
        # The setting at the run's own k_UR and k_RR is GRAIL itself: reuse it rather than train it again.
        trained = [get_method("grail") if m.localize == {"k_ur": loc.k_ur, "k_rr": loc.k_rr} else m for m in methods]
        scores = self.method_scores(list({m.name: m for m in trained}.values()))
        swept = {m.name: scores[t.name] for m, t in zip(methods, trained)}
        plot_sweep(swept, self.path("comparison/fig4_sweep.png"))
        io.write_json(self.path("comparison/sweep.json"),
                      {m.name: {"localize": m.localize, "domains": {d: {k: s[k] for k in ("US", "RS", "HS")}
                                for d, s in swept[m.name]["domains"].items()}} for m in methods})
        return swept

    def general_evaluation(self, tasks: list[str], include_path: str | None, limit: int | None) -> dict[str, dict]:
        """lm-eval (or the probe, offline) on the vanilla model, GRAIL and every method in RUN/methods/ (Table II);
        writes evaluations/general_<model>.json and comparison/table2_general.{md,csv}."""
        models = {"vanilla": "adapter_vanilla"}
        if io.exists(self.path("adapter_unlearned")):
            models["grail"] = "adapter_unlearned"
        for folder in sorted(self.path("methods").glob("*/adapter_unlearned")):
            models[folder.parent.name] = str(folder.relative_to(self.folder))
        results: dict[str, dict] = {}
        manager = task_manager(include_path)
        unavailable = None
        for name, weights in models.items():
            results[name] = general_ability(self.use_weights(weights), self.tokenizer, tasks, manager, limit,
                                            self.config.evaluate.batch_size, self.device, unavailable)
            unavailable = results[name].get("reason")
            io.write_json(self.path(f"evaluations/general_{name}.json"), results[name])
        write_general_table(self.path("comparison"), results)
        return results

    def compare(self, names: list[str], utility_budget: float | None = None,
                budget: float = UTILITY_BUDGET) -> dict:
        """Run (or reuse) every named method and write the comparison tables and figures under RUN/comparison/
        (utility-matched, ``utility_budget`` set: RUN/comparison-budget<b>/). ``budget``: the general-text
        perplexity ratio to the vanilla model that the tables and the ranking call 'within budget'."""
        methods = [get_method(n) for n in names]  # unknown names fail before any work
        scores = self.method_scores(methods, utility_budget)
        folder = self.path("comparison" if utility_budget is None else f"comparison-budget{utility_budget:g}")
        plot_jaccard(top_sets(self.stage1_gradients(), self.config.localize.k_ur), folder / "fig3_jaccard.png")
        plot_scatter(scores, folder / "forget_vs_retain.png")
        plot_pareto(scores, folder / "pareto.png", budget)
        return write_comparison(folder, scores, budget)

    def run(self, until: str = "evaluate") -> dict | None:
        """Run the pipeline up to and including ``until`` (one of STAGES), skipping what is done."""
        if until not in STAGES:
            raise ConfigError(f"unknown stage {until!r}; known: {STAGES}")
        self.benchmark  # noqa: B018  (load and snapshot the data first: bad input fails before any work)
        steps = {"finetune": self.stage0_vanilla, "localize": self.stage2_masks, "unlearn": self.stage3_unlearn,
                 "evaluate": self.results}
        result = None
        for stage in STAGES[: STAGES.index(until) + 1]:
            result = steps[stage]()
        return result if until == "evaluate" else None
