"""Which folder holds each planned run, across changes of the run-id rule.

Run folders are named by run id. When the id rule changes (settings that cannot change the
numbers leave the hash, as loader and thread settings did after commit 883557d), finished
folders keep their old names: `run_folders` recognises them by hashing the trainer config each
one recorded under today's rule, so an upgrade retrains nothing and no folder is renamed or
rewritten. The ids it computes are cached in `<output_dir>/run_ids.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from orchestrator import store
from orchestrator.sweep import bounded, yamlio
from orchestrator.sweep.plan import RunSpec, id_rule, run_id_of_recorded
from trainers import contract, rundir
from trainers.rundir import State


def run_folders(root: Path, runs: list[RunSpec]) -> dict[str, Path]:
    """The folder of each planned run: `runs/<run_id>`, or, when that does not exist, a folder an
    older id rule named whose recorded trainer config has this run id today (a completed one first)."""
    runs_dir = root / "runs"  # store.run_path's layout
    return {run_id: runs_dir / name for run_id, name in run_folder_names(root, runs).items()}


def run_folder_names(root: Path, runs: list[RunSpec]) -> dict[str, str]:
    """run_folders' folder names under `runs/` (no Path per run: 10,000 of them were 0.04 s of a collect)."""
    folders = {run.run_id: run.run_id for run in runs}
    try:
        names = {name for name in os.listdir(root / "runs") if not name.startswith(".")}
    except OSError:
        return folders
    missing = folders.keys() - names
    others = names - folders.keys()
    if not missing or not others:
        return folders
    candidates: dict[str, list[str]] = {}
    for name, run_id in current_ids(root, others).items():
        if run_id in missing:
            candidates.setdefault(run_id, []).append(name)
    for run_id, found in candidates.items():
        done = [n for n in sorted(found) if _completed(root / "runs" / n)]
        folders[run_id] = (done or sorted(found))[0]
    return folders


def _completed(path: Path) -> bool:
    try:  # bounded: a FIFO named status.json must not block
        status = bounded.read_json_object(path / rundir.STATUS)
    except bounded.Unreadable:
        return False
    return contract.parse_status(status)[0].state == State.COMPLETED.value


def current_ids(root: Path, names: set[str]) -> dict[str, str]:
    """Today's run id of each named run folder, from its config.yaml (unreadable ones left out);
    cached in `<root>/run_ids.json` by the config file's size and mtime and the id rule."""
    cache_path = root / store.RUN_IDS_FILE
    try:
        cache = bounded.read_json_object(cache_path, bounded.INDEX_LIMIT) or {}
    except bounded.Unreadable:
        cache = {}
    entries: dict[str, Any] = cache.get("folders", {}) if cache.get("rule") == id_rule() else {}
    entries = entries if isinstance(entries, dict) else {}
    ids: dict[str, str] = {}
    fresh: dict[str, Any] = {}
    for name in sorted(names):
        path = root / "runs" / name / rundir.CONFIG
        try:
            stat = path.stat()
        except OSError:
            continue
        sig = [stat.st_mtime_ns, stat.st_size]
        run_id = _cached(entries.get(name), sig) or _id_of(path)
        if run_id is not None:
            ids[name] = run_id
            fresh[name] = [sig, run_id]
    if fresh != entries:
        with contextlib.suppress(OSError):  # a read-only results folder: only slower next time
            rundir.write_text(cache_path, json.dumps({"rule": id_rule(), "folders": fresh}, separators=(",", ":")))
    return ids


def _cached(entry: Any, sig: list[int]) -> str | None:
    """The id a cache entry `[signature, run_id]` holds when its signature is still `sig`."""
    if isinstance(entry, list) and len(entry) == 2 and entry[0] == sig and isinstance(entry[1], str):
        return entry[1]
    return None


class _FastLoader(yaml.CSafeLoader):
    """LibYAML with yamlio's number rules (as the reader's): 10x faster than the pure-Python parser,
    which made the first look at 1,000 old folders take 19 s."""


_FastLoader.yaml_implicit_resolvers = yamlio._Loader.yaml_implicit_resolvers


def _id_of(config_file: Path) -> str | None:
    """Today's run id of the trainer config a run folder recorded; None when it cannot be read
    (bounded like every run-folder read: size, no aliases, no blocking on a FIFO)."""
    try:
        text = bounded.read_text(config_file)
        if text is None:
            return None
        bounded.check_yaml_budget(text, rundir.CONFIG, _FastLoader)
        return run_id_of_recorded(yaml.load(text, Loader=_FastLoader)["trainer"])
    except (bounded.Unreadable, yaml.YAMLError, ValidationError, KeyError, TypeError, ValueError, RecursionError):
        return None
