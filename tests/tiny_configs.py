"""Run configs of the tiny model shared by the end-to-end tests, and its LoRA model (tests/ is on sys.path: pytest
puts conftest.py's folder there)."""

import copy
import hashlib
from pathlib import Path

import torch

from grail.config import ModelConfig
from grail.models import make_trainable

TINY_RUN = {
    "model": {"name": "tiny", "lora_r": 4, "lora_alpha": 8},
    "data": {"people": 1, "books": 1},
    "finetune": {"epochs": 3, "lr": 1e-2, "batch_size": 4},
    "gradients": {"batch_size": 8},
    "unlearn": {"epochs": 2, "lr": 5e-3, "batch_size": 4, "target": "none"},
    "evaluate": {"max_new_tokens": 4, "mmlu_per_subject": 1},
}
"""LoRA on the tiny Llama, one person and one book: every stage in seconds."""

OWN_MODEL_SETTINGS = {**{k: v for k, v in TINY_RUN.items() if k not in ("model", "data", "finetune")},
                      "attack": {"relearn_steps": [0, 2], "precisions": ["bfloat16"], "bootstrap": 50}}
"""``grail unlearn --model``'s ``--config`` in the tests: the tiny run's stage settings and quick attacks; the model
and the data come from the command line."""


def folder_digest(folder: Path) -> str:
    """SHA-256 of every file's relative path and bytes: equal before and after iff nothing in it changed."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def lora_on(base, dropout: float = 0.0, b_scale: float = 0.02):
    """A fresh LoRA model on a copy of ``base`` whose LoRA B has non-zero values (so every LoRA tensor has a
    gradient and LoRA changes the output)."""
    torch.manual_seed(0)
    model = make_trainable(copy.deepcopy(base), ModelConfig(name="tiny", lora_r=4, lora_alpha=8, lora_dropout=dropout))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, b_scale)
    return model
