"""The ``grail`` command."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from grail.config import PRESETS, ConfigError, load_config
from grail.data.examples import DataError
from grail.general_eval import DEFAULT_TASKS
from grail.methods import METHODS, TABLE_I

STAGE_HELP = {
    "run": "the whole pipeline: fine-tune (stage 0), localize (1, 2), unlearn (3), evaluate, report",
    "finetune": "stage 0 only: the vanilla model that has memorised every set",
    "localize": "up to stages 1 and 2: importance scores and the OP-UR / OP-RR / frozen masks",
    "unlearn": "up to stage 3: the unlearned adapter",
    "evaluate": "everything, then score the vanilla and unlearned models and write results.json and report.md",
    "compare": "run several unlearning methods on the run's vanilla model and write tables in the paper's shape",
    "sweep": "GRAIL over k_UR and k_RR (paper Fig. 4)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grail", description="GRAIL: multi-domain LLM unlearning.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in STAGE_HELP.items():
        p = commands.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", type=Path, help="YAML config (see README); overrides the preset")
        p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                       help="start from a preset (default: 'default', the embedded SmolLM2 model)")
        p.add_argument("--out", type=Path, help="run folder (default: runs/<preset or config name>); "
                                                "an existing run of the same config resumes")
        p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    commands.choices["compare"].add_argument(
        "--methods", default=",".join(TABLE_I),
        help=f"comma-separated methods (default: the paper's Table I set); known: {', '.join(sorted(METHODS))}")
    commands.choices["compare"].add_argument(
        "--utility-budget", type=float, default=None, metavar="RATIO",
        help="utility-matched: each method keeps its last epoch whose utility-check perplexity is within RATIO x "
             "the vanilla model's (e.g. 1.25); results in RUN/comparison-budget<RATIO>/")
    general = commands.choices["evaluate"]
    general.add_argument("--general", action="store_true",
                         help="also run lm-eval tasks on every model of the run (paper Table II); offline, the "
                              "built-in probe stands in for tasks that cannot be loaded")
    general.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="lm-eval task names (with --general)")
    general.add_argument("--include-path", help="a folder of local lm-eval task YAMLs (with --general)")
    general.add_argument("--limit", type=int, help="examples per task (with --general)")
    commands.choices["sweep"].add_argument("--k-ur", default="5,10,15,20", help="k_UR values (k_RR fixed)")
    commands.choices["sweep"].add_argument("--k-rr", default="10,20,30,40", help="k_RR values (k_UR fixed)")
    audit_parser = commands.add_parser("audit", help="check that every frozen entry is bit-identical")
    audit_parser.add_argument("run", type=Path, help="a finished run folder")
    return parser


def _run_folder(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return args.out
    if args.config is not None:
        return Path("runs") / args.config.stem
    return Path("runs") / (args.preset or "default")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from grail import distributed

    distributed.init_from_env()  # under torchrun / accelerate launch: one process group for the stages
    try:
        if distributed.is_main():
            return _command(args)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # one process prints the tables
            return _command(args)
    finally:
        distributed.close()


def _command(args: argparse.Namespace) -> int:
    if args.command == "audit":
        from grail.audit import audit

        try:
            result = audit(args.run)
        except (FileNotFoundError, KeyError, ValueError) as err:
            print(f"grail audit: {err}", file=sys.stderr)
            return 2
        print(json.dumps(result, indent=2))
        print("PASS: every frozen entry is bit-identical" if result["ok"] else
              f"FAIL: {result['frozen_changed']} frozen entries changed", file=sys.stderr)
        return 0 if result["ok"] else 1

    from grail import distributed
    from grail.run import Run, RunFolderError

    folder = _run_folder(args)
    try:
        explicit = args.config is not None or args.preset is not None
        config = load_config(args.config, args.preset or "default") if explicit else None
        if config is None and not (folder / "config.yaml").is_file():
            config = load_config()
        run = Run(folder, config, progress=not args.quiet, device=args.device)
        if distributed.is_main():
            print(f"grail {args.command}: run folder {folder}", file=sys.stderr)
        if args.command == "compare":
            names = [n.strip() for n in args.methods.split(",") if n.strip()]
            unknown = sorted(set(names) - set(METHODS))
            if unknown:
                raise ConfigError(f"--methods: unknown {unknown}; known: {sorted(METHODS)}")
            if args.utility_budget is not None and not args.utility_budget > 1:
                raise ConfigError(f"--utility-budget: a ratio > 1 to the vanilla model, got {args.utility_budget}")
            tables = run.compare(names, args.utility_budget)
            from grail.compare import markdown

            for table in ("table1", "table5_hs", "table_utility", "table4_strategies", "table6_ablations"):
                if table in tables:
                    print(markdown(tables[table]["header"], tables[table]["rows"]))
            out = folder / ("comparison" + ("" if args.utility_budget is None else f"-budget{args.utility_budget:g}"))
            if (out / "ranking.md").is_file():
                print((out / "ranking.md").read_text())
            print(f"tables and figures: {out}")
            return 0
        if args.command == "sweep":
            try:
                k_ur, k_rr = ([float(k) for k in value.split(",") if k] for value in (args.k_ur, args.k_rr))
            except ValueError:
                raise ConfigError("--k-ur / --k-rr: comma-separated percentages, e.g. 5,10,20") from None
            run.sweep(k_ur, k_rr)
            print(f"sweep: {folder / 'comparison' / 'fig4_sweep.png'}")
            return 0
        until = "evaluate" if args.command == "run" else args.command
        document = run.run(until)
        if args.command == "evaluate" and args.general:
            results = run.general_evaluation([t for t in args.tasks.split(",") if t], args.include_path, args.limit)
            for name, r in results.items():
                if r["source"] != "lm-eval":
                    print(f"grail evaluate --general: {name}: {r['reason']}; reporting the built-in probe instead",
                          file=sys.stderr)
            print((folder / "comparison" / "table2_general.md").read_text())
    except (ConfigError, DataError, RunFolderError) as err:
        print(f"grail {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ngrail {args.command}: interrupted; finished steps are saved in {folder}. "
              f"Give the same command again to resume.", file=sys.stderr)
        return 130
    if document is not None:
        from grail.report import general_table, results_table

        print(results_table(document))
        print()
        print(general_table(document))
        audit_result = document["audit"]
        print(f"\naudit: {'PASS' if audit_result['ok'] else 'FAIL'} ({audit_result['frozen_changed']} of "
              f"{audit_result['frozen_entries']} frozen entries changed); report: {folder / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
