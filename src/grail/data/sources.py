"""The run's data from ``config.data``: one source's domains, or domains from several sources in one run."""

from __future__ import annotations

import dataclasses
import logging

from grail.config import DomainSource, RunConfig
from grail.data.builtin import builtin_benchmark
from grail.data.examples import Benchmark, Domain
from grail.data.loaders import KNOWUNDO_HUB_ID, load_jsonl, load_knowundo_dir, load_knowundo_hub
from grail.data.muse import load_muse
from grail.data.tofu import load_tofu

log = logging.getLogger("grail.data")

WHAT_IS_LOST = {
    "holdout": "the calibrated stop falls back to the base model's view and grail attack has no membership-inference "
               "non-members",
    "retain_heldout": "RS_heldout is not measured",
    "paraphrases": "US_paraphrase is not measured",
}
"""What a domain without each optional part loses: said once, when the data loads."""


def say_what_is_missing(domain: Domain, source: str, already_said: tuple[str, ...] = ()) -> None:
    """One warning per domain naming the optional parts its source does not have and what is then unavailable
    (``already_said``: parts the loader itself has warned about, with the reason)."""
    parts = {"holdout": bool(domain.holdout), "retain_heldout": bool(domain.retain_heldout),
             "paraphrases": any(ex.paraphrase for ex in domain.forget)}
    missing = [part for part, present in parts.items() if not present and part not in already_said]
    if missing:
        log.warning("domain %r (%s) has no %s: %s", domain.name, source, ", no ".join(missing),
                    "; ".join(WHAT_IS_LOST[part] for part in missing))


def _load_source(source: str, path: str | None, names: list[str] | None, split: str, config: RunConfig) -> Benchmark:
    """One source of the classic kinds: all its domains, or the ``names`` of them, in order."""
    if source == "builtin":
        benchmark = builtin_benchmark(config.seed, config.data.people, config.data.books)
    elif source == "jsonl":
        benchmark = load_jsonl(path)
    elif source == "knowundo":
        benchmark = load_knowundo_dir(path, names or ["privacy", "copyright"], split)
    else:
        benchmark = load_knowundo_hub(names or ["privacy", "copyright"], split, path or KNOWUNDO_HUB_ID)
    return benchmark.select(names) if names else benchmark


def _load_domain(entry: DomainSource, config: RunConfig) -> Domain:
    """A ``data.domains`` entry that brings its own source, under the entry's name."""
    if entry.source == "tofu":
        return load_tofu(entry.name, entry.path, entry.forget, entry.retain)
    if entry.source == "muse":
        return load_muse(entry.name, entry.path, entry.corpus, config.model.max_length, entry.raw_chunks)
    (domain,) = _load_source(entry.source, entry.path, [entry.domain or entry.name], entry.split, config).domains
    return dataclasses.replace(domain, name=entry.name)


def load_benchmark(config: RunConfig) -> Benchmark:
    """The run's data, from ``config.data``: ``data.source``'s domains, or each ``data.domains`` entry from its
    own source (a name: a domain of ``data.source``)."""
    data = config.data
    if not data.domains or all(isinstance(d, str) for d in data.domains):
        benchmark = _load_source(data.source, data.path, data.domains, data.split, config)
        sources = [data.source] * len(benchmark.domains)
    else:
        shared = [d for d in data.domains if isinstance(d, str)]
        named = dict(zip(shared, _load_source(data.source, data.path, shared, data.split, config).domains)) \
            if shared else {}
        benchmark = Benchmark([named[d] if isinstance(d, str) else _load_domain(d, config) for d in data.domains])
        sources = [data.source if isinstance(d, str) else d.source for d in data.domains]
    for domain, source in zip(benchmark.domains, sources):
        # MUSE's loader says itself why a folder without privleak has no holdout and no held-out retain set
        say_what_is_missing(domain, source, ("holdout", "retain_heldout") if source == "muse" else ())
    return benchmark
