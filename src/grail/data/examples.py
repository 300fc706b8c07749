"""The data model: examples grouped by domain and scope.

An example is a (prompt, answer) pair. Loss and metrics count answer tokens only. ``span`` marks, where the
data knows it, the part of the answer that must (forget) or may (retain) come back in a generation: the phone
number, the verbatim passage, the author's name. Leak rates are computed from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

SCOPES = ("forget", "retain")


class DataError(ValueError):
    """Bad input data. The message names the file and the record (or line)."""


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    span: str | None = None


@dataclass
class Domain:
    """One domain's unlearning scope (forget) and retention scope (retain)."""

    name: str
    forget: list[Example] = field(default_factory=list)
    retain: list[Example] = field(default_factory=list)

    def scope(self, scope: str) -> list[Example]:
        return self.forget if scope == "forget" else self.retain


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

    def select(self, names: list[str]) -> Benchmark:
        """The sub-benchmark of the named domains, in the given order."""
        by_name = {d.name: d for d in self.domains}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise DataError(f"unknown domain(s) {unknown}; the data has {self.domain_names}")
        return Benchmark([by_name[n] for n in names])

    def to_jsonl(self) -> str:
        """Our own JSONL format (see README): one record per line."""
        lines = []
        for domain, scope, examples in self.datasets():
            for ex in examples:
                record = {"domain": domain, "scope": scope, **asdict(ex)}
                if record["span"] is None:
                    del record["span"]
                lines.append(json.dumps(record, ensure_ascii=False))
        return "\n".join(lines) + "\n"
