"""Site files: where a cluster keeps its datasets and checkpoints, written once per site.

    # sites/mycluster.yaml
    datasets:
      cub200: {name: cub200, root: /shared/data/CUB_200_2011}
    checkpoints:
      convnextv2_large_22k: /shared/ckpt/convnextv2_large_22k.pth
    deepspeed:
      zero3_tuned: {zero_optimization: {overlap_comm: true, reduce_bucket_size: 5.0e8}}

A sweep names it with `site: ../sites/mycluster.yaml` (relative to the sweep file; or
`site=...` on the command line, or the ORCHESTRATE_SITE environment variable) and
refers to entries as `site:NAME`: as a dataset (grid `dataset:` values, `data.dataset`,
the `parts` of a combined dataset; `{site: NAME, val_fraction: 0}` is that entry with fields
changed), as `model.pretrained_path`, or as `distributed.deepspeed` (the cluster's named
DeepSpeed tuning). References are replaced before validation, so run
ids and snapshots hold the real values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from orchestrator import yamlio

PREFIX = "site:"
ENV_VAR = "ORCHESTRATE_SITE"
_SECTIONS = ("datasets", "checkpoints", "deepspeed")
_DATASET_KEYS = {"dataset", "parts"}


class SiteError(ValueError):
    """A site reference or site file problem (message without the spec path)."""


def site_path(raw: dict[str, Any], spec_path: Path) -> Path | None:
    """The site file a spec uses: its `site:` key (relative to the spec), else $ORCHESTRATE_SITE."""
    named = raw.get("site") or os.environ.get(ENV_VAR)
    if not named:
        return None
    path = Path(str(named)).expanduser()
    return path if path.is_absolute() or "site" not in raw else (spec_path.parent / path)


def load_site(path: Path) -> dict[str, dict[str, Any]]:
    """Read and check a site file: {datasets: {name: mapping}, checkpoints: {name: path},
    deepspeed: {name: mapping of DeepSpeed config keys}}."""
    try:
        data = yamlio.loads(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SiteError(f"site file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SiteError(f"site file {path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or set(data) - set(_SECTIONS):
        unknown = sorted(set(data) - set(_SECTIONS)) if isinstance(data, dict) else ["(not a mapping)"]
        raise SiteError(f"site file {path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(_SECTIONS)}")
    base = path.parent
    datasets = {name: _dataset_entry(entry, base, path, name) for name, entry in (data.get("datasets") or {}).items()}
    checkpoints = {name: str(_absolute(str(p), base)) for name, p in (data.get("checkpoints") or {}).items()}
    deepspeed = data.get("deepspeed") or {}
    for name, entry in deepspeed.items():
        if not isinstance(entry, dict):
            raise SiteError(f"site file {path}: deepspeed.{name} must be a mapping of DeepSpeed config keys")
    return {"datasets": datasets, "checkpoints": checkpoints, "deepspeed": deepspeed}


def _dataset_entry(entry: Any, base: Path, path: Path, name: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or "name" not in entry:
        raise SiteError(f"site file {path}: datasets.{name} must be a mapping with at least `name`")
    out = dict(entry)
    if out.get("root"):
        out["root"] = str(_absolute(str(out["root"]), base))
    return out


def _absolute(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def resolve(raw: dict[str, Any], spec_path: Path) -> dict[str, Any]:
    """Replace every `site:NAME` reference in a parsed spec with the site file's entry."""
    path = site_path(raw, spec_path)
    site = load_site(path) if path is not None else None
    out = dict(raw)
    for section in ("defaults", "grid", "modifiers", "per_backbone"):
        if section in out:
            out[section] = _walk(out[section], section, site, path)
    if path is not None:
        out["site"] = str(path.resolve())
    return out


def _walk(value: Any, key: str, site: dict[str, dict[str, Any]] | None, path: Path | None) -> Any:
    if isinstance(value, dict) and key in _DATASET_KEYS and isinstance(value.get("site"), str):
        # `{site: cub200, val_fraction: 0}`: the site's dataset entry with these fields changed.
        changes = {k: _walk(v, str(k), site, path) for k, v in value.items() if k != "site"}
        return {**_lookup(value["site"].removeprefix(PREFIX), key, site, path), **changes}
    if isinstance(value, dict):
        return {k: _walk(v, str(k), site, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, key, site, path) for v in value]
    if isinstance(value, str) and value.startswith(PREFIX):
        return _lookup(value.removeprefix(PREFIX), key.rsplit(".", 1)[-1], site, path)
    return value


def _lookup(name: str, key: str, site: dict[str, dict[str, Any]] | None, path: Path | None) -> Any:
    if key in _DATASET_KEYS:
        section = "datasets"
    elif key == "pretrained_path":
        section = "checkpoints"
    elif key == "deepspeed":
        section = "deepspeed"
    else:
        raise SiteError(
            f"{key}: '{PREFIX}{name}' can only name a dataset, model.pretrained_path or distributed.deepspeed"
        )
    if site is None:
        raise SiteError(f"{key}: '{PREFIX}{name}' needs a site file (`site:` in the spec or ${ENV_VAR})")
    entries = site[section]
    if name not in entries:
        known = ", ".join(entries) or "none"
        raise SiteError(f"{key}: '{PREFIX}{name}' is not in {section} of {path} (known: {known})")
    return entries[name]
