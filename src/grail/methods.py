"""The unlearning methods the paper compares (Table I, VI) and a few beyond it, each a small registered unit.

A method is stage 3 with: an objective (``unlearn`` overrides: forget and retain objectives and weights),
the parameters it may move (``masks``: none, GRAIL's frozen set under ``localize`` overrides, or Memflex's
tensor selection) and its retain data (the domains' retain sets, ``id``, or general text, ``ood``). Every
method starts from the same vanilla adapter and is scored by the same evaluation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from grail.config import ConfigError, LocalizeConfig, UnlearnConfig


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    unlearn: dict[str, Any] = field(default_factory=dict)
    """Overrides of the run's ``unlearn`` config."""
    masks: Literal["none", "grail", "grail-per-domain", "memflex"] = "none"
    """``grail-per-domain``: each domain's own GRAIL masks, merged without cross-domain overlap handling."""
    localize: dict[str, Any] = field(default_factory=dict)
    """Overrides of the run's ``localize`` config (GRAIL's ablations)."""
    retain_data: Literal["id", "ood"] = "id"
    domains: tuple[str, ...] | None = None
    """The domains this method unlearns (None: all); with ``sequential``, one after the other in this order,
    each with its own single-domain GRAIL masks."""
    sequential: bool = False

    def __post_init__(self) -> None:
        """The overrides are checked when the registry is built: a mistyped field or a bad value fails at import,
        naming the method, not when a comparison reaches it."""
        for section, overrides in (("unlearn", self.unlearn), ("localize", self.localize)):
            config_class = UnlearnConfig if section == "unlearn" else LocalizeConfig
            unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(config_class)})
            if unknown:
                raise ConfigError(f"method {self.name!r}: {section} has no field(s) {unknown}")
            try:
                config_class(**overrides)
            except ConfigError as err:
                raise ConfigError(f"method {self.name!r}: {err}") from None


# The published baselines run as published: gradient ascent, without the general replay term, the subject anchor,
# the calibrated target and the utility budget of grail's default GRAIL (``grail compare --utility-budget`` sets a
# budget for every method). Their ascent stops per token at a uniform guess's loss (GA: never), and they train on the
# reference code's balanced pools, checking the paper's kind of target (US >= unlearn.target_us) once an epoch
# (``grail compare --target calibrated`` holds every method to the calibrated target instead).
_PAPER_STAGE3 = {"general_weight": 0.0, "utility_budget": None, "pools": "balanced", "target": "us",
                 "target_check_steps": 0, "anchor_weight": 0.0, "forget_weight": 0.4}
_PAPER = {**_PAPER_STAGE3, "forget_objective": "ascent", "ascent_stop": "uniform"}
_NO_RETAIN = {**_PAPER_STAGE3, "retain_weight": 0.0}

METHODS: dict[str, Method] = {m.name: m for m in [
    Method("ga", "Gradient Ascent on all forget data",
           {**_NO_RETAIN, "forget_objective": "ascent", "forget_weight": 1.0, "ascent_stop": "never"}),
    Method("random-labels", "Fine-tuning with Random Labels: descent on forget prompts with random answers",
           {**_NO_RETAIN, "forget_objective": "random_labels", "forget_weight": 1.0}),
    Method("adversarial", "Unlearning with Adversarial Samples: descent on the vanilla model's best wrong tokens",
           {**_NO_RETAIN, "forget_objective": "adversarial", "forget_weight": 1.0}),
    Method("ga-gd-id", "GA + gradient descent on the domains' retain sets", _PAPER),
    Method("ga-gd-ood", "GA + gradient descent on general text", _PAPER, retain_data="ood"),
    Method("ga-kl-id", "GA + KL to the vanilla model on the domains' retain sets",
           {**_PAPER, "retain_objective": "kl"}),
    Method("ga-kl-ood", "GA + KL to the vanilla model on general text", {**_PAPER, "retain_objective": "kl"},
           retain_data="ood"),
    Method("memflex", "Memflex: tensor-level localization (cosine and magnitude thresholds), GA + GD", _PAPER,
           masks="memflex"),
    Method("grail", "GRAIL: parameter-wise localization, F = OP-UR | OP-RR frozen (the run's unlearn config)",
           masks="grail"),
    Method("grail-paper", "GRAIL with the paper's objective: gradient ascent to a uniform guess, forget weight 0.4, no "
           "general replay term, no utility budget, balanced pools, a US target", _PAPER, masks="grail"),
    Method("grail-no-op-ur", "GRAIL without OP-UR", masks="grail", localize={"use_op_ur": False}),
    Method("grail-no-op-rr", "GRAIL without OP-RR", masks="grail", localize={"use_op_rr": False}),
    Method("grail-no-both", "GRAIL without OP-UR and OP-RR (nothing frozen)", masks="grail",
           localize={"use_op_ur": False, "use_op_rr": False}),
    Method("only-privacy", "GRAIL on the privacy domain alone", masks="grail", domains=("privacy",)),
    Method("only-copyright", "GRAIL on the copyright domain alone", masks="grail", domains=("copyright",)),
    Method("sequential-p-c", "GRAIL on privacy, then on copyright", masks="grail", domains=("privacy", "copyright"),
           sequential=True),
    Method("sequential-c-p", "GRAIL on copyright, then on privacy", masks="grail", domains=("copyright", "privacy"),
           sequential=True),
    Method("combined-no-overlap", "Both domains at once, each domain's own masks merged (no overlap handling)",
           masks="grail-per-domain"),
    Method("npo", "NPO on forget data + GD on retain data",
           {**_PAPER_STAGE3, "forget_objective": "npo", "forget_weight": 1.0}),
    Method("npo-grail", "NPO + GD with GRAIL's frozen set", {"forget_objective": "npo", "forget_weight": 1.0},
           masks="grail"),
    Method("grail-kl", "GA + KL to the vanilla model on the retain sets, with GRAIL's frozen set",
           {"retain_objective": "kl"}, masks="grail"),
]}

TABLE_I = ["ga", "random-labels", "adversarial", "ga-gd-id", "ga-gd-ood", "ga-kl-id", "ga-kl-ood", "memflex",
           "grail-paper", "grail"]
ABLATIONS = ["grail", "grail-no-op-ur", "grail-no-op-rr", "grail-no-both"]
STRATEGIES = ["only-privacy", "sequential-p-c", "only-copyright", "sequential-c-p", "combined-no-overlap", "grail"]


SWEEP_K_UR = (5.0, 10.0, 15.0, 20.0)
"""``grail sweep``'s k_UR values (%), k_RR fixed at the run's (the paper's Fig. 4)."""
SWEEP_K_RR = (10.0, 20.0, 30.0, 40.0)
"""``grail sweep``'s k_RR values (%), k_UR fixed at the run's."""


def sweep_methods(k_ur: list[float], k_rr: list[float], fixed_ur: float = LocalizeConfig.k_ur,
                  fixed_rr: float = LocalizeConfig.k_rr) -> list[Method]:
    """GRAIL at each k_UR (k_RR fixed) and each k_RR (k_UR fixed), as in the paper's Fig. 4."""
    return ([Method(f"grail-kur-{k:g}", f"GRAIL, k_UR = {k:g} %", masks="grail",
                    localize={"k_ur": k, "k_rr": fixed_rr}) for k in k_ur]
            + [Method(f"grail-krr-{k:g}", f"GRAIL, k_RR = {k:g} %", masks="grail",
                      localize={"k_ur": fixed_ur, "k_rr": k}) for k in k_rr])


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return METHODS[name]
