"""Regenerate RESULTS.md whole, README's results block and docs/results/ from the current code. `make results` runs it.

1. `grail run` of the default on each seed (resumed where a run folder holds it), then `grail attack` of it;
2. per seed, `grail compare --target calibrated --utility-budget B` of GRAIL, GRAIL with nothing frozen, GA + GD and
   NPO: every method held to the same calibrated target and utility budget, then attacked against the oracle (GRAIL's
   and the oracle's attacks are step 1's);
3. on the first seed, `grail compare --utility-budget B` of the paper's comparison (GA + GD, Memflex, the paper's
   GRAIL, GRAIL), every method with its own stop;
4. the TOFU-like and MUSE-like fixtures (`benchmarks/fixtures.py`): `grail run` and `grail attack`;
5. RESULTS.md, docs/results/ and README's block between the `results:begin` / `results:end` markers, from those
   folders alone (``--render-only`` redoes just this step).

    .venv/bin/python benchmarks/results.py                 # everything, into runs/results/
    .venv/bin/python benchmarks/results.py --render-only   # the documents from finished folders

Every job runs with one torch thread, however many run at once (``--jobs``, default two): float sums, and so the
last digits of every figure, depend on the thread count, and one thread is what reproduces these documents on any
machine; and every job reads and fills the cache runs/results/cache alone (``GRAIL_CACHE``), so a vanilla model a
run made elsewhere, with other threads or code, is never reused. B is the run's own utility budget
(`unlearn.utility_budget`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from statistics import mean

import yaml

from grail.config import UnlearnConfig

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- results:begin (benchmarks/results.py writes this block) -->", "<!-- results:end -->"
BUDGET: float = UnlearnConfig().utility_budget
UTILITY_MATCHED = ["ga-gd-id", "memflex", "grail-paper", "grail"]
FORGETTING_MATCHED = ["grail-no-both", "ga-gd-id", "npo", "grail"]
DOMAINS_SEP = " / "
CACHE = ROOT / "runs" / "results" / "cache"


# ---- running ----------------------------------------------------------------------------------------------------
def _grail(*args: str) -> list[str]:
    return [sys.executable, "-m", "grail.cli", *args]


def _in_parallel(commands: Sequence[list[str]], jobs: int) -> None:
    """Run ``commands`` ``jobs`` at a time, each with one thread (see the module's docstring)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRAIL_CACHE": str(CACHE)}
    pending, running = list(commands), []
    while pending or running:
        while pending and len(running) < jobs:
            command = pending.pop(0)
            print("$", " ".join(command[2:] if command[0] == sys.executable else command), flush=True)
            running.append(subprocess.Popen(command, env=env))
        running[0].wait()
        if running[0].returncode:
            raise SystemExit(f"failed (exit {running[0].returncode}): {' '.join(running[0].args)}")
        running.pop(0)


def forgetting_matched_folder(run: Path) -> Path:
    return run / f"comparison-budget{BUDGET:g}-calibrated"


def utility_matched_folder(run: Path) -> Path:
    return run / f"comparison-budget{BUDGET:g}"


def run_everything(seeds: list[int], runs: Path, jobs: int) -> None:
    runs.mkdir(parents=True, exist_ok=True)
    seed_runs = []
    for seed in seeds:
        config, out = runs / f"seed{seed}.yaml", runs / f"seed{seed}"
        config.write_text(yaml.safe_dump({"seed": seed}))
        seed_runs.append(["sh", "-c", " ".join([*_grail("run", "--config", str(config), "--out", str(out), "--quiet"),
                                                "&&", *_grail("attack", str(out))])])
    _in_parallel(seed_runs, jobs)
    _in_parallel([_grail("compare", "--out", str(runs / f"seed{s}"), "--methods", ",".join(FORGETTING_MATCHED),
                         "--utility-budget", f"{BUDGET:g}", "--target", "calibrated")
                  for s in seeds if not (forgetting_matched_folder(runs / f"seed{s}") / "comparison.json").exists()],
                 jobs)
    first = runs / f"seed{seeds[0]}"
    fixtures = runs / "fixtures"
    later = []
    if not (utility_matched_folder(first) / "comparison.json").exists():
        later.append(_grail("compare", "--out", str(first), "--methods", ",".join(UTILITY_MATCHED),
                            "--utility-budget", f"{BUDGET:g}"))
    if not (fixtures / "run" / "attacks.json").exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fixtures.py"), str(fixtures)], check=True)
        later.append(["sh", "-c", f"{' '.join(_grail('run', '--config', str(fixtures / 'config.yaml'), '--out', str(fixtures / 'run'), '--quiet'))} && {' '.join(_grail('attack', str(fixtures / 'run')))}"])  # noqa: E501
    _in_parallel(later, jobs)


# ---- reading ----------------------------------------------------------------------------------------------------
def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _pair(values: Sequence[float | None], digits: int = 1) -> str:
    return DOMAINS_SEP.join("—" if v is None else f"{v:.{digits}f}" for v in values)


def _span(values: Sequence[float], digits: int = 1) -> str:
    low, high = min(values), max(values)
    return f"{low:.{digits}f}" if f"{low:.{digits}f}" == f"{high:.{digits}f}" else f"{low:.{digits}f}–{high:.{digits}f}"


def _signed_span(values: Sequence[float], digits: int = 1) -> str:
    low, high = min(values), max(values)
    return f"{low:+.{digits}f}" if f"{low:.{digits}f}" == f"{high:.{digits}f}" else \
        f"{low:+.{digits}f} to {high:+.{digits}f}"


def _prose(text: str) -> str:
    """A generated paragraph, wrapped as the hand-written ones are."""
    return textwrap.fill(" ".join(text.split()), width=120) + "\n"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


class Seeds:
    """The default's run folders, one per seed: results.json, attacks.json and the forgetting-matched comparison."""

    def __init__(self, runs: Path, seeds: list[int]) -> None:
        self.runs, self.seeds = runs, seeds
        self.results = {s: _json(runs / f"seed{s}" / "results.json") for s in seeds}
        self.domains = list(self.results[seeds[0]]["domains"])

    def folder(self, seed: int) -> Path:
        return self.runs / f"seed{seed}"

    def scores(self, seed: int, model: str, key: str) -> list[float | None]:
        domains = self.results[seed]["models"][model]["domains"]
        return [domains[d].get(key) for d in self.domains]

    def calibration(self, seed: int, model: str, key: str) -> list[float | None]:
        domains = self.results[seed]["models"][model]["domains"]
        return [domains[d].get("calibration", {}).get(key) for d in self.domains]

    def general(self, seed: int, model: str) -> dict:
        return self.results[seed]["models"][model]["general"]

    def ppl_ratio(self, seed: int, model: str) -> float:
        return self.general(seed, model)["general_text_ppl"] / self.general(seed, "vanilla")["general_text_ppl"]

    def attacks(self, seed: int) -> dict | None:
        path = self.folder(seed) / "attacks.json"
        return _json(path) if path.exists() else None

    def evaluation(self, seed: int, model: str) -> dict | None:
        for name in (f"{model}-budget{BUDGET:g}-calibrated", model):
            path = self.folder(seed) / "evaluations" / f"{name}.json"
            if path.exists():
                return {"name": name, **_json(path)}
        return None


# ---- the sections -----------------------------------------------------------------------------------------------
def default_summary(seeds: Seeds) -> str:
    """GRAIL's forgetting beside what it keeps, over the seeds, in one paragraph."""
    grail = seeds.seeds
    us = [v for s in grail for v in seeds.scores(s, "grail", "US")]
    never = [v for s in grail for v in seeds.calibration(s, "grail", "US_reference")]
    auc = [v for s in grail for v in seeds.calibration(s, "grail", "auc") if v is not None]
    rs = [v for s in grail for v in seeds.scores(s, "grail", "RS")]
    held = [v for s in grail for v in seeds.scores(s, "grail", "RS_heldout")]
    held_gap = [v - g for s in grail for v, g in zip(seeds.scores(s, "vanilla", "RS_heldout"),
                                                        seeds.scores(s, "grail", "RS_heldout"))]
    leak = [v for s in grail for v in seeds.scores(s, "grail", "leak_rate")]
    ratio = [seeds.ppl_ratio(s, "grail") for s in grail]
    probe = [seeds.general(s, "grail")["probe_accuracy"] - seeds.general(s, "vanilla")["probe_accuracy"] for s in grail]
    mmlu = [seeds.general(s, "grail")["mmlu_logprob"] - seeds.general(s, "vanilla")["mmlu_logprob"] for s in grail]
    epochs = [seeds.results[s]["unlearning"]["epochs"] for s in grail]
    audits = sum(bool(seeds.results[s]["audit"]["ok"]) for s in grail)
    return " ".join(f"""GRAIL's US is {_span(us)} where the holdout's under the same model is {_span(never)}, the
forget set's AUC against it {_span(auc, 2)} and the leak rate {_span(leak)} %. What it still knows: RS {_span(rs)},
RS on held-out facts {_span(held)} ({_span(held_gap)} points below the vanilla model's), general-text perplexity
× {_span(ratio, 2)} of the vanilla model's, the probe {_signed_span(probe)} points and the MMLU right-answer
log-probability {_signed_span(mmlu, 2)} against the vanilla model's. Stage 3 took {_span(epochs, 0)} epochs;
`grail audit` passed on {audits} of {len(grail)} runs (every frozen entry bit-identical).""".split())


def default_section(seeds: Seeds) -> str:
    names = DOMAINS_SEP.join(seeds.domains)
    rows = []
    for s in seeds.seeds:
        stop = (seeds.results[s]["unlearning"]["stop"] or "epoch budget").split(":")[0]
        for model in seeds.results[s]["models"]:
            g = seeds.general(s, model)
            scores = [_pair(seeds.scores(s, model, "US")), _pair(seeds.calibration(s, model, "US_reference")),
                      _pair(seeds.calibration(s, model, "auc"), 2), _pair(seeds.scores(s, model, "US_paraphrase")),
                      _pair(seeds.scores(s, model, "RS")), _pair(seeds.scores(s, model, "RS_heldout")),
                      _pair(seeds.scores(s, model, "leak_rate"))]
            general = [f"{g['general_text_ppl']:.2f} (× {seeds.ppl_ratio(s, model):.2f})",
                       f"{g['probe_accuracy']:.1f}", f"{g['mmlu_logprob']:.3f}"]
            rows.append([s, model, *scores, *general, stop if model == "grail" else ""])
    table = _table(["seed", "model", f"US ({names})", "never-seen US", "AUC vs never-seen", "US paraphrased", "RS",
                    "RS held-out", "leak %", "general PPL (× vanilla)", "probe %", "MMLU log-prob", "stage 3 stop"],
                   rows)
    return f"""## The default over seeds

`grail run --config seedN.yaml --out runs/results/seedN` (`seedN.yaml`: `seed: N`; everything else the default).
"never-seen US": the holdout's US under the same model; "AUC vs never-seen": the forget set against the holdout under
the same model (0.5: as unfamiliar as never-seen data); the stage-3 stop is per domain (README, *Configuration*).

{table}
{_prose(default_summary(seeds))}"""


def attacks_section(seeds: Seeds) -> str:
    rows, failed, passed, total = [], [], 0, 0
    for s in seeds.seeds:
        attacks = seeds.attacks(s)
        if attacks is None:
            continue
        oracle = seeds.evaluation(s, "oracle")
        for d in seeds.domains:
            verdicts, mia = attacks["verdicts"]["grail"][d], attacks["mia"][d]
            reference = mia["vanilla"].get("holdout_vs_oracle_forget")
            rows.append([s, d, "—" if oracle is None else f"{oracle['domains'][d]['US']:.1f}",
                         f"{seeds.results[s]['models']['grail']['domains'][d]['US']:.1f}",
                         verdicts["membership_inference"],
                         f"{mia['grail']['forget_quality']:.2g} ({verdicts['forget_quality']})",
                         "—" if reference is None else f"{reference:.2g}", verdicts["relearning"],
                         verdicts["precision"], verdicts["prompts"]])
            passed += sum(v == "pass" for v in verdicts.values())
            total += len(verdicts)
            failing = [name.replace("_", " ") for name, v in verdicts.items() if v != "pass"]
            if failing:
                failed.append(f"{d} on seed {s} ({', '.join(failing)})")
    if not rows:
        return ""
    table = _table(["seed", "domain", "oracle US", "GRAIL US", "membership inference", "forget quality (KS p)",
                    "the stop's reference vs the oracle (KS p)", "relearning", "precision", "prompts"], rows)
    return f"""## The default under attack, against the oracle

`grail attack runs/results/seedN`: the oracle is stage 0 without the forget sets, the model exact unlearning gives.
Membership inference passes when every score's AUC (LOSS, zlib, Min-K %, Min-K %++) lies in the oracle's 95 %
interval; forget quality is the KS test of GRAIL's forget losses against the oracle's (pass: p ≥ 0.05); "the stop's
reference vs the oracle" is the KS p-value of the vanilla model's holdout losses against the oracle's forget losses
(how well the calibrated stop's reference stands in for the oracle); relearning passes when fine-tuning on part of
the forget set recovers at most 0.25 of the rest; precision and prompts when nothing leaks under 8- and 4-bit weights
and under paraphrased, few-shot and role-play prompts beyond the oracle.

{table}
{_prose(f"{passed} of {total} checks pass. Not passed: {'; '.join(failed) if failed else 'none'}.")}"""


def _every(steps: int) -> str:
    return "step" if steps == 1 else f"{steps} steps" if steps else "epoch"


def forgetting_matched_section(seeds: Seeds) -> str:
    rows, per_method = [], {}
    for s in seeds.seeds:
        comparison = forgetting_matched_folder(seeds.folder(s)) / "comparison.json"
        if not comparison.exists():
            continue
        robustness = _json(comparison)["table_robustness"]
        passed = {(r[0], r[1]): r[-1] for r in robustness["rows"]}
        vanilla_ppl = seeds.general(s, "vanilla")["general_text_ppl"]
        for method in FORGETTING_MATCHED:
            e = seeds.evaluation(s, method)
            if e is None:
                continue
            us = [e["domains"][d]["US"] for d in seeds.domains]
            held = [e["domains"][d]["RS_heldout"] for d in seeds.domains]
            ratio = e["general"]["general_text_ppl"] / vanilla_ppl
            attacks = DOMAINS_SEP.join(passed.get((e["name"], d), "—") for d in seeds.domains)
            rows.append([s, method, _pair(us), f"{mean(us):.1f}", _pair(held), f"{mean(held):.1f}",
                         f"{ratio:.2f}", f"{e['general']['probe_accuracy']:.1f}", f"{e['general']['mmlu_logprob']:.3f}",
                         attacks])
            per_method.setdefault(method, []).append((mean(us), mean(held), ratio))
    if not rows:
        return ""
    table = _table(["seed", "method", "US", "avg. US", "RS held-out", "avg. RS held-out", "PPL × vanilla", "probe %",
                    "MMLU log-prob", "attacks passed"], rows)
    summary = _table(["method", "avg. US (mean over seeds)", "avg. RS held-out (mean over seeds)",
                      "PPL × vanilla (mean over seeds)", "seeds"],
                     [[m, f"{mean(v[0] for v in vs):.1f}", f"{mean(v[1] for v in vs):.1f}",
                       f"{mean(v[2] for v in vs):.2f}", len(vs)] for m, vs in per_method.items()])
    gains = [(g[1] - n[1]) for g, n in zip(per_method.get("grail", []), per_method.get("grail-no-both", []))]
    verdict = (f"GRAIL keeps {_span(gains)} more points of held-out retention than the same objective with nothing "
               f"frozen ({'on every seed' if all(x > 0 for x in gains) else 'not on every seed'}), at average US "
               f"{_span([g[0] for g in per_method['grail']])} against "
               f"{_span([n[0] for n in per_method['grail-no-both']])}." if gains else "")
    others = [f"{m}: average US {_span([v[0] for v in vs])}, RS held-out {_span([v[1] for v in vs])}, general-text "
              f"perplexity × {_span([v[2] for v in vs], 2)}" for m, vs in per_method.items()
              if m not in ("grail", "grail-no-both")]
    if others:
        verdict += (" Within the same budget the published objectives reach (" + "; ".join(others) + "); GRAIL's "
                    f"general-text perplexity is × {_span([v[2] for v in per_method.get('grail', [(0, 0, 0)])], 2)}.")
    checked = _every(UnlearnConfig().target_check_steps)
    return f"""## Does localization earn its keep? Forgetting- and utility-matched

`grail compare --out runs/results/seedN --methods {','.join(FORGETTING_MATCHED)} --utility-budget {BUDGET:g}
--target calibrated`: every method held to the same calibrated target (checked every {checked}) and the same utility
budget (general-text perplexity within {BUDGET:g} × the vanilla model's), then attacked against the oracle.
`grail-no-both` is GRAIL's objective with nothing frozen; GA + GD (`ga-gd-id`) and NPO keep their published
objectives. Domains: {DOMAINS_SEP.join(seeds.domains)}; "attacks passed" of membership inference, forget quality,
relearning, precision and prompts.

{table}
{summary}
{_prose(verdict) if verdict else ""}"""


def utility_matched_section(seeds: Seeds) -> str:
    folder = utility_matched_folder(seeds.folder(seeds.seeds[0]))
    if not (folder / "comparison.json").exists():
        return ""
    out = ROOT / "docs" / "results" / "utility-matched"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("table1.md", "table5_hs.md", "table_utility.md", "table_robustness.md", "ranking.md",
                 "comparison.json", "pareto.png"):
        if (folder / name).exists():
            shutil.copy(folder / name, out / name)
    return f"""## The paper's comparison at equal utility budget (seed {seeds.seeds[0]})

`grail compare --out runs/results/seed{seeds.seeds[0]} --methods {','.join(UTILITY_MATCHED)} --utility-budget
{BUDGET:g}`: each method with its own stop (the published baselines and the paper's GRAIL: US ≥ 90), all within the
same utility budget. Tables: [docs/results/utility-matched/](docs/results/utility-matched/).

{(folder / 'table_utility.md').read_text()}
{(folder / 'ranking.md').read_text().replace('# Ranking', '### Ranking')}
"""


def fixtures_section(runs: Path) -> str:
    run = runs / "fixtures" / "run"
    if not (run / "results.json").exists():
        return ""
    results = _json(run / "results.json")
    domains = list(results["domains"])
    rows = []
    for model, m in results["models"].items():
        d = m["domains"]
        rows.append([model, _pair([d[x]["US"] for x in domains]),
                     _pair([d[x].get("calibration", {}).get("US") for x in domains]),
                     _pair([d[x].get("calibration", {}).get("US_reference") for x in domains]),
                     _pair([d[x].get("calibration", {}).get("auc") for x in domains], 2),
                     _pair([d[x].get("leak_rate") for x in domains]),
                     _pair([d[x]["RS"] for x in domains]), _pair([d[x]["RS_heldout"] for x in domains]),
                     f"{m['general']['general_text_ppl']:.2f}", f"{m['general']['probe_accuracy']:.1f}",
                     f"{m['general']['mmlu_logprob']:.3f}"])
    attacks = _json(run / "attacks.json") if (run / "attacks.json").exists() else None
    verdicts = "" if attacks is None else "\n`grail attack`: " + "; ".join(
        f"{d}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in attacks["verdicts"]["grail"][d].items())
        for d in domains) + "\n"
    stops = "Stage 3: " + ("; ".join(f"{d}: {why}" for d, why in results["unlearning"].get("domain_stops", {}).items())
                           or str(results["unlearning"]["stop"])) + "."
    return f"""## Data grail was not tuned on: a TOFU-like and a MUSE-like set

`python benchmarks/fixtures.py runs/results/fixtures`, then `grail run --config runs/results/fixtures/config.yaml --out
runs/results/fixtures/run` and `grail attack runs/results/fixtures/run`: fictitious authors in TOFU's layout (six
full-sentence answers each; forget05's two authors forgotten, forget10's two others the holdout) as the privacy
domain and fictitious local news in MUSE's layout (knowmem questions, verbmem continuations, privleak texts; ten
never-trained articles the holdout, set against the privleak forget texts) as the copyright domain, every setting the
default. "US" is the whole forget set's; the calibration compares the holdout ("never-seen US", "AUC") with the
forget examples it stands for.
Domains: {DOMAINS_SEP.join(domains)}.

{_table(["model", "US", "US of what the holdout stands for", "never-seen US", "AUC vs never-seen", "leak %", "RS",
         "RS held-out", "general PPL",
         "probe %", "MMLU log-prob"], rows)}{verdicts}
{_prose(stops)}"""


RUN_STEPS = ("stage0_finetune", "stage1_gradients", "stage2_localize", "stage3_unlearn", "evaluate_base",
             "evaluate_vanilla", "evaluate_grail")
"""The steps `grail run` times; a run folder's timings also hold those of `grail attack` and `grail compare` once they
have run in it."""


def time_section(seeds: Seeds) -> str:
    rows = [[stage, *(f"{seeds.results[s]['timings_s'].get(stage, float('nan')):.0f}" for s in seeds.seeds)]
            for stage in RUN_STEPS]
    return f"""## Time

Seconds per step as each seed's `grail run` logged them (`timings_s` of its results.json; stage 0 is 0 where
`GRAIL_CACHE` held the vanilla model). `make results` runs two seeds at a time with one thread each, so these are not
the times of a run alone: BENCHMARKS.md has those.

{_table(["step", *(f"seed {s}" for s in seeds.seeds)], rows)}"""


def readme_block(seeds: Seeds) -> str:
    from grail.report import general_table, results_table

    seed = seeds.seeds[0]
    document = seeds.results[seed]
    compared = any((forgetting_matched_folder(seeds.folder(s)) / "comparison.json").exists()
                   or (utility_matched_folder(seeds.folder(s)) / "comparison.json").exists() for s in seeds.seeds)
    elsewhere = "The attacks and the comparisons with other methods" if compared else "The attacks"
    summary = _prose(f"Seeds {', '.join(map(str, seeds.seeds))}: {default_summary(seeds)} {elsewhere}: RESULTS.md.")
    made = f"`make results` (`benchmarks/results.py`; 2-core CPU, one torch thread a job), seed {seed}"
    return (f"{made} (`runs/results/seed{seed}/report.md`):\n\n{results_table(document)}\n\n"
            f"{general_table(document)}\n\n{summary}")


def results_document(seeds: Seeds) -> str:
    model = seeds.results[seeds.seeds[0]]["model"]
    sections = [default_section(seeds), attacks_section(seeds), forgetting_matched_section(seeds),
                utility_matched_section(seeds), fixtures_section(seeds.runs), time_section(seeds)]
    return f"""# Results

Written by `make results` (`benchmarks/results.py`) from the run folders it makes; every table below says the command
that made it. Machine: 2 CPU cores, 24 GiB, no GPU. Model: {model} (the embedded default) with the default LoRA.
Data: the built-in benchmark (fictitious people: privacy; fictitious books: copyright; per domain forget, retain,
held-out retain facts, paraphrased forget questions and a never-trained holdout of the forget set's kind), seeds
{", ".join(map(str, seeds.seeds))}. A forgetting number never stands alone: beside it are RS on held-out facts,
general-text perplexity, the probe (34 everyday questions) and MMLU (228 questions; at this model size the
right-answer log-probability is the signal, accuracy sits at chance). Why the defaults are what they are:
[docs/design.md](docs/design.md).

""" + "\n".join(s for s in sections if s)


def replace_block(text: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    if begin not in text or end not in text:
        raise SystemExit(f"no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{block}{end}{rest.split(end, 1)[1]}"


def render(runs: Path, seed_list: list[int]) -> None:
    seeds = Seeds(runs, seed_list)
    out = ROOT / "docs" / "results" / "default"
    out.mkdir(parents=True, exist_ok=True)
    block = readme_block(seeds)
    (out / "readme.md").write_text(block)
    readme = ROOT / "README.md"
    readme.write_text(replace_block(readme.read_text(), block))
    (ROOT / "RESULTS.md").write_text(results_document(seeds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "results")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--render-only", action="store_true", help="only rewrite the documents from finished runs")
    args = parser.parse_args()
    if not args.render_only:
        run_everything(args.seeds, args.runs, args.jobs)
    render(args.runs, args.seeds)
    print((ROOT / "RESULTS.md").read_text())


if __name__ == "__main__":
    main()
