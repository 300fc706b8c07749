"""Loaders: our JSONL format, KnowUnDo folders, and the KnowUnDo hub dataset.

Every error names the file and the record (JSONL: the line) so a user can fix the input; nothing is written.
Held-out retain facts (RS_heldout) come from the JSONL scope ``retain_heldout`` and, for KnowUnDo's train split,
from its retention *val* records; forget paraphrases (US_paraphrase) from the JSONL field ``paraphrase``; the
attacks' holdout (forget-kind examples no model trains on) from the JSONL scope ``holdout`` and, for KnowUnDo's
train split, from its unlearn *val* records.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grail.data.examples import (
    ALL_SCOPES,
    SCOPES,
    Benchmark,
    DataError,
    Domain,
    Example,
    SourceUnreachableError,
    check_domain_name,
)

# KnowUnDo file -> our scope; the *_val files are the evaluation split.
KNOWUNDO_FILES = {
    "train": {"forget": "unlearn_train.json", "retain": "retention_train.json"},
    "val": {"forget": "unlearn_val.json", "retain": "retention_val.json"},
}
KNOWUNDO_HUB_ID = "zjunlp/KnowUnDo"
KNOWUNDO_HUB_SPLITS = {"forget": "unlearn", "retain": "retention"}


def text_field(record: Any, key: str, where: str) -> str:
    """The record's field ``key``: a non-empty string of valid Unicode text, else an error naming ``where``."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if record.get(key) is None:  # absent, or null (how a parquet table shows a record without it)
        raise DataError(f"{where}: missing field {key!r}")
    value = record[key]
    if not isinstance(value, str):
        raise DataError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    return _checked_text(value, f"field {key!r}", where)


def record_text(record: Any, where: str) -> str:
    """A text split's record: a plain string (how MUSE's authors publish privleak and raw) or an object's ``text``."""
    if isinstance(record, str):
        return _checked_text(record, "the text", where)
    return text_field(record, "text", where)


def _checked_text(value: str, what: str, where: str) -> str:
    """``value``, refused when blank or when it is no Unicode text: JSON's escapes can spell a lone surrogate
    ("\\ud800"), which no UTF-8 file (the run's data.jsonl) can hold."""
    if not value.strip():
        raise DataError(f"{where}: {what} is empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise DataError(f"{where}: {what} is not valid Unicode text (character {err.start + 1} is a lone surrogate "
                        f"{ascii(value[err.start])})") from None
    return value


def _optional_text(record: dict, key: str, where: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: field {key!r} must be a non-empty string when given")
    return _checked_text(value, f"field {key!r}", where)


def _check_complete(domains: dict[str, Domain], source: str) -> Benchmark:
    for domain in domains.values():
        for scope in SCOPES:
            if not domain.scope(scope):
                raise DataError(f"{source}: domain {domain.name!r} has an empty {scope} set")
    return Benchmark(list(domains.values()))


def load_jsonl(path: str | Path) -> Benchmark:
    """Our format: one JSON object per line with domain, scope (forget | retain | retain_heldout | holdout | shots |
    knowledge), prompt, answer, optional span and kind (``Example.kind``: where a forget set mixes kinds, a holdout
    record's kind names the forget records it stands for), and on forget records an optional paraphrase (the prompt
    in a second wording)."""
    path = Path(path)
    if not path.is_file():
        raise SourceUnreachableError(f"{path}: no such file")
    domains: dict[str, Domain] = {}
    for where, record in _json_lines(path):
        domain = check_domain_name(text_field(record, "domain", where), where)
        scope = text_field(record, "scope", where)
        if scope not in ALL_SCOPES:
            raise DataError(f"{where}: field 'scope' must be one of {list(ALL_SCOPES)}, got {scope!r}")
        domains.setdefault(domain, Domain(domain)).scope(scope).append(_example(record, scope, where))
    if not domains:
        raise DataError(f"{path}: no records")
    return _check_complete(domains, str(path))


def load_sets(files: dict[str, Path], domain: str | None = None) -> Benchmark:
    """A deletion request as separate files, {scope: JSONL file} (forget, retain, optionally holdout, ...): each
    record a prompt and an answer (our format without ``scope``, which the file gives). A record's ``domain`` field
    names its domain, else ``domain``; a ``scope`` field, if any, must be the file's."""
    domains: dict[str, Domain] = {}
    for scope, path in files.items():
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        count = 0
        for where, record in _json_lines(path):
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
            if record.get("scope", scope) != scope:
                raise DataError(f"{where}: field 'scope' is {record['scope']!r}, but this file holds the {scope} set")
            if record.get("domain") is not None:
                name = check_domain_name(text_field(record, "domain", where), where)
            elif domain is not None:
                name = check_domain_name(domain, "--domain")
            else:
                raise DataError(f"{where}: no field 'domain'; name the domain with --domain")
            domains.setdefault(name, Domain(name)).scope(scope).append(_example(record, scope, where))
            count += 1
        if not count:
            raise DataError(f"{path}: no records")
    return _check_complete(domains, ", ".join(str(p) for p in files.values()))


def _json_lines(path: Path) -> Iterable[tuple[str, Any]]:
    """(where, record) of every non-blank line of a JSONL file; ``where`` names the file and line."""
    with path.open("rb") as lines:
        for line_no, raw in enumerate(lines, start=1):
            where = f"{path} line {line_no}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{where}: not UTF-8 text (byte {err.start + 1} of the line is {raw[err.start]:#04x})"
                                ) from None
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None


def _example(record: dict, scope: str, where: str) -> Example:
    """One record of our format as an example of ``scope``."""
    prompt = text_field(record, "prompt", where)
    paraphrase = _optional_text(record, "paraphrase", where)
    if paraphrase is not None and scope != "forget":
        raise DataError(f"{where}: field 'paraphrase' is only for forget records (scope is {scope!r})")
    if paraphrase is not None and paraphrase.strip() == prompt.strip():
        raise DataError(f"{where}: field 'paraphrase' repeats the prompt; it must be a second wording")
    return Example(prompt, text_field(record, "answer", where), _optional_text(record, "span", where), paraphrase,
                   _optional_text(record, "kind", where))


def knowundo_records(records: Any, where: str) -> list[Example]:
    """KnowUnDo's list of {"text": prompt, "labels": answer}."""
    if not isinstance(records, list):
        raise DataError(f"{where}: expected a JSON list of records, got {type(records).__name__}")
    examples = []
    for i, record in enumerate(records):
        at = f"{where} record {i}"
        examples.append(Example(text_field(record, "text", at), text_field(record, "labels", at)))
    return examples


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start + 1} of the file)") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: invalid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None


def load_knowundo_dir(root: str | Path, domains: Iterable[str], split: str = "train") -> Benchmark:
    """KnowUnDo's layout: ROOT/<domain>/{unlearn,retention}_{train,val}.json. With the train split, the
    retention_val records (where present) are the held-out retain facts and the unlearn_val ones the holdout."""
    root = Path(root)
    if split not in KNOWUNDO_FILES:
        raise DataError(f"split must be one of {list(KNOWUNDO_FILES)}, got {split!r}")
    if not root.is_dir():
        raise SourceUnreachableError(f"{root}: no such folder")
    result: dict[str, Domain] = {}
    for name in domains:
        folder = root / name
        if not folder.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            raise DataError(f"{folder}: unknown domain {name!r} (no such folder; {root} has {present})")
        domain = Domain(name)
        for scope, filename in KNOWUNDO_FILES[split].items():
            path = folder / filename
            if not path.is_file():
                raise DataError(f"{path}: missing file")
            records = _read_json(path)
            domain.scope(scope).extend(knowundo_records(records, str(path)))
        for scope, filename in KNOWUNDO_FILES["val"].items():  # facts of the same kind that training never sees
            path = folder / filename
            if split == "train" and path.is_file():
                target = domain.retain_heldout if scope == "retain" else domain.holdout
                target.extend(knowundo_records(_read_json(path), str(path)))
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
            except OSError as err:  # no such folder, no network, no such dataset on the hub
                raise SourceUnreachableError(f"{where}: cannot reach it ({type(err).__name__}: {err})") from None
            if split not in table.column_names or len(table) == 0:
                raise DataError(f"{where}: no column {split!r} (columns {table.column_names})")
            domain.scope(scope).extend(knowundo_records(table[0][split], f"{where} column {split!r}"))
            if split == "train" and "val" in table.column_names:
                target = domain.retain_heldout if scope == "retain" else domain.holdout
                target.extend(knowundo_records(table[0]["val"], f"{where} column 'val'"))
        result[name] = domain
    return _check_complete(result, dataset_id)
