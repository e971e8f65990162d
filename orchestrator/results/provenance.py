"""Provenance notes and warnings of a table: code versions, dates, devices, compute, checkpoints."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from trainers import contract

if TYPE_CHECKING:
    import pandas as pd


def provenance_notes(runs: pd.DataFrame, now: float | None = None) -> list[str]:
    """Code versions, date range, devices and compute of the finished runs of one table."""
    done = runs[runs["state"] == "completed"] if "state" in runs.columns else runs.iloc[0:0]
    if done.empty:
        return ["No finished runs yet."]
    notes = []
    versions = _code_versions(done)
    if versions:
        notes.append(f"Code version(s): {', '.join(versions)}.")
    started = _column(done, "started_at").dropna()
    finished = _column(done, "finished_at").dropna()
    if not finished.empty:
        first = _date(float(started.min()) if not started.empty else float(finished.min()))
        last = _date(float(finished.max()))
        notes.append(f"Runs from {first} to {last}." if first != last else f"Runs on {first}.")
    devices = _column(done, contract.DEVICE).dropna().astype(str)
    if not devices.empty:
        counts = devices.value_counts()
        notes.append("Devices: " + ", ".join(f"{name} ({n} runs)" for name, n in counts.items()) + ".")
    hours = compute_hours(done)
    if hours:
        notes.append("Compute: " + ", ".join(f"{value:.2f} {unit}" for unit, value in hours.items()) + ".")
    return notes


def compute_hours(done: pd.DataFrame) -> dict[str, float]:
    """{'GPU-hours': x, 'CPU-hours': y}: wall time x processes of the finished runs."""
    wall = _column(done, contract.WALL_S).astype(float)
    procs = _column(done, contract.NUM_PROCESSES).astype(float).fillna(1.0)
    device = _column(done, contract.DEVICE).astype(str)
    hours = wall * procs / 3600.0
    on_cpu = device.str.lower().isin(["cpu", "nan", "none"])
    out = {}
    if hours[~on_cpu].notna().any():
        out["GPU-hours"] = float(hours[~on_cpu].sum())
    if hours[on_cpu].notna().any():
        out["CPU-hours"] = float(hours[on_cpu].sum())
    return out


def retry_notes(runs: pd.DataFrame) -> list[str]:
    """The finished runs a CUDA out-of-memory retry trained with a smaller batch per device (same
    effective batch, more gradient accumulation; their run ids are unchanged)."""
    done = runs[runs["state"] == "completed"] if "state" in runs.columns else runs.iloc[0:0]
    factors = _column(done, "retry_grad_accum_factor")
    retried = done[factors.notna()]
    if retried.empty:
        return []
    names = ", ".join(f"{name} (x{int(f)})" for name, f in zip(retried["name"], factors.dropna(), strict=True))
    return [
        "Retried after a CUDA out-of-memory error with the batch per device divided and the gradient "
        f"accumulation multiplied by the factor shown (same effective batch): {names}."
    ]


def provenance_warnings(runs: pd.DataFrame) -> list[str]:
    """Cells from different code versions, or one backbone from different pretrained checkpoints."""
    done = runs[runs["state"] == "completed"] if "state" in runs.columns else runs.iloc[0:0]
    warnings = []
    versions = _code_versions(done)
    if len(versions) > 1:
        warnings.append(f"cells come from {len(versions)} code versions ({', '.join(versions)}).")
    checkpoint = _column(done, "pretrained_sha256").fillna(_column(done, "pretrained_path"))
    if checkpoint.notna().any():
        frame = done.assign(_ckpt=checkpoint)
        for backbone, sub in frame.groupby("backbone", sort=False):
            found = sorted({str(v) for v in sub["_ckpt"].dropna()})
            if len(found) > 1:
                warnings.append(f"{backbone} runs come from {len(found)} pretrained checkpoints ({', '.join(found)}).")
    return warnings


def _code_versions(done: pd.DataFrame) -> list[str]:
    """Git commits of the runs; the tool's installed version for runs without one (a pip install)."""
    import pandas as pd

    # The distinct triples first: a sweep's 10,000 runs come from a handful of versions.
    triples = pd.DataFrame(
        {name: _column(done, name) for name in (contract.GIT_COMMIT, contract.GIT_DIRTY, contract.TOOL_VERSION)}
    ).drop_duplicates()
    versions = set()
    for commit, is_dirty, tool in triples.itertuples(index=False, name=None):
        if isinstance(commit, str) and commit:
            versions.add(commit[:10] + (" (uncommitted changes)" if is_dirty is True else ""))
        elif isinstance(tool, str) and tool:
            versions.add(f"version {tool}")
    return sorted(versions)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    import pandas as pd

    if name in frame.columns:
        return frame[name]
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _date(stamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(stamp))
