"""Dotted-key overrides: `defaults.epochs=1 grid.seed=[0]` on the command line, and the
dotted keys of modifiers and grid axes (`model.head_dropout: 0.5`) inside a spec.

Semantics follow Hydra/OmegaConf users' expectations: a mapping value is merged
into the mapping already there, anything else replaces it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from orchestrator.sweep import yamlio
from orchestrator.sweep.errors import SpecError, one_line, short_key

# Sections whose next segment is one key that may itself contain dots.
_FLAT_SECTIONS = {"grid", "ablations"}
_QUOTED_CHARS = 120
"""Longest quote of an override in its error (the message is cut at 600 characters, reason included)."""


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
        raise ValueError(f"{_quoted(text)}: expected key=value (e.g. defaults.epochs=1)")
    parts = key.strip().split(".")
    head = parts[0]
    if head in _FLAT_SECTIONS and len(parts) > 1:
        parts = [head, ".".join(parts[1:])]
    elif head == "modifiers" and len(parts) > 2:
        parts = [head, parts[1], ".".join(parts[2:])]
    try:
        value = yamlio.loads(value_text) if value_text.strip() else None
    except yaml.YAMLError as exc:  # its own message spans lines and quotes the text: the reason and column only
        raise ValueError(f"{_quoted(text)}: value is not valid YAML ({yamlio.reason(exc)})") from None
    except Exception as exc:  # e.g. a lone surrogate from argv bytes that are not UTF-8
        raise ValueError(f"{_quoted(text)}: value is not valid YAML ({type(exc).__name__})") from None
    return parts, value


def _quoted(text: str) -> str:
    """An override as its errors quote it: cut, so that a 5,000-character value leaves room for the reason."""
    return one_line(repr(text), _QUOTED_CHARS)


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply command-line overrides to a parsed spec, in order."""
    out = copy.deepcopy(dict(raw))
    for text in overrides:
        parts, value = parse_override(text)
        parts = _named_entry(out, parts)
        target: dict[str, Any] = out
        for part in parts[:-1]:
            child = target.get(part)
            if child is None:
                child = target[part] = {}
            if not isinstance(child, dict):
                raise ValueError(f"{_quoted(text)}: {short_key(part)!r} is not a mapping")
            target = child
        target[parts[-1]] = value
    return out


def _named_entry(raw: Mapping[str, Any], parts: list[str]) -> list[str]:
    """`[section, entry, dotted key]` for an override into a modifier or a per_backbone entry whose name
    holds dots (`per_backbone.resnet50.tv_in1k.data.batch_size`, a timm name with its tag): the longest
    name the spec defines (or, for per_backbone, a backbone of its grid); else the first segment. The
    first segment alone made the entry `resnet50`, refused as no backbone of the grid."""
    head, rest = parts[0], ".".join(parts[1:]).split(".")
    if head not in _DOTTED_SECTIONS or len(rest) < 2:
        return parts
    entries = raw.get(head)
    known = {str(name) for name in entries} if isinstance(entries, Mapping) else set()
    grid = raw.get("grid")
    backbones = grid.get("backbone") if isinstance(grid, Mapping) else None
    if head == "per_backbone" and isinstance(backbones, list):
        known |= {value for value in backbones if isinstance(value, str)}
    cut = next((n for n in range(len(rest), 0, -1) if ".".join(rest[:n]) in known), 1)
    return [head, ".".join(rest[:cut]), ".".join(rest[cut:])] if cut < len(rest) else [head, ".".join(rest)]


# Sections whose entries are mappings of dotted keys, applied in order one after the other.
_DOTTED_SECTIONS = ("modifiers", "per_backbone")


def check_written_once(raw: Mapping[str, Any], where: str) -> None:
    """SpecError when one modifier or per_backbone entry sets a value twice in the file: as a dotted key
    and nested (`model.head_dropout: 0.45` and `model: {head_dropout: 0.2}`), or a key and a key inside
    it. YAML refuses a key written twice, but these are two keys, and the later one won unannounced.
    Command-line overrides are applied after this check: there the later value winning is the point."""
    for section in _DOTTED_SECTIONS:
        entries = raw.get(section)
        for name, changes in entries.items() if isinstance(entries, Mapping) else ():
            if not isinstance(changes, Mapping):
                continue  # the typed model names what it should be
            twice = _written_twice(changes)
            if twice is not None:
                path, first, second = twice
                raise SpecError(
                    f"{where}: {section}.{short_key(name)}: {short_key(path)} is set twice, by "
                    f"{short_key(first)!r} and {short_key(second)!r} (one would silently win); write it once"
                )


def _written_twice(changes: Mapping[Any, Any]) -> tuple[str, str, str] | None:
    """(value path, earlier key, later key) of two top-level keys of `changes` that set one value once
    dotted keys are expanded, or None. Only a key whose segments start another's can overlap it, so each
    key is compared with its prefixes alone (linear in keys and nesting: a modifier may be large)."""
    keys = {tuple(str(key).split(".")): str(key) for key in changes}
    order = {str(key): index for index, key in enumerate(changes)}
    for parts, key in keys.items():
        for cut in range(1, len(parts)):
            shorter = keys.get(parts[:cut])
            if shorter is None:
                continue
            inside = _overlap(changes[shorter], parts[cut:], changes[key])
            if inside is not None:
                first, second = sorted((shorter, key), key=order.__getitem__)
                return ".".join((*parts[:cut], *inside)), first, second
    return None


def _overlap(value: Any, rest: tuple[str, ...], other: Any) -> tuple[str, ...] | None:
    """Where `other`, set at path `rest` under `value`, meets a value `value` sets (path relative to
    `value`), or None: mappings merge, anything else replaces what is there."""
    node = value
    for index, part in enumerate(rest):
        if not isinstance(node, Mapping):
            return rest[:index]  # `value` sets a leaf above `other`'s key
        found = {str(k): v for k, v in node.items()}
        if part not in found:
            return None
        node = found[part]
    stack: list[tuple[tuple[str, ...], Any, Any]] = [(rest, node, other)]
    while stack:  # iterative: a deeply nested modifier must not hit the recursion limit
        path, mine, theirs = stack.pop()
        if not (isinstance(mine, Mapping) and isinstance(theirs, Mapping)):
            return path
        mine_by_name = {str(k): v for k, v in mine.items()}
        stack.extend(((*path, str(k)), mine_by_name[str(k)], v) for k, v in theirs.items() if str(k) in mine_by_name)
    return None


def check_axes_apart(grid: Mapping[str, list[Any]], aliases: Mapping[str, str], where: str) -> None:
    """SpecError when two grid axes set one trainer key (`backbone` and `model.backbone`, or a `model`
    axis whose values hold `backbone`): the later axis replaced the earlier one in every run, so the
    plan's summary listed backbones no run trained and their `per_backbone` entries went to others."""
    keys = [(str(axis), aliases.get(str(axis), str(axis))) for axis in grid]
    for index, (axis, key) in enumerate(keys):
        for other, other_key in keys[:index]:
            shorter, longer = sorted(((other, other_key), (axis, key)), key=lambda pair: len(pair[1]))
            if longer[1] != shorter[1] and not longer[1].startswith(shorter[1] + "."):
                continue
            rest = longer[1][len(shorter[1]) :].lstrip(".")
            if rest and not any(_sets(value, rest.split(".")) for value in grid[shorter[0]]):
                continue  # a `model` axis of other fields merges with a `backbone` axis
            raise SpecError(
                f"{where}: grid.{short_key(axis)}: sets {short_key(key)} as grid.{short_key(other)} does "
                "(the later axis would replace the other in every run); keep one of them"
            )


def _sets(value: Any, path: list[str]) -> bool:
    """Whether a grid value for a parent key (a mapping, dotted keys allowed) sets the key at `path`."""
    if not path:
        return True
    if not isinstance(value, Mapping):
        return True  # it replaces the whole parent, the key included
    return any(_sets(value[key], path[len(str(key).split(".")) :]) for key in value if _starts(str(key), path))


def _starts(key: str, path: list[str]) -> bool:
    parts = key.split(".")
    return parts == path[: len(parts)]
