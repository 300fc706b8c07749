"""Experiments on a run: the other unlearning methods (``methods.py``), the comparison tables and figures in
the paper's shape, the k_UR / k_RR sweep and lm-eval's general ability. Every method starts from the run's
vanilla model and goes through the pipeline's stage 3 (``Pipeline.unlearn_from_vanilla``); what differs is in the
method: its objective (config overrides), its masks (a builder registered here), its retain data and whether it
unlearns the domains one after the other (the phases built here).

    RUN/methods/<method>/adapter_unlearned/   a method's unlearned model (with its masks)
    RUN/memflex_gradients.safetensors         Memflex's signed-mean gradients
    RUN/comparison[-budget<b>]/               tables (Markdown, CSV, JSON), ranking.md and figures
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from functools import reduce
from operator import or_

import torch

from grail import io
from grail.compare import BUDGET as UTILITY_BUDGET
from grail.compare import write_comparison, write_general_table
from grail.config import LocalizeConfig
from grail.data.examples import DataError
from grail.data.general import OOD_RETAIN_TEXT
from grail.evaluation import text_items
from grail.figures import plot_jaccard, plot_pareto, plot_scatter, plot_sweep, top_sets
from grail.general_eval import general_ability, task_manager
from grail.methods import METHODS, Method, get_method, sweep_methods
from grail.model_names import ModelName
from grail.pipeline import Masks, Phase, Pipeline, unlearned_methods, weights_folder
from grail.stages.gradients import gradient_means
from grail.stages.localize import localize, memflex_frozen, memflex_selection, save_masks

MaskBuilder = Callable[[Pipeline, LocalizeConfig, list[str]], Masks | None]
"""(the run's pipeline, the method's localize config, the domains of a phase) -> masks, or None: nothing frozen."""


def _no_masks(pipeline: Pipeline, localize_cfg: LocalizeConfig, domains: list[str]) -> None:
    return None


def _grail_masks(pipeline: Pipeline, localize_cfg: LocalizeConfig, domains: list[str]) -> Masks:
    """GRAIL's F over the given domains; the run's own masks when nothing differs from the run."""
    if localize_cfg == pipeline.config.localize and domains == pipeline.benchmark.domain_names:
        return pipeline.stage2_masks()
    return localize(pipeline.stage1_gradients(), domains, localize_cfg)


def _grail_per_domain_masks(pipeline: Pipeline, localize_cfg: LocalizeConfig, domains: list[str]) -> Masks:
    """Each domain's own GRAIL masks, merged (union) without cross-domain overlap handling."""
    per_domain = [localize(pipeline.stage1_gradients(), [d], localize_cfg) for d in domains]
    return {kind: {p: reduce(or_, (m[kind][p] for m in per_domain)) for p in per_domain[0][kind]}
            for kind in per_domain[0]}


def _memflex_masks(pipeline: Pipeline, localize_cfg: LocalizeConfig, domains: list[str]) -> Masks:
    """Memflex: whole tensors frozen unless cosine(G_forget, G_retain) < mu and mean |G_forget| > sigma, from
    signed-mean random-label gradients (cached in the run), per domain, then combined."""
    def compute() -> dict:
        model = pipeline.use_weights("adapter_vanilla")
        generator = torch.Generator().manual_seed(pipeline.config.seed)
        cfg, tokenizer = pipeline.config.gradients, pipeline.tokenizer
        return {name: gradient_means(model, items, cfg, len(tokenizer), tokenizer.pad_token_id, generator, False,
                                     pipeline.device)
                for name, items in pipeline.datasets().items()}

    means = pipeline.run_folder.cached("memflex_gradients.safetensors", compute, io.save_by_dataset,
                                       io.load_by_dataset)
    selections = [memflex_selection(means[f"{d}/forget"], means[f"{d}/retain"], localize_cfg.memflex_mu,
                                    localize_cfg.memflex_sigma) for d in domains]
    frozen = memflex_frozen(selections, {name: t.shape for name, t in means[f"{domains[0]}/forget"].items()})
    return {"op_ur": {n: torch.zeros_like(m) for n, m in frozen.items()},  # Memflex has no OP sets
            "op_rr": {n: torch.zeros_like(m) for n, m in frozen.items()}, "frozen": frozen}


MASK_BUILDERS: dict[str, MaskBuilder] = {
    "none": _no_masks,
    "grail": _grail_masks,
    "grail-per-domain": _grail_per_domain_masks,
    "memflex": _memflex_masks,
}


def mask_builder(name: str) -> MaskBuilder:
    if name not in MASK_BUILDERS:
        raise KeyError(f"unknown masks {name!r}; known: {sorted(MASK_BUILDERS)}")
    return MASK_BUILDERS[name]


def comparison_folder(utility_budget: float | None = None, target: str | None = None) -> str:
    """Where ``grail compare`` writes its tables, relative to the run folder."""
    return ("comparison" + ("" if utility_budget is None else f"-budget{utility_budget:g}")
            + ("" if target is None else f"-{target}"))


class Experiments:
    """The methods, comparisons and sweeps on one run folder, through its pipeline: every method starts from the
    pipeline's vanilla model and trains through its stage 3, so what the pipeline offers is all they rely on.
    ``methods``: the methods known by name (the registry, or it with a user's methods file)."""

    def __init__(self, pipeline: Pipeline, methods: Mapping[str, Method] = METHODS) -> None:
        self.pipeline = pipeline
        self.methods = methods

    def unlearn_method(self, method: Method) -> None:
        """``method``'s unlearned model (GRAIL's is the pipeline's stage 3), trained unless the run holds it."""
        pipeline = self.pipeline
        if method.name == ModelName.GRAIL:
            pipeline.stage3_unlearn()
            return
        target = pipeline.path(weights_folder(method.name))
        if io.exists(target):  # done: its masks need not be built again
            return
        unlearn_cfg = dataclasses.replace(pipeline.config.unlearn, **method.unlearn)  # validated by the section
        localize_cfg = dataclasses.replace(pipeline.config.localize, **method.localize)
        groups = method.stage3_passes(pipeline.benchmark.domain_names)
        pipeline.benchmark.select([d for g in groups for d in g])  # unknown domains fail here, before any work
        build = mask_builder(method.masks)
        masks = [build(pipeline, localize_cfg, g) for g in groups]
        encoded = pipeline.encoded()
        general_text = text_items(pipeline.tokenizer, OOD_RETAIN_TEXT) if method.retain_data == "ood" else None
        phases = []
        for group, group_masks in zip(groups, masks):
            name = f"{method.name}-{group[0]}" if method.sequential else method.name
            retain = {d: general_text if general_text is not None else encoded["retain"][d] for d in group}
            phases.append(Phase(name, {d: encoded["forget"][d] for d in group}, retain, group_masks,
                                f"checkpoints/{name}"))
            if group_masks is not None:  # beside its weights: what it was allowed to move
                suffix = f"_{group[0]}" if len(groups) > 1 else ""
                save_masks(target.parent / f"masks{suffix}.safetensors", group_masks)
        pipeline.unlearn_from_vanilla(method.name, phases, unlearn_cfg, localize_cfg)

    def stored_method(self, method: Method, utility_budget: float | None, target: str | None = None) -> Method:
        """The method as the folder holds it: itself, or under another ``utility_budget`` or forgetting ``target``
        than its own a copy named ``<name>-budget<b>`` / ``<name>-<target>`` with them (a target held as often as
        the run checks its own, ``unlearn.target_check_steps``)."""
        own = dataclasses.replace(self.pipeline.config.unlearn, **method.unlearn)
        overrides, suffix = {}, ""
        if utility_budget not in (None, own.utility_budget):
            overrides["utility_budget"], suffix = utility_budget, f"-budget{utility_budget:g}"
        if target not in (None, own.target):
            overrides.update(target=target, target_check_steps=self.pipeline.config.unlearn.target_check_steps)
            suffix += f"-{target}"
        if not overrides:
            return method
        return dataclasses.replace(method, name=method.name + suffix, unlearn={**method.unlearn, **overrides})

    def method_scores(self, methods: list[Method], utility_budget: float | None = None,
                      target: str | None = None) -> dict[str, dict]:
        """Run (or reuse) each method; the base, vanilla and their scores, by name. With ``utility_budget``, each
        method keeps its last weights within that multiple of the vanilla's utility-check perplexity; with
        ``target``, each is held to that forgetting target (``unlearn.target``), so methods compare at equal
        forgetting (stored apart, as ``methods/<name>-budget<b>-<target>``; keyed by the method's own name here)."""
        pipeline = self.pipeline
        pipeline.run("unlearn")
        scores = {name: pipeline.evaluate_model(name) for name in (ModelName.BASE, ModelName.VANILLA)}
        for method in methods:
            stored = self.stored_method(method, utility_budget, target)
            self.unlearn_method(stored)
            scores[method.name] = pipeline.evaluate_model(stored.name)
        return scores

    def compare(self, names: list[str], utility_budget: float | None = None,
                budget: float = UTILITY_BUDGET, attacks: bool = True, target: str | None = None) -> dict:
        """Run (or reuse) every named method and write the comparison tables and figures under RUN/comparison/
        (utility-matched, ``utility_budget`` set: RUN/comparison-budget<b>/; forgetting-matched, ``target`` set:
        RUN/comparison[-budget<b>]-<target>/). ``budget``: the general-text perplexity ratio to the vanilla model
        that the tables and the ranking call 'within budget'. ``attacks``: also attack every method against the
        oracle (``grail attack``) for the robustness table; left out, with a warning, when the data has no
        holdout."""
        methods = [get_method(n, self.methods) for n in names]  # unknown names and domains fail before any work
        pipeline = self.pipeline
        for method in (m for m in methods if m.domains):
            try:
                pipeline.benchmark.select(list(method.domains))
            except DataError as err:
                raise DataError(f"method {method.name!r}: {err}") from None
        scores = self.method_scores(methods, utility_budget, target)
        folder = pipeline.path(comparison_folder(utility_budget, target))
        plot_jaccard(top_sets(pipeline.stage1_gradients(), pipeline.config.localize.k_ur), folder / "fig3_jaccard.png")
        plot_scatter(scores, folder / "forget_vs_retain.png")
        plot_pareto(scores, folder / "pareto.png", budget)
        return write_comparison(folder, scores, budget, self.attack_summary(
            [self.stored_method(m, utility_budget, target).name for m in methods if m.name != ModelName.GRAIL])
            if attacks else None)

    def attack_summary(self, methods: list[str]) -> dict | None:
        """``grail attack`` on GRAIL, the vanilla model, the oracle and ``methods`` (None: the data has no
        holdout, which the attacks need; a warning says so)."""
        from grail.attacks.runner import Attacks

        try:
            attacks = Attacks(self.pipeline)
        except DataError as err:
            warnings.warn(f"robustness table left out: {err}", stacklevel=2)
            return None
        return attacks.run(methods)

    def sweep(self, k_ur: list[float], k_rr: list[float]) -> dict[str, dict]:
        """GRAIL over k_UR and k_RR (paper Fig. 4): RUN/comparison/fig4_sweep.png and sweep.json."""
        pipeline = self.pipeline
        loc = pipeline.config.localize
        methods = sweep_methods(k_ur, k_rr, loc.k_ur, loc.k_rr)
        # The setting at the run's own k_UR and k_RR is GRAIL itself: reuse it rather than train it again.
        trained = [get_method(ModelName.GRAIL) if m.localize == {"k_ur": loc.k_ur, "k_rr": loc.k_rr} else m
                   for m in methods]
        scores = self.method_scores(list({m.name: m for m in trained}.values()))
        swept = {m.name: scores[t.name] for m, t in zip(methods, trained)}
        plot_sweep(swept, pipeline.path("comparison/fig4_sweep.png"))
        io.write_json(pipeline.path("comparison/sweep.json"),
                      {m.name: {"localize": m.localize, "domains": {d: {k: s[k] for k in ("US", "RS", "HS")}
                                for d, s in swept[m.name]["domains"].items()}} for m in methods})
        return swept

    def general_evaluation(self, tasks: list[str], include_path: str | None, limit: int | None) -> dict[str, dict]:
        """lm-eval (or the probe, offline) on the vanilla model, GRAIL and every method in RUN/methods/ (Table II);
        writes evaluations/general_<model>.json and comparison/table2_general.{md,csv}."""
        pipeline = self.pipeline
        unlearned = io.exists(pipeline.path(weights_folder(ModelName.GRAIL)))
        models = [ModelName.VANILLA] + ([ModelName.GRAIL] if unlearned else [])
        models += unlearned_methods(pipeline.folder)
        results: dict[str, dict] = {}
        manager = task_manager(include_path)
        unavailable = None
        for name in models:
            results[name] = general_ability(pipeline.use_weights(weights_folder(name)), pipeline.tokenizer, tasks,
                                            manager, limit, pipeline.config.evaluate.batch_size, pipeline.device,
                                            unavailable)
            unavailable = results[name].get("reason")
            io.write_json(pipeline.path(f"evaluations/general_{name}.json"), results[name])
        write_general_table(pipeline.path("comparison"), results)
        return results
