"""Local folders in the hub's layouts for TOFU and MUSE, a few records each (the loaders' tests run offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

Configs = dict[str, dict[str, list[dict]]]


def write_dataset(root: Path, configs: Configs, layout: str) -> Path:
    """``readme``: parquet shards per config and split with a README ``configs:`` header (the hub today);
    ``folders``: the same shards without the header (a parquet export); ``flat``: ``<config>.json`` JSON lines
    at the top, one ``train`` split each (TOFU's first revision)."""
    root.mkdir(parents=True, exist_ok=True)
    header = ["---", "configs:"]
    for config, splits in configs.items():
        if layout == "flat":
            (root / f"{config}.json").write_text("".join(json.dumps(r) + "\n" for r in splits["train"]))
            continue
        (root / config).mkdir(exist_ok=True)
        header += [f"- config_name: {config}", "  data_files:"]
        for split, records in splits.items():
            name = f"{config}/{split}-00000-of-00001.parquet"
            pq.write_table(pa.Table.from_pylist(records), root / name)
            header += [f"  - split: {split}", f"    path: {name}"]
    if layout == "readme":
        (root / "README.md").write_text("\n".join(header + ["---", "", "# a dataset card"]))
    return root


def tofu_configs(paraphrases: bool = True) -> Configs:
    """20 questions about 10 authors; forget10 = the last 2, forget05 = forget01 = the last one."""
    full = [{"question": f"Who is author {i // 2}? ({i})", "answer": f"Author {i // 2} writes book {i}."}
            for i in range(20)]

    def perturbed(rows: list[dict]) -> list[dict]:
        extra = {"paraphrased_answer": "in other words", "perturbed_answer": ["wrong 1", "wrong 2"]}
        return [{**r, **extra, **({"paraphrased_question": "Tell me: " + r["question"]} if paraphrases else {})}
                for r in rows]

    configs = {"full": full, "forget01": full[19:], "forget05": full[19:], "forget10": full[18:],
               "retain99": full[:19], "retain95": full[:19], "retain90": full[:18],
               "forget01_perturbed": perturbed(full[19:]), "forget05_perturbed": perturbed(full[19:]),
               "forget10_perturbed": perturbed(full[18:]), "retain_perturbed": perturbed(full[:2]),
               "real_authors": [{"question": "Who wrote Hamlet?", "answer": "William Shakespeare"}],
               "world_facts": [{"question": "Capital of France?", "answer": "Paris"}]}
    return {name: {"train": rows} for name, rows in configs.items()}


def _text(tag: str, words: int = 40) -> str:
    return " ".join(f"{tag}{i}" for i in range(words))


def muse_configs(revision: str = "current") -> Configs:
    """MUSE's subsets; ``revision='earlier'``: the retain splits under their earlier names."""
    retain_qa, privleak_retain = ("retain_qa", "retain") if revision == "current" else ("retain2_qa", "retain2")
    qa = lambda tag, n: [{"question": f"{tag} question {i}?", "answer": f"{tag} answer {i}"} for i in range(n)]  # noqa: E731
    return {
        "knowmem": {"forget_qa": qa("forget", 3), retain_qa: qa("retain", 3), "forget_qa_icl": qa("icl", 2),
                    f"{retain_qa}_icl": qa("retain-icl", 2)},
        "verbmem": {"forget": [{"prompt": f"Passage {i} begins", "gt": _text(f"v{i}w", 12)} for i in range(2)]},
        "privleak": {"forget": [{"text": _text("pf")}], privleak_retain: [{"text": _text("pr")}],
                     "holdout": [{"text": _text("ph")}, {"text": _text("ph2")}]},
        "raw": {split: [{"text": _text(f"raw-{split}-", 300)}]
                for split in ("forget", "retain1", "retain2", "holdout")},
    }


TEXT_CONFIGS = ("privleak", "raw")
"""MUSE's configs whose records are texts: in its authors' repository, JSON lists of plain strings."""


def write_muse_repository(root: Path, configs: Configs) -> Path:
    """MUSE as its authors publish it (their repository's ``data/<corpus>/``): ``<config>/<split>.json``, each a JSON
    list; the records of ``privleak`` and ``raw`` are their texts as plain strings, the others objects."""
    for config, splits in configs.items():
        (root / config).mkdir(parents=True, exist_ok=True)
        for split, records in splits.items():
            rows = [r["text"] for r in records] if config in TEXT_CONFIGS else records
            (root / config / f"{split}.json").write_text(json.dumps(rows, indent=2))
    return root
