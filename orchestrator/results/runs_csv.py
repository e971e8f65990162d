"""runs.csv's text: the bytes `DataFrame.to_csv(index=False)` writes, built a column at a time.

pandas formats a float column's values with numpy (about 1.2 us a value: 0.5 s for the 460,000
floats of 10,000 runs, 5 s at 100,000) and writes every row through the csv module. Here each
column is rendered once: a float as Python's repr (the same shortest text, and never quoted), an
integer or flag as its text, and any other value through the csv module itself (its quoting, with
the same dialect pandas uses: minimal quoting, doubled quotes, "\\n" line ends), once per distinct
value (a text column repeats its versions and hosts across runs). A missing value (None, NaN) is
an empty cell as pandas' default `na_rep` has it. The rows are then the cells joined by commas:
half the time of writing 10,000 rows of 104 cells through `csv.writer` (the worker that writes
runs.csv was the last thing a second collect waited for). A frame of fewer than two columns goes
through `csv.writer` whole (a row of one empty cell is written `""` there).
tests/unit/results/test_runs_csv.py checks the bytes against pandas on hostile frames.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def csv_text(frame: pd.DataFrame) -> str:
    """The frame as `frame.to_csv(index=False)` writes it."""
    if frame.shape[1] < 2:
        return _through_writer(frame)
    return header_line(frame) + rows_text(frame, (0, len(frame)))


def header_line(frame: pd.DataFrame) -> str:
    """csv_text's first line, with its line end (a frame of two or more columns)."""
    cell = _CellWriter()
    return ",".join(cell.text(name) for name in frame.columns.tolist()) + "\n"


def rows_text(frame: pd.DataFrame, rows: tuple[int, int]) -> str:
    """csv_text's lines of the rows from `rows[0]` up to `rows[1]`, each with its line end (a frame of
    two or more columns). A cell's text depends on its value and its column's dtype alone, and a slice
    of rows keeps the frame's dtypes: the lines of consecutive slices joined are csv_text's rows."""
    return "".join(line + "\n" for line in row_lines(frame, rows))


def row_lines(frame: pd.DataFrame, rows: tuple[int, int]) -> list[str]:
    """rows_text's lines without their line ends, one per row (a quoted cell may hold a line break)."""
    part = frame.iloc[rows[0] : rows[1]]
    if part.empty:
        return []
    cell = _CellWriter()
    columns = [_column(part.iloc[:, i], cell) for i in range(part.shape[1])]
    return list(map(",".join, zip(*columns, strict=True)))


def _column(series: pd.Series, cell: _CellWriter) -> list[str]:
    """A column's cells as the csv module writes them inside a row of several."""
    values = series.tolist()
    kind = series.dtype.kind
    if kind == "f":  # Python floats: repr is str, the csv module's text for them; NaN is missing
        return _floats(values)
    if kind in "biu":  # ints and flags (True, False): no missing value, nothing to quote
        return [str(value) for value in values]
    seen: dict[tuple[type, Any], str] = {}
    out = []
    for value in values:
        kind_of = type(value)
        if value is None or (kind_of is float and value != value):
            out.append("")
        elif kind_of is float:
            out.append(repr(value))  # not by value: 0.0 == -0.0
        elif kind_of is str and value.isprintable() and "," not in value and '"' not in value:
            out.append(value)  # nothing the dialect quotes: no delimiter, quote or line break
        elif kind_of is str or kind_of is int or kind_of is bool:
            key = (kind_of, value)
            text = seen.get(key)
            if text is None:
                text = seen[key] = cell.text(value)
            out.append(text)
        else:
            out.append(cell.text(value))
    return out


def _floats(values: list[float]) -> list[str]:
    """A float column's cells: repr once per distinct value where values repeat (a config value, a
    model's GFLOPs: the same in thousands of runs). Zeros apart: 0.0 and -0.0 are one dict key."""
    distinct = set(values)
    if len(distinct) * 4 > len(values) or 0.0 in distinct:
        return ["" if value != value else repr(value) for value in values]
    text = {value: "" if value != value else repr(value) for value in distinct}
    return [text[value] for value in values]


class _CellWriter:
    """One cell's text as `csv.writer` writes it inside a row of several (quoted where it must be)."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer, lineterminator="\n")

    def text(self, value: Any) -> str:
        self.buffer.seek(0)
        self.buffer.truncate()
        self.writer.writerow((value, None))  # two cells: no single-empty-cell quoting
        return self.buffer.getvalue()[:-2]  # without the second (empty) cell's "," and the "\n"


def _through_writer(frame: pd.DataFrame) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(frame.columns.tolist())
    writer.writerows(zip(*(_cells(frame.iloc[:, i]) for i in range(frame.shape[1])), strict=True))
    return out.getvalue()


def _cells(series: pd.Series) -> list[Any]:
    """A column's values as the csv module should write them (missing: None, an empty cell)."""
    values = series.tolist()
    if series.dtype.kind in "biu":  # bool and integer columns hold no missing value
        return values
    return [None if value is None or (type(value) is float and value != value) else value for value in values]
