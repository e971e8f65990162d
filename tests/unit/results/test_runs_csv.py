"""runs.csv through the csv module is byte for byte what pandas' to_csv writes (results.runs_csv)."""

from __future__ import annotations

import itertools
import math

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.results.runs_csv import csv_text, header_line, rows_text

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e16, 1e-5, 0.1, -0.0, 5e-324, 1e22])
# Texts the dialect quotes or that sit on the edge of the unquoted fast path (empty, spaces, tabs,
# line and paragraph separators, vertical tabs).
SPECIAL = st.sampled_from(["", ",", '"', "\n", "\r", " a", "x\r\ny", "a\tb", "\u2028", "\x0b", "é,", "plain"])
REPEATED = st.sampled_from([0.5, 1.5, -0.0, 0.0, math.nan, 2.0])  # a float column's memo, zeros apart
CELLS = st.one_of(st.none(), TEXT, SPECIAL, FLOATS, st.integers(-(10**18), 10**18), st.booleans())


def _columns(rows: int) -> st.SearchStrategy[list[object]]:
    return st.one_of(
        st.lists(FLOATS, min_size=rows, max_size=rows),
        st.lists(REPEATED, min_size=rows, max_size=rows),
        st.lists(st.one_of(st.none(), FLOATS), min_size=rows, max_size=rows),
        st.lists(st.one_of(st.none(), TEXT, SPECIAL), min_size=rows, max_size=rows),
        st.lists(st.integers(-(10**18), 10**18), min_size=rows, max_size=rows),
        st.lists(st.booleans(), min_size=rows, max_size=rows),
        st.lists(CELLS, min_size=rows, max_size=rows),  # a column of mixed types
    )


@given(
    st.integers(1, 12).flatmap(lambda rows: st.lists(_columns(rows), min_size=1, max_size=6)),
    st.lists(st.one_of(TEXT, SPECIAL), min_size=6, max_size=6, unique=True),
)
def test_the_same_bytes_as_pandas(columns: list[list[object]], names: list[str]) -> None:
    frame = pd.DataFrame({name: values for name, values in zip(names, columns, strict=False)})
    assert csv_text(frame) == frame.to_csv(index=False)


@given(
    st.integers(1, 12).flatmap(lambda rows: st.lists(_columns(rows), min_size=2, max_size=6)),
    st.lists(st.integers(0, 12), max_size=3),
)
def test_slices_of_rows_join_to_the_whole(columns: list[list[object]], cuts: list[int]) -> None:
    """The rows formatted a slice at a time (as runs.csv's workers do) are the whole frame's lines:
    a slice keeps the frame's dtypes (an int column with a missing value elsewhere stays float)."""
    frame = pd.DataFrame({f"c{i}": values for i, values in enumerate(columns)})
    bounds = sorted({0, len(frame), *(min(cut, len(frame)) for cut in cuts)})
    parts = [rows_text(frame, pair) for pair in itertools.pairwise(bounds)]
    assert header_line(frame) + "".join(parts) == csv_text(frame)


def test_the_edges_pandas_has() -> None:
    assert csv_text(pd.DataFrame()) == pd.DataFrame().to_csv(index=False)
    empty = pd.DataFrame(columns=["a", "b"])
    assert csv_text(empty) == empty.to_csv(index=False)
    frame = pd.DataFrame({"x": [math.nan, 1.0], "y": ["", None], "z": ['a,"b"\nc', "é"]})
    assert csv_text(frame) == frame.to_csv(index=False)


def test_repeated_floats_keep_their_own_text() -> None:
    """A float column of few distinct values is rendered once per value: 0.0 and -0.0 stay apart
    (one dict key), and so do NaN (an empty cell) and the rest."""
    zeros = pd.DataFrame({"z": [0.0, -0.0] * 8, "n": [math.nan, 1.5, 2.5, 1.5] * 4})
    assert csv_text(zeros) == zeros.to_csv(index=False)
    assert csv_text(zeros).splitlines()[1:3] == ["0.0,", "-0.0,1.5"]
