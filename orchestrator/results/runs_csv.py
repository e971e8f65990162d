"""runs.csv's text: the bytes `DataFrame.to_csv(index=False)` writes, through the csv module.

pandas formats a float column's values with numpy (about 1.2 us a value: 0.5 s for the 460,000
floats of 10,000 runs, 5 s at 100,000); the csv module writes them with Python's float repr, the
same shortest text, in a third of the time. pandas itself writes through the csv module with the
same dialect (minimal quoting, doubled quotes, "\n" line ends), so only the cells are prepared
here: a missing value (None, NaN) is an empty cell as pandas' default `na_rep` has it.
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
