"""File paths written in a sweep file are relative to that file, not to the working directory.

`model.class_map_path: data/map.json` in sweeps/x.yaml means sweeps/data/map.json wherever
`orchestrate` runs from. Paths are made absolute before validation, so a run's config (and
with it its id) never holds a string whose meaning depends on the working directory. Paths
given as command-line overrides are relative to the working directory, as shells expect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Config fields (last part of a dotted key) that hold a file or folder path.
PATH_KEYS = frozenset({"class_map_path", "pretrained_path", "root"})
_SECTIONS = ("defaults", "grid", "modifiers", "per_backbone")


def absolute_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """`raw` with every relative path under PATH_KEYS made absolute against `base`.
    `site:` references are left for the site file to resolve."""
    out = dict(raw)
    for section in _SECTIONS:
        if section in out:
            out[section] = _walk(out[section], "", base)
    return out


def _walk(value: Any, key: str, base: Path) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, str(k), base) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, key, base) for v in value]
    if isinstance(value, str) and key.rsplit(".", 1)[-1] in PATH_KEYS and not value.startswith("site:"):
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else (base / path).resolve())
    return value
