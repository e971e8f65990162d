"""runs.csv through the csv module is byte for byte what pandas' to_csv writes (results.runs_csv)."""

from __future__ import annotations

import math

import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.results.runs_csv import csv_text

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e16, 1e-5, 0.1, -0.0, 5e-324, 1e22])
CELLS = st.one_of(st.none(), TEXT, FLOATS, st.integers(-(10**18), 10**18), st.booleans())


@given(
    st.lists(
        st.one_of(
            st.lists(FLOATS, min_size=4, max_size=4),
            st.lists(st.one_of(st.none(), FLOATS), min_size=4, max_size=4),
            st.lists(st.one_of(st.none(), TEXT), min_size=4, max_size=4),
            st.lists(st.integers(-(10**18), 10**18), min_size=4, max_size=4),
            st.lists(st.booleans(), min_size=4, max_size=4),
            st.lists(CELLS, min_size=4, max_size=4),  # a column of mixed types
        ),
        min_size=1,
        max_size=6,
    ),
    st.lists(TEXT, min_size=6, max_size=6, unique=True),
)
def test_the_same_bytes_as_pandas(columns: list[list[object]], names: list[str]) -> None:
    frame = pd.DataFrame({name: values for name, values in zip(names, columns, strict=False)})
    assert csv_text(frame) == frame.to_csv(index=False)


def test_the_edges_pandas_has() -> None:
    assert csv_text(pd.DataFrame()) == pd.DataFrame().to_csv(index=False)
    empty = pd.DataFrame(columns=["a", "b"])
    assert csv_text(empty) == empty.to_csv(index=False)
    frame = pd.DataFrame({"x": [math.nan, 1.0], "y": ["", None], "z": ['a,"b"\nc', "é"]})
    assert csv_text(frame) == frame.to_csv(index=False)
