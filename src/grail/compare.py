"""Comparison tables in the paper's shape (Table I: per domain forget/retain success, PPL, ROUGE-L and the
average success; Table V: harmonic success), a utility table and a ranking of the methods that stay within a
general-text perplexity budget, as Markdown, CSV and JSON."""

from __future__ import annotations

import math
from pathlib import Path

from grail import io
from grail.attacks.report import robustness_rows
from grail.config import UnlearnConfig
from grail.methods import ABLATIONS, STRATEGIES
from grail.model_names import ModelName
from grail.tables import csv_text, markdown

REFERENCES = (ModelName.BASE, ModelName.VANILLA)
"""Models that are not unlearning methods: never ranked, and a table holding only them is not written."""

BUDGET: float = UnlearnConfig.utility_budget
"""Default utility budget: a method may raise the general-text perplexity to this many times vanilla's."""

UTILITY_AVERAGES = ("US", "US_paraphrase", "RS", "RS_heldout", "HS")


def _number(value) -> float:
    return float(value) if isinstance(value, str) else value


def _domains(scores: dict[str, dict]) -> list[str]:
    """The domains of the first entry that has them (a ``base`` of an older run holds only its general scores)."""
    return next((list(s["domains"]) for s in scores.values() if "domains" in s), [])


def _average(s: dict, key: str) -> float | None:
    return s.get("average", {}).get(key)


def _general(s: dict, key: str) -> float | None:
    return (s.get("general") or {}).get(key)


def general_ppl(s: dict) -> float | None:
    """The general-text perplexity as a float (inf or nan for a collapsed model: JSON holds those as strings), or
    None when general scoring was off."""
    value = _general(s, "general_text_ppl")
    return None if value is None else float(value)


def ppl_ratio(s: dict, vanilla: dict) -> float | None:
    """General-text PPL over vanilla's: the utility cost of unlearning on a scale that does not depend on the model.
    None when either is unknown or vanilla's is not a usable reference."""
    ppl, reference = general_ppl(s), general_ppl(vanilla)
    if ppl is None or reference is None or not math.isfinite(reference) or reference <= 0:
        return None
    return ppl / reference


def within_budget(s: dict, vanilla: dict, budget: float = BUDGET) -> bool | None:
    """General-text PPL at most ``budget`` × vanilla's (a collapsed model never is); None when it cannot be told."""
    ratio = ppl_ratio(s, vanilla)
    return None if ratio is None else ratio <= budget


def _shown(value: float | None) -> float | str | None:
    """inf / nan as their text, so Markdown, CSV and JSON all say so; '-' in Markdown is kept for missing (None)."""
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _utility_cells(s: dict) -> list:
    """What the model still knows, next to Table V's HS: HS alone rewards a model that forgot everything."""
    return [_average(s, "RS_heldout"), _average(s, "US_paraphrase"), _shown(general_ppl(s)),
            _general(s, "probe_accuracy"), _general(s, "mmlu_accuracy")]


def table_rows(scores: dict[str, dict]) -> tuple[list[str], list[list[float]], list[str], list[list[float]]]:
    """(Table I header, rows, Table V header, rows); the first cell of each row is the method name. Entries without
    domain scores (``base``) are left out."""
    domains = _domains(scores)
    header_1 = ["method"]
    for d in domains:
        header_1 += [f"{d} US", f"{d} forget PPL", f"{d} forget ROUGE-L", f"{d} RS", f"{d} retain PPL",
                     f"{d} retain ROUGE-L"]
    header_1.append("avg. success")
    header_5 = ["method", *(f"{d} HS" for d in domains), "avg. HS", "avg. RS_heldout", "avg. US_paraphrase",
                "general PPL", "probe %", "MMLU %"]
    rows_1, rows_5 = [], []
    for name, s in scores.items():
        if "domains" not in s:
            continue
        row = [name]
        for d in domains:
            x = s["domains"][d]
            row += [x["US"], _number(x["forget"]["ppl"]), x["forget"]["rouge_l"], x["RS"],
                    _number(x["retain"]["ppl"]), x["retain"]["rouge_l"]]
        row.append(s["average"]["success"])
        rows_1.append(row)
        rows_5.append([name, *(s["domains"][d]["HS"] for d in domains), s["average"]["HS"], *_utility_cells(s)])
    return header_1, rows_1, header_5, rows_5


def success_rows(scores: dict[str, dict], names: list[str]) -> tuple[list[str], list[list]]:
    """Tables IV and VI: US and RS per domain and the average success, for the named methods present."""
    domains = _domains(scores)
    header = ["method", *(f"{d} {k}" for d in domains for k in ("US", "RS")), "avg. success"]
    rows = [[n, *(scores[n]["domains"][d][k] for d in domains for k in ("US", "RS")), scores[n]["average"]["success"]]
            for n in [ModelName.VANILLA, *names] if n in scores and "domains" in scores[n]]
    return header, rows


def _ordered(scores: dict[str, dict]) -> list[str]:
    """base (if present), vanilla, then the methods in their order."""
    return [n for n in REFERENCES if n in scores] + [n for n in scores if n not in REFERENCES]


def utility_rows(scores: dict[str, dict], budget: float = BUDGET) -> tuple[list[str], list[list]]:
    """The utility table: forgetting, retention and general ability side by side, one row per model, and whether
    its general-text PPL is within ``budget`` × vanilla's. Missing values are None."""
    header = ["model", *(f"avg. {k}" for k in UTILITY_AVERAGES), "general PPL", "PPL ratio to vanilla", "probe %",
              "MMLU acc %", "MMLU log-prob", "within budget"]
    vanilla = scores.get(ModelName.VANILLA, {})
    rows = []
    for name in _ordered(scores):
        s = scores[name]
        within = within_budget(s, vanilla, budget)
        rows.append([name, *(_average(s, k) for k in UTILITY_AVERAGES), _shown(general_ppl(s)),
                     _shown(ppl_ratio(s, vanilla)), _general(s, "probe_accuracy"), _general(s, "mmlu_accuracy"),
                     _general(s, "mmlu_logprob"), None if within is None else ("yes" if within else "no")])
    return header, rows


def calibration_rows(scores: dict[str, dict]) -> tuple[list[str], list[list]]:
    """The calibration table: per model and domain, US beside the never-seen reference's US under the same model,
    their gap and the AUC of the forget set against it (0.5: as unfamiliar as never-seen data; ``calibration.py``).
    Models scored before calibration existed have empty cells."""
    domains = _domains(scores)
    header = ["model", *(f"{d} {k}" for d in domains
                         for k in ("US", "never-seen US", "gap", "AUC", "never-seen US (vanilla)", "AUC (vanilla)",
                                   "never-seen US (base)", "AUC (base)"))]
    rows = []
    for name in _ordered(scores):
        cells = []
        for d in domains:
            c = scores[name].get("domains", {}).get(d, {}).get("calibration") or {}
            cells += [c.get("US"), c.get("US_reference"), c.get("gap"), c.get("auc"), c.get("US_vanilla"),
                      c.get("auc_vanilla"), c.get("US_base"), c.get("auc_base")]
        rows.append([name, *cells])
    return header, rows


def ranking(scores: dict[str, dict], budget: float = BUDGET) -> dict[str, list[str]]:
    """The methods within the budget by avg. HS, best first (ranking by HS alone would reward a model that broke:
    the budget keeps the comparison to models that still work), those outside it, and those without a general-text
    PPL to judge by; the latter two also by avg. HS."""
    vanilla = scores.get(ModelName.VANILLA, {})
    methods = sorted((n for n in scores if n not in REFERENCES and "average" in scores[n]),
                     key=lambda n: -scores[n]["average"]["HS"])
    groups: dict[str, list[str]] = {"ranking_within_budget": [], "outside_budget": [], "budget_unknown": []}
    for name in methods:
        within = within_budget(scores[name], vanilla, budget)
        key = "budget_unknown" if within is None else "ranking_within_budget" if within else "outside_budget"
        groups[key].append(name)
    return groups


def ranking_markdown(scores: dict[str, dict], groups: dict[str, list[str]], budget: float = BUDGET) -> str:
    """ranking.md: the ranked methods, then those outside the budget and those it could not be checked for."""
    vanilla = scores.get(ModelName.VANILLA, {})

    def rows(names: list[str], ranked: bool) -> list[list]:
        return [[str(i) if ranked else "-", n, scores[n]["average"]["HS"], _shown(ppl_ratio(scores[n], vanilla))]
                for i, n in enumerate(names, 1)]

    header = ["rank", "method", "avg. HS", "general PPL ratio"]
    text = (f"# Ranking by avg. HS within the utility budget\n\nMethods whose general-text perplexity is at most "
            f"{budget:g} × the vanilla model's.\n\n" + markdown(header, rows(groups["ranking_within_budget"], True)))
    if groups["outside_budget"]:
        text += "\n## Outside the budget\n\n" + markdown(header, rows(groups["outside_budget"], False))
    if groups["budget_unknown"]:
        text += "\nNo general-text perplexity to check: " + ", ".join(groups["budget_unknown"]) + "\n"
    return text


def write_comparison(folder: Path, scores: dict[str, dict], budget: float = BUDGET,
                     attacks: dict | None = None) -> dict:
    """Write Table I, IV, V, VI, the utility table and (given the attacks' summary) the robustness table as
    Markdown and CSV, ranking.md, and comparison.json; returns the JSON document. ``budget``: the general-text PPL
    a method may reach, as a multiple of vanilla's."""
    header_1, rows_1, header_5, rows_5 = table_rows(scores)
    tables = {"table1": (header_1, rows_1), "table4_strategies": success_rows(scores, STRATEGIES),
              "table5_hs": (header_5, rows_5), "table6_ablations": success_rows(scores, ABLATIONS),
              "table_utility": utility_rows(scores, budget), "table_calibration": calibration_rows(scores)}
    if attacks is not None:
        tables["table_robustness"] = robustness_rows(attacks)
    document: dict = {}
    for stem, (header, rows) in tables.items():
        if all(row[0] in REFERENCES for row in rows):  # none of this table's methods ran
            continue
        io.write_text(folder / f"{stem}.md", markdown(header, rows))
        io.write_text(folder / f"{stem}.csv", csv_text(header, rows))
        document[stem] = {"header": header, "rows": rows}
    document["general"] = {name: s.get("general") for name, s in scores.items()}
    groups = ranking(scores, budget)
    document.update(budget=budget, **groups)
    if any(groups.values()):
        io.write_text(folder / "ranking.md", ranking_markdown(scores, groups, budget))
    io.write_json(folder / "comparison.json", document)
    return document


def write_general_table(folder: Path, results: dict[str, dict]) -> None:
    """Table II: each model's lm-eval accuracies (%) and their average, or its probe accuracy when offline."""
    tasks = sorted({t for r in results.values() for t in r.get("tasks", {})})
    header = ["model", *tasks, "avg.", "built-in probe %"]
    rows = []
    for name, r in results.items():
        scores = [r.get("tasks", {}).get(t, math.nan) for t in tasks]
        known = [s for s in scores if not math.isnan(s)]
        probe = r["probe"]["probe_accuracy"] if "probe" in r else math.nan
        rows.append([name, *scores, sum(known) / len(known) if known else math.nan, probe])
    io.write_text(folder / "table2_general.md", markdown(header, rows))
    io.write_text(folder / "table2_general.csv", csv_text(header, rows))
