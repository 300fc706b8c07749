"""TOFU (``locuslab/TOFU``): questions about 200 fictitious authors, as one grail domain.

- ``forget01|05|10`` -> forget; ``retain99|95|90`` -> retain (default: the forget config's complement);
- ``<forget>_perturbed`` -> each forget question's ``paraphrased_question`` (US_paraphrase), where the revision has
  it;
- ``retain_perturbed`` (400 retain questions TOFU evaluates on) -> retain_heldout: taken out of retain, so stage 0
  still learns them and unlearning never sees them;
- ``full`` minus forget and retain (with forget01 + retain90: forget10's other authors) -> holdout: authors no
  model of the run is trained on, the attacks' non-members;
- ``real_authors`` and ``world_facts`` -> general knowledge, scored with every model's general ability.
Fields: ``question``, ``answer`` (and ``paraphrased_question`` on the perturbed configs). TOFU's
``paraphrased_answer`` / ``perturbed_answer`` (its truth ratio) are not used: grail's metrics score the answer
itself.
"""

from __future__ import annotations

from grail.data.examples import DataError, Domain, Example
from grail.data.hub import Records, pick_split, read_config, where
from grail.data.loaders import text_field

TOFU_HUB_ID = "locuslab/TOFU"
FORGET_CONFIGS = ("forget01", "forget05", "forget10")
RETAIN_CONFIGS = ("retain99", "retain95", "retain90")
KNOWLEDGE_CONFIGS = ("real_authors", "world_facts")


def default_retain(forget: str) -> str:
    """The retain config that holds every author forget does not: forget05 -> retain95."""
    return f"retain{100 - int(forget.removeprefix('forget'))}"


def _rows(dataset: str, config: str, optional: bool = False) -> Records | None:
    splits = read_config(dataset, config, optional)
    if splits is None:
        return None
    return pick_split(splits, ("train",), dataset, config)[1]


def _questions(dataset: str, config: str, rows: Records) -> list[Example]:
    return [Example(text_field(r, "question", where(dataset, config, "train", i)),
                    text_field(r, "answer", where(dataset, config, "train", i))) for i, r in enumerate(rows)]


def load_tofu(name: str, path: str | None = None, forget: str = "forget10", retain: str | None = None) -> Domain:
    """One domain from TOFU (hub id or local folder ``path``; default the hub's ``locuslab/TOFU``)."""
    dataset = path or TOFU_HUB_ID
    if forget not in FORGET_CONFIGS:
        raise DataError(f"{dataset}: forget config must be one of {list(FORGET_CONFIGS)}, got {forget!r}")
    retain = retain or default_retain(forget)
    forget_set = _questions(dataset, forget, _rows(dataset, forget))
    retain_set = _questions(dataset, retain, _rows(dataset, retain))
    forget_questions = {ex.prompt for ex in forget_set}
    if forget_questions & {ex.prompt for ex in retain_set}:
        raise DataError(f"{dataset}: configs {forget!r} and {retain!r} share questions; pick a retain config that "
                        f"is the complement of {forget!r} or smaller (default {default_retain(forget)!r})")

    paraphrases: dict[str, str] = {}
    perturbed = _rows(dataset, f"{forget}_perturbed", optional=True)
    for i, row in enumerate(perturbed or []):
        at = where(dataset, f"{forget}_perturbed", "train", i)
        question = text_field(row, "question", at)  # a record that is no object is refused here
        if "paraphrased_question" in row:
            paraphrase = text_field(row, "paraphrased_question", at)
            if paraphrase.strip() != question.strip():
                paraphrases[question] = paraphrase
    domain = Domain(name, forget=[Example(ex.prompt, ex.answer, None, paraphrases.get(ex.prompt))
                                  for ex in forget_set])

    heldout_rows = _rows(dataset, "retain_perturbed", optional=True) or []
    heldout = {text_field(r, "question", where(dataset, "retain_perturbed", "train", i))
               for i, r in enumerate(heldout_rows)}
    for ex in retain_set:
        (domain.retain_heldout if ex.prompt in heldout else domain.retain).append(ex)

    full = _rows(dataset, "full", optional=True)
    if full is not None:
        trained = forget_questions | {ex.prompt for ex in retain_set}
        domain.holdout = [ex for ex in _questions(dataset, "full", full) if ex.prompt not in trained]
    for config in KNOWLEDGE_CONFIGS:
        rows = _rows(dataset, config, optional=True)
        domain.knowledge.extend(_questions(dataset, config, rows or []))
    if not domain.retain:
        raise DataError(f"{where(dataset, retain)}: every retain question is also in 'retain_perturbed'; nothing "
                        "is left for unlearning to retain")
    return domain
