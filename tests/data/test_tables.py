"""CSV identifiers are read as text everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from lablens.data.tables import TableError, number, read_text_csv


def test_identifiers_keep_leading_zeros_and_na_names(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("path,label,group\n001.png,01,007\n002.png,NA,\n")
    df = read_text_csv(csv)
    assert df["label"].tolist() == ["01", "NA"] and df["group"].tolist() == ["007", ""]


def test_number_names_column_and_place() -> None:
    assert number(" 0.25 ", "um_per_px", "f.csv") == 0.25 and number("", "um_per_px", "f.csv") is None
    with pytest.raises(TableError, match=r"f\.csv, row 3: um_per_px 'x' is not a number"):
        number("x", "um_per_px", "f.csv, row 3")


def test_unreadable_csv_is_a_table_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n\xff\xfe,1\n")
    with pytest.raises(TableError, match=r"bad\.csv"):
        read_text_csv(bad)
