"""Dotted-key overrides: `defaults.epochs=1 grid.seed=[0]` on the command line, and the
dotted keys of modifiers and grid axes (`model.head_dropout: 0.5`) inside a spec.

Semantics follow Hydra/OmegaConf users' expectations: a mapping value is merged
into the mapping already there, anything else replaces it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.sweep import yamlio

# Sections whose next segment is one key that may itself contain dots.
_FLAT_SECTIONS = {"grid", "ablations"}


def nested(dotted: str, value: Any) -> dict[str, Any]:
    """`nested("a.b", 1)` -> `{"a": {"b": 1}}`."""
    parts = dotted.split(".")
    out: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        out = {part: out}
    return out


def merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: nested mappings merge, every other value replaces. Inputs are not modified."""
    out = dict(base)
    for key, value in changes.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_dotted(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply `{dotted.key: value}` changes in order onto a nested dict (returns a new dict)."""
    out = dict(base)
    for key, value in changes.items():
        out = merge(out, nested(key, value))
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"grid.seed=[0,1]"` -> (["grid", "seed"], [0, 1]); the value is parsed as YAML."""
    key, sep, value_text = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r}: expected key=value (e.g. defaults.epochs=1)")
    parts = key.strip().split(".")
    head = parts[0]
    if head in _FLAT_SECTIONS and len(parts) > 1:
        parts = [head, ".".join(parts[1:])]
    elif head == "modifiers" and len(parts) > 2:
        parts = [head, parts[1], ".".join(parts[2:])]
    try:
        value = yamlio.loads(value_text) if value_text.strip() else None
    except Exception as exc:  # yaml errors carry multi-line messages
        raise ValueError(f"{text!r}: value is not valid YAML ({type(exc).__name__})") from None
    return parts, value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply command-line overrides to a parsed spec, in order."""
    out = copy.deepcopy(dict(raw))
    for text in overrides:
        parts, value = parse_override(text)
        target: dict[str, Any] = out
        for part in parts[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                raise ValueError(f"{text!r}: {part!r} is not a mapping")
            target = child
        target[parts[-1]] = value
    return out
