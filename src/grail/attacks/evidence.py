"""``grail audit RUN --evidence``: what a deletion request or a copyright claim needs, in one folder.

    RUN/evidence/evidence.json      SHA-256 of the data, the base model's weights, every adapter and the config;
                                    package versions; seeds; the frozen-entry audit; the thresholds (fixed in the
                                    config before the run) and pass / fail per model, domain and attack
    RUN/evidence/per_example.jsonl  every forget and holdout example's membership scores and, for the forget
                                    examples, whether each precision and prompt attack made it leak
    RUN/evidence/attacks.md         the attack tables
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata
from pathlib import Path

import torch

from grail import io
from grail.audit import audit
from grail.models import base_weights
from grail.pipeline import Pipeline, weights_folder

PACKAGES = ("grail-unlearn", "torch", "transformers", "peft", "accelerate", "safetensors", "numpy", "scipy",
            "rouge-score")


def folder_sha256(folder: Path) -> dict[str, str]:
    """{file name: SHA-256} of every file in a folder (an adapter)."""
    return {p.relative_to(folder).as_posix(): io.file_sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@torch.no_grad()
def weights_sha256(model: torch.nn.Module) -> str:
    """One SHA-256 over every tensor of the model's state (names, shapes, dtypes and bytes, in name order): the
    base model's identity wherever it was loaded from."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def per_example_records(pipeline: Pipeline, reports: dict[str, dict]) -> list[dict]:
    records = []
    for model, report in reports.items():
        for domain in pipeline.benchmark.domains:
            members = set(domain.members())
            for set_name, examples in (("forget", domain.forget), ("holdout", domain.holdout)):
                scores = report["mia"][domain.name][set_name]
                for i, example in enumerate(examples):
                    record = {"model": model, "domain": domain.name, "set": set_name, "index": i,
                              "prompt": example.prompt, "mia": {k: v[i] for k, v in scores.items()}}
                    if set_name == "forget":
                        record["member"] = i in members  # set against the holdout by membership inference
                        record["leaked_under_precision"] = {fmt: s["leaks"][i] for fmt, s in
                                                            report.get("precision", {}).get(domain.name, {}).items()}
                        record["leaked_under_prompt"] = {v: s["leaks"][i] for v, s in
                                                         report["prompts"][domain.name].items()
                                                         if len(s["leaks"]) == len(examples)}
                    records.append(record)
    return records


def write_evidence(pipeline: Pipeline, summary: dict, reports: dict[str, dict]) -> Path:
    """Write RUN/evidence/ from the attacks' summary and raw reports; returns the folder."""
    root, out = pipeline.folder, pipeline.path("evidence")
    adapters = {name: folder_sha256(root / weights_folder(name)) for name in summary["models"]}
    with base_weights(pipeline.model) as base:
        base_hash = weights_sha256(base)
    document = {
        "run": str(root),
        "sha256": {"data.jsonl": io.file_sha256(root / "data.jsonl"),
                   "config.yaml": io.file_sha256(root / "config.yaml"),
                   "base_model_weights": base_hash, "adapters": adapters},
        "base_model": pipeline.config.model.name,
        "versions": _versions(),
        "seeds": {"run": pipeline.config.seed, "relearning split and order": f"relearn-{pipeline.config.seed}",
                  "bootstrap": pipeline.config.seed},
        "audit": audit(root) if (root / "adapter_unlearned").is_dir() else None,
        "thresholds": summary["thresholds"],
        "verdicts": summary["verdicts"],
        "passed": {model: {domain: all(v != "fail" for v in attacks.values()) for domain, attacks in by_domain.items()}
                   for model, by_domain in summary["verdicts"].items()},
    }
    io.write_json(out / "evidence.json", document)
    io.write_text(out / "per_example.jsonl",
                  "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in per_example_records(pipeline, reports)))
    io.write_text(out / "attacks.md", pipeline.path("attacks.md").read_text(encoding="utf-8"))
    return out

