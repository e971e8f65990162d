"""What a row of collect's index may hold: the checks `index_file` runs as it reads the file, a
column at a time where it can (a folder whose cached values break the reader's own rules is read
again). Part of the index's validity: `index_file.reader_version` hashes this file too."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from trainers import contract

_STATES = frozenset({*(state.value for state in contract.State), contract.UNKNOWN, contract.BROKEN})


def bad_identity(columns: list[str], names: list[str], values: list[list[Any]]) -> set[int]:
    """The folders whose cached row is not of that folder (another run id) or has no state a read gives
    (`columns` has run_id and state: a file without them is no index)."""
    ids, states = values[columns.index("run_id")], values[columns.index("state")]
    if ids == names and set(map(type, states)) <= {str} and set(states) <= _STATES:
        return set()
    return {
        i
        for i, (name, run_id, state) in enumerate(zip(names, ids, states, strict=True))
        if run_id != name or type(state) is not str or state not in _STATES
    }


def bad_shapes(values: list[list[Any]], kinds: list[set[type]]) -> set[int]:
    """The folders with a cached value that is no JSON scalar (a list, an object)."""
    bad: set[int] = set()
    for column, types in zip(values, kinds, strict=True):
        if not types <= _SCALARS:
            bad.update(i for i, value in enumerate(column) if type(value) not in _SCALARS)
    return bad


_SCALARS = frozenset({str, int, float, bool, type(None)})
"""The types of a cached value (the index is JSON: its values are of these exact types or others)."""
TEXTS = frozenset({str, type(None)})


@dataclass(frozen=True)
class _Rule:
    """What a column's values may be, for the checks of a whole column at once."""

    low: float
    high: float
    """A float (or a non-count int) within [low, high] is valid."""
    text_ok: bool
    """Any text is valid."""
    bool_ok: bool
    """True and False are valid."""
    count_floor: int | None
    """A count column: an int of at least this (up to contract.MAX_VALUE); None: not a count."""


def _rule(column: str) -> _Rule:
    if column in _TIMES:
        return _Rule(-sys.float_info.max, sys.float_info.max, False, False, None)
    low, high = contract.float_bounds(column)

    def ok(value: Any) -> bool:
        return contract.typed_reason(column, value) is None

    return _Rule(low, high, ok("text"), ok(True) and ok(False), contract.count_floor(column))


def bad_values(columns: list[str], values: list[list[Any]], kinds: list[set[type]]) -> set[int]:
    """The folders holding a value that clean_metrics could not have stored in its column (`kinds`:
    the types in each column)."""
    bad: set[int] = set()
    for i, column in enumerate(columns):
        if not (column in _TIMES or ("." in column and not column.startswith("axis."))):
            continue  # plan metadata, state, run id: checked apart
        rule = _rule(column)
        if _column_fine(values[i], kinds[i], rule):
            continue
        for position, value in enumerate(values[i]):  # the exact rule, value by value
            if value is None or (type(value) is float and rule.low <= value <= rule.high):
                continue
            if not (rule.text_ok and type(value) is str) and not cached_ok(column, value):
                bad.add(position)
    return bad


def _column_fine(values: list[Any], kinds: set[type], rule: _Rule) -> bool:
    """Whether a whole column holds valid values, decided at C speed (False: check value by value)."""
    allowed = {type(None)} | ({str} if rule.text_ok else set()) | ({bool} if rule.bool_ok else set())
    if kinds <= allowed:
        return True
    numbers_kinds = kinds - allowed
    if not numbers_kinds <= ({int} if rule.count_floor is not None else {float, int}):
        return False
    numbers = values if kinds == numbers_kinds else [v for v in values if type(v) in numbers_kinds]
    if rule.count_floor is not None:
        return bool(rule.count_floor <= min(numbers) and max(numbers) <= contract.MAX_VALUE)
    # NaN: its sum is NaN
    return bool(rule.low <= min(numbers) and max(numbers) <= rule.high and math.isfinite(sum(numbers)))


_TIMES = ("started_at", "finished_at")


def cached_ok(column: str, value: Any) -> bool:
    if column in _TIMES:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return contract.typed_reason(column, value) is None
