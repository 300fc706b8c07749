"""results.json (schema in README) and report.md: vanilla vs GRAIL, per domain and averaged."""

from __future__ import annotations

from pathlib import Path

import torch

from grail import __version__, io
from grail.config import RunConfig
from grail.data.examples import HELDOUT_SCOPE
from grail.model_names import ModelName
from grail.tables import fixed


def mask_summary(masks: dict[str, dict[str, torch.Tensor]]) -> dict:
    total = sum(m.numel() for m in masks["frozen"].values())
    return {"entries": total, **{f"{kind}_fraction": sum(int(m.sum()) for m in by_name.values()) / total
                                 for kind, by_name in masks.items()}}


def results_document(config: RunConfig, evaluations: dict[str, dict], masks: dict, unlearn_log: list[dict],
                     audit_result: dict, timings: dict) -> dict:
    return {
        "grail_version": __version__,
        "model": config.model.name,
        "domains": list(evaluations[ModelName.VANILLA]["domains"]),
        "config_fingerprint": config.fingerprint(),
        "models": evaluations,
        "masks": mask_summary(masks),
        "unlearning": {"epochs": len(unlearn_log), "stop": unlearn_log[-1].get("stop") if unlearn_log else None,
                       "target": config.unlearn.target,
                       "domain_stops": domain_stops(unlearn_log, list(evaluations[ModelName.VANILLA]["domains"])),
                       "history": unlearn_log},
        "audit": audit_result,
        "timings_s": timings,
        "threads": torch.get_num_threads(),  # float sums, and so the last digits, depend on it
    }


def _measured(m: dict) -> str:
    """A target's measurement in words: the calibration's AUC and US pair, or the US."""
    if "auc_base" in m:
        against = f"AUC {m['auc_base']:.2f} against the base model" if m["auc"] is None else \
            f"AUC {m['auc']:.2f} against the holdout, {m['auc_vanilla']:.2f} against it under the vanilla model"
        return f"{against}; US {m['US']:.1f}, never-seen {m['US_reference']:.1f}"
    return f"US {m['US']:.1f}" if "US" in m else ""


def domain_stops(history: list[dict], domains: list[str]) -> dict[str, str]:
    """Per domain, why stage 3 stopped ascending it (from its per-epoch log): when it last met its target, ran out of
    tokens to ascend, or that it had not met its target when stage 3 stopped."""
    stops: dict[str, str] = {}
    for epoch, log in enumerate(history, start=1):
        reached_at, measured = log.get("target_reached_at_step", {}), log.get("target_reached", {})
        for d in log.get("ascending", []):
            if d in reached_at:
                stops[d] = f"target met in epoch {epoch} at step {reached_at[d]} ({_measured(measured.get(d, {}))})"
            elif log.get("target", {}).get(d, {}).get("met"):
                stops[d] = f"target met at the end of epoch {epoch} ({_measured(log['target'][d])})"
            elif log.get("left_to_ascend", {}).get(d) == 0:
                stops[d] = f"nothing left to ascend after epoch {epoch}"
    last = history[-1] if history else {}
    for d in domains:
        final = last.get("target", {}).get(d)
        if d not in stops or (final is not None and not final["met"] and last.get("left_to_ascend", {}).get(d) != 0):
            why = last.get("stop") or "epoch budget"
            stops[d] = f"target not met when stage 3 stopped ({why.split(';')[0]})" + \
                (f": {_measured(final)}" if final else "")
    return stops


def calibration_table(document: dict) -> str:
    """Per model and domain: US beside the never-seen reference's US under the same model, their gap, and how
    familiar the forget set still looks (AUC 0.5: as unfamiliar as never-seen data; 1: every forget example looks
    trained on); GRAIL's rows also say why stage 3 stopped ascending the domain."""
    stops = document.get("unlearning", {}).get("domain_stops", {})
    lines = ["| model | domain | reference | US | never-seen US | gap | never-seen US (vanilla model) | "
             "never-seen US (base model) | AUC vs never-seen | AUC vs never-seen (vanilla model) | AUC vs base model | "
             "calibrated | stage 3 stop |", "|---" * 13 + "|"]
    for model, scores in document["models"].items():
        for domain, s in scores.get("domains", {}).items():
            c = s.get("calibration")
            if c:
                stop = stops.get(domain, "") if model == ModelName.GRAIL else ""
                lines.append(f"| {model} | {domain} | {c['reference']} | {fixed(c['US'], 1)} | "
                             f"{fixed(c['US_reference'], 1)} | {c['gap']:+.1f} | {fixed(c.get('US_vanilla'), 1)} | "
                             f"{fixed(c['US_base'], 1)} | {fixed(c['auc'])} | {fixed(c.get('auc_vanilla'))} | "
                             f"{fixed(c['auc_base'])} | {'yes' if c['calibrated'] else 'no'} | "
                             f"{stop} |")
    return "\n".join(lines)


def heldout_produced_rate(domain_scores: dict) -> float | None:
    """% of the held-out retain facts whose answer the greedy generation produces (their set's span rate): RS_heldout
    counts answer tokens under teacher forcing, so a fact whose first token is lost still scores most of its tokens."""
    return domain_scores.get(HELDOUT_SCOPE, {}).get("span_rate")


def results_table(document: dict) -> str:
    """Table I's shape: per domain, forget (US, PPL, ROUGE-L) and retain (RS, PPL, ROUGE-L), then HS and Avg.;
    with US on paraphrases and RS on held-out retain facts beside them."""
    lines = ["| model | domain | US ↑ | US paraphrase ↑ | forget PPL ↑ | forget ROUGE-L ↓ | leak % ↓ | RS ↑ "
             "| RS held-out ↑ | retain PPL ↓ | retain ROUGE-L ↑ | retain produced % ↑ | held-out produced % ↑ | HS ↑ |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, scores in document["models"].items():
        for domain, s in scores.get("domains", {}).items():
            f, r = s["forget"], s["retain"]
            lines.append(f"| {model} | {domain} | {fixed(s['US'])} | {fixed(s.get('US_paraphrase'))} "
                         f"| {fixed(f['ppl'])} | {fixed(f['rouge_l'])} | {fixed(s.get('leak_rate'))} "
                         f"| {fixed(s['RS'])} | {fixed(s.get('RS_heldout'))} | {fixed(r['ppl'])} "
                         f"| {fixed(r['rouge_l'])} | {fixed(s.get('retain_produced_rate'))} "
                         f"| {fixed(heldout_produced_rate(s))} "
                         f"| {fixed(s['HS'])} |")
        if "average" in scores:
            a = scores["average"]
            lines.append(f"| {model} | **avg.** | {fixed(a['US'])} | {fixed(a.get('US_paraphrase'))} | | | "
                         f"| {fixed(a['RS'])} | {fixed(a.get('RS_heldout'))} | | | | | {fixed(a['HS'])} |")
    return "\n".join(lines)


def general_table(document: dict) -> str:
    lines = ["| model | probe accuracy % | general text PPL | MMLU acc_norm % | MMLU right-answer log-prob |",
             "|---|---|---|---|---|"]
    for model, scores in document["models"].items():
        g = scores.get("general")
        if g:
            mmlu = f"{fixed(g['mmlu_accuracy'])} (n = {g['mmlu_n']})" if "mmlu_accuracy" in g else "-"
            lines.append(f"| {model} | {fixed(g['probe_accuracy'])} ({g['probe_n']} questions) "
                         f"| {fixed(g['general_text_ppl'])} | {mmlu} | {fixed(g.get('mmlu_logprob'), 3)} |")
    return "\n".join(lines)


def write_report(path: Path, document: dict) -> None:
    audit_result = document["audit"]
    masks = document["masks"]
    text = f"""# GRAIL run report

Model: `{document['model']}`; domains: {', '.join(document['domains'])}; grail {document['grail_version']}.

## Unlearning and retention (answer tokens, teacher-forced; ROUGE-L of the argmax decode)

{results_table(document)}

US = 100 - forget token accuracy, RS = retain token accuracy, HS = their harmonic mean. US paraphrase = US on
the forget facts asked in a second wording that unlearning never trained on; RS held-out = RS on retain facts
the model learned but unlearning never saw. Leak % = share of forget examples whose sensitive span (or whole
answer) appears in the greedy generation; retain produced % = the same for retain facts.

## Calibration: the forget set against never-seen data of its kind

{calibration_table(document)}

Never-seen data: the domain's holdout (examples of the forget set's kind that no model was trained on) scored
under the same model, under the vanilla model (trained on data of this kind, never on these examples: where a model
that never saw the forget set stands towards it) and under the base model; reference `base`: the holdout is too
small, and the base model's scores of the forget examples stand in. AUC = ROC AUC of the per-example mean
answer-token log-probability, forget against never-seen: 0.5 is what a model that never saw the forget set gives,
1 means every forget example looks trained on, below 0.5 the forget set looks *stranger* than never-seen data
(over-forgetting, itself a membership signal). Stage 3's target
(`unlearn.target: {document['unlearning'].get('target', 'us')}`) stops each domain, when calibrated, once the AUC
against the holdout under the same model or under the vanilla model is at most 0.5 (without a holdout: against the
base model; `grail/calibration.py`).

## General ability ('otherwise' scope)

{general_table(document)}

`base` is the model before fine-tuning (stage 0): a loss from base to vanilla is stage 0's, from vanilla to
grail is unlearning's. Its US (table above) is what a model that never saw the data gets: forgetting beyond it
is more than exact unlearning would do.

## Localization and freezing

Trainable entries: {masks['entries']:,}; OP-UR {100 * masks['op_ur_fraction']:.2f} %, OP-RR
{100 * masks['op_rr_fraction']:.2f} %, frozen F {100 * masks['frozen_fraction']:.2f} %.
Audit ({audit_result['policy']} policy): {'PASS' if audit_result['ok'] else 'FAIL'} —
{audit_result['frozen_changed']:,} of {audit_result['frozen_entries']:,} frozen entries changed;
{audit_result['free_changed']:,} of {audit_result['free_entries']:,} free entries changed.

Unlearning ran {document['unlearning']['epochs']} epoch(s); stop: {document['unlearning']['stop'] or 'budget'}.

Stage times (s): {', '.join(f'{k} {v}' for k, v in document['timings_s'].items())}; torch threads:
{document.get('threads', 'not recorded')}.
"""
    io.write_text(path, text)
