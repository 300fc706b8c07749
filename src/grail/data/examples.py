"""The data model: examples grouped by domain and scope.

An example is a (prompt, answer) pair. Loss and metrics count answer tokens only. ``span`` marks, where the
data knows it, the part of the answer that must (forget) or may (retain) come back in a generation: the phone
number, the verbatim passage, the author's name. Leak rates are computed from it (from the whole answer where
the data has no span).

Besides the two scopes that unlearning works on (forget, retain), a domain may carry what only measures it:
- ``retain_heldout``: retain facts the model learned (stage 0) that unlearning never sees: RS_heldout;
- a forget example's ``paraphrase``: the same question in a second wording that unlearning never trains on:
  US_paraphrase.
Stage 0 memorises all of them (they are what the model knows); stages 1-3 use forget and retain only.

And a domain may carry what no model is ever trained on:
- ``holdout``: examples of the forget set's kind (other people's records, other books' passages) that no stage
  trains on: the non-members of the membership-inference attacks and the shots of the few-shot prompt attack
  (``grail attack``); where the forget set mixes kinds (``Example.kind``), it stands for the forget examples of
  its own (``Domain.members``);
- ``shots``: demonstrations for the few-shot prompt attack where the data brings its own (MUSE's ``*_icl``
  splits); the holdout serves otherwise;
- ``knowledge``: general-knowledge questions beside the domain (TOFU's real authors and world facts), scored
  with every model's general ability.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

SCOPES = ("forget", "retain")
"""The scopes unlearning works on (stages 1-3): the paper's datasets D_x."""
HELDOUT_SCOPE = "retain_heldout"
PARAPHRASE_SET = "forget_paraphrase"
HOLDOUT_SCOPE = "holdout"
"""Forget-kind examples that no model of the run is trained on (the attacks' non-members)."""
SHOTS_SCOPE = "shots"
KNOWLEDGE_SCOPE = "knowledge"
UNTRAINED_SCOPES = (HOLDOUT_SCOPE, SHOTS_SCOPE, KNOWLEDGE_SCOPE)
"""Scopes that no model of the run is trained on: they measure or attack it."""
ALL_SCOPES = (*SCOPES, HELDOUT_SCOPE, *UNTRAINED_SCOPES)


HOLDOUT_SOURCES = ("our JSONL: records with scope 'holdout'; KnowUnDo: with the train split, unlearn_val (the hub: "
                   "the unlearn split's val column); TOFU: forget10's other authors, from the 'full' config (e.g. "
                   "forget01 with retain90); MUSE: privleak/holdout; the built-in benchmark: always")
"""Where each source grail reads keeps a domain's holdout: what an error or warning about a missing holdout names."""


class DataError(ValueError):
    """Bad input data. The message names the file and the record (or line)."""


class SourceUnreachableError(DataError):
    """The data's source cannot be reached from here: no such file or folder (a relative path read from another
    directory, a moved file), or a hub dataset without the network. A resumed run folder then goes on with the data
    it keeps (``RunFolder``); a new run cannot."""


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    span: str | None = None
    paraphrase: str | None = None
    """Forget examples: the prompt in a second wording (evaluation only: US_paraphrase)."""
    kind: str | None = None
    """Where a domain's forget set mixes kinds of example (MUSE: ``knowmem`` questions, ``verbmem`` passages,
    ``privleak`` texts), which kind this is: the holdout is set against the forget examples of its own kinds
    (``Domain.members``)."""

    @property
    def leak_span(self) -> str:
        """What must not (forget) or may (retain) come back in a generation: the span, else the whole answer."""
        return self.span or self.answer


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""A name that becomes part of file names and keys, a domain's (``<domain>/forget``, ``<domain>:<param>``,
``methods/only-<domain>``) or a method's (``methods/<method>/``): letters, digits, ``_``, ``.`` and ``-``, not
starting with a dot or dash."""


def check_domain_name(name: str, where: str) -> str:
    if not SAFE_NAME.fullmatch(name):
        raise DataError(f"{where}: domain name {name!r} may hold only letters, digits, '_', '.' and '-' (it "
                        "names files and keys), starting with a letter or digit")
    return name


@dataclass
class Domain:
    """One domain's unlearning scope (forget) and retention scope (retain)."""

    name: str
    forget: list[Example] = field(default_factory=list)
    retain: list[Example] = field(default_factory=list)
    retain_heldout: list[Example] = field(default_factory=list)
    holdout: list[Example] = field(default_factory=list)
    shots: list[Example] = field(default_factory=list)
    knowledge: list[Example] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_domain_name(self.name, "data")

    def scope(self, scope: str) -> list[Example]:
        return {"forget": self.forget, "retain": self.retain, HELDOUT_SCOPE: self.retain_heldout,
                HOLDOUT_SCOPE: self.holdout, SHOTS_SCOPE: self.shots, KNOWLEDGE_SCOPE: self.knowledge}[scope]

    def members(self) -> list[int]:
        """The indices of the forget examples that the holdout stands for: those of the holdout's kinds where its
        examples name one (MUSE's privleak texts, not its knowmem questions), else every one. Calibration and
        membership inference compare these with the holdout: examples of another kind (a short answer against a
        passage) differ in likelihood whether trained on or not."""
        kinds = {ex.kind for ex in self.holdout if ex.kind is not None}
        return [i for i, ex in enumerate(self.forget) if not kinds or ex.kind in kinds]

    def forget_paraphrases(self) -> list[Example]:
        """The forget examples that have a second wording, asked in it."""
        return [Example(ex.paraphrase, ex.answer, ex.span) for ex in self.forget if ex.paraphrase]

    def measured_sets(self) -> dict[str, list[Example]]:
        """Every non-empty set of this domain: forget, retain, and (where the data has them) retain_heldout and
        forget_paraphrase. Stage 0 learns all of them; evaluation scores all of them."""
        sets = {"forget": self.forget, "retain": self.retain, HELDOUT_SCOPE: self.retain_heldout,
                PARAPHRASE_SET: self.forget_paraphrases()}
        return {name: examples for name, examples in sets.items() if examples}


@dataclass
class Benchmark:
    """Any number (>= 1) of domains, each with a non-empty forget and retain set."""

    domains: list[Domain]

    def __post_init__(self) -> None:
        if not self.domains:
            raise DataError("the benchmark has no domain")
        names = [d.name for d in self.domains]
        if len(set(names)) != len(names):
            raise DataError(f"domain names repeat: {names}")

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    def datasets(self) -> Iterator[tuple[str, str, list[Example]]]:
        """(domain, scope, examples) for each of the 2 x |domains| datasets D_x, in a fixed order."""
        for domain in self.domains:
            for scope in SCOPES:
                yield domain.name, scope, domain.scope(scope)

    def measured_sets(self) -> Iterator[tuple[str, str, list[Example]]]:
        """(domain, set name, examples) for every set of every domain (``Domain.measured_sets``)."""
        for domain in self.domains:
            for name, examples in domain.measured_sets().items():
                yield domain.name, name, examples

    def select(self, names: list[str]) -> Benchmark:
        """The sub-benchmark of the named domains, in the given order."""
        by_name = {d.name: d for d in self.domains}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise DataError(f"unknown domain(s) {unknown}; the data has {self.domain_names}")
        return Benchmark([by_name[n] for n in names])

    def knowledge(self) -> list[Example]:
        """Every domain's general-knowledge questions (evaluation only)."""
        return [ex for domain in self.domains for ex in domain.knowledge]

    def to_jsonl(self, trained_only: bool = False) -> str:
        """Our own JSONL format (see README): one record per line; ``trained_only``: without the scopes no model
        trains on (holdout, shots, knowledge), i.e. exactly the data that models of the run are trained on."""
        lines = []
        for domain in self.domains:
            for scope in (*SCOPES, HELDOUT_SCOPE, *(() if trained_only else UNTRAINED_SCOPES)):
                for ex in domain.scope(scope):
                    record = {"domain": domain.name, "scope": scope,
                              **{k: v for k, v in asdict(ex).items() if v is not None}}
                    lines.append(json.dumps(record, ensure_ascii=False))
        return "\n".join(lines) + "\n"
