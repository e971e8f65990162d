"""Checks on the raw values of a parsed spec, before the typed models see them.

pydantic converts what it can (`True` is a fine float in lax mode, so `lr: yes` would
train at 1.0) and YAML gives what it can (`.inf`, control characters, 1 MB strings);
these walks refuse such values with the field path where they were written.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from orchestrator import textsafe
from orchestrator.sweep.errors import CONTROL, short, short_key

MAX_STRING_CHARS = 1000
"""Longest string a spec may hold (a path, a name, a setup line): longer is a mistake or an attack."""


def check_values(value: Any, path: str = "") -> None:
    """Raise ValueError(`path: problem`) for a non-string key, a non-finite float, a string with
    control characters (newlines, ANSI escapes) or one longer than MAX_STRING_CHARS, anywhere."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:  # iterative: a deeply nested document must not hit the recursion limit
        item, where = stack.pop()
        if isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ValueError(f"{where or '(top level)'}: key {short(key)} is not a string")
                _check_string(key, where or "(top level)")
                stack.append((child, f"{where}.{short_key(key)}" if where else short_key(key)))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{where}: {item} is not a finite number")
        elif isinstance(item, str):
            _check_string(item, where)


def _check_string(text: str, where: str) -> None:
    if len(text) > MAX_STRING_CHARS:
        raise ValueError(f"{where}: a string of {len(text)} characters (at most {MAX_STRING_CHARS})")
    if CONTROL.search(text):
        raise ValueError(f"{where}: {short(text)} contains a newline or another control character (tab, escape...)")
    unsafe = textsafe.first_unsafe(text)  # bidi and zero-width: text that displays as something else
    if unsafe is not None:
        raise ValueError(f"{where}: {unsafe} in {short(text)}: invisible or reordering characters are refused")


BOOLEAN = "a boolean"
STRING = "a string"


def not_a_number(data: Any, model: type[BaseModel], path: str = "") -> tuple[str, str] | None:
    """(dotted path, "a boolean" | "a string") of the first boolean or string given where `model`
    wants a number, or None. pydantic's lax mode reads both as numbers (`"inf"` is infinity,
    `"1e3"` is 1000.0, `yes` is 1.0): a spec's numbers are YAML numbers, nothing else."""
    if not isinstance(data, Mapping):
        return None
    for key, value in data.items():
        field = model.model_fields.get(str(key))
        if field is not None:
            found = _wrong_in(value, field.annotation, f"{path}{key}")
            if found is not None:
                return found
    return None


def _wrong_in(value: Any, annotation: Any, path: str) -> tuple[str, str] | None:
    leaves = _leaf_types(annotation)
    numeric = int in leaves or float in leaves
    if isinstance(value, bool):
        return (path, BOOLEAN) if bool not in leaves and numeric else None
    if isinstance(value, str):
        return (path, STRING) if str not in leaves and numeric and Any not in leaves else None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _wrong_in(item, annotation, f"{path}[{index}]")
            if found is not None:
                return found
    if isinstance(value, Mapping):
        for leaf in leaves:
            if isinstance(leaf, type) and issubclass(leaf, BaseModel):
                return not_a_number(value, leaf, f"{path}.")
        for key, item in value.items():
            found = _wrong_in(item, _dict_value_type(annotation), f"{path}.{key}")
            if found is not None:
                return found
    return None


def _leaf_types(annotation: Any) -> set[Any]:
    """The classes inside an annotation (`tuple[float, ...] | None` -> {float, NoneType})."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return {annotation}
    if origin is dict:
        return {dict}
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    if origin is typing.Literal:
        return {type(arg) for arg in typing.get_args(annotation)}
    out: set[Any] = set()
    for arg in typing.get_args(annotation):
        if arg is not Ellipsis:
            out |= _leaf_types(arg)
    return out if origin in (typing.Union, types.UnionType, tuple, list, set, frozenset) else {origin}


def _dict_value_type(annotation: Any) -> Any:
    """The value type of a `dict[K, V]` inside an annotation; Any when there is none."""
    if typing.get_origin(annotation) is dict:
        return typing.get_args(annotation)[1]
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is dict:
            return typing.get_args(arg)[1]
    return Any


def display(value: Any) -> str:
    """A grid value as tables show it (a row, column or group heading): a mapping by its `label`,
    else its `name`; a whole float without its `.0`."""
    if isinstance(value, dict):
        for key in ("label", "name"):
            if value.get(key):
                return str(value[key])
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}" if abs(value) < 1e6 else str(value)
    return str(value)
