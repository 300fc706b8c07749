"""Thread settings against a busy neighbour: the time of a LoRA training step of the embedded model (the default
adapter), quiet and beside another busy torch process, for several thread settings and two step shapes: 4 x 48
tokens in one batch, and stage 0's own step (4 facts of 20 tokens, then one replay example of 71 tokens, each
forward and backward, then the optimizer): small operations, each waiting on its threads. Each setting runs in its
own process (OpenMP reads its settings once, at start). Writes BENCHMARKS-threads.md.

    .venv/bin/python benchmarks/threads.py            # about 10 minutes here

Why: OpenMP's worker threads spin while they wait for each other. When another process holds a core, a spinning
thread burns the time slice its partner needs, and a step that takes 0.7 s alone took 23 s beside a test suite.
Spinning too briefly costs the other way: each short operation then waits for sleeping threads to wake.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

STEP = """
import json, os, statistics, sys, time
import torch
from grail.config import ModelConfig
from grail.models import load_base, make_trainable
threads = int(os.environ.get("BENCH_THREADS", "0"))
if threads:
    torch.set_num_threads(threads)
base, _ = load_base(ModelConfig())
model = make_trainable(base, ModelConfig())
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, lr=1e-4)
generator = torch.Generator().manual_seed(0)
batches = {{"4x48": [(4, 48)], "stage0": [(4, 20), (1, 71)]}}[os.environ["BENCH_SHAPE"]]
inputs = [torch.randint(0, 1000, shape, generator=generator) for shape in batches]
times = []
for step in range({steps} + 2):
    started = time.perf_counter()
    for ids in inputs:
        model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    times.append(time.perf_counter() - started)
print(json.dumps({{"median_s": statistics.median(times[2:]), "threads": torch.get_num_threads()}}))
"""

SHAPES = {"4x48": "4 x 48 tokens", "stage0": "stage 0's step (4 x 20, then 1 x 71)"}

NEIGHBOUR = """
import torch
a = torch.randn(512, 512)
while True:
    a = torch.tanh(a @ a)
"""

SETTINGS = {
    "torch default (2 threads, OpenMP's default wait policy)": {},
    "2 threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "2 threads, GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
    "1 thread": {"BENCH_THREADS": "1", "OMP_NUM_THREADS": "1"},
    "grail's default: GOMP_SPINCOUNT=10000 (grail/threads.py)": {"GRAIL_BENCH_GRAIL_DEFAULT": "1"},
}


def step_time(env_extra: dict[str, str], steps: int, shape: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["BENCH_SHAPE"] = shape
    code = STEP.format(steps=steps)
    if env_extra.get("GRAIL_BENCH_GRAIL_DEFAULT"):
        code = "from grail.threads import configure_threads\nconfigure_threads()\n" + code
    env.update({k: v for k, v in env_extra.items() if k != "GRAIL_BENCH_GRAIL_DEFAULT"})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--only", default="", help="run only the settings whose name contains this")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "BENCHMARKS-threads.md")
    args = parser.parse_args()
    rows = []
    for name, env in SETTINGS.items():
        if args.only not in name and name != next(iter(SETTINGS)):  # torch's default is the reference row
            continue
        for shape in SHAPES:
            quiet = step_time(env, args.steps, shape)
            neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env={
                k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")})
            try:
                time.sleep(2)
                busy = step_time(env, args.steps, shape)
            finally:
                neighbour.kill()
                neighbour.wait()
            rows.append((name, shape, quiet, busy))
            print(name, shape, quiet, busy, flush=True)
    reference = {shape: quiet["median_s"] for name, shape, quiet, _ in rows if name == next(iter(SETTINGS))}
    lines = [
        "# Thread settings beside a busy neighbour",
        "",
        f"Measured with `python benchmarks/threads.py` on {os.cpu_count()} logical CPUs: "
        f"the median of {args.steps} LoRA training steps of SmolLM2-135M-Instruct (the default adapter, every "
        "linear layer) of two shapes, each setting in a fresh process, quiet and beside a busy torch process "
        "(matrix products with torch's default threads).",
        "",
        "| setting | threads | step | quiet | beside a busy process | busy / quiet | quiet / default's quiet |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, shape, quiet, busy in rows:
        lines.append(f"| {name} | {quiet['threads']} | {SHAPES[shape]} | {quiet['median_s']:.2f} s "
                     f"| {busy['median_s']:.2f} s | {busy['median_s'] / quiet['median_s']:.1f}x "
                     f"| {quiet['median_s'] / reference[shape]:.2f}x |")
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
