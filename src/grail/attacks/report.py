"""The attacks' summary against the oracle (attacks.json), its verdicts, and attacks.md.

Every number of a model is put beside the oracle's, the model that never saw the forget set: what exact
unlearning would give. Pass / fail uses the thresholds of the run's ``attack`` config section.

A run that brought its own vanilla model has no oracle (grail does not know what else it was trained on): the
holdout, never-seen examples of the forget set's kind, is the reference then. Membership inference is judged by the
forget set's AUC against the holdout under the model itself (0.5: indistinguishable), forget quality compares the
forget losses with the holdout's, and the leak rates of relearning, precision and prompt attacks are put beside 0
(a model that never saw the forget set is assumed to leak none of it, which is the stricter bar).
"""

from __future__ import annotations

from collections.abc import Callable

from grail.attacks.mia import (
    MIA_SCORES,
    bootstrap_interval,
    forget_quality,
    privleak,
    tpr_at_fpr,
)
from grail.attacks.relearn import recovery
from grail.config import AttackConfig
from grail.metrics import roc_auc
from grail.model_names import ModelName
from grail.tables import fixed_or_missing, markdown

NEVER_SEEN_AUC = 0.5
"""Without an oracle, the AUC a model that never saw the forget set has against the holdout."""


def has_oracle(reports: dict[str, dict]) -> bool:
    """Whether the attacks are judged against the oracle (else against the holdout: a brought vanilla model)."""
    return ModelName.ORACLE in reports


def _first(models: dict):
    """A model's entry, the reference's when there is one: what every model's entry is shaped like."""
    return models.get(ModelName.ORACLE, next(iter(models.values())))


def _picker(index: list[int] | None) -> Callable[[list[float]], list[float]]:
    """The scores at ``index`` (None: all of them)."""
    return lambda scores: scores if index is None else [scores[i] for i in index]


def mia_summary(reports: dict[str, dict], config: AttackConfig, seed: int,
                members: dict[str, list[int]] | None = None) -> dict:
    """{domain: {model: {score: {auc, auc_ci, tpr, tpr_ci, privleak}, forget_quality, auc_in_oracle_ci}}}. The
    members are the forget examples the holdout stands for (``members``: their indices per domain, ``Domain.members``;
    missing: every one); forget quality takes the whole forget set. Without an oracle, ``privleak`` is relative to an
    AUC of 0.5, ``forget_quality`` compares the forget losses with the holdout's under the same model and
    ``auc_in_oracle_ci`` says whether every score's interval holds 0.5."""
    out: dict[str, dict] = {}
    for domain in _first(reports)["mia"]:
        of_members = _picker((members or {}).get(domain))
        oracle = reports[ModelName.ORACLE]["mia"][domain] if has_oracle(reports) else None
        out[domain] = {}
        oracle_auc = {k: NEVER_SEEN_AUC if oracle is None else roc_auc(of_members(oracle["forget"][k]),
                                                                        oracle["holdout"][k]) for k in MIA_SCORES}
        for name, report in reports.items():
            sets = report["mia"][domain]
            row: dict = {}
            for k in MIA_SCORES:
                members_k, others = of_members(sets["forget"][k]), sets["holdout"][k]

                def tpr(a, b):
                    return tpr_at_fpr(a, b, config.fpr)

                auc = roc_auc(members_k, others)
                row[k] = {"auc": auc, "auc_ci": bootstrap_interval(members_k, others, roc_auc, config.bootstrap, seed),
                          "tpr": tpr(members_k, others),
                          "tpr_ci": bootstrap_interval(members_k, others, tpr, config.bootstrap, seed),
                          "privleak": privleak(auc, oracle_auc[k])}
            # the forget losses are minus the LOSS score (the mean answer-token log-probability)
            reference = sets["holdout"] if oracle is None else oracle["forget"]
            row["forget_quality"] = forget_quality([-x for x in sets["forget"]["loss"]],
                                                   [-x for x in reference["loss"]])
            if name == ModelName.VANILLA and oracle is not None:  # the calibrated stop's reference judged by the oracle
                row["holdout_vs_oracle_forget"] = forget_quality([-x for x in sets["holdout"]["loss"]],
                                                                 [-x for x in of_members(oracle["forget"]["loss"])])
            out[domain][name] = row
        for row in out[domain].values():
            if oracle is None:
                row["auc_in_oracle_ci"] = all(row[k]["auc_ci"][0] <= NEVER_SEEN_AUC <= row[k]["auc_ci"][1]
                                              for k in MIA_SCORES)
            else:
                row["auc_in_oracle_ci"] = all(out[domain][ModelName.ORACLE][k]["auc_ci"][0] <= row[k]["auc"]
                                              <= out[domain][ModelName.ORACLE][k]["auc_ci"][1] for k in MIA_SCORES)
    return out


def relearn_summary(reports: dict[str, dict]) -> dict:
    """{domain: {model: {"curve": {k: {US, leak_rate}}, "recovery": {k: value or None},
    "recovery_accuracy": {k: ...}}}}: recovery of the leak rate (the verdict's) and of the answer-token accuracy
    (100 - US, which moves before whole answers come back)."""
    steps = list(_first(reports)["relearn"])
    out: dict[str, dict] = {}
    for domain in _first(reports)["relearn"][steps[0]]:
        vanilla = reports[ModelName.VANILLA]["relearn"][steps[0]][domain]
        oracle = {k: reports[ModelName.ORACLE]["relearn"][k][domain] if has_oracle(reports) else
                  {"leak_rate": 0.0, "US": 100.0} for k in steps}  # without one: leaks nothing, knows nothing
        out[domain] = {}
        for name, report in reports.items():
            curve = {k: {m: report["relearn"][k][domain][m] for m in ("US", "leak_rate")} for k in steps}
            out[domain][name] = {
                "curve": curve,
                "recovery": {k: recovery(curve[k]["leak_rate"], oracle[k]["leak_rate"], vanilla["leak_rate"])
                             for k in steps},
                "recovery_accuracy": {k: recovery(100 - curve[k]["US"], 100 - oracle[k]["US"], 100 - vanilla["US"])
                                      for k in steps}}
    return out


def _against_oracle(reports: dict[str, dict], attack: str) -> dict:
    """{domain: {model: {variant: {US, leak_rate, ..., excess}}}} for ``precision`` or ``prompts`` (each report:
    {domain: {variant: scores}}; models without that attack are left out); ``excess`` = the leak rate minus the
    oracle's under the same variant (without an oracle: the leak rate itself)."""
    oracle = _first({n: r for n, r in reports.items() if attack in r})[attack]

    def reference(domain: str, variant: str) -> float:
        return oracle[domain][variant]["leak_rate"] if has_oracle(reports) else 0.0

    return {domain: {name: {v: {**{k: x for k, x in s.items() if k not in ("leaks", "n")},
                                "excess": s["leak_rate"] - reference(domain, v)}
                            for v, s in report[attack][domain].items()}
                     for name, report in reports.items() if attack in report}
            for domain in oracle}


def worst_recovery(relearned: dict) -> float | None:
    """The highest recovery along the relearning curve, step 0 included (a model that never forgot has recovery 1
    before the attack; one that only hides may peak before the last step)."""
    values = [r for r in relearned["recovery"].values() if r is not None]
    return max(values) if values else None


def verdicts(summary: dict, config: AttackConfig) -> dict:
    """{model: {domain: {attack: "pass" | "fail" | "n/a"}}} against the config's thresholds (relearning: the
    worst recovery along the curve)."""
    def judge(ok: bool | None) -> str:
        return "n/a" if ok is None else "pass" if ok else "fail"

    out: dict[str, dict] = {}
    for domain, models in summary["mia"].items():
        for name, row in models.items():
            rec = worst_recovery(summary["relearn"][domain][name])
            out.setdefault(name, {})[domain] = {
                "membership_inference": judge(row["auc_in_oracle_ci"] if config.max_privleak is None else
                                              max(abs(row[k]["privleak"]) for k in MIA_SCORES) <= config.max_privleak),
                "forget_quality": judge(row["forget_quality"] >= config.min_forget_quality),
                "relearning": judge(None if rec is None else rec <= config.max_relearn_recovery),
                "precision": judge(None if name not in summary["precision"][domain] else all(
                    s["excess"] <= config.max_leak_excess for s in summary["precision"][domain][name].values())),
                "prompts": judge(all(s["excess"] <= config.max_leak_excess
                                     for s in summary["prompts"][domain][name].values())),
            }
    return out


def summarize(reports: dict[str, dict], config: AttackConfig, seed: int,
              members: dict[str, list[int]] | None = None) -> dict:
    """attacks.json: every attack's summary per domain and model, and the verdicts (``members``: ``mia_summary``)."""
    summary = {"models": list(reports), "thresholds": {k: getattr(config, k) for k in (
        "max_privleak", "min_forget_quality", "max_relearn_recovery", "max_leak_excess")},
               "mia": mia_summary(reports, config, seed, members), "relearn": relearn_summary(reports),
               "precision": _against_oracle(reports, "precision"),
               "prompts": _against_oracle(reports, "prompts"),
               "reference": ModelName.ORACLE if has_oracle(reports) else "holdout"}
    summary["verdicts"] = verdicts(summary, config)
    return summary


# ---- attacks.md -------------------------------------------------------------------------------------------
def _ordered(models) -> list[str]:
    return [ModelName.ORACLE] * (ModelName.ORACLE in models) + [m for m in models if m != ModelName.ORACLE]


def _recovery_text(value: float | None) -> str:
    """A recovery with two decimals, an en dash when the oracle and vanilla models leave nothing to recover."""
    return fixed_or_missing(value, 2, missing="–")


def _rules(thresholds: dict, oracle: bool = True) -> str:
    privleak = thresholds["max_privleak"]
    within = "every score's AUC within the oracle's 95 % interval" if oracle else \
        "every score's 95 % AUC interval holds 0.5"
    return ("membership inference: " + (within if privleak is None else f"|PrivLeak| <= {privleak:g} for every score")
            + f"; forget quality: KS p >= {thresholds['min_forget_quality']:g}; relearning: the worst leak recovery "
            f"<= {thresholds['max_relearn_recovery']:g}; precision and prompts: leak rate <= "
            f"{'the oracle' + chr(39) + 's + ' if oracle else ''}{thresholds['max_leak_excess']:g} points.")


def attacks_markdown(summary: dict) -> str:
    oracle = summary.get("reference", ModelName.ORACLE) == ModelName.ORACLE
    intro = ("The oracle never saw the forget sets (stage 0 without them): it is what exact unlearning gives, and the "
             "reference row of every table." if oracle else
             "This run brought its own vanilla model, so there is no oracle (grail does not know what else it was "
             "trained on): the attacks are judged against the holdout, examples of the forget set's kind that no "
             "model saw. Membership inference: the forget set's AUC against the holdout under each model, 0.5 the "
             "target (PrivLeak relative to 0.5); forget quality: the KS p-value of the forget losses against the "
             "holdout's under the same model; relearning, precision and prompts: leak rates against 0 (a model that "
             "never saw the forget set is taken to leak none of it).")
    parts = ["# Attacks against the " + ("oracle" if oracle else "holdout (no oracle)"), "",
             intro + " Pass / fail (config `attack`): " + _rules(summary["thresholds"], oracle)]
    for domain, models in summary["mia"].items():
        parts += ["", f"## Membership inference: {domain}", "",
                  "ROC AUC of forget (members) vs holdout (non-members) with its bootstrap 95 % interval; 0.5: "
                  "indistinguishable. " + ("PrivLeak relative to the oracle's AUC; forget quality: KS p-value of the "
                                           "forget losses against the oracle's." if oracle else
                                           "PrivLeak relative to 0.5; forget quality: KS p-value of the forget losses "
                                           "against the holdout's."), ""]
        rows = []
        for name in _ordered(models):
            row = models[name]
            rows.append([name] + [f"{row[k]['auc']:.3f} [{row[k]['auc_ci'][0]:.2f}, {row[k]['auc_ci'][1]:.2f}]"
                                  for k in MIA_SCORES]
                        + [f"{row['min_k_plus_plus']['tpr']:.2f}", f"{row['loss']['privleak']:+.3f}",
                           f"{row['min_k_plus_plus']['privleak']:+.3f}", f"{row['forget_quality']:.3g}",
                           "yes" if row["auc_in_oracle_ci"] else "no"])
        parts.append(markdown(["model", "AUC LOSS", "AUC zlib", "AUC Min-K%", "AUC Min-K%++", "TPR@FPR (Min-K%++)",
                             "PrivLeak (LOSS)", "PrivLeak (Min-K%++)", "forget quality",
                             "every AUC in oracle's CI" if oracle else "every AUC's CI holds 0.5"],
                            rows))
        if "holdout_vs_oracle_forget" in models.get(ModelName.VANILLA, {}):
            reference = models[ModelName.VANILLA]["holdout_vs_oracle_forget"]
            parts += ["", "The calibrated stop's reference, the holdout under the vanilla model, against the oracle's "
                      f"forget losses: KS p {reference:.3g} (at least 0.05: the reference is where a model that never "
                      "saw the forget set stands towards it)."]
    for domain, models in summary["relearn"].items():
        steps = list(_first(models)["curve"])
        parts += ["", f"## Relearning: {domain}", "",
                  "Leak rate % (US) on the measured half V after k steps of fine-tuning on the other half T; "
                  "recovery = (leak(model, k) - leak(oracle, k)) / (leak(vanilla, 0) - leak(oracle, k)), and the "
                  "same of the answer-token accuracy (100 - US)" + ("" if oracle else "; without an oracle, its leak "
                                                                    "rate and accuracy are taken as 0") + ".", ""]
        rows = [[name] + [f"{models[name]['curve'][k]['leak_rate']:.1f} ({models[name]['curve'][k]['US']:.1f})"
                          for k in steps]
                + [_recovery_text(models[name]["recovery"][steps[-1]]), _recovery_text(worst_recovery(models[name])),
                   _recovery_text(models[name]["recovery_accuracy"][steps[-1]])]
                for name in _ordered(models)]
        parts.append(markdown(["model"] + [f"@{k}" for k in steps]
                            + [f"recovery @{steps[-1]}", "worst recovery", f"accuracy recovery @{steps[-1]}"], rows))
    for attack, title in (("precision", "Precision"), ("prompts", "Prompt attacks")):
        for domain, models in summary[attack].items():
            variants = list(_first(models))
            parts += ["", f"## {title}: {domain}", "", "Leak rate % (US in parentheses)" + (
                "; the vanilla model is left out (never unlearned)" if attack == "precision" else "") + (
                "; prefix completion: leak rate, ROUGE-L recall / VerbMem" if "prefix_completion" in variants else "")
                + ".", ""]
            rows = []
            for name in _ordered(models):
                cells = []
                for v in variants:
                    s = models[name][v]
                    cells.append(f"{s['leak_rate']:.1f} ({s['US']:.1f})" if v != "prefix_completion" else
                                 f"{s['leak_rate']:.1f}, {s['rouge_l_recall']:.1f} / {s['verbmem']:.1f}")
                rows.append([name] + cells)
            parts.append(markdown(["model"] + variants, rows))
    parts += ["", "## Verdicts", ""]
    attacks = ["membership_inference", "forget_quality", "relearning", "precision", "prompts"]
    rows = [[name, domain] + [summary["verdicts"][name][domain][a] for a in attacks]
            for name in _ordered(summary["verdicts"]) for domain in summary["verdicts"][name]]
    parts.append(markdown(["model", "domain"] + attacks, rows))
    return "\n".join(part.rstrip("\n") for part in parts) + "\n"  # markdown() ends its tables with a newline


def robustness_rows(summary: dict) -> tuple[list[str], list[list]]:
    """``grail compare``'s robustness table: per model and domain, the headline number of every attack."""
    header = ["model", "domain", "MIA AUC (Min-K%++)", "PrivLeak (LOSS)", "forget quality", "relearn recovery",
              "worst recovery", "accuracy recovery", "relearn leak %", "4-bit leak %", "worst prompt leak %",
              "attacks passed"]
    rows = []
    for name in _ordered(summary["verdicts"]):
        for domain, verdict in summary["verdicts"][name].items():
            mia, relearned = summary["mia"][domain][name], summary["relearn"][domain][name]
            last = list(relearned["curve"])[-1]
            four_bit = [s["leak_rate"] for fmt, s in summary["precision"][domain].get(name, {}).items()
                        if fmt in ("int4", "nf4")]
            rows.append([name, domain, mia["min_k_plus_plus"]["auc"], mia["loss"]["privleak"], mia["forget_quality"],
                         relearned["recovery"][last], worst_recovery(relearned),
                         relearned["recovery_accuracy"][last], relearned["curve"][last]["leak_rate"],
                         max(four_bit) if four_bit else None,
                         max(s["leak_rate"] for s in summary["prompts"][domain][name].values()),
                         f"{sum(v == 'pass' for v in verdict.values())}/{sum(v != 'n/a' for v in verdict.values())}"])
    return header, rows
