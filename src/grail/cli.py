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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from grail.config import PRESETS, ConfigError, LocalizeConfig, RunConfig, build_config, load_config, read_yaml_mapping
from grail.data.examples import Benchmark, DataError
from grail.methods import METHOD_FIELDS, METHODS, SWEEP_K_RR, SWEEP_K_UR, TABLE_I, Method, read_methods_file
from grail.model_names import ModelName
from grail.threads import configure_threads

if TYPE_CHECKING:  # grail.pipeline imports torch: only after configure_threads
    from grail.pipeline import Pipeline

EXIT_OK, EXIT_AUDIT_FAILED, EXIT_BAD_INPUT, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

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
        "--methods", default=None,
        help=f"comma-separated methods (default: the paper's Table I set; with --methods-file, the file's methods "
             f"and grail); known: {', '.join(sorted(METHODS))}")
    commands.choices["compare"].add_argument(
        "--methods-file", type=Path, metavar="FILE",
        help="your own methods, in YAML: a list (or a mapping by name) of methods with the fields "
             f"{', '.join(METHOD_FIELDS)}; they run as the built-in ones do")
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
    own = commands.choices["unlearn"]
    own.add_argument("--model", type=Path, metavar="FOLDER",
                     help="your own fine-tuned model instead of stage 0: a whole model folder (save_pretrained) or a "
                          "peft adapter; runs stages 1-3 and the evaluation on the data of --forget / --retain")
    own.add_argument("--base", metavar="NAME",
                     help="with --model: the base model it was fine-tuned from (hub id or folder; default: an "
                          "adapter's own base_model_name_or_path, else model.name of --config)")
    for scope, text in (("forget", "what to forget"), ("retain", "what to keep"),
                        ("holdout", "never-seen examples of the forget set's kind (optional; the calibrated stop and "
                                    "the attacks compare with them)")):
        own.add_argument(f"--{scope}", type=Path, metavar="FILE",
                         help=f"with --model: JSONL of {{prompt, answer}} records, {text}")
    own.add_argument("--domain", metavar="NAME",
                     help="with --model: the domain of records without a 'domain' field")
    general = commands.choices["evaluate"]
    general.add_argument("--general", action="store_true",
                         help="also run lm-eval tasks on every model of the run (paper Table II); offline, the "
                              "built-in probe stands in for tasks that cannot be loaded")
    general.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="lm-eval task names (with --general)")
    general.add_argument("--include-path", help="a folder of local lm-eval task YAMLs (with --general)")
    general.add_argument("--limit", type=int, help="examples per task (with --general)")
    commands.choices["sweep"].add_argument("--k-ur", default=",".join(f"{k:g}" for k in SWEEP_K_UR),
                                           help="k_UR values (k_RR fixed)")
    commands.choices["sweep"].add_argument("--k-rr", default=",".join(f"{k:g}" for k in SWEEP_K_RR),
                                           help="k_RR values (k_UR fixed)")
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
    inspect = commands.add_parser(
        "inspect", help="look inside a run folder without writing code: a model's answers to a set, its answers to "
                        "the general probe, or what stage 3 trains on (reads only; trains nothing)")
    inspect.add_argument("run", type=Path, help="a run folder")
    inspect.add_argument("--what", default="answers", metavar="{answers,probe,pools}",
                         help="answers (default): per example, the expected and the greedy answer, whether it was "
                              "produced, answer-token accuracy; probe: the general probe's answers, right or wrong; "
                              "pools: the examples stage 3 trains on per domain, and the sets it never trains on")
    inspect.add_argument("--model", default=ModelName.GRAIL,
                         help="base, vanilla, grail (default), oracle or a method of RUN/methods/; with --what pools, "
                              "the method whose stage 3 is shown (grail or a built-in method)")
    inspect.add_argument("--scope", metavar="SET",
                         help="with --what answers: forget (default), retain, retain_heldout, forget_paraphrase, "
                              "holdout, shots or knowledge")
    inspect.add_argument("--domain", help="one domain of the run's data (default: every domain)")
    inspect.add_argument("--limit", type=int, metavar="N",
                         help="answers: the first N examples of each domain; probe: the first N questions; pools: "
                              "also list the first N prompts stage 3 trains on")
    inspect.add_argument("--json", action="store_true", help="the whole document as JSON (default: Markdown tables)")
    for p in (audit_parser, attack, inspect):
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


# ---- checks of the arguments, and the run folder a command works on ------------------------------------------------
def _run_folder(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return args.out
    if getattr(args, "model", None) is not None:
        return Path("runs") / args.model.expanduser().absolute().name
    if args.config is not None:
        return Path("runs") / args.config.stem
    return Path("runs") / (args.preset or "default")


def _run_config(args: argparse.Namespace, folder: Path) -> RunConfig | None:
    """The config named by --config / --preset, the default one for a new folder, or None: the folder's own."""
    explicit = args.config is not None or args.preset is not None
    config = load_config(args.config, args.preset or "default") if explicit else None
    if config is None and not _holds_run(folder):
        config = load_config()
    return config


def _holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run (its config.yaml). A path the system refuses (a name too long) holds none; the
    run folder then names the path and why when it is made."""
    try:
        return (folder / "config.yaml").is_file()
    except OSError:
        return False


def _warn_unused_memflex(localize: LocalizeConfig, methods: list[str]) -> None:
    """``localize.memflex_*`` only shape the Memflex baseline of ``grail compare``: set without it, say so."""
    changed = [f"localize.{f}" for f in ("memflex_mu", "memflex_sigma")
               if getattr(localize, f) != getattr(LocalizeConfig, f)]
    if changed and "memflex" not in methods:
        warnings.warn(f"{', '.join(changed)} ignored: only the memflex method of grail compare reads them",
                      stacklevel=2)


def _method_names(text: str | None, known: Mapping[str, Method] = METHODS,
                  default: list[str] = TABLE_I) -> list[str]:
    """``--methods``' names, each one of ``known``; ``default`` when it is not given."""
    if text is None:
        return list(default)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(known))
    if unknown or not names:
        raise ConfigError(f"--methods: unknown {unknown or 'none given'}; known: {sorted(known)}")
    return names


def _require_run_folder(folder: Path) -> None:
    """A command on a finished run refuses a folder that holds none, before it opens (and so creates) anything."""
    if not _holds_run(folder):
        from grail.run_folder import RunFolderError

        raise RunFolderError(f"{folder}: not a run folder (no config.yaml); make one with grail run")


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


class _RunFolderErrors:
    """Bad input (config, data, run folder, arguments) and Ctrl-C in a command on a run folder end it with one line
    on stderr and an exit status, not a traceback: the body's exception is swallowed and ``status`` says which.
    ``status`` stays EXIT_OK when the body finished."""

    def __init__(self, command: str, folder: Path) -> None:
        self.command, self.folder = command, folder
        self.status = EXIT_OK

    def __enter__(self) -> _RunFolderErrors:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> bool:
        from grail.io import UnreadableFileError
        from grail.run_folder import RunFolderError

        if isinstance(error, (ConfigError, DataError, RunFolderError, UnreadableFileError)):
            print(f"grail {self.command}: {error}", file=sys.stderr)
            self.status = EXIT_BAD_INPUT
        elif isinstance(error, KeyboardInterrupt):
            print(f"\ngrail {self.command}: interrupted; finished steps are saved in {self.folder}. "
                  f"Give the same command again to resume.", file=sys.stderr)
            self.status = EXIT_INTERRUPTED
        return self.status != EXIT_OK


@contextlib.contextmanager
def _opened_pipeline(args: argparse.Namespace, folder: Path, config: RunConfig | None,
                     methods: list[str] | None, data: Benchmark | None = None) -> Iterator[Pipeline]:
    """The pipeline on ``folder`` (created from ``config`` or resumed), closed afterwards so that another process
    may use the folder. ``methods``: the methods this command trains (None: it trains none, nothing to warn about);
    ``data``: the run's data when the command read it itself (None: from the config)."""
    from grail import distributed
    from grail.pipeline import Pipeline

    pipeline = Pipeline(folder, config, progress=not args.quiet, device=args.device, data=data)
    try:
        if methods is not None:
            _warn_unused_memflex(pipeline.config.localize, methods)
        if distributed.is_main():
            print(f"grail {args.command}: run folder {folder}", file=sys.stderr)
        yield pipeline
    finally:
        pipeline.run_folder.close()


# ---- one handler per command: its exit status ---------------------------------------------------------------------
def _run(args: argparse.Namespace) -> int:
    """``grail run``: every stage, then the results tables and the audit."""
    return _up_to("evaluate", args)


def _finetune(args: argparse.Namespace) -> int:
    """``grail finetune``: stage 0 only, the vanilla model."""
    return _up_to("finetune", args)


def _localize(args: argparse.Namespace) -> int:
    """``grail localize``: up to stage 2, the importance scores and the masks."""
    return _up_to("localize", args)


def _unlearn(args: argparse.Namespace) -> int:
    """``grail unlearn``: up to stage 3, GRAIL's unlearned model; with --model, the user's own model instead of
    stage 0, then the evaluation too."""
    return _up_to("evaluate" if args.model is not None else "unlearn", args)


OWN_MODEL_FLAGS = ("base", "forget", "retain", "holdout", "domain")
"""``grail unlearn``'s flags that only mean something with --model."""


def _own_model_run(args: argparse.Namespace, folder: Path) -> tuple[RunConfig, Benchmark]:
    """``grail unlearn --model``'s config and data: the user's model as the vanilla model (a whole model folder:
    ``model.vanilla``; a peft adapter: ``finetune.adapter_path``), the run's other settings from --config /
    --preset, the data from the --forget / --retain / --holdout files (kept in the run folder's data.jsonl, which
    the config names, so the run resumes and is attacked and exported as any other)."""
    from grail.data.loaders import load_sets

    model = args.model.expanduser()
    for flag in ("forget", "retain"):
        if getattr(args, flag) is None:
            raise ConfigError(f"--{flag}: required with --model (a JSONL file of prompt / answer records)")
    overrides = read_yaml_mapping(args.config) if args.config is not None else {}
    configured_base = overrides.get("model", {}).get("name") if isinstance(overrides.get("model"), dict) else None
    if (model / "adapter_config.json").is_file():
        adapter = _read_json_object(model / "adapter_config.json", "--model")
        base = args.base or adapter.get("base_model_name_or_path") or configured_base
        own = {"model": {"name": base, "adapter": "lora", "vanilla": None},
               "finetune": {"adapter_path": str(model.absolute())}}
    elif (model / "config.json").is_file():
        base = args.base or configured_base
        own = {"model": {"name": base, "adapter": "full", "vanilla": str(model.absolute())},
               "finetune": {"adapter_path": None}}
    else:
        problem = "no such folder" if not model.is_dir() else "neither a model folder (config.json) nor a peft " \
                                                              "adapter (adapter_config.json)"
        raise ConfigError(f"--model {model}: {problem}")
    if not base:
        raise ConfigError(f"--base: name the base model that {model} was fine-tuned from (a hub id or folder; "
                          "or model.name in --config)")
    files = {scope: getattr(args, scope) for scope in ("forget", "retain", "holdout") if getattr(args, scope)}
    data = load_sets(files, args.domain)
    overrides = {**overrides, "model": {**overrides.get("model", {}), **own.pop("model")},
                 "finetune": {**overrides.get("finetune", {}), **own.get("finetune", {})},
                 "data": {"source": "jsonl", "path": str((folder / "data.jsonl").absolute())}}
    config = build_config(overrides, args.preset or "default", str(args.config or "--model"))
    return config, data


def _read_json_object(path: Path, flag: str) -> dict:
    """A JSON object file; errors name the flag and the file."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{flag} {path}: cannot read it ({err})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{flag} {path}: expected a JSON object")
    return value


def _evaluate(args: argparse.Namespace) -> int:
    """``grail evaluate``: as ``grail run``; with --general, lm-eval's tasks on every model of the run too."""
    return _up_to("evaluate", args, _general_evaluation if args.general else None)


def _up_to(until: str, args: argparse.Namespace,
           then: Callable[[argparse.Namespace, Pipeline], None] | None = None) -> int:
    """The pipeline up to ``until`` (``then`` after it, in the open folder); after the evaluation, once the folder
    is closed, the results tables and the audit's verdict."""
    own_model = getattr(args, "model", None) is not None
    folder = _run_folder(args)
    document = None
    with _RunFolderErrors(args.command, folder) as errors:  # the arguments first: a bad one leaves no folder behind
        _check_device(args.device)
        stray = [f"--{f}" for f in OWN_MODEL_FLAGS if getattr(args, f, None) is not None and not own_model]
        if stray:
            raise ConfigError(f"{', '.join(stray)}: only with --model (your own fine-tuned model)")
        config, data = _own_model_run(args, folder) if own_model else (_run_config(args, folder), None)
        with _opened_pipeline(args, folder, config, methods=[], data=data) as pipeline:
            document = pipeline.run(until)
            if then is not None:
                then(args, pipeline)
    if errors.status != EXIT_OK or document is None:
        return errors.status
    from grail.report import general_table, results_table

    print(results_table(document))
    print()
    print(general_table(document))
    audit_result = document["audit"]
    print(f"\naudit: {'PASS' if audit_result['ok'] else 'FAIL'} ({audit_result['frozen_changed']} of "
          f"{audit_result['frozen_entries']} frozen entries changed); report: {folder / 'report.md'}")
    return EXIT_OK if audit_result["ok"] else EXIT_AUDIT_FAILED


def _general_evaluation(args: argparse.Namespace, pipeline: Pipeline) -> None:
    """``grail evaluate --general``: lm-eval's tasks (or the built-in probe) on every model, then Table II."""
    from grail.experiments import Experiments

    tasks = [t for t in args.tasks.split(",") if t]
    results = Experiments(pipeline).general_evaluation(tasks, args.include_path, args.limit)
    for name, r in results.items():
        if r["source"] != "lm-eval":
            print(f"grail evaluate --general: {name}: {r['reason']}; reporting the built-in probe instead",
                  file=sys.stderr)
    print((pipeline.folder / "comparison" / "table2_general.md").read_text())


def _compare(args: argparse.Namespace) -> int:
    """``grail compare``: the methods on the run's vanilla model, then the tables, the ranking and where they are."""
    folder = _run_folder(args)
    with _RunFolderErrors(args.command, folder) as errors:
        _check_device(args.device)
        own = read_methods_file(args.methods_file) if args.methods_file is not None else {}
        known = {**METHODS, **own}
        names = _method_names(args.methods, known, [*own, ModelName.GRAIL] if own else TABLE_I)
        if args.utility_budget is not None and not args.utility_budget > 1:
            raise ConfigError(f"--utility-budget: a ratio > 1 to the vanilla model, got {args.utility_budget}")
        with _opened_pipeline(args, folder, _run_config(args, folder), methods=names) as pipeline:
            from grail.experiments import Experiments, comparison_folder
            from grail.tables import markdown

            tables = Experiments(pipeline, known).compare(names, args.utility_budget, attacks=not args.no_attacks,
                                                          target=args.target)
            for table in ("table1", "table5_hs", "table_utility", "table_calibration", "table4_strategies",
                          "table6_ablations", "table_robustness"):
                if table in tables:
                    print(markdown(tables[table]["header"], tables[table]["rows"]))
            out = folder / comparison_folder(args.utility_budget, args.target)
            if (out / "ranking.md").is_file():
                print((out / "ranking.md").read_text())
            print(f"tables and figures: {out}")
            return EXIT_OK
    return errors.status


def _sweep(args: argparse.Namespace) -> int:
    """``grail sweep``: GRAIL at each k_UR and k_RR, then where Fig. 4 is."""
    folder = _run_folder(args)
    with _RunFolderErrors(args.command, folder) as errors:
        _check_device(args.device)
        k_ur, k_rr = _percentages("--k-ur", args.k_ur), _percentages("--k-rr", args.k_rr)
        with _opened_pipeline(args, folder, _run_config(args, folder), methods=[]) as pipeline:
            from grail.experiments import Experiments

            Experiments(pipeline).sweep(k_ur, k_rr)
            print(f"sweep: {folder / 'comparison' / 'fig4_sweep.png'}")
            return EXIT_OK
    return errors.status


def _attack(args: argparse.Namespace) -> int:
    """``grail attack RUN`` and ``grail audit RUN --evidence``: the attacks on every model of a finished run."""
    folder = args.run
    with _RunFolderErrors(args.command, folder) as errors:
        _check_device(args.device)
        _require_run_folder(folder)
        _require_attacked_models(args)
        with _opened_pipeline(args, folder, None, methods=None) as pipeline:  # the attacks train no method
            return _attack_models(args, pipeline)
    return errors.status


def _named_methods(args: argparse.Namespace) -> list[str] | None:
    """``grail attack --methods``' names (None: not given; ``grail audit --evidence`` has no such option)."""
    if args.command != "attack" or args.methods is None:
        return None
    return [m.strip() for m in args.methods.split(",") if m.strip()]


def _require_attacked_models(args: argparse.Namespace) -> None:
    """Refuse, as ``grail audit`` does, a run without GRAIL's unlearned model (stage 0 only): the evidence is of its
    audit, and the attacks' verdicts are about it. ``grail attack --methods`` names the models itself: those are
    attacked (a name not in RUN/methods/ is refused when the attacks start)."""
    from grail.audit import require_unlearned_model
    from grail.run_folder import RunFolderError

    if _named_methods(args):
        return
    try:
        require_unlearned_model(args.run)
    except RunFolderError as err:
        from grail.pipeline import unlearned_methods

        present = unlearned_methods(args.run) if args.command == "attack" else []
        if not present:
            raise
        raise RunFolderError(f"{err}; or name the methods to attack with --methods (present: "
                             f"{', '.join(present)})") from None


def _attack_models(args: argparse.Namespace, pipeline: Pipeline) -> int:
    """The attacks on the opened run folder: RUN/attacks.*, and with ``grail audit --evidence`` RUN/evidence/."""
    from grail.attacks.runner import Attacks

    attacks = Attacks(pipeline)
    summary = attacks.run(_named_methods(args))
    print((args.run / "attacks.md").read_text())
    if args.command == "audit":
        from grail.attacks.evidence import write_evidence

        out = write_evidence(pipeline, summary, {name: attacks.model_report(name) for name in summary["models"]})
        evidence = json.loads((out / "evidence.json").read_text())
        print(json.dumps(evidence["passed"], indent=2))
        print(f"evidence: {out}")
        if evidence["audit"] is not None and not evidence["audit"]["ok"]:
            return EXIT_AUDIT_FAILED
    print(f"attacks: {args.run / 'attacks.md'}, {args.run / 'attacks.json'}, {args.run / 'relearning.png'}")
    return EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    """``grail audit RUN``: are the frozen entries bit-identical? With --evidence, the attacks too."""
    if args.evidence:
        return _attack(args)
    from grail.audit import audit
    from grail.run_folder import RunFolderError

    try:
        result = audit(args.run)
    except (RunFolderError, FileNotFoundError, KeyError, ValueError) as err:  # ConfigError, a damaged file
        print(f"grail audit: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(result, indent=2))
    print("PASS: every frozen entry is bit-identical" if result["ok"] else
          f"FAIL: {result['frozen_changed']} frozen entries changed", file=sys.stderr)
    return EXIT_OK if result["ok"] else EXIT_AUDIT_FAILED


def _inspect(args: argparse.Namespace) -> int:
    """``grail inspect RUN``: a model's answers to a set, its general probe answers, or stage 3's training pools, as
    Markdown or JSON; it trains nothing and writes nothing into the run."""
    folder = args.run
    document = None
    with _RunFolderErrors(args.command, folder) as errors:
        _check_device(args.device)
        from grail.inspection import INSPECTED_SETS, LOOKS, inspect_run, render_markdown

        if args.what not in LOOKS:
            raise ConfigError(f"--what: one of {list(LOOKS)}, got {args.what!r}")
        if args.scope is not None and args.what != "answers":
            raise ConfigError(f"--scope: only with --what answers (not {args.what})")
        if args.domain is not None and args.what == "probe":
            raise ConfigError("--domain: the general probe belongs to no domain")
        scope = args.scope or "forget"
        if scope not in INSPECTED_SETS:
            raise ConfigError(f"--scope: unknown set {scope!r}; known: {list(INSPECTED_SETS)}")
        if args.limit is not None and args.limit < 1:
            raise ConfigError(f"--limit: a count >= 1, got {args.limit}")
        _require_run_folder(folder)
        with _opened_pipeline(args, folder, None, methods=None) as pipeline:  # inspecting trains nothing
            document = inspect_run(pipeline, args.what, args.model, scope, args.domain, args.limit)
    if errors.status != EXIT_OK or document is None:
        return errors.status
    print(json.dumps(document, indent=2, ensure_ascii=False) if args.json else render_markdown(document), end="")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    """``grail export RUN OUT``: the unlearned model as a Hugging Face folder with a model card."""
    from grail.export import ExportError, export_model
    from grail.io import UnreadableFileError

    try:
        summary = export_model(args.run, args.out, args.method, args.merged, args.base_model)
    except (ExportError, ConfigError, DataError, FileNotFoundError, UnreadableFileError) as err:
        print(f"grail export: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"grail export: {summary['method']} of {args.run} in {summary['form']} form "
          f"(base {summary['base_model']}): {args.out}; model card {args.out / 'README.md'}")
    return EXIT_OK


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run, "finetune": _finetune, "localize": _localize, "unlearn": _unlearn, "evaluate": _evaluate,
    "compare": _compare, "sweep": _sweep, "audit": _audit, "attack": _attack, "inspect": _inspect,
    "export": _export,
}
"""Each command of the parser, by name: the function that carries it out and returns its exit status."""


# ---- the command ---------------------------------------------------------------------------------------------------
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

    handler = HANDLERS[args.command]
    distributed.init_from_env()  # under torchrun / accelerate launch: one process group for the stages
    try:
        if distributed.is_main():
            return handler(args)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):  # one process prints the tables
            return handler(args)
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


if __name__ == "__main__":
    sys.exit(main())
