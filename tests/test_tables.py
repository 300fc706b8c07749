"""The text of tables and numbers that report.md, the comparison tables, attacks.md and the model card share."""

import math

import pytest

from grail.tables import csv_text, fixed, fixed_or_missing, markdown, markdown_cell


@pytest.mark.parametrize("value,text", [
    (None, "-"), (math.nan, "-"), (math.inf, "inf"), (-math.inf, "inf"), ("yes", "yes"),
    (0, "0.00"), (0.0, "0.00"), (1.2554, "1.255"), (9.9994, "9.999"), (10.0, "10.00"), (-3.5, "-3.500"),
    (123.456, "123.46"), (9999.0, "9999.00"), (12345.0, "1.23e+04"), (6e-10, "6.0e-10"), (0.001, "0.001"),
])
def test_markdown_cells_keep_small_and_large_numbers_readable(value, text):
    assert markdown_cell(value) == text


def test_a_markdown_table_has_a_header_a_rule_and_one_line_per_row_ending_with_a_newline():
    assert markdown(["method", "avg. HS", "note"], [["grail", 81.23456, None], ["npo", 0.5, "inf"]]) == (
        "| method | avg. HS | note |\n"
        "|---|---|---|\n"
        "| grail | 81.23 | - |\n"
        "| npo | 0.500 | inf |\n")
    assert markdown(["model"], []) == "| model |\n|---|\n"


def test_csv_writes_missing_values_as_empty_fields_and_quotes_commas():
    assert csv_text(["model", "PPL", "note"], [["grail", 12.5, None], ["a, b", math.inf, "x"]]) == (
        "model,PPL,note\r\ngrail,12.5,\r\n\"a, b\",inf,x\r\n")


@pytest.mark.parametrize("value,digits,text", [
    (None, 2, "-"), (12.3456, 2, "12.35"), (12.3456, 1, "12.3"), (0.1234, 3, "0.123"), ("inf", 2, "inf"),
    (math.inf, 2, "inf"), ("12.5", 1, "12.5"), (99999.0, 2, "99999.00"), (123456.0, 2, "1.23e+05"),
    (-2e5, 1, "-2.00e+05"), ("nan", 2, "nan"),
])
def test_fixed_reads_json_strings_and_switches_to_scientific_notation_from_1e5(value, digits, text):
    assert fixed(value, digits) == text


def test_fixed_or_missing_writes_the_dash_it_is_given():
    assert fixed_or_missing(None) == "—"  # em dash: the model card
    assert fixed_or_missing(None, 2, missing="–") == "–"  # en dash: attacks.md
    assert fixed_or_missing(12.345) == "12.3"
    assert fixed_or_missing(0.256, 2) == "0.26"
    assert fixed_or_missing(123456.0) == "123456.0"
