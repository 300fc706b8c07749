"""Loaders: our JSONL format, KnowUnDo folders, and the KnowUnDo hub dataset.

Every error names the file and the record (JSONL: the line) so a user can fix the input; nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grail.data.examples import SCOPES, Benchmark, DataError, Domain, Example

# KnowUnDo file -> our scope; the *_val files are the evaluation split.
KNOWUNDO_FILES = {
    "train": {"forget": "unlearn_train.json", "retain": "retention_train.json"},
    "val": {"forget": "unlearn_val.json", "retain": "retention_val.json"},
}
KNOWUNDO_HUB_ID = "zjunlp/KnowUnDo"
KNOWUNDO_HUB_SPLITS = {"forget": "unlearn", "retain": "retention"}


def _text_field(record: Any, key: str, where: str) -> str:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise DataError(f"{where}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: field {key!r} is empty")
    return value


def _optional_span(record: dict, where: str) -> str | None:
    span = record.get("span")
    if span is None:
        return None
    if not isinstance(span, str) or not span.strip():
        raise DataError(f"{where}: field 'span' must be a non-empty string when given")
    return span


def _check_complete(domains: dict[str, Domain], source: str) -> Benchmark:
    for domain in domains.values():
        for scope in SCOPES:
            if not domain.scope(scope):
                raise DataError(f"{source}: domain {domain.name!r} has an empty {scope} set")
    return Benchmark(list(domains.values()))


def load_jsonl(path: str | Path) -> Benchmark:
    """Our format: one JSON object per line with domain, scope (forget|retain), prompt, answer, optional span."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    domains: dict[str, Domain] = {}
    with path.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path} line {line_no}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
            domain = _text_field(record, "domain", where)
            scope = _text_field(record, "scope", where)
            if scope not in SCOPES:
                raise DataError(f"{where}: field 'scope' must be one of {list(SCOPES)}, got {scope!r}")
            example = Example(_text_field(record, "prompt", where), _text_field(record, "answer", where),
                              _optional_span(record, where))
            domains.setdefault(domain, Domain(domain)).scope(scope).append(example)
    if not domains:
        raise DataError(f"{path}: no records")
    return _check_complete(domains, str(path))


def knowundo_records(records: Any, where: str) -> list[Example]:
    """KnowUnDo's list of {"text": prompt, "labels": answer}."""
    if not isinstance(records, list):
        raise DataError(f"{where}: expected a JSON list of records, got {type(records).__name__}")
    examples = []
    for i, record in enumerate(records):
        at = f"{where} record {i}"
        examples.append(Example(_text_field(record, "text", at), _text_field(record, "labels", at)))
    return examples


def load_knowundo_dir(root: str | Path, domains: Iterable[str], split: str = "train") -> Benchmark:
    """KnowUnDo's layout: ROOT/<domain>/{unlearn,retention}_{train,val}.json."""
    root = Path(root)
    if split not in KNOWUNDO_FILES:
        raise DataError(f"split must be one of {list(KNOWUNDO_FILES)}, got {split!r}")
    result: dict[str, Domain] = {}
    for name in domains:
        folder = root / name
        if not folder.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise DataError(f"{folder}: unknown domain {name!r} (no such folder; {root} has {present})")
        domain = Domain(name)
        for scope, filename in KNOWUNDO_FILES[split].items():
            path = folder / filename
            if not path.is_file():
                raise DataError(f"{path}: missing file")
            try:
                records = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: invalid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
            domain.scope(scope).extend(knowundo_records(records, str(path)))
        result[name] = domain
    return _check_complete(result, str(root))


def load_knowundo_hub(domains: Iterable[str], split: str = "train", dataset_id: str = KNOWUNDO_HUB_ID) -> Benchmark:
    """The hub dataset: config = domain, splits unlearn/retention, one row with list columns train and val.

    ``dataset_id`` may also be a local folder saved in that layout (how the tests exercise this code offline).
    """
    import datasets  # imported here: it is heavy and only this loader needs it

    result: dict[str, Domain] = {}
    for name in domains:
        domain = Domain(name)
        for scope, hub_split in KNOWUNDO_HUB_SPLITS.items():
            where = f"{dataset_id} (config {name!r}, split {hub_split!r})"
            try:
                table = datasets.load_dataset(dataset_id, name, split=hub_split)
            except ValueError as err:
                raise DataError(f"{where}: cannot load ({err})") from None
            if split not in table.column_names or len(table) == 0:
                raise DataError(f"{where}: no column {split!r} (columns {table.column_names})")
            domain.scope(scope).extend(knowundo_records(table[0][split], f"{where} column {split!r}"))
        result[name] = domain
    return _check_complete(result, dataset_id)
