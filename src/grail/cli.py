"""The ``grail`` command.

Exit status: 0 done; 1 an audit found a changed frozen entry (``grail audit``, or the audit at the end of
``grail run``); 2 bad input (config, data, run folder, arguments), named in one line, nothing lost;
3 an unexpected error (a bug: the traceback is printed); 130 interrupted (resume with the same command).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
import warnings
from pathlib import Path

from grail.config import PRESETS, ConfigError, LocalizeConfig, load_config
from grail.data.examples import DataError
from grail.methods import METHODS, TABLE_I
from grail.threads import configure_threads

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
    from grail.general_eval import DEFAULT_TASKS  # imports torch: after configure_threads

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
        p.add_argument("--threads", type=int, metavar="N",
                       help="CPU threads for torch (default: torch's, one per core); OpenMP's waiting threads sleep "
                            "unless OMP_WAIT_POLICY says otherwise (BENCHMARKS-threads.md)")
    commands.choices["compare"].add_argument(
        "--methods", default=",".join(TABLE_I),
        help=f"comma-separated methods (default: the paper's Table I set); known: {', '.join(sorted(METHODS))}")
    commands.choices["compare"].add_argument(
        "--utility-budget", type=float, default=None, metavar="RATIO",
        help="utility-matched: each method keeps its last epoch whose utility-check perplexity is within RATIO x "
             "the vanilla model's (e.g. 1.25); results in RUN/comparison-budget<RATIO>/")
    commands.choices["compare"].add_argument(
        "--target", choices=["calibrated", "us"], default=None,
        help="forgetting-matched: hold every method to this forgetting target (unlearn.target; calibrated: each "
             "domain stops once its forget set is no more familiar than never-seen data), checked as often as the "
             "run's own, so methods are ranked by what they keep at equal forgetting; results in "
             "RUN/comparison[-budget<RATIO>]-<TARGET>/")
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
    audit_parser.add_argument("--evidence", action="store_true",
                              help="also write RUN/evidence/: hashes, versions, seeds, per-example attack scores and "
                                   "pass / fail per domain and attack (runs grail attack's missing parts)")
    attack = commands.add_parser(
        "attack", help="attack every model of a finished run against the oracle (membership inference, relearning, "
                       "precision, prompts): RUN/attacks.json, attacks.md, relearning.png")
    attack.add_argument("run", type=Path, help="a run folder (GRAIL trained: grail run)")
    attack.add_argument("--methods", help="comma-separated methods of RUN/methods/ to attack too (default: all there)")
    for p in (audit_parser, attack):
        p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    export = commands.add_parser(
        "export", help="write a run's unlearned model as a Hugging Face folder that loads without grail (adapter "
                       "with a portable base reference, or --merged), with a model card")
    export.add_argument("run", type=Path, help="a finished run folder")
    export.add_argument("out", type=Path, help="the folder to write (must not exist)")
    export.add_argument("--method", default="grail",
                        help="which unlearned model: grail (default) or a method of RUN/methods/")
    export.add_argument("--merged", action="store_true",
                        help="the base model with the update merged in (plain safetensors; always so for "
                             "adapter: full)")
    export.add_argument("--base-model", metavar="REF",
                        help="the adapter's base_model_name_or_path (default: the run's model's hub id)")
    export.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch")
    commands.choices["compare"].add_argument(
        "--no-attacks", action="store_true",
        help="leave out the robustness table (the attacks of grail attack on every compared method)")
    return parser


def _run_folder(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return args.out
    if args.config is not None:
        return Path("runs") / args.config.stem
    return Path("runs") / (args.preset or "default")


EXIT_OK, EXIT_AUDIT_FAILED, EXIT_BAD_INPUT, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def main(argv: list[str] | None = None) -> int:
    configure_threads()  # before torch is imported: OpenMP reads its wait policy once
    args = _parser().parse_args(argv)
    _show_grail_log()
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            print(f"grail {args.command}: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return EXIT_BAD_INPUT
        configure_threads(args.threads)
    from grail import distributed

    distributed.init_from_env()  # under torchrun / accelerate launch: one process group for the stages
    try:
        if distributed.is_main():
            return _command(args)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # one process prints the tables
            return _command(args)
    except Exception:  # a bug, not bad input: say so, and exit apart from the statuses above
        traceback.print_exc()
        print(f"grail {args.command}: unexpected error (a bug; please report it with the traceback above)",
              file=sys.stderr)
        return EXIT_CRASH
    finally:
        distributed.close()


def _show_grail_log() -> None:
    """grail's own log lines (e.g. which split name a dataset revision used) on stderr; other libraries' logging is
    left as it is."""
    import logging

    logger = logging.getLogger("grail")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("grail: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _warn_unused_memflex(localize: LocalizeConfig, methods: list[str]) -> None:
    """``localize.memflex_*`` only shape the Memflex baseline of ``grail compare``: set without it, say so."""
    changed = [f"localize.{f}" for f in ("memflex_mu", "memflex_sigma")
               if getattr(localize, f) != getattr(LocalizeConfig, f)]
    if changed and "memflex" not in methods:
        warnings.warn(f"{', '.join(changed)} ignored: only the memflex method of grail compare reads them",
                      stacklevel=2)


def _percentages(option: str, text: str) -> list[float]:
    try:
        values = [float(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise ConfigError(f"{option}: comma-separated percentages, e.g. 5,10,20; got {text!r}") from None
    bad = [k for k in values if not 0 < k <= 100]
    if bad or not values:
        raise ConfigError(f"{option}: percentages in (0, 100], got {bad or 'none'}")
    return values


def _check_device(device: str | None) -> None:
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ConfigError(f"--device: {device!r} is not a torch device (cpu, cuda, cuda:1, mps, ...)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: no CUDA device is available here (torch {torch.__version__})")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS is not available here")


def _command(args: argparse.Namespace) -> int:
    if args.command == "audit" and not args.evidence:
        from grail.audit import audit

        try:
            result = audit(args.run)
        except (FileNotFoundError, KeyError, ValueError) as err:  # DataError, ConfigError, a damaged file
            print(f"grail audit: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(json.dumps(result, indent=2))
        print("PASS: every frozen entry is bit-identical" if result["ok"] else
              f"FAIL: {result['frozen_changed']} frozen entries changed", file=sys.stderr)
        return EXIT_OK if result["ok"] else EXIT_AUDIT_FAILED

    if args.command == "export":
        from grail.export import ExportError, export_model

        try:
            summary = export_model(args.run, args.out, args.method, args.merged, args.base_model)
        except (ExportError, ConfigError, DataError, FileNotFoundError) as err:
            print(f"grail export: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"grail export: {summary['method']} of {args.run} in {summary['form']} form "
              f"(base {summary['base_model']}): {args.out}; model card {args.out / 'README.md'}")
        return EXIT_OK

    from grail import distributed
    from grail.experiments import Experiments, comparison_folder
    from grail.io import UnreadableFileError
    from grail.run_folder import RunFolderError

    attacking = args.command in ("attack", "audit")  # audit here: with --evidence
    folder = args.run if attacking else _run_folder(args)
    run = None
    try:  # the arguments first: a bad one must not leave a new run folder behind
        _check_device(args.device)
        if args.command == "compare":
            names = [n.strip() for n in args.methods.split(",") if n.strip()]
            unknown = sorted(set(names) - set(METHODS))
            if unknown or not names:
                raise ConfigError(f"--methods: unknown {unknown or 'none given'}; known: {sorted(METHODS)}")
            if args.utility_budget is not None and not args.utility_budget > 1:
                raise ConfigError(f"--utility-budget: a ratio > 1 to the vanilla model, got {args.utility_budget}")
        if args.command == "sweep":
            k_ur, k_rr = _percentages("--k-ur", args.k_ur), _percentages("--k-rr", args.k_rr)
        if attacking:
            if not (folder / "config.yaml").is_file():
                raise RunFolderError(f"{folder}: not a run folder (no config.yaml); make one with grail run")
            config = None
        else:
            explicit = args.config is not None or args.preset is not None
            config = load_config(args.config, args.preset or "default") if explicit else None
            if config is None and not (folder / "config.yaml").is_file():
                config = load_config()
        run = Experiments(folder, config, progress=not args.quiet, device=args.device)
        if not attacking:  # the attacks train no method: nothing to warn about
            _warn_unused_memflex(run.config.localize, names if args.command == "compare" else [])
        if distributed.is_main():
            print(f"grail {args.command}: run folder {folder}", file=sys.stderr)
        if attacking:
            return _attack(args, run)
        if args.command == "compare":
            tables = run.compare(names, args.utility_budget, attacks=not args.no_attacks, target=args.target)
            from grail.compare import markdown

            for table in ("table1", "table5_hs", "table_utility", "table_calibration", "table4_strategies",
                          "table6_ablations", "table_robustness"):
                if table in tables:
                    print(markdown(tables[table]["header"], tables[table]["rows"]))
            out = folder / comparison_folder(args.utility_budget, args.target)
            if (out / "ranking.md").is_file():
                print((out / "ranking.md").read_text())
            print(f"tables and figures: {out}")
            return EXIT_OK
        if args.command == "sweep":
            run.sweep(k_ur, k_rr)
            print(f"sweep: {folder / 'comparison' / 'fig4_sweep.png'}")
            return EXIT_OK
        until = "evaluate" if args.command == "run" else args.command
        document = run.run(until)
        if args.command == "evaluate" and args.general:
            results = run.general_evaluation([t for t in args.tasks.split(",") if t], args.include_path, args.limit)
            for name, r in results.items():
                if r["source"] != "lm-eval":
                    print(f"grail evaluate --general: {name}: {r['reason']}; reporting the built-in probe instead",
                          file=sys.stderr)
            print((folder / "comparison" / "table2_general.md").read_text())
    except (ConfigError, DataError, RunFolderError, UnreadableFileError) as err:
        print(f"grail {args.command}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"\ngrail {args.command}: interrupted; finished steps are saved in {folder}. "
              f"Give the same command again to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if run is not None:
            run.run_folder.close()  # another process may use the folder now
    if document is not None:
        from grail.report import general_table, results_table

        print(results_table(document))
        print()
        print(general_table(document))
        audit_result = document["audit"]
        print(f"\naudit: {'PASS' if audit_result['ok'] else 'FAIL'} ({audit_result['frozen_changed']} of "
              f"{audit_result['frozen_entries']} frozen entries changed); report: {folder / 'report.md'}")
        if not audit_result["ok"]:
            return EXIT_AUDIT_FAILED
    return EXIT_OK


def _attack(args: argparse.Namespace, run) -> int:
    """``grail attack RUN`` and ``grail audit RUN --evidence`` on the opened run folder."""
    from grail.attacks.runner import Attacks

    methods = None
    if args.command == "attack" and args.methods is not None:
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    attacks = Attacks(run)
    summary = attacks.run(methods)
    print((args.run / "attacks.md").read_text())
    if args.command == "audit":
        from grail.attacks.evidence import write_evidence

        out = write_evidence(run, summary, {name: attacks.model_report(name) for name in summary["models"]})
        evidence = json.loads((out / "evidence.json").read_text())
        print(json.dumps(evidence["passed"], indent=2))
        print(f"evidence: {out}")
        if evidence["audit"] is not None and not evidence["audit"]["ok"]:
            return EXIT_AUDIT_FAILED
    print(f"attacks: {args.run / 'attacks.md'}, {args.run / 'attacks.json'}, {args.run / 'relearning.png'}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
