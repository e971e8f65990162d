"""Run files' JSON read by orjson when that is surely json's reading: parse_json_object gives what
the checked json path gives (the object, or the same one-line refusal) for any bytes, duplicate keys,
texts with `:`, escapes, long integers and non-finite numbers included."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.sweep import bounded

KEYS = st.text(alphabet='ab:.\\\u00e9\u202e"', min_size=0, max_size=4)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**21), max_value=10**21)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet='ab:\\"\u00e9\x1b', max_size=5)
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=12,
)


def _outcome(read: Any, data: bytes) -> tuple[str, Any]:
    """What a reader made of `data`: ("object", value as JSON text) or ("refused", the message)."""
    try:
        value = read(data, "metrics.json")
    except bounded.Unreadable as exc:
        return "refused", str(exc)
    return "object", json.dumps(value)  # NaN and -0.0 compare as their text; key order counts


def _same_as_checked(data: bytes) -> None:
    assert _outcome(bounded.parse_json_object, data) == _outcome(bounded._checked_object, data)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=5), st.sampled_from([None, 0, 2]), st.booleans())
def test_any_object_reads_as_the_checked_path_reads_it(value: dict[str, Any], indent: int | None, ascii_: bool) -> None:
    _same_as_checked(json.dumps(value, indent=indent, ensure_ascii=ascii_).encode())


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, min_size=1, max_size=4), st.integers(0, 3), st.sampled_from(["", " ", "\n  "]))
def test_a_key_written_twice_is_refused_as_the_checked_path_refuses_it(
    value: dict[str, Any], which: int, space: str
) -> None:
    key = list(value)[which % len(value)]
    body = json.dumps(value, ensure_ascii=False)[1:-1]
    again = f"{json.dumps(key, ensure_ascii=False)}{space}:{space}{json.dumps(value[key], ensure_ascii=False)}"
    data = ("{" + body + ", " + again + "}").encode()
    assert _outcome(bounded.parse_json_object, data)[0] == "refused"
    _same_as_checked(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(alphabet='{}[]":,0123456789.-eE \\naNul', max_size=40).map(str.encode))
def test_any_bytes_read_or_are_refused_as_the_checked_path_does(data: bytes) -> None:
    _same_as_checked(data)


def test_the_cases_orjson_reads_otherwise_go_the_checked_way() -> None:
    cases = [
        b'{"a": 1, "a": 2}',  # orjson keeps the last
        b'{"a": {"b": "x:y", "b": 1}}',  # a dropped key's text held a `:`
        b'{"a": "\\u003a", "a": 1}',  # an escaped `:` in a dropped value
        b'{"a": 1, "a": "\\u003a"}',  # an escaped `:` in the kept value: as many `:` as orjson writes
        b'{"a": 18446744073709551616}',  # past 64 bits: orjson reads a float
        b'{"a": -9223372036854775809}',
        b'{"a": 123456789012345678901}',  # past MAX_INT_DIGITS: refused
        b'{"a": NaN, "b": Infinity}',  # json reads them; orjson refuses
        b'\xef\xbb\xbf{"a": 1}',  # a BOM
        b'{"a": "\\ud800"}',  # a lone surrogate
        b'{"a": 1e400}',
        b"[1]",
        b'{"a":' * 300 + b"1" + b"}" * 300,  # orjson reads it but will not write it again
        b'{"a":' * 1000 + b"1" + b"}" * 1000,  # deeper than json reads
    ]
    for data in cases:
        _same_as_checked(data)
    assert bounded.parse_json_object(b'{"a": 18446744073709551616}', "x")["a"] == 2**64  # exact, as json reads it
