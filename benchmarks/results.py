"""Regenerate the quoted results from the current code: `grail run` of the default on each seed (resumed where a
run folder holds it), then docs/results/default/ (the seed-0 report tables and the table over seeds) and the
block of README.md between the `results:begin` / `results:end` markers; then the utility-matched comparison on
the first seed (`grail compare --utility-budget 1.25`, which also attacks every model against the oracle) into
docs/results/utility-matched/, docs/results/attacks/ and the block of RESULTS.md between the `compare:begin` /
`compare:end` markers. `make results` runs it.

    .venv/bin/python benchmarks/results.py                   # seeds 0 1 2 into runs/results/seed<N>
    .venv/bin/python benchmarks/results.py --seeds 0 --jobs 1

Several seeds run at once with one thread each (two heavy jobs with all threads each are far slower here).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- results:begin (benchmarks/results.py writes this block) -->", "<!-- results:end -->"
COMPARE_BEGIN, COMPARE_END = "<!-- compare:begin (benchmarks/results.py writes this block) -->", "<!-- compare:end -->"
COMPARED = ["ga-gd-id", "memflex", "grail-paper", "grail"]
BUDGET = 1.25


def _run_seeds(seeds: list[int], runs: Path, jobs: int) -> None:
    env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if jobs > 1 else {})}
    pending = list(seeds)
    running: list[subprocess.Popen] = []
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            runs.mkdir(parents=True, exist_ok=True)
            config = runs / f"seed{seed}.yaml"
            config.write_text(yaml.safe_dump({"seed": seed}))
            running.append(subprocess.Popen([sys.executable, "-m", "grail.cli", "run", "--config", str(config),
                                             "--out", str(runs / f"seed{seed}"), "--quiet"], env=env))
        running[0].wait()
        if running[0].returncode:
            raise SystemExit(f"grail run failed (exit {running[0].returncode}): {running[0].args}")
        running.pop(0)


def _pair(domains: dict, key: str | Callable[[dict], float | None], digits: int = 1) -> str:
    values = [key(domains[d]) if callable(key) else domains[d].get(key) for d in domains]
    return " / ".join("—" if v is None else f"{v:.{digits}f}" for v in values)


def _calibration(key: str) -> Callable[[dict], float | None]:
    """A domain's calibration value (``auc``: against the holdout, or the base model's where it has none)."""
    def value(domain: dict) -> float | None:
        c = domain.get("calibration", {})
        return c.get("auc_base") if key == "auc" and c.get("auc") is None else c.get(key)
    return value


def seeds_table(documents: dict[int, dict]) -> str:
    """One row per seed and model: forgetting beside what the model still knows."""
    from grail.report import heldout_produced_rate

    first = next(iter(documents.values()))
    names = " / ".join(first["domains"])
    lines = [f"| seed | model | US ({names}) | never-seen US | AUC vs never-seen | US paraphrased | RS | RS held-out "
             "| held-out produced % | leak % | general PPL (x vanilla) | probe % | MMLU log-prob | stage 3 stop |",
             "|---" * 14 + "|"]
    for seed, document in documents.items():
        vanilla_ppl = float(document["models"]["vanilla"]["general"]["general_text_ppl"])
        for name, model in document["models"].items():
            d, g = model["domains"], model["general"]
            ppl = float(g["general_text_ppl"])
            stop = (document["unlearning"]["stop"] or "epoch budget").split(";")[0] if name == "grail" else ""
            keys = ("US", _calibration("US_reference"), _calibration("auc"), "US_paraphrase", "RS", "RS_heldout",
                    heldout_produced_rate, "leak_rate")
            cells = [_pair(d, k, 2 if k == keys[2] else 1) for k in keys]
            lines.append(f"| {seed} | {name} | {' | '.join(cells)} | {ppl:.2f} (x {ppl / vanilla_ppl:.2f}) "
                         f"| {g['probe_accuracy']:.1f} | {g.get('mmlu_logprob', float('nan')):.3f} | {stop} |")
    return "\n".join(lines) + "\n"


def readme_block(documents: dict[int, dict], runs: Path) -> str:
    from grail.report import general_table, results_table

    seed = min(documents)
    document = documents[seed]
    timings = document["timings_s"]
    return (f"Seed {seed} (`{runs / f'seed{seed}'}/report.md`):\n\n{results_table(document)}\n\n"
            f"{general_table(document)}\n\nAll seeds ({', '.join(map(str, documents))}):\n\n{seeds_table(documents)}\n"
            f"Stage times of seed {seed} (s): {', '.join(f'{k} {v}' for k, v in timings.items())}; "
            f"audit: {'PASS' if document['audit']['ok'] else 'FAIL'}.\n")


def replace_block(text: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    if begin not in text or end not in text:
        raise SystemExit(f"no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{block}{end}{rest.split(end, 1)[1]}"


def utility_matched(folder: Path) -> str:
    """`grail compare --utility-budget` of COMPARED on ``folder``; its tables copied to docs/results/utility-matched/;
    returns the RESULTS.md block (the utility table and the ranking)."""
    import shutil

    from grail.experiments import Experiments

    run = Experiments(folder)
    try:
        run.compare(COMPARED, BUDGET)
    finally:
        run.run_folder.close()
    source, out = folder / f"comparison-budget{BUDGET:g}", ROOT / "docs" / "results" / "utility-matched"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("table1.md", "table5_hs.md", "table_utility.md", "ranking.md", "comparison.json", "pareto.png"):
        shutil.copy(source / name, out / name)
    block = (f"`grail compare --out {folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder} --methods "
             f"{','.join(COMPARED)} --utility-budget {BUDGET:g}`:\n\n{(source / 'table_utility.md').read_text()}\n"
             f"{(source / 'ranking.md').read_text()}")
    (out / "results-block.md").write_text(block)
    shutil.copy(source / "table_robustness.md", out / "table_robustness.md")
    attacks = ROOT / "docs" / "results" / "attacks"  # compare attacked every model against the oracle
    attacks.mkdir(parents=True, exist_ok=True)
    for name in ("attacks.md", "attacks.json", "relearning.png"):
        shutil.copy(folder / name, attacks / name)
    return block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "results")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--render-only", action="store_true", help="only rewrite the tables from finished runs")
    parser.add_argument("--no-compare", action="store_true", help="skip the utility-matched comparison")
    args = parser.parse_args()
    if not args.render_only:
        _run_seeds(args.seeds, args.runs, args.jobs)
    from grail import io

    documents = {seed: io.read_json(args.runs / f"seed{seed}" / "results.json") for seed in args.seeds}
    block = readme_block(documents, args.runs.relative_to(ROOT) if args.runs.is_relative_to(ROOT) else args.runs)
    out = ROOT / "docs" / "results" / "default"
    out.mkdir(parents=True, exist_ok=True)
    (out / "readme.md").write_text(block)
    (out / "seeds.md").write_text(seeds_table(documents))
    readme = ROOT / "README.md"
    readme.write_text(replace_block(readme.read_text(), block))
    print(block)
    if not args.no_compare:
        compare_block = utility_matched(args.runs / f"seed{args.seeds[0]}")
        results = ROOT / "RESULTS.md"
        results.write_text(replace_block(results.read_text(), compare_block, COMPARE_BEGIN, COMPARE_END))
        print(compare_block)


if __name__ == "__main__":
    main()
