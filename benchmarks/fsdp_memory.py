"""Stage 3's memory per process with the model sharded by FSDP2 (``grail.sharding``): a LLaMA-shaped model built from
a config (random weights; default hidden 1024, 8 layers, ``adapter: full``, so the trained linear weights, their
gradients, their Adam moments and stage 3's copies of them are what grows), a few stage-3 steps in 1 process
unsharded and in 1, 2 and 4 processes sharded (gloo on CPU), and per process:

- the RSS after the imports (torch, transformers, grail), before anything is built: the baseline;
- the RSS just before the first stage-3 step (the model built and sharded, the masks cut, the references taken;
  the heap freed by the build handed back to the system);
- the peak RSS of the stage-3 steps (``VmHWM``, reset just before the first step; Adam's moments are made in the
  first step), and that peak over the baseline;
- the whole process's peak (``ru_maxrss``: it includes building the whole model in every process before sharding,
  which a meta-device build would avoid);
- this process's bytes of parameters (its shards).

And the RSS of a process that only imported torch. Run it alone, one thread a process::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fsdp_memory.py            # a few minutes on 2 cores
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fsdp_memory.py --mmap-threshold 65536   # RSS ~ live tensors
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fsdp_memory.py --hidden 256 --layers 2 --processes 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

RESULT = "FSDP_MEMORY_RESULT "


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field (VmRSS, VmHWM) in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> int:
    """Hand the memory freed so far back to the system (glibc's ``malloc_trim``: building the whole model before
    sharding it leaves freed heap behind), then start ``VmHWM`` again from the current RSS (Linux: ``5`` to
    ``/proc/self/clear_refs``); returns that RSS (KiB)."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the freed heap stays counted
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return status_kib("VmRSS")


def worker(args: argparse.Namespace) -> None:
    """One process of a run: build, shard (unless ``--unsharded``), a few stage-3 steps, report (rank 0 prints)."""
    import resource
    import time

    import torch
    import torch.distributed as dist
    from transformers import LlamaConfig, LlamaForCausalLM

    from grail import sharding
    from grail.batching import encode_all
    from grail.config import ModelConfig, UnlearnConfig
    from grail.data.builtin import builtin_benchmark
    from grail.models import make_trainable, tiny_tokenizer, trainable_parameters
    from grail.stages import unlearn as stage3

    CutOnce = _cut_once_class()
    baseline = status_kib("VmRSS")
    if not args.unsharded:
        dist.init_process_group("gloo")
    tokenizer = tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=args.hidden, intermediate_size=args.intermediate
                         or round(args.hidden * 11 / 4), num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.heads, max_position_embeddings=512, tie_word_embeddings=False,
                         bos_token_id=None, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).requires_grad_(False)
    model = make_trainable(model, ModelConfig(name="tiny", adapter="full"))
    whole_bytes = {"all": sum(p.numel() * p.element_size() for p in model.parameters()),
                   "trainable": sum(p.numel() * p.element_size() for p in trainable_parameters(model).values())}
    generator = torch.Generator().manual_seed(0)
    frozen = {n: torch.rand(p.shape, generator=generator) < 0.3 for n, p in trainable_parameters(model).items()}
    if not args.unsharded:
        sharding.shard_model(model)
    params = trainable_parameters(model)
    local_bytes = {"all": sum(sharding.local(p).numel() * p.element_size() for p in model.parameters()),
                   "trainable": sum(sharding.local(p).numel() * p.element_size() for p in params.values())}

    bench = builtin_benchmark(seed=0, people=2, books=2)
    sets = {f"{d}/{s}": encode_all(tokenizer, ex) for d, s, ex in bench.datasets()}
    forget = {"privacy": sets["privacy/forget"][:2 * args.steps]}
    retain = {"privacy": sets["privacy/retain"][:2 * args.steps]}
    unlearn_config = UnlearnConfig(epochs=1, lr=1e-4, batch_size=4, target="none", utility_budget=None,
                                   general_weight=0.0, anchor_weight=0.0)

    steps, before_steps = [], []
    loss_call = stage3.UnlearningLoss.__call__

    def first_step_resets_the_peak(self, batch):
        if not steps:  # built, sharded, the masks cut (the whole ones freed), the references taken
            before_steps.append(reset_peak())
            steps.append(time.perf_counter())
        return loss_call(self, batch)

    stage3.UnlearningLoss.__call__ = first_step_resets_the_peak
    masks = CutOnce(**vars(stage3.UpdateMasks.for_policy({"frozen": frozen}, "paper")))
    del frozen
    started = time.perf_counter()
    log = stage3.unlearn(model, forget, retain, unlearn_config, pad_id=tokenizer.pad_token_id, seed=0, masks=masks)
    ended = time.perf_counter()
    mine = {"rank": int(os.environ.get("RANK", "0")), "baseline_kib": baseline,
            "before_steps_kib": before_steps[0], "steps_peak_kib": status_kib("VmHWM"),
            "process_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "local_bytes": local_bytes,
            "whole_bytes": whole_bytes, "steps": args.steps, "steps_seconds": ended - steps[0],
            "stage3_seconds": ended - started, "forget_loss": log[-1]["forget_loss"]}
    everyone = [mine]
    if not args.unsharded:
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        dist.destroy_process_group()
    if mine["rank"] == 0:
        print(RESULT + json.dumps(everyone), flush=True)


def _cut_once_class():
    from grail.stages.unlearn import UpdateMasks

    class CutOnce(UpdateMasks):
        """Masks that drop the whole tensors once ``unlearn`` has cut them to this process's shards: the steps' peak
        is then stage 3's own. (A run loads stage 2's masks whole into every process and keeps them: with
        ``adapter: full`` one bool a trained weight, a quarter of the float32 weights, on every process.)"""

        def on(self, params):
            cut = super().on(params)
            self.forget.clear()
            self.retain.clear()
            return cut

    return CutOnce


def torch_only_kib() -> int:
    code = ("import torch\nfor line in open('/proc/self/status'):\n"
            "    if line.startswith('VmRSS:'): print(line.split()[1])")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def run(args: argparse.Namespace, processes: int, sharded: bool) -> list[dict]:
    own = [a for a in sys.argv[1:] if a != "--worker"]
    if sharded:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   __file__, "--worker", *own]
    else:
        command = [sys.executable, __file__, "--worker", "--unsharded", *own]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if args.mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith(RESULT))
    return json.loads(line[len(RESULT):])


def mib(kib: float) -> str:
    return f"{kib / 1024:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--intermediate", type=int, default=0, help="default: hidden * 11 / 4 (LLaMA's ratio)")
    parser.add_argument("--steps", type=int, default=4, help="stage-3 steps (batch 4: 2 forget, 2 retain examples)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--unsharded", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mmap-threshold", type=int, default=0,
                        help="glibc's MALLOC_MMAP_THRESHOLD_ in the workers (bytes; 0: glibc's default). With a small "
                             "fixed one (65536) every tensor is its own mapping, returned when freed, so RSS follows "
                             "the live tensors; by default glibc keeps freed blocks of up to 32 MiB in its heap "
                             "(FSDP's per-layer buffers among them) and RSS overstates them")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    torch_only = torch_only_kib()
    runs = [("1, unsharded", run(args, 1, sharded=False))]
    runs += [(f"{n}, sharded", run(args, n, sharded=True)) for n in args.processes]
    whole = runs[0][1][0]["whole_bytes"]
    print(f"model: hidden {args.hidden}, {args.layers} layers, adapter full: {whole['all'] / 2**20:,.0f} MiB of "
          f"parameters, {whole['trainable'] / 2**20:,.0f} MiB trainable (float32); {args.steps} stage-3 steps; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}, "
          f"MALLOC_MMAP_THRESHOLD_={args.mmap_threshold or 'glibc default'}")
    print(f"a process that only imported torch: {mib(torch_only)} MiB RSS\n")
    print("| processes | params here (MiB) | baseline RSS (MiB) | RSS before the steps (MiB) | steps' peak RSS (MiB) "
          "| peak - baseline (MiB) | whole-process peak (MiB) | steps (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, ranks in runs:
        worst = max(ranks, key=lambda r: r["steps_peak_kib"] - r["baseline_kib"])
        print(f"| {label} | {worst['local_bytes']['all'] / 2**20:,.0f} | {mib(worst['baseline_kib'])} "
              f"| {mib(worst['before_steps_kib'])} | {mib(worst['steps_peak_kib'])} "
              f"| {mib(worst['steps_peak_kib'] - worst['baseline_kib'])} "
              f"| {mib(max(r['process_peak_kib'] for r in ranks))} | {max(r['steps_seconds'] for r in ranks):.1f} |")
    print("\n(per run, the process with the largest peak over its baseline; every process's numbers with --json)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"torch_only_kib": torch_only, "runs": dict(runs), "args": vars(args)}, out, indent=1)


if __name__ == "__main__":
    main()
