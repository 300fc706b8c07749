"""Text of tables and numbers: Markdown and CSV tables and the number formats of report.md, the comparison
tables, attacks.md and the exported model card.

It imports nothing of grail, so any module that writes a table can use it without importing another writer.
"""

from __future__ import annotations

import csv
import math
from io import StringIO
from typing import Any


def markdown_cell(value: Any) -> str:
    """A comparison-table cell: '-' when missing (None, nan), three decimals below 10 and two from 10 (a ratio of
    1.255 is not 1.25), scientific notation from 1e4 and below 1e-3 (a p-value of 6e-10 is not 0.000); text as is."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if math.isinf(value):
        return "inf"
    if math.isnan(value):
        return "-"
    if abs(value) >= 1e4:
        return f"{value:.2e}"
    if 0 < abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.3f}" if 0 < abs(value) < 10 else f"{value:.2f}"


def markdown(header: list[str], rows: list[list]) -> str:
    """A Markdown table of ``rows`` under ``header``, each cell as ``markdown_cell`` writes it; ends with a
    newline."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: list[str], rows: list[list]) -> str:
    """A CSV table of ``rows`` under ``header``; a missing value (None) is an empty field."""
    buffer = StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def fixed(value: float | str | None, digits: int = 2) -> str:
    """report.md's numbers: ``digits`` decimals, '-' when missing, 'inf', and scientific notation from 1e5 (a
    collapsed model's perplexity); text is read as a number (JSON holds inf and nan as strings)."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = float(value)
    if math.isinf(value):
        return "inf"
    return f"{value:.2e}" if abs(value) >= 1e5 else f"{value:.{digits}f}"


def fixed_or_missing(value: float | None, digits: int = 1, missing: str = "—") -> str:
    """``digits`` decimals, or ``missing`` for None: the model card writes an em dash, attacks.md an en dash."""
    return missing if value is None else f"{value:.{digits}f}"
