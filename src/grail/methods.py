"""The unlearning methods the paper compares (Table I, VI) and a few beyond it, each a small registered unit.

A method is stage 3 with: an objective (``unlearn`` overrides: forget and retain objectives and weights),
the parameters it may move (``masks``: none, GRAIL's frozen set under ``localize`` overrides, or Memflex's
tensor selection) and its retain data (the domains' retain sets, ``id``, or general text, ``ood``). Every
method starts from the same vanilla adapter and is scored by the same evaluation.

Users define their own in a YAML file (``grail compare --methods-file``, ``read_methods_file``), checked as the
registry's are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grail.config import ConfigError, LocalizeConfig, UnlearnConfig, parse_yaml, read_text_file
from grail.data.examples import SAFE_NAME
from grail.model_names import ModelName

MASKS = ("none", "grail", "grail-per-domain", "memflex")
"""What a method may move: ``experiments.MASK_BUILDERS`` builds each."""
RETAIN_DATA = ("id", "ood")


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
        """The fields and overrides are checked when the method is made (the registry at import, a user's file
        when it is read): a mistyped field or a bad value fails naming the method, not when a comparison reaches
        it."""
        if self.masks not in MASKS:
            raise ConfigError(f"method {self.name!r}: masks must be one of {list(MASKS)}, got {self.masks!r}")
        if self.retain_data not in RETAIN_DATA:
            raise ConfigError(f"method {self.name!r}: retain_data must be one of {list(RETAIN_DATA)}, got "
                              f"{self.retain_data!r}")
        if not isinstance(self.sequential, bool):
            raise ConfigError(f"method {self.name!r}: sequential must be true or false, got {self.sequential!r}")
        if self.domains is not None and (not isinstance(self.domains, tuple) or not self.domains
                                         or not all(isinstance(d, str) for d in self.domains)):
            raise ConfigError(f"method {self.name!r}: domains must be a non-empty list of domain names, got "
                              f"{self.domains!r}")
        for section, overrides in (("unlearn", self.unlearn), ("localize", self.localize)):
            config_class = UnlearnConfig if section == "unlearn" else LocalizeConfig
            unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(config_class)})
            if unknown:
                raise ConfigError(f"method {self.name!r}: {section} has no field(s) {unknown}")
            try:
                config_class(**overrides)
            except ConfigError as err:
                raise ConfigError(f"method {self.name!r}: {err}") from None

    def stage3_passes(self, run_domains: list[str]) -> list[list[str]]:
        """The domains of each of its stage-3 passes, in order: one pass over its domains (default: the run's), or
        with ``sequential`` one pass a domain."""
        domains = list(self.domains or run_domains)
        return [[d] for d in domains] if self.sequential else [domains]


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


def get_method(name: str, known: Mapping[str, Method] = METHODS) -> Method:
    """The method of that name among ``known`` (the registry, or it with a user's methods)."""
    if name not in known:
        raise KeyError(f"unknown method {name!r}; known: {sorted(known)}")
    return known[name]


METHOD_FIELDS = tuple(f.name for f in dataclasses.fields(Method))


def read_methods_file(path: Path, builtin: Mapping[str, Method] = METHODS) -> dict[str, Method]:
    """A user's methods from YAML, by name: a list of methods, or a mapping of them by name, each with
    ``Method``'s fields (``name`` and any of description, unlearn, masks, localize, retain_data, domains,
    sequential). Each is checked as the registry's are, and its name may be neither a built-in method's nor a
    model's of the run (base, vanilla, oracle); every error names the file, the entry's line and the method."""
    methods: dict[str, Method] = {}
    lines: dict[str, int] = {}
    for line, entry in _read_yaml_entries(path):
        location = f"{path} line {line}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{location}: a method is a mapping of {list(METHOD_FIELDS)}, got a YAML "
                              f"{type(entry).__name__}")
        name = entry.get("name")
        if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
            raise ConfigError(f"{location}: a method needs a name of letters, digits, '_', '.' and '-' (it names "
                              f"a folder), got {name!r}")
        where = f"{location}: method {name!r}"
        unknown = sorted(set(entry) - set(METHOD_FIELDS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; a method has {list(METHOD_FIELDS)}")
        if name in builtin:
            raise ConfigError(f"{where}: a built-in method has that name; choose another")
        if name in set(ModelName):
            raise ConfigError(f"{where}: a model of the run has that name; choose another")
        if name in lines:
            raise ConfigError(f"{where}: the name repeats the method on line {lines[name]}")
        methods[name] = _method(entry, location, path)
        lines[name] = line
    return methods


def _read_yaml_entries(path: Path) -> list[tuple[int, Any]]:
    """[(line, entry)]: a list's items, or a mapping's values with their key as ``name``, each with the line it
    starts on; at least one."""
    node, data = parse_yaml(read_text_file(path), path)  # repeated keys are errors, as in a config file
    if data in (None, [], {}):
        raise ConfigError(f"{path}: holds no methods")
    if isinstance(data, list):
        return [(item.start_mark.line + 1, entry) for item, entry in zip(node.value, data)]
    if isinstance(data, dict):
        entries = []
        for (key_node, _), (key, entry) in zip(node.value, data.items()):
            if isinstance(entry, dict) and "name" in entry and entry["name"] != key:
                raise ConfigError(f"{path} line {key_node.start_mark.line + 1}: method {key!r} says name "
                                  f"{entry['name']!r}; leave name out, or make them the same")
            entries.append((key_node.start_mark.line + 1, {"name": key, **entry} if isinstance(entry, dict)
                            else {"name": key} if entry is None else entry))
        return entries
    raise ConfigError(f"{path}: expected a list of methods or a mapping of them by name, got a YAML "
                      f"{type(data).__name__}")


def _method(entry: dict[str, Any], location: str, path: Path) -> Method:
    """One entry (at ``location``: file and line) as a ``Method``: the YAML's lists and nulls as the dataclass holds
    them, then its own checks."""
    fields = dict(entry)
    where = f"{location}: method {entry['name']!r}"
    for section in ("unlearn", "localize"):
        overrides = fields.get(section)
        if overrides is None:
            fields[section] = {}
        elif not isinstance(overrides, dict):
            raise ConfigError(f"{where}: {section} must be a mapping of {section} config fields, got a YAML "
                              f"{type(overrides).__name__}")
    description = fields.setdefault("description", f"defined in {path.name}")
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description must be text, got {description!r}")
    if isinstance(fields.get("domains"), list):
        fields["domains"] = tuple(fields["domains"])
    try:
        return Method(**fields)
    except ConfigError as err:
        raise ConfigError(f"{location}: {err}") from None
