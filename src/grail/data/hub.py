"""One config of a Hugging Face dataset, as {split: records}: from the hub, or offline from a local folder.

A local folder may be in any layout the hub has used for the benchmarks grail reads:
- ``README.md`` with a ``configs:`` header (what the hub itself reads; parquet or JSON data files): read by
  ``datasets``, exactly as the hub dataset would be;
- ``<config>.json`` / ``<config>.jsonl`` at the top (TOFU's first revision): one split, ``train``;
- ``<config>/<split>-00000-of-00001.parquet`` or ``<config>/<split>.json(l)`` (a parquet export, or MUSE's own
  repository, whose privleak and raw records are plain strings).
A record is an object, or a string where the split holds texts (``loaders.record_text``). Every error names the
dataset, the config and, where it gets that far, the split and the record (or the file and the record).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import yaml

from grail.data.examples import DataError, SourceUnreachableError

log = logging.getLogger("grail.data")

Records = list[dict[str, Any] | str]
"""A split's records: objects, or (a text split in its authors' layout) plain strings."""
SHARD = re.compile(r"^(?P<split>.+?)(-\d{5}-of-\d{5})?\.(?P<ext>parquet|jsonl|json)$")


def where(dataset: str, config: str, split: str | None = None, record: int | None = None) -> str:
    """How errors name a place in a dataset."""
    text = f"{dataset} (config {config!r}" + (f", split {split!r}" if split is not None else "") + ")"
    return text + (f" record {record}" if record is not None else "")


def read_config(dataset: str, config: str, optional: bool = False) -> dict[str, Records] | None:
    """{split: records} of one config; ``optional``: None when the dataset has no such config."""
    root = Path(dataset).expanduser()
    if root.is_dir():
        splits, configs = _read_local(root, config)
    elif dataset.startswith((".", "/", "~")) or root.exists():
        raise SourceUnreachableError(f"{dataset}: no such folder")
    else:
        splits, configs = _read_hub(dataset, config)
    if splits is None and not optional:
        raise DataError(f"{where(dataset, config)}: the dataset has no such config (it has {sorted(configs)})")
    return splits


def pick_split(splits: dict[str, Records], names: tuple[str, ...], dataset: str, config: str,
               optional: bool = False) -> tuple[str, Records] | None:
    """(name, records) of the first of ``names`` (one split under the names dataset revisions gave it) that the
    config has; says which when it is not the first."""
    for name in names:
        if name in splits:
            if name != names[0]:
                log.info("%s: using split %r (this revision's name for %r)", where(dataset, config), name, names[0])
            return name, splits[name]
    if optional:
        return None
    raise DataError(f"{where(dataset, config)}: no split {' or '.join(map(repr, names))} (it has "
                    f"{sorted(splits)}): a layout of neither known revision")


def _readme_configs(readme: Path) -> list[str] | None:
    """The config names of a dataset card's YAML header, or None when it declares none."""
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return None
    header = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    try:
        card = yaml.safe_load(header) or {}
    except yaml.YAMLError as err:
        raise DataError(f"{readme}: invalid YAML header ({err})") from None
    configs = card.get("configs") if isinstance(card, dict) else None
    if not configs:
        return None
    return [c.get("config_name", "default") for c in configs if isinstance(c, dict)]


def _read_local(root: Path, config: str) -> tuple[dict[str, Records] | None, list[str]]:
    """(splits or None, the configs the folder has)."""
    readme = root / "README.md"
    configs = _readme_configs(readme) if readme.is_file() else None
    if configs is not None:
        return (_load_with_datasets(str(root), config) if config in configs else None), configs
    for suffix in (".json", ".jsonl"):
        if (root / f"{config}{suffix}").is_file():
            records = _read_json_records(root / f"{config}{suffix}")
            return {"train": records}, [config]
    folder = root / config
    if not folder.is_dir():
        present = [p.name.split(".")[0] if p.is_file() else p.name for p in root.iterdir()
                   if p.is_dir() or p.suffix in (".json", ".jsonl")]
        return None, present
    splits: dict[str, Records] = {}
    for path in sorted(folder.iterdir()):
        match = SHARD.match(path.name)
        if not match:
            continue
        split = match["split"]
        if match["ext"] == "parquet":
            import pyarrow.parquet as pq  # installed with datasets

            try:
                records = pq.read_table(path).to_pylist()
            except Exception as err:  # pyarrow raises several kinds for a broken file
                raise DataError(f"{path}: not a readable parquet file ({err})") from None
        else:
            records = _read_json_records(path)
        splits.setdefault(split, []).extend(records)
    if not splits:
        raise DataError(f"{folder}: no data files (expected <split>.parquet, <split>.json or <split>.jsonl)")
    return splits, [config]


def _read_json_records(path: Path) -> Records:
    """A JSON list of records, or JSON lines; each record an object or a string (a text), checked further by
    what reads its fields."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start + 1})") from None
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: invalid JSON ({err.msg} at line {err.lineno} column {err.colno})") from None
        places = [f"record {i}" for i in range(len(records))]
    else:
        records, places = [], []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path} line {line_no}: invalid JSON ({err.msg} at column {err.colno})"
                                    ) from None
                places.append(f"line {line_no}")
    for place, record in zip(places, records):
        if not isinstance(record, (dict, str)):
            raise DataError(f"{path} {place}: expected a JSON object or a string, got {type(record).__name__}")
    return records


def _load_with_datasets(dataset: str, config: str) -> dict[str, Records]:
    import datasets  # imported here: it is heavy and only the hub loaders need it

    try:
        table = datasets.load_dataset(dataset, config)
    except (ValueError, FileNotFoundError, OSError) as err:
        raise DataError(f"{where(dataset, config)}: cannot load ({type(err).__name__}: {err})") from None
    return {split: list(rows) for split, rows in table.items()}


def _read_hub(dataset: str, config: str) -> tuple[dict[str, Records] | None, list[str]]:
    import datasets

    try:
        names = datasets.get_dataset_config_names(dataset)
    except Exception as err:  # no network, unknown repository, gated dataset: many kinds
        raise SourceUnreachableError(f"{dataset}: cannot reach the dataset on the hub ({type(err).__name__}: {err}); "
                                     "pass a local copy's folder as path") from None
    return (_load_with_datasets(dataset, config) if config in names else None), names
