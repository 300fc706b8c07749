"""GRAIL over one run folder, in the order of the paper's Algorithm 1:

    stage 0   vanilla model  fine-tune the base model on every set (or bring your own model or adapter)
    stage 1   G_x            each trainable parameter's importance for each dataset D_x (random-label gradients)
    stage 2   F              per tensor: OP-UR = (∪ top-k_UR of the forget sets) ∩ (∪ top-k_UR of the retain sets),
                             OP-RR = ∩ top-k_RR of the retain sets; F = OP-UR ∪ OP-RR
    stage 3   θ'             ascent on the forget sets, descent on the retain sets, every update ⊙ ¬F
    evaluate                 the base, vanilla and GRAIL models on every set and the general scope;
                             RUN/results.json and RUN/report.md

Each step's output is a file of the run folder (``run_folder.py``): computed once, then read back, so an
interrupted run resumes (the training stages mid-stage, from their last finished epoch). The other unlearning
methods, the comparison tables and the sweeps build on this in ``experiments.py``.

    RUN/general_replay.jsonl        the base model's own answers to general instructions (replay data)
    RUN/adapter_vanilla/            stage 0 (peft format)
    RUN/importance.safetensors      stage 1: "<domain>/<scope>:<param>" -> importance scores
    RUN/masks.safetensors           stage 2: "op_ur.<param>", "op_rr.<param>", "frozen.<param>" -> bool masks,
                                    bit-packed (1 bit per entry; older bool files still load)
    RUN/adapter_unlearned/          stage 3: GRAIL's unlearned model (peft format)
    RUN/evaluations/<model>.json    scores of each model: base (no generation-based scores), vanilla, grail
    RUN/results.json, RUN/report.md
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from grail import distributed, io, sharding
from grail.audit import audit
from grail.batching import Encoded, encode_all
from grail.calibration import NeverSeen, calibration, never_seen
from grail.config import ConfigError, LocalizeConfig, RunConfig, UnlearnConfig
from grail.data.examples import PARAPHRASE_SET, Benchmark, DataError
from grail.data.sources import load_benchmark
from grail.evaluation import SCORES_VERSION, evaluate, utility_check_ppl
from grail.model_names import ModelName
from grail.models import (
    base_weights,
    cache_dir,
    check_cache_entry,
    eval_mode,
    load_trainable,
    load_trainable_state,
    read_trainable_file,
    save_trainable,
    set_trainable,
    swapped_trainable,
    trainable_parameters,
    trainable_state,
    writable_cache_dir,
)
from grail.replay import generate_replay, replay_instructions, replay_items
from grail.report import results_document, write_report
from grail.run_folder import RunFolder, RunFolderError
from grail.stages.finetune import finetune
from grail.stages.gradients import importance, importance_by_dataset
from grail.stages.localize import Localizer, load_masks, localize, save_masks
from grail.stages.objectives import TopK, needs_oracle_log_probs, reference_log_probs, topk_reference
from grail.stages.unlearn import UpdateMasks, unlearn
from grail.training import LOOP_VERSION

STAGES = ("finetune", "localize", "unlearn", "evaluate")
Masks = dict[str, dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Phase:
    """One stage-3 pass over some domains. GRAIL's stage 3 is one phase over every domain; the methods of
    ``experiments.py`` bring their own (one per domain when sequential, general text as retain data, other masks)."""

    name: str
    """What the pass's checkpoints are fingerprinted with: a resumed pass continues only its own."""
    forget: dict[str, list[Encoded]]
    """{domain: encoded forget set}: the domains it unlearns."""
    retain: dict[str, list[Encoded]]
    """{domain: encoded retain data}, the same domains."""
    masks: Masks | None
    """From stage 2 (None: nothing frozen)."""
    checkpoints: str
    """Its checkpoint folder, relative to the run folder."""


def load_data(config: RunConfig) -> Benchmark:
    """The run's data (``load_benchmark``); a file that is there but cannot be read (no permission, a folder where a
    file should be) is a DataError naming it, not a traceback."""
    try:
        return load_benchmark(config)
    except OSError as err:
        where = err.filename or config.data.path or "the run's data"
        raise DataError(f"{where}: cannot read the data ({err.strerror or err})") from None


def unlearned_methods(folder: Path) -> list[str]:
    """The methods (other than GRAIL) whose unlearned model a run folder holds, by name."""
    return [f.parent.name for f in sorted((folder / "methods").glob("*/adapter_unlearned"))]


def weights_folder(model: str) -> str:
    """Where a model's trained weights are, relative to the run folder."""
    if model in (ModelName.VANILLA, ModelName.ORACLE):
        return f"adapter_{model}"
    return "adapter_unlearned" if model == ModelName.GRAIL else f"methods/{model}/adapter_unlearned"


class Pipeline:
    """GRAIL on one run folder. ``Pipeline(folder, config)`` creates or resumes it; ``Pipeline(folder)`` opens an
    existing one. ``run()`` goes through the stages; each ``stage*`` method returns its output, computing it
    (and what it needs) only when the folder does not hold it yet."""

    def __init__(self, folder: str | Path, config: RunConfig | None = None, progress: bool = False,
                 device: str | None = None, on_epoch_end: Callable[[str, int], None] | None = None,
                 data: Benchmark | None = None) -> None:
        """``data``: the run's data as the caller read it (``grail unlearn --model``'s files), instead of
        ``config.data``'s source."""
        try:
            self.run_folder = RunFolder(folder, config, load_data if data is None else lambda _: data)
        except OSError as err:  # a file in the way, a name too long, a folder without write permission
            hint = "; choose another --out" if config is not None else ""
            raise RunFolderError(f"{folder}: cannot write the run folder here "
                                 f"({io.write_problem(Path(folder), err)}){hint}") from None
        self.folder, self.config = self.run_folder.root, self.run_folder.config
        self.benchmark = self.run_folder.benchmark
        self.progress = progress and distributed.is_main()
        self.device = device or distributed.default_device()
        self.on_epoch_end = on_epoch_end

    def run(self, until: str = "evaluate") -> dict | None:
        """Run the pipeline up to and including ``until`` (one of STAGES), skipping what is done."""
        if until not in STAGES:
            raise ConfigError(f"unknown stage {until!r}; known: {STAGES}")
        steps = {"finetune": [self.stage0_vanilla],  # masks only: stage 1 lives inside stage 2
                 "localize": [self.stage2_masks] if self._masks_only else [self.stage1_gradients, self.stage2_masks],
                 "unlearn": [self.stage3_unlearn], "evaluate": [self.results]}
        result = None
        for stage in STAGES[: STAGES.index(until) + 1]:
            for step in steps[stage]:
                result = step()
        return result if until == "evaluate" else None

    # ---- stage 0: the vanilla model (and the oracle) ------------------------------------------------------
    def stage0_vanilla(self) -> None:
        """The vanilla model: the user's adapter or model, a cached one of the same config and data, or fine-tune
        now. A brought model's trainable weights are copied into the run (the audit's reference: the user may change
        their folder later); its other weights are read from it."""
        target = self.path(weights_folder(ModelName.VANILLA))
        if self.brought_vanilla and not io.exists(target):
            with io.staged_dir(target) as tmp:  # a copy: the user's adapter or model is never written to
                save_trainable(self.model, tmp)
            return
        self._fine_tune(ModelName.VANILLA, self.memorised_sets())

    def stage0_oracle(self) -> None:
        """The oracle: stage 0 on every set but the forget sets (and their paraphrases), same config and seed.
        It never saw what is to be forgotten: what exact unlearning (retraining without it) gives."""
        if self.brought_vanilla and not io.exists(self.path(weights_folder(ModelName.ORACLE))):
            raise ConfigError("the oracle is stage 0 without the forget sets, but this run brought its vanilla model "
                              f"({self.brought_vanilla}) and grail does not know what it was trained on")
        self._fine_tune(ModelName.ORACLE, {name: items for name, items in self.memorised_sets().items()
                                 if name.split("/")[-1] not in ("forget", PARAPHRASE_SET)})

    @property
    def brought_vanilla(self) -> str | None:
        """The config field that names the user's own vanilla model (None: stage 0 trains it)."""
        if self.config.model.vanilla is not None:
            return "model.vanilla"
        return "finetune.adapter_path" if self.config.finetune.adapter_path else None

    def _fine_tune(self, name: str, sets: dict[str, list[Encoded]]) -> None:
        """Stage 0 on ``sets`` from the base model into RUN/adapter_<name>, or a cached result of the same config
        and data (GRAIL_CACHE/<name>/)."""
        target = self.path(weights_folder(name))
        if io.exists(target):
            return
        started, step = time.time(), "stage0_finetune" if name == ModelName.VANILLA else f"stage0_{name}"
        key = self._stage0_key()
        cached = cache_dir() / name / key
        if io.exists(cached):
            check_cache_entry(cached)  # a damaged entry is named as the cache's, before the run copies it
            io.copy_dir(cached, target)
            self.run_folder.record_time(step, 0.0)
            return
        writable_cache_dir(name)  # before training: an unwritable GRAIL_CACHE would otherwise fail only after it
        model = self.use_initial_weights()
        replay = self.general_replay if self.config.finetune.replay_weight else None
        checkpoints = self.path("checkpoints/finetune" + ("" if name == ModelName.VANILLA else f"_{name}"))
        log = finetune(model, sets, self.config.finetune, pad_id=self.tokenizer.pad_token_id,
                       seed=self.config.seed, checkpoint_dir=checkpoints,
                       fingerprint=key, device=self.device, progress=self.progress,
                       on_epoch_end=self._epoch_hook("finetune"), replay=replay)
        with io.staged_dir(target) as tmp:
            save_trainable(model, tmp)
            io.write_json(tmp / "training_log.json", log)
        self._publish_to_cache(target, cached)
        self.run_folder.record_time(step, time.time() - started)

    def _stage0_key(self) -> str:
        """What stage 0's result is cached under: the config that trains it and the data's content (the same data
        config can name different data, an edited JSONL file; the same replay count other instructions, another
        grail version's list)."""
        key = (f"{self.config.fingerprint('seed', 'model', 'data', 'finetune')}-{self.run_folder.data_hash}"
               f"-v{LOOP_VERSION}")
        if self.config.finetune.replay_weight:
            instructions = replay_instructions(self.config.data.general_replay, self.config.seed)
            key += "-" + hashlib.sha256("\n".join(instructions).encode()).hexdigest()[:8]
        return key

    @staticmethod
    def _publish_to_cache(trained: Path, entry: Path) -> None:
        """Copy stage 0's result into the cache for later runs. Another run of the same config and data may have
        published the entry meanwhile: it holds the same, so it is kept. The run's own result is written already, so
        a cache that fails now (a full disk) costs later runs the training, and is a warning, not an error."""
        try:
            io.copy_dir(trained, entry, keep_existing=True)
        except OSError as err:
            warnings.warn(f"{entry}: stage 0's result not cached ({io.write_problem(entry, err)}); the run's own copy "
                          f"is {trained}", stacklevel=2)

    # ---- stage 1: gradient-based importance (Eq. 3) -------------------------------------------------------
    def stage1_gradients(self) -> Masks:
        """{dataset: {parameter: importance}} for the datasets D_x (``<domain>/<scope>``)."""
        if self._masks_only and not io.exists(self.path("importance.safetensors")):
            raise ConfigError("this needs the importance scores of stage 1, which gradients.one_dataset_at_a_time "
                              "and distributed: fsdp do not keep; run it on a folder without them")

        def compute() -> Masks:
            self.stage0_vanilla()
            return importance(self.use_weights("adapter_vanilla"), self.datasets(), self.config.gradients,
                              len(self.tokenizer), self.tokenizer.pad_token_id, self.config.seed, self.device,
                              self.progress)

        return self.run_folder.cached(
            "importance.safetensors", compute,
            lambda path, scores: io.save_by_dataset(path, scores, {"statistic": self.config.gradients.statistic}),
            io.load_by_dataset, step="stage1_gradients")

    # ---- stage 2: localization (Eq. 4) --------------------------------------------------------------------
    def stage2_masks(self) -> Masks:
        """{"op_ur" | "op_rr" | "frozen": {parameter: bool mask}}."""
        masks_only = self._masks_only
        return self.run_folder.cached(
            "masks.safetensors",
            self._stages12_masks_only if masks_only else
            lambda: localize(self.stage1_gradients(), self.benchmark.domain_names, self.config.localize),
            save_masks, load_masks,
            step="stages12_one_dataset_at_a_time" if masks_only else "stage2_localize")

    @property
    def _sharded(self) -> bool:
        """Whether stages 1-3 run on the model sharded over the processes (``distributed: fsdp``)."""
        return distributed.fsdp_requested(self.config.distributed)

    @property
    def _masks_only(self) -> bool:
        """Stages 1 and 2 as one step that keeps the masks only: one dataset's scores in memory at a time
        (``gradients.one_dataset_at_a_time``), or each process its rows of them (``distributed: fsdp``)."""
        return self.config.gradients.one_dataset_at_a_time or self._sharded

    def _stages12_masks_only(self) -> Masks:
        """Stages 1 and 2 with one dataset's scores in memory at a time; only the masks are kept. With
        ``distributed: fsdp`` on the model sharded over the processes: each finds its rows of every score and of
        every mask (the same entries as one process's), and the masks are gathered whole."""
        self.stage0_vanilla()
        model = self.use_weights("adapter_vanilla")
        sharded = self._sharded
        if sharded:
            sharding.shard_model(model)
        params = trainable_parameters(model)
        localizer = Localizer(self.benchmark.domain_names, self.config.localize,
                              sharding.shard_layout(params) if sharded else None)
        for dataset, scores in importance_by_dataset(
                model, self.datasets(), self.config.gradients, len(self.tokenizer),
                self.tokenizer.pad_token_id, self.config.seed, self.device, self.progress):
            localizer.add(dataset, scores)
            del scores  # before the next dataset's are computed
        masks = localizer.masks()
        if sharded:
            masks = {kind: {name: sharding.gather_rows(mask, params[name]) for name, mask in by_name.items()}
                     for kind, by_name in masks.items()}
            self._reload_whole_model()
        return masks

    def _reload_whole_model(self) -> None:
        """After a stage on the model sharded by FSDP2: the stages after it take the whole model, loaded again."""
        del self.__dict__["_base"]

    # ---- stage 3: unlearning with F frozen ----------------------------------------------------------------
    def stage3_unlearn(self) -> Path:
        """GRAIL's unlearned model: every domain at once, F from stage 2, the run's unlearn config."""
        masks = self.stage2_masks()
        target = self.path(weights_folder(ModelName.GRAIL))
        if io.exists(target):
            return target
        encoded, domains = self.encoded(), self.benchmark.domain_names
        phase = Phase(ModelName.GRAIL, {d: encoded["forget"][d] for d in domains},
                      {d: encoded["retain"][d] for d in domains}, masks, "checkpoints/unlearn")
        self.unlearn_from_vanilla(ModelName.GRAIL, [phase], self.config.unlearn, self.config.localize)
        return target

    def unlearn_from_vanilla(self, name: str, phases: list[Phase], unlearn_cfg: UnlearnConfig,
                             localize_cfg: LocalizeConfig) -> None:
        """Stage 3 from the vanilla model through ``phases`` in order, written as model ``name``'s weights
        (``weights_folder``) with its training log; callers skip it when the folder holds them. What training is
        checked against (the domains' sets, utility, holdouts) and the general replay are the run's, whatever the
        phases train on."""
        self.stage0_vanilla()
        started = time.time()
        cfg = self.config
        model = self.use_weights("adapter_vanilla")  # a matching checkpoint then overrides these weights
        sharded = self._sharded
        if sharded and needs_oracle_log_probs(unlearn_cfg):
            raise ConfigError("distributed: fsdp does not take unlearn.ascent_stop: oracle (the oracle's weights would "
                              "be swapped into the shards); use another ascent_stop")

        def check() -> dict[str, dict[str, float]]:
            scores = evaluate(model, self.tokenizer, self.benchmark, cfg.model.prompt_format, cfg.model.max_length,
                              cfg.evaluate.batch_size, self.device, measured=False)
            return {d: {"US": s["US"], "RS": s["RS"]} for d, s in scores["domains"].items()}

        def utility() -> float:
            return utility_check_ppl(model, self.tokenizer, cfg.evaluate.batch_size, self.device)

        general = self.general_replay if unlearn_cfg.general_weight else None
        oracle_log_probs = self._oracle_log_probs(model) if needs_oracle_log_probs(unlearn_cfg) else None
        holdout, members = self.encoded_holdout(), self.encoded_members()
        if sharded:  # what is generated with the whole model (the general replay) is there by now
            sharding.shard_model(model)
        log = []
        for phase in phases:
            log += unlearn(model, phase.forget, phase.retain, unlearn_cfg, pad_id=self.tokenizer.pad_token_id,
                           seed=cfg.seed,
                           masks=UpdateMasks.for_policy(phase.masks, unlearn_cfg.policy, localize_cfg.use_op_ur,
                                                        localize_cfg.use_op_rr),
                           check=check, checkpoint_dir=self.path(phase.checkpoints),
                           fingerprint=f"{cfg.fingerprint()}-{phase.name}", device=self.device,
                           progress=self.progress, on_epoch_end=self._epoch_hook("unlearn"), general=general,
                           utility=utility, oracle_log_probs=oracle_log_probs,
                           holdout={d: holdout[d] for d in phase.forget},
                           members={d: members[d] for d in phase.forget}, eos_id=self.tokenizer.eos_token_id)
        if sharded:  # every process gathers the weights; the stages after stage 3 take the whole model again
            unlearned = sharding.full_weights(trainable_parameters(model))
            del model
            self._reload_whole_model()
            model = self.model
            set_trainable(model, unlearned)
        with io.staged_dir(self.path(weights_folder(name))) as tmp:
            save_trainable(model, tmp)
            io.write_json(tmp / "training_log.json", log)
        step = "stage3_unlearn" if name == ModelName.GRAIL else f"unlearn_{name}"
        self.run_folder.record_time(step, time.time() - started)

    def _oracle_log_probs(self, model: nn.Module) -> Callable[[list[Encoded]], dict[Encoded, torch.Tensor]]:
        """A function: per example, its answer tokens' log-probabilities under the oracle (trained now if the run
        has none), computed with the oracle's weights swapped into ``model`` and its own weights put back."""
        if not io.exists(self.path(weights_folder(ModelName.ORACLE))):
            with swapped_trainable(model, trainable_state(model)):  # stage 0 trains in the same model
                self.stage0_oracle()
        oracle = read_trainable_file(self.path(weights_folder(ModelName.ORACLE)))

        @torch.no_grad()
        def log_probs(items: list[Encoded]) -> dict[Encoded, torch.Tensor]:
            with swapped_trainable(model, oracle, "adapter_oracle"), eval_mode(model):
                return reference_log_probs(model, items, self.tokenizer.pad_token_id, self.device, full=False)

        return log_probs

    # ---- evaluation and report ----------------------------------------------------------------------------
    def evaluate_model(self, name: str) -> dict:
        """Scores of ``base`` (the model before stage 0; teacher-forced and general scores, no generation),
        ``vanilla``, ``grail`` or another method's model (cached in RUN/evaluations/<name>.json)."""
        cfg = self.config

        def compute() -> dict:
            # the base model never saw the data: what forgetting can honestly aim for; scored teacher-forced only
            # (generation is the slow part of an evaluation, and a model that never saw the data leaks nothing)
            base = name == ModelName.BASE
            references = self._never_seen  # with the vanilla weights: before this model's are loaded
            with base_weights(self.model) if base else nullcontext(self.use_weights(weights_folder(name))) as model:
                scores = evaluate(model, self.tokenizer, self.benchmark, cfg.model.prompt_format,
                                  cfg.model.max_length, cfg.evaluate.batch_size, self.device,
                                  cfg.evaluate.max_new_tokens if cfg.evaluate.generate and not base else None,
                                  general=cfg.evaluate.probe, progress=self.progress,
                                  mmlu_questions=self.mmlu_questions)
                members = self.encoded_members()
                for domain, domain_scores in scores["domains"].items():
                    # the forget set against never-seen data of its kind, under this model (calibration.py)
                    domain_scores["calibration"] = calibration(model, members[domain], references[domain],
                                                               self.tokenizer.pad_token_id, cfg.evaluate.batch_size,
                                                               self.device)
                return scores

        if name in (ModelName.BASE, ModelName.VANILLA) and not self.brought_vanilla:
            compute = self._shared_scores(name, compute)
        return self.run_folder.cached(f"evaluations/{name}.json", compute, io.write_json, io.read_json,
                                      step=f"evaluate_{name}")

    def _shared_scores(self, name: str, compute: Callable[[], dict]) -> Callable[[], dict]:
        """``compute`` of the base or the vanilla model's scores through GRAIL_CACHE: runs that share stage 0 (its
        config and data) and the evaluate section share them, whatever they unlearn (the base model's calibration
        uses the vanilla model's view of the holdout: stage 0's key covers it)."""
        entry = (cache_dir() / "evaluations" / f"{name}-{self._stage0_key()}-{self.config.fingerprint('evaluate')}"
                 f"-s{SCORES_VERSION}")

        def shared() -> dict:
            if io.exists(entry / "scores.json"):
                return io.read_json(entry / "scores.json")
            scores = compute()
            try:  # another run may have published the same meanwhile: it is kept
                with io.staged_dir(entry, keep_existing=True) as tmp:
                    io.write_json(tmp / "scores.json", scores)
            except OSError as err:  # the run's own copy is written next: a cache that fails costs later runs time
                warnings.warn(f"{entry}: scores not cached ({io.write_problem(entry, err)})", stacklevel=2)
            return scores

        return shared

    @cached_property
    def _never_seen(self) -> dict[str, NeverSeen]:
        """Each domain's never-seen reference (``calibration.py``), made with the vanilla model, as stage 3's is."""
        model = self.use_weights(weights_folder(ModelName.VANILLA))
        members, holdout = self.encoded_members(), self.encoded_holdout()
        return {d: never_seen(model, d, members[d], holdout[d], self.tokenizer.pad_token_id,
                              self.config.evaluate.batch_size, self.device) for d in members}

    def results(self) -> dict:
        """RUN/results.json and RUN/report.md: every model's scores, the masks, stage 3's log, the audit."""
        evaluations = {name: self.evaluate_model(name) for name in (ModelName.BASE, ModelName.VANILLA, ModelName.GRAIL)}
        unlearn_log = io.read_json(self.path("adapter_unlearned/training_log.json"))
        document = results_document(self.config, evaluations, self.stage2_masks(), unlearn_log,
                                    audit(self.folder), io.read_json(self.run_folder.timings_file))
        io.write_json(self.path("results.json"), document)
        write_report(self.path("report.md"), document)
        return document

    # ---- inputs -------------------------------------------------------------------------------------------
    @cached_property
    def _base(self) -> tuple[nn.Module, object]:
        torch.manual_seed(self.config.seed)  # LoRA's initialisation
        model, tokenizer = load_trainable(self.config.model, self.config.seed, self.config.finetune.adapter_path)
        model = model.to(self.device)
        self._initial_weights = trainable_state(model)
        return model, tokenizer

    @property
    def model(self) -> nn.Module:
        return self._base[0]

    @property
    def tokenizer(self):
        return self._base[1]

    def path(self, name: str) -> Path:
        return self.run_folder.path(name)

    def use_weights(self, name: str) -> nn.Module:
        """The model with the trainable weights saved in RUN/<name> (e.g. adapter_vanilla)."""
        load_trainable_state(self.model, self.path(name))
        return self.model

    def use_initial_weights(self) -> nn.Module:
        """The model with its trainable weights as stage 0 starts them (the seed's LoRA initialisation)."""
        set_trainable(self.model, self._initial_weights)
        return self.model

    def _epoch_hook(self, stage: str):
        return None if self.on_epoch_end is None else (lambda epoch: self.on_epoch_end(stage, epoch))

    def encoded(self) -> dict[str, dict[str, list[Encoded]]]:
        """{scope: {domain: encoded examples}}."""
        m = self.config.model
        out: dict[str, dict[str, list[Encoded]]] = {"forget": {}, "retain": {}}
        for domain, scope, examples in self.benchmark.datasets():
            out[scope][domain] = encode_all(self.tokenizer, examples, m.prompt_format, m.max_length)
        return out

    def encoded_holdout(self) -> dict[str, list[Encoded]]:
        """{domain: its encoded holdout}: never-seen examples of the forget set's kind (possibly none)."""
        m = self.config.model
        return {d.name: encode_all(self.tokenizer, d.holdout, m.prompt_format, m.max_length)
                for d in self.benchmark.domains}

    def encoded_members(self) -> dict[str, list[Encoded]]:
        """{domain: its encoded forget examples that the holdout stands for} (``Domain.members``: all of them, unless
        the forget set mixes kinds)."""
        forget = self.encoded()["forget"]
        return {d.name: [forget[d.name][i] for i in d.members()] for d in self.benchmark.domains}

    def datasets(self) -> dict[str, list[Encoded]]:
        """{"<domain>/<scope>": encoded examples}, the paper's D_x."""
        enc = self.encoded()
        return {f"{d}/{s}": enc[s][d] for d in self.benchmark.domain_names for s in ("forget", "retain")}

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

