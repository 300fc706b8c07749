"""Measure GRAIL's stages against naive code and against plain training, in one run; write BENCHMARKS.md.

    .venv/bin/python benchmarks/bench.py                    # SmolLM2-135M-Instruct with LoRA (the embedded default)
    .venv/bin/python benchmarks/bench.py --skip-end-to-end  # without timing a whole `grail run`
    .venv/bin/python benchmarks/bench.py --model tiny --layers 1 --repeats 1 --skip-end-to-end --out b.md

Every figure is a median over ``--repeats`` and every comparison is a ratio of two timings taken in this run,
on this machine, on the same model and data:
- stage 1: batched per-example |g| (grail) vs a batch-size-1 loop (same scores) vs a plain batched
  forward+backward of the same tokens (the floor: what any training step costs);
- stage 2: grail's masks vs the same rule with Python sets, on the LoRA shapes of LLaMA-2-7B with random scores;
- stage 2 sharded (FSDP2): the top-k masks of whole tensors in one process vs of row shards in 2 gloo processes
  (``grail.stages.sharded_topk``), same shapes, one thread per process; ``--sharded-topk-only`` runs just this;
- stage 3: a masked GRAIL step vs an unmasked GA+GD step;
- end to end: each `grail` command of a fresh run, its time and its peak memory (each in its own process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from grail import io
from grail.batching import Encoded, encode_all, example_losses
from grail.config import GradientConfig, LocalizeConfig, ModelConfig, UnlearnConfig
from grail.data.builtin import builtin_benchmark
from grail.models import EMBEDDED_MODEL, trainable_parameters
from grail.stages.gradients import corrupt_answers, gradient_means
from grail.stages.localize import localize
from grail.stages.sharded_topk import row_shard, sharded_top_k_masks, top_k_mask_exact
from grail.stages.unlearn import UpdateMasks, unlearn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reference import loop_abs_mean, lora_with_trained_b, set_localize  # noqa: E402 (the tests' naive stages 1 and 2)

DOMAINS = ["privacy", "copyright"]


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time of ``fn`` over ``repeats`` calls (after one untimed warm-up call) and its last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def fixed_length_items(tokenizer, count: int, length: int) -> list[Encoded]:
    examples = [ex for _, _, exs in builtin_benchmark(0, 12, 12).datasets() for ex in exs]
    items = [x for x in encode_all(tokenizer, examples, "plain", length) if len(x) == length][:count]
    if len(items) < count:
        raise SystemExit(f"only {len(items)} built-in examples reach {length} tokens; ask for fewer or shorter")
    return items


def bench_stage1(model, tokenizer, args) -> dict:
    items = fixed_length_items(tokenizer, args.examples, args.tokens)
    vocab, pad = len(tokenizer), tokenizer.pad_token_id
    config = GradientConfig(trials=1, batch_size=len(items))
    rows = corrupt_answers(items, 1, vocab, torch.Generator().manual_seed(0))  # the rows gradient_means draws

    def ours():
        return gradient_means(model, items, config, vocab, pad, torch.Generator().manual_seed(0), absolute=True)

    def loop():
        return loop_abs_mean(model, rows, pad)

    def floor():
        model.eval()
        example_losses(model, rows, pad, "cpu").sum().backward()
        model.zero_grad(set_to_none=True)

    t_ours, scores = median_time(ours, args.repeats)
    t_loop, reference = median_time(loop, args.repeats)
    t_floor, _ = median_time(floor, args.repeats)
    worst = max(float((scores[n] - reference[n]).abs().max() / reference[n].abs().max().clamp_min(1e-30))
                for n in reference)
    return {"examples": len(items), "tokens": args.tokens, "entries": sum(s.numel() for s in scores.values()),
            "grail_s": t_ours, "loop_s": t_loop, "floor_s": t_floor, "max_relative_difference": worst,
            "grail_over_floor": t_ours / t_floor, "loop_over_grail": t_loop / t_ours}


def llama2_7b_lora_shapes(layers: int, rank: int = 8) -> dict[str, tuple[int, int]]:
    """LoRA A [r, in] and B [out, r] of every linear layer of LLaMA-2-7B (32 layers: about 20 M entries)."""
    hidden, intermediate = 4096, 11008
    linears = {"self_attn.q_proj": (hidden, hidden), "self_attn.k_proj": (hidden, hidden),
               "self_attn.v_proj": (hidden, hidden), "self_attn.o_proj": (hidden, hidden),
               "mlp.gate_proj": (intermediate, hidden), "mlp.up_proj": (intermediate, hidden),
               "mlp.down_proj": (hidden, intermediate)}
    shapes = {}
    for layer in range(layers):
        for name, (out_features, in_features) in linears.items():
            prefix = f"model.layers.{layer}.{name}"
            shapes[f"{prefix}.lora_A.weight"] = (rank, in_features)
            shapes[f"{prefix}.lora_B.weight"] = (out_features, rank)
    return shapes


def random_importance(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Random float32 scores, distinct within each tensor (no ties: every implementation picks the same top k)."""
    generator = torch.Generator().manual_seed(seed)
    return {f"{d}/{s}": {n: torch.randperm(torch.Size(shape).numel(), generator=generator).float().view(shape)
                         for n, shape in shapes.items()}
            for d in DOMAINS for s in ("forget", "retain")}


def bench_stage2(args) -> dict:
    shapes = llama2_7b_lora_shapes(args.layers)
    importance = random_importance(shapes)
    config = LocalizeConfig()
    t_ours, masks = median_time(lambda: localize(importance, DOMAINS, config), args.repeats)
    results = {"tensors": len(shapes), "entries": sum(torch.Size(s).numel() for s in shapes.values()),
               "grail_s": t_ours}
    for selection in ("torch", "python"):  # top-k indices from torch.topk, or from heapq on Python lists
        t_sets, reference = median_time(partial(set_localize, importance, DOMAINS, config, selection),
                                        args.naive_repeats)
        results[f"sets_{selection}_s"] = t_sets
        results[f"sets_{selection}_over_grail"] = t_sets / t_ours
        results[f"sets_{selection}_identical_masks"] = all(torch.equal(masks[k][n], reference[k][n])
                                                           for k in masks for n in shapes)
    return results


def sharded_scores(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Uniform float32 scores. They are multiples of 2**-24, so a tensor may hold equal scores, and one process and
    two must break those ties the same way."""
    generator = torch.Generator().manual_seed(seed)
    return {n: torch.rand(shape, generator=generator) for n, shape in shapes.items()}


def sharded_topk_worker(rank: int, world: int, folder: str, layers: int, percent: float, repeats: int) -> None:
    """One of ``world`` processes: its rows of every tensor, the masks ``repeats`` times (after a warm-up), the
    slowest process's time of each; writes its masks and (rank 0) the times to ``folder``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        whole = sharded_scores(llama2_7b_lora_shapes(layers))
        shards = {n: row_shard(t, rank, world) for n, t in whole.items()}
        local, offsets = {n: s for n, (s, _) in shards.items()}, {n: o for n, (_, o) in shards.items()}
        totals = {n: t.numel() for n, t in whole.items()}
        del whole, shards
        masks = sharded_top_k_masks(local, percent, totals, offsets)
        times = []
        for _ in range(repeats):
            dist.barrier()
            started = time.perf_counter()
            masks = sharded_top_k_masks(local, percent, totals, offsets)
            elapsed = torch.tensor([time.perf_counter() - started], dtype=torch.float64)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
            times.append(float(elapsed))
        torch.save(masks, Path(folder) / f"masks-{rank}.pt")
        if rank == 0:  # not grail.io: it writes from rank 0 and waits for the others at a barrier
            (Path(folder) / "times.json").write_text(json.dumps(times))
    finally:
        dist.destroy_process_group()


def bench_sharded_topk(args, processes: int = 2) -> dict:
    """Stage 2's top-k under FSDP2: every tensor whole in one process, vs its rows split over ``processes`` gloo
    processes that find each k-th largest together; the masks must be identical, entry for entry."""
    shapes = llama2_7b_lora_shapes(args.layers)
    percent = LocalizeConfig().k_ur
    scores = sharded_scores(shapes)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the processes
    try:
        t_single, single = median_time(lambda: {n: top_k_mask_exact(s, percent) for n, s in scores.items()},
                                       args.repeats)
    finally:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(sharded_topk_worker, args=(processes, folder, args.layers, percent, args.repeats),
                 nprocs=processes)
        t_sharded = statistics.median(json.loads((Path(folder) / "times.json").read_text()))
        parts = [torch.load(Path(folder) / f"masks-{r}.pt") for r in range(processes)]
    identical = all(torch.equal(torch.cat([p[n] for p in parts]), single[n]) for n in shapes)
    return {"tensors": len(shapes), "entries": sum(torch.Size(s).numel() for s in shapes.values()),
            "percent": percent, "processes": processes, "single_s": t_single, "sharded_s": t_sharded,
            "sharded_over_single": t_sharded / t_single, "identical_masks": identical}


def bench_stage3(model, tokenizer, args) -> dict:
    encoded = {(d, s): encode_all(tokenizer, exs, "plain", 256) for d, s, exs in builtin_benchmark(0, 5, 5).datasets()}
    # A step takes 4 forget and 4 retain examples (batch 8): 2 domains x 2 * steps forget examples = `steps` steps.
    forget = {d: encoded[(d, "forget")][:2 * args.steps] for d in DOMAINS}
    retain = {d: encoded[(d, "retain")][:2 * args.steps] for d in DOMAINS}
    steps = sum(len(v) for v in forget.values()) // 4
    params = trainable_parameters(model)
    masks = UpdateMasks.for_policy(localize(random_importance({n: p.shape for n, p in params.items()}), DOMAINS,
                                            LocalizeConfig()), "paper")
    start = {n: p.detach().clone() for n, p in params.items()}
    config = UnlearnConfig(epochs=1, target="none", general_weight=0.0)  # masking overhead: the paper objective

    def epoch(with_masks: bool) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(start[n])
            unlearn(model, forget, retain, config, pad_id=tokenizer.pad_token_id, seed=0,
                    masks=masks if with_masks else None)
        return run

    timings: dict[bool, list[float]] = {True: [], False: []}
    epoch(True)()  # warm-up
    for _ in range(args.repeats):  # alternated, so drifts of the machine hit both alike
        for with_masks in (False, True):
            started = time.perf_counter()
            epoch(with_masks)()
            timings[with_masks].append((time.perf_counter() - started) / steps)
    masked, plain = statistics.median(timings[True]), statistics.median(timings[False])
    frozen = sum(int(m.sum()) for m in masks.never_moving().values())
    return {"steps": steps, "batch_size": config.batch_size, "masked_step_s": masked, "unmasked_step_s": plain,
            "masked_over_unmasked": masked / plain,
            "frozen_fraction": frozen / sum(p.numel() for p in params.values())}


def peak_rss_mib(process: subprocess.Popen) -> float:
    """Wait for ``process``; its peak resident memory (VmHWM, polled). Not getrusage: on Linux a child's
    ru_maxrss starts at its parent's size at fork, and this parent holds a model and stage 2's test tensors."""
    peak_kib = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            lines = status.read_text().splitlines()
            peak_kib = max([peak_kib] + [int(x.split()[1]) for x in lines if x.startswith("VmHWM:")])
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.1)
    return peak_kib / 1024


def bench_end_to_end(args) -> list[dict]:
    """Each `grail` command of a fresh run in its own process: wall time and peak resident memory."""
    preset = "default" if args.model == EMBEDDED_MODEL else "smoke"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GRAIL_CACHE": str(Path(tmp) / "cache")}
        grail = [sys.executable, "-m", "grail.cli"]
        folder = str(Path(tmp) / "run")
        steps = [("convert the embedded model (once per machine)",
                  [sys.executable, "-c", "from grail.models import embedded_model_dir; embedded_model_dir()"])] \
            if preset == "default" else []
        steps += [(f"grail {c}", [*grail, c, "--preset", preset, "--out", folder, "--quiet"])
                  for c in ("finetune", "localize", "unlearn", "evaluate")]
        for label, command in steps:
            started = time.perf_counter()
            with tempfile.TemporaryFile("w+") as stderr:
                process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
                peak = peak_rss_mib(process)
                if process.returncode != 0:
                    stderr.seek(0)
                    raise SystemExit(f"{label} failed:\n{stderr.read()[-2000:]}")
            rows.append({"step": label, "seconds": time.perf_counter() - started, "peak_rss_mib": peak})
        timings = io.read_json(Path(folder) / "timings.json")
        second = second_run(grail, env, Path(tmp), preset)
    return [*rows, {"step": "stage timings inside the run (timings.json)", "timings": timings, "second": second}]


SECOND_RUN = {"localize": {"k_ur": 15, "k_rr": 30}}
"""The second run's config beside the preset: other masks on the same data (a point of ``grail sweep``), so its
stage 3 is the same objective and its time compares with the fresh run's."""


def second_run(grail: list[str], env: dict, tmp: Path, preset: str) -> dict:
    """``grail run`` of another config on the same data after the fresh run, with its GRAIL_CACHE: stage 0
    and the base and vanilla models' scores are reused. Its wall time and its stages' times."""
    config = tmp / "second.yaml"
    config.write_text(yaml.safe_dump(SECOND_RUN))
    folder = tmp / "second"
    started = time.perf_counter()
    done = subprocess.run([*grail, "run", "--preset", preset, "--config", str(config), "--out", str(folder), "--quiet"],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the second run failed:\n{done.stderr[-2000:]}")
    return {"config": SECOND_RUN, "seconds": time.perf_counter() - started,
            "timings": io.read_json(folder / "timings.json")}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model_names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                       if line.startswith("model name")]
        cpu = model_names[0] if model_names else cpu
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, Python {platform.python_version()}, {platform.system()} {platform.release()}")


def markdown(results: dict, command: str) -> str:
    s1, s2, s3 = results["stage1"], results["stage2"], results["stage3"]
    lines = [
        "# Benchmarks", "",
        f"Measured on {results['machine']}.", "",
        f"Command: `{command}` (model `{results['model']}`, medians of {results['repeats']} repeats; "
        f"the raw numbers are in `{results['json']}`).", "",
        "| what | grail | baseline | ratio | target |", "|---|---|---|---|---|",
        f"| stage 1: per-example \\|g\\| of {s1['examples']} examples x {s1['tokens']} tokens "
        f"({s1['entries']:,} LoRA entries) vs plain batched forward+backward | {s1['grail_s']:.3f} s | "
        f"{s1['floor_s']:.3f} s | {s1['grail_over_floor']:.2f}x the floor | <= 1.2x |",
        f"| stage 1: vs a batch-size-1 loop (same scores: max relative difference "
        f"{s1['max_relative_difference']:.1e}) | {s1['grail_s']:.3f} s | {s1['loop_s']:.3f} s | "
        f"{s1['loop_over_grail']:.2f}x faster | >= 1.6x |",
        f"| stage 2: masks on LLaMA-2-7B LoRA shapes ({s2['tensors']} tensors, {s2['entries']:,} entries, random "
        f"scores) vs Python sets, top-k indices from torch.topk (identical masks: "
        f"{s2['sets_torch_identical_masks']}) | {s2['grail_s']:.3f} s | {s2['sets_torch_s']:.2f} s | "
        f"{s2['sets_torch_over_grail']:.1f}x faster | >= 20x |",
        f"| stage 2: vs Python sets, top-k indices from heapq on Python lists (identical masks: "
        f"{s2['sets_python_identical_masks']}) | {s2['grail_s']:.3f} s | {s2['sets_python_s']:.2f} s | "
        f"{s2['sets_python_over_grail']:.1f}x faster | >= 20x |",
        f"| stage 3: masked GRAIL step vs unmasked GA+GD step (batch {s3['batch_size']}, "
        f"{100 * s3['frozen_fraction']:.1f} % of entries frozen) | {s3['masked_step_s']:.3f} s | "
        f"{s3['unmasked_step_s']:.3f} s | {s3['masked_over_unmasked']:.3f}x | <= 1.05x |",
    ]
    if results.get("sharded_topk"):
        sh = results["sharded_topk"]
        lines.append(f"| stage 2 sharded: top {sh['percent']:g} % masks of row shards in {sh['processes']} gloo "
                     f"processes vs whole tensors in one ({sh['entries']:,} entries; identical masks: "
                     f"{sh['identical_masks']}) | {sh['sharded_s']:.3f} s | {sh['single_s']:.3f} s | "
                     f"{sh['sharded_over_single']:.2f}x the one-process time | |")
    if results.get("end_to_end"):
        *steps, inside = results["end_to_end"]
        total = sum(r["seconds"] for r in steps)
        lines += ["", f"## End to end: a fresh run of the `{results['end_to_end_preset']}` preset, "
                      "one command (one process) per stage", "",
                  "| step | wall time | peak memory (RSS) |", "|---|---|---|"]
        lines += [f"| {r['step']} | {r['seconds']:.1f} s | {r['peak_rss_mib']:.0f} MiB |" for r in steps]
        lines += [f"| **total** | **{total:.1f} s** | |", "",
                  "Inside the run (`timings.json`, seconds): "
                  + ", ".join(f"{k} {v}" for k, v in inside["timings"].items()) + "."]
        if inside.get("second"):
            second, fresh = inside["second"], inside["timings"]
            lines += ["", f"## A second run: other masks on the same data (`grail run --config C.yaml`, "
                          f"C.yaml `{json.dumps(second['config'])}`, the same GRAIL_CACHE)", "",
                      f"Wall time {second['seconds']:.1f} s, against {total:.1f} s for the fresh run "
                      f"({second['seconds'] / total:.2f}x).", "",
                      "| step | fresh run | second run | ratio |", "|---|---|---|---|"]
            for step, seconds in fresh.items():
                again = second["timings"].get(step, 0.0)
                ratio = f"{again / seconds:.2f}x" if seconds else ""
                lines.append(f"| {step} | {seconds:.1f} s | {again:.1f} s | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=EMBEDDED_MODEL, help="the embedded default, or tiny (a smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--naive-repeats", type=int, default=1, help="repeats of the Python-set stage 2")
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--layers", type=int, default=32, help="LLaMA-2-7B layers for stage 2 (32: the whole model)")
    parser.add_argument("--steps", type=int, default=4, help="stage 3 steps per timed epoch")
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--end-to-end-only", action="store_true",
                        help="measure only the end-to-end runs and the sharded top-k; the other rows are kept from the "
                             "JSON next to --out")
    parser.add_argument("--sharded-topk-only", action="store_true",
                        help="time only the sharded top-k masks (print JSON, write no report)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "BENCHMARKS.md")
    args = parser.parse_args()

    command = " ".join(["python benchmarks/bench.py", *sys.argv[1:]])
    if args.sharded_topk_only:
        print(json.dumps({"command": command, "machine": machine(), "sharded_topk": bench_sharded_topk(args)},
                         indent=2))
        return
    if args.end_to_end_only:  # the stage rows as the last full run measured them
        kept = io.read_json(args.out.with_suffix(".json"))
        command = kept.pop("command") + "; end to end: " + command
        results = {k: v for k, v in kept.items() if not k.startswith("end_to_end")}
        print("stage 2 sharded ...", file=sys.stderr)
        results["sharded_topk"] = bench_sharded_topk(args)
    else:
        model, tokenizer = lora_with_trained_b(ModelConfig(name=args.model, lora_dropout=0.0))
        results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "model": args.model,
                   "repeats": args.repeats, "json": args.out.with_suffix(".json").name}
        print("stage 1 ...", file=sys.stderr)
        results["stage1"] = bench_stage1(model, tokenizer, args)
        print("stage 2 ...", file=sys.stderr)
        results["stage2"] = bench_stage2(args)
        print("stage 3 ...", file=sys.stderr)
        results["stage3"] = bench_stage3(model, tokenizer, args)
        print("stage 2 sharded ...", file=sys.stderr)
        results["sharded_topk"] = bench_sharded_topk(args)
    if not args.skip_end_to_end:
        print("end to end ...", file=sys.stderr)
        results["end_to_end_preset"] = "default" if args.model == EMBEDDED_MODEL else "smoke"
        results["end_to_end"] = bench_end_to_end(args)
    io.write_json(args.out.with_suffix(".json"), {"command": command, **results})
    io.write_text(args.out, markdown(results, command))
    print(args.out.read_text())
    print(json.dumps({k: results[k] for k in ("stage1", "stage2", "stage3") if k in results}, indent=2),
          file=sys.stderr)


if __name__ == "__main__":
    main()
