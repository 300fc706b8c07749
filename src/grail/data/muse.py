"""MUSE (``muse-bench/MUSE-News``, ``muse-bench/MUSE-Books``): one corpus as one grail domain.

- ``knowmem``: ``forget_qa`` -> forget, ``retain_qa`` -> retain (questions about the two corpora);
  ``forget_qa_icl`` -> the few-shot attack's shots;
- ``verbmem``: ``forget`` passages -> forget, prompt = the passage's first part, answer = its continuation;
- ``privleak``: ``forget`` texts -> forget, ``retain`` -> retain_heldout (the target model's text that
  unlearning never sees), ``holdout`` -> holdout (never trained on: the attacks' non-members); each text as a
  continuation example (below). Each example keeps its subset as its ``kind``: the holdout's texts stand for the
  forget set's privleak texts (``Domain.members``), as in MUSE's own PrivLeak, not for its questions and passages;
- ``raw`` (opt-in, ``raw_chunks``): the corpora themselves cut into pieces of about ``model.max_length`` tokens;
  the first ``raw_chunks`` pieces of ``forget`` -> forget and of ``retain1`` -> retain, so stage 0 and the oracle
  train on text as MUSE's target model did (the oracle on the retain side only).
A privleak or raw record is ``{"text": ...}`` (the hub) or the text itself (MUSE's own repository, ``data/<corpus>/``).
Without privleak the domain has no holdout and no retain_heldout: a warning says what that leaves out.
A text becomes a continuation example: its first ``max_length // 2`` words (about 0.65 tokens per model position
for English), the first quarter of them the prompt and the rest the answer.
Split names changed between dataset revisions (``retain_qa`` / ``retain2_qa``, ``retain`` / ``retain2``): both are
accepted, and a log line says which was used.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace

from grail.data.examples import DataError, Domain, Example
from grail.data.hub import Records, pick_split, read_config, where
from grail.data.loaders import record_text, text_field

log = logging.getLogger("grail.data")

MUSE_HUB_IDS = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}
# Each split under its names in the dataset's revisions, the current one first.
FORGET_QA, RETAIN_QA, FORGET_QA_ICL = ("forget_qa",), ("retain_qa", "retain2_qa"), ("forget_qa_icl",)
PRIVLEAK_RETAIN, RAW_RETAIN = ("retain", "retain2"), ("retain1", "retain")


def continuation(text: str, words: int) -> Example | None:
    """The text's first ``words`` words as (first quarter, rest); None for a text of fewer than 2 words."""
    piece = text.split()[:words]
    if len(piece) < 2:
        return None
    cut = max(1, len(piece) // 4)
    return Example(" ".join(piece[:cut]), " ".join(piece[cut:]))


def chunks(text: str, words: int) -> Iterator[Example]:
    """The whole text as consecutive continuation examples of ``words`` words each."""
    tokens = text.split()
    for start in range(0, len(tokens), words):
        example = continuation(" ".join(tokens[start:start + words]), words)
        if example is not None:
            yield example


class _Corpus:
    """One MUSE dataset, read config by config; records checked field by field with the place named."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset

    def split(self, config: str, names: tuple[str, ...], config_optional: bool = False,
              split_optional: bool = False) -> tuple[str, Records] | None:
        """(the split's name in this revision, its records); None for an optional config or split it lacks."""
        splits = read_config(self.dataset, config, config_optional)
        return None if splits is None else pick_split(splits, names, self.dataset, config, split_optional)

    def field(self, config: str, split: str, rows: Records, *keys: str) -> list[tuple[str, ...]]:
        return [tuple(text_field(r, k, where(self.dataset, config, split, i)) for k in keys)
                for i, r in enumerate(rows)]

    def texts(self, config: str, split: str, rows: Records) -> list[str]:
        """A text split's texts: each record's ``text``, or the record itself where it is a plain string."""
        return [record_text(r, where(self.dataset, config, split, i)) for i, r in enumerate(rows)]

    def continuations(self, config: str, split: str, rows: Records, words: int) -> list[Example]:
        examples = [continuation(text, words) for text in self.texts(config, split, rows)]
        return [replace(ex, kind=config) for ex in examples if ex is not None]


def load_muse(name: str, path: str | None = None, corpus: str = "news", max_length: int = 256,
              raw_chunks: int = 0) -> Domain:
    """One domain from MUSE-News or MUSE-Books (hub id or local folder ``path``; default the corpus's hub id)."""
    if corpus not in MUSE_HUB_IDS:
        raise DataError(f"MUSE corpus must be one of {list(MUSE_HUB_IDS)}, got {corpus!r}")
    muse = _Corpus(path or MUSE_HUB_IDS[corpus])
    words = max(8, max_length // 2)
    domain = Domain(name)

    for names, target in ((FORGET_QA, domain.forget), (RETAIN_QA, domain.retain), (FORGET_QA_ICL, domain.shots)):
        found = muse.split("knowmem", names, split_optional=target is domain.shots)
        if found:
            split, rows = found
            target.extend(Example(q, a, kind="knowmem") for q, a in muse.field("knowmem", split, rows, "question",
                                                                                  "answer"))
    split, rows = muse.split("verbmem", ("forget",))
    domain.forget.extend(Example(p, gt, kind="verbmem") for p, gt in muse.field("verbmem", split, rows, "prompt", "gt"))

    for names, target in ((("forget",), domain.forget), (PRIVLEAK_RETAIN, domain.retain_heldout),
                          (("holdout",), domain.holdout)):
        found = muse.split("privleak", names, config_optional=True)
        if found is None:  # no privleak config at all (a config without one of these splits is an error)
            log.warning("%s: no privleak config, so domain %r has no holdout (no calibrated stop reference beyond the "
                        "base model, no membership-inference non-members: grail attack needs them) and no "
                        "retain_heldout (RS_heldout is not measured)", muse.dataset, name)
            break
        target.extend(muse.continuations("privleak", *found, words))

    if raw_chunks:
        for names, target in ((("forget",), domain.forget), (RAW_RETAIN, domain.retain)):
            split, rows = muse.split("raw", names)
            pieces = [replace(ex, kind="raw") for text in muse.texts("raw", split, rows) for ex in chunks(text, words)]
            target.extend(pieces[:raw_chunks])
    return domain
