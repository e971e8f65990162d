"""collect's index file is parsed by orjson, and reads as `json` would read it: what orjson refuses
(strict JSON only) goes to `json`, so no index written by `json.dumps` is read differently or lost.
One difference is left: integers past 64 bits come back as floats; no index holds one (stat numbers
and counts are far below), and a stat number read so is refused and its folders read again (tested)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from tables_fixture import finished_sweep
from test_index_changes import SPEC, _cold, _paths, _read

from orchestrator.results import index_file, reader

# What the index holds: texts (folder names that are no UTF-8 become lone surrogates), integers
# (stat numbers, counts: within 64 bits), finite floats, None, booleans, nested in lists and objects.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.builds(lambda head, low: head + chr(low), st.text(), st.integers(0xDC80, 0xDCFF)),
)
_DOCUMENTS = st.recursive(_SCALARS, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=30)


@given(_DOCUMENTS)
def test_the_index_reads_as_json_reads_it(document: Any) -> None:
    raw = json.dumps(document, separators=(",", ":")).encode()
    assert json.dumps(index_file._loads(raw)) == json.dumps(json.loads(raw))


def test_a_folder_name_that_is_no_utf8_is_named_and_keeps_the_index(write_spec: Callable[..., Path]) -> None:
    """A stray folder whose name is not UTF-8 (os.listdir gives a lone surrogate): a problem named by
    its escaped name at every read, never in the index or runs.csv (no output file can hold it as it
    is); the second read still takes every row from the index."""
    spec, runs = finished_sweep(write_spec(SPEC))
    os.mkdir(os.fsencode(spec.output_path / "runs") + b"/stray-\xff")
    first = _read(spec, runs)
    assert first.read_runs > 0 and "stray-" not in _paths(spec)[0].read_text()
    again = _read(spec, runs)
    assert again.read_runs == 0
    for read in (first, again):
        assert [p.reason for p in read.problems if p.run_id == "stray-\\xff"] == [reader.NOT_UTF8]


def test_an_integer_past_64_bits_in_the_index_is_never_believed(write_spec: Callable[..., Path]) -> None:
    """An edited index with a stat number json reads as an int and orjson as a float: the rows
    read are still those of the folders' files."""
    spec, runs = finished_sweep(write_spec(SPEC))
    _read(spec, runs)
    path = _paths(spec)[0]
    document = json.loads(path.read_text())
    document["files"][0]["stat"][0] = 2**70
    path.write_text(json.dumps(document))
    again = _read(spec, runs)
    assert again.read_runs >= 1
    assert again.frame.drop(columns="path").equals(_cold(spec, runs).drop(columns="path"))


_COLUMN_SCALARS = st.one_of(  # a status.json's NaN or infinity, an integer past 64 bits
    _SCALARS, st.floats(), st.sampled_from([math.nan, math.inf, -math.inf]), st.integers(-(2**70), 2**70)
)


@example([[1.0, math.nan]], [])
@example([[math.inf, -math.inf, 2.0]], [])
@example([[1e308, 1e308]], [])
@given(st.lists(st.lists(_COLUMN_SCALARS, max_size=12), max_size=4), st.lists(_SCALARS, max_size=3))
def test_the_index_written_fast_reads_back_as_json_writes_it(columns: list[list[Any]], names: list[Any]) -> None:
    document = {"names": names, "values": [index_file._encoded_column(c) for c in columns]}
    written = index_file._json(document)
    expected = json.dumps(document, separators=(",", ":"))
    read = index_file._loads(written.encode("utf-8", "surrogatepass"))
    assert json.dumps(read) == json.dumps(index_file._loads(expected.encode())), "read as the json-written file reads"
