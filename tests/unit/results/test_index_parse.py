"""collect's index file is parsed by orjson, and reads as `json` would read it: what orjson refuses
(strict JSON only) goes to `json`, so no index written by `json.dumps` is read differently or lost."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from tables_fixture import finished_sweep
from test_index_changes import SPEC, _paths, _read

from orchestrator.results import index_file

# What the index holds: texts (folder names that are no UTF-8 become lone surrogates), integers
# (stat numbers; any size json writes), finite floats, None, booleans, nested in lists and objects.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.builds(lambda head, low: head + chr(low), st.text(), st.integers(0xDC80, 0xDCFF)),
)
_DOCUMENTS = st.recursive(_SCALARS, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=30)


@given(_DOCUMENTS)
def test_the_index_reads_as_json_reads_it(document: Any) -> None:
    raw = json.dumps(document, separators=(",", ":")).encode()
    assert json.dumps(index_file._loads(raw)) == json.dumps(json.loads(raw))


def test_a_folder_name_that_is_no_utf8_keeps_the_index(write_spec: Callable[..., Path]) -> None:
    """A stray folder whose name is not UTF-8 (its name reaches the index as a lone surrogate): the
    second read still takes every row from the index (orjson alone refused the file: all read again)."""
    spec, runs = finished_sweep(write_spec(SPEC))
    os.mkdir(os.fsencode(spec.output_path / "runs") + b"/stray-\xff")
    first = _read(spec, runs)
    assert first.read_runs > 0 and "stray-\\udcff" in _paths(spec)[0].read_text()  # json's escape
    assert _read(spec, runs).read_runs == 0
