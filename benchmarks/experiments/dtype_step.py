"""Is bfloat16 a way to a faster CPU run? One LoRA training step (8 x 48 tokens) of the embedded model with a
float32 base, under bfloat16 autocast, and with a bfloat16 base; best of 5 after a warm-up.

    python benchmarks/experiments/dtype_step.py
"""

from __future__ import annotations

import time

import torch

from grail.config import ModelConfig
from grail.models import load_base, make_trainable


def step_seconds(dtype: str, autocast: bool) -> float:
    config = ModelConfig(dtype=dtype)
    model, _ = load_base(config)
    model = make_trainable(model, config).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, model.config.vocab_size, (8, 48), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(6):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return min(times[1:])


if __name__ == "__main__":
    for dtype, autocast in (("float32", False), ("float32", True), ("bfloat16", False)):
        print(f"base {dtype}{', bf16 autocast' if autocast else ''}: {step_seconds(dtype, autocast):.2f} s a step")
