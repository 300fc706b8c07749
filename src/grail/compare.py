"""Comparison tables in the paper's shape (Table I: per domain forget/retain success, PPL, ROUGE-L and the
average success; Table V: harmonic success), as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io as text_io
import math
from pathlib import Path

from grail import io
from grail.methods import ABLATIONS, STRATEGIES


def _number(value) -> float:
    return float(value) if isinstance(value, str) else value


def table_rows(scores: dict[str, dict]) -> tuple[list[str], list[list[float]], list[str], list[list[float]]]:
    """(Table I header, rows, Table V header, rows); the first cell of each row is the method name."""
    domains = list(next(iter(scores.values()))["domains"])
    header_1 = ["method"]
    for d in domains:
        header_1 += [f"{d} US", f"{d} forget PPL", f"{d} forget ROUGE-L", f"{d} RS", f"{d} retain PPL",
                     f"{d} retain ROUGE-L"]
    header_1.append("avg. success")
    header_5 = ["method", *(f"{d} HS" for d in domains), "avg. HS"]
    rows_1, rows_5 = [], []
    for name, s in scores.items():
        row = [name]
        for d in domains:
            x = s["domains"][d]
            row += [x["US"], _number(x["forget"]["ppl"]), x["forget"]["rouge_l"], x["RS"],
                    _number(x["retain"]["ppl"]), x["retain"]["rouge_l"]]
        row.append(s["average"]["success"])
        rows_1.append(row)
        rows_5.append([name, *(s["domains"][d]["HS"] for d in domains), s["average"]["HS"]])
    return header_1, rows_1, header_5, rows_5


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    if math.isinf(value):
        return "inf"
    if math.isnan(value):
        return "-"
    return f"{value:.2e}" if abs(value) >= 1e4 else f"{value:.2f}"


def markdown(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv(header: list[str], rows: list[list]) -> str:
    buffer = text_io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def success_rows(scores: dict[str, dict], names: list[str]) -> tuple[list[str], list[list]]:
    """Tables IV and VI: US and RS per domain and the average success, for the named methods present."""
    domains = list(next(iter(scores.values()))["domains"])
    header = ["method", *(f"{d} {k}" for d in domains for k in ("US", "RS")), "avg. success"]
    rows = [[n, *(scores[n]["domains"][d][k] for d in domains for k in ("US", "RS")), scores[n]["average"]["success"]]
            for n in ["vanilla", *names] if n in scores]
    return header, rows


def write_comparison(folder: Path, scores: dict[str, dict]) -> dict:
    """Write Table I, IV, V and VI as Markdown and CSV, and comparison.json; returns the JSON document."""
    header_1, rows_1, header_5, rows_5 = table_rows(scores)
    tables = {"table1": (header_1, rows_1), "table4_strategies": success_rows(scores, STRATEGIES),
              "table5_hs": (header_5, rows_5), "table6_ablations": success_rows(scores, ABLATIONS)}
    document: dict = {}
    for stem, (header, rows) in tables.items():
        if len(rows) <= 1:  # only the vanilla row: none of this table's methods ran
            continue
        io.write_text(folder / f"{stem}.md", markdown(header, rows))
        io.write_text(folder / f"{stem}.csv", _csv(header, rows))
        document[stem] = {"header": header, "rows": rows}
    document["general"] = {name: s.get("general") for name, s in scores.items()}
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
    io.write_text(folder / "table2_general.csv", _csv(header, rows))
