"""Requested vs used: what each run's SLURM job asked for (recorded in the sweep's manifest.json at
submit) against what the run used (metrics.json `timing`: wall_s and the peak memory fields, read by `reader`).

Local runs asked for nothing: only what they used is reported. A run whose record is missing or
broken is named by run id with the reason and left out of the summary, never a traceback.
Runs packed into one SLURM task share its time limit: their use is the task's span (first start to
last finish in status.json), which counts a requeue's wait too, so it errs towards "at risk".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import store
from orchestrator.store import run_states
from trainers import contract, rundir

if TYPE_CHECKING:
    import pandas as pd

AT_RISK_FRACTION = 0.9
"""A run that used more than this fraction of its time limit is close to being killed by it."""
LOWER_FRACTION = 0.5
"""When the longest run used less than this fraction of the limit, a shorter limit is suggested."""
MIB_PER_GB = 1024.0  # SLURM's --mem=<N>G is GiB
USED = {
    key: contract.column(contract.TIMING, key)
    for key in (
        "wall_s",
        "peak_rss_mib",
        "peak_rss_sum_mib",
        "host_total_mib",
        "gpu_peak_allocated_mib",
        "gpu_peak_reserved_mib",
        "gpu_total_mib",
    )
}
# Without these a run says nothing about its use; the GPU ones are None on CPU runs by design.
REQUIRED = ("wall_s", "peak_rss_mib", "peak_rss_sum_mib")
COLUMNS = [
    "run_id",
    "name",
    "executor",
    "job_id",
    "time_limit_s",
    "used_s",
    "time_fraction",
    "mem_requested_mib",
    "mem_used_mib",
    "mem_fraction",
    *USED,
    "gpu_fraction",
    "problem",
]


Requests = dict[str, tuple[str, dict[str, Any] | None]]
"""run_id -> (its SLURM job id, what its array requested or None)."""


def requests_by_run(root: Path) -> tuple[Requests, str | None]:
    """run_id -> (SLURM job id, what its array requested or None when not recorded), from manifest.json;
    and what is wrong with the manifest (an unreadable one: every run counts as unknown, not local)."""
    manifest, problem = run_states.read_object(root / store.MANIFEST_FILE)
    if manifest is None:
        return {}, problem
    arrays = manifest.get("arrays") if isinstance(manifest.get("arrays"), dict) else {}
    runs = manifest.get("runs") if isinstance(manifest.get("runs"), dict) else {}
    out: Requests = {}
    for run_id, entry in (runs or {}).items():
        if not isinstance(entry, dict):
            continue
        array = (arrays or {}).get(str(entry.get("array_id")))
        asked = array.get("requested") if isinstance(array, dict) else None
        out[str(run_id)] = (str(entry.get("job_id")), asked if isinstance(asked, dict) else None)
    return out, None


def _value(value: Any, column: str) -> tuple[float | None, str | None]:
    """A used value of a run: a finite non-negative number, None (not recorded), and a problem text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None, f"metrics.json: {column} = {value!r} is not a non-negative number"
    return float(value), None


def _used_column(done: pd.DataFrame, column: str) -> tuple[list[float | None], list[str | None]]:
    """One used value per run and its problem; a float column is checked as a whole (10,000 runs)."""
    import numpy as np

    if column not in done:
        return [None] * len(done), [None] * len(done)
    series = done[column]
    if series.dtype.kind == "f":
        numbers = series.to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            fine = np.isfinite(numbers) & (numbers >= 0)
        if not (~fine & ~np.isnan(numbers)).any():  # every value fine or not recorded (NaN)
            values = [v if ok else None for v, ok in zip(numbers.tolist(), fine.tolist(), strict=True)]
            return values, [None] * len(values)
    pairs = [_value(value, column) for value in series.tolist()]
    return [value for value, _ in pairs], [problem for _, problem in pairs]


def _used(done: pd.DataFrame) -> tuple[dict[str, list[float | None]], list[list[str]]]:
    """Every run's used values (by key) and what is wrong with each run's."""
    values: dict[str, list[float | None]] = {}
    problems: list[list[str]] = [[] for _ in range(len(done))]
    for key, column in USED.items():
        values[key], found = _used_column(done, column)
        for run_problems, problem in zip(problems, found, strict=True):
            if problem:
                run_problems.append(problem)
    said = done["problem"].tolist() if "problem" in done else [None] * len(done)
    for i, run_problems in enumerate(problems):
        missing = [USED[key] for key in REQUIRED if values[key][i] is None]
        if missing and not run_problems:
            # The reader dropped a value that is not a number and named it: say that, not "not recorded".
            named = [p for p in str(said[i] or "").split("; ") if any(f"{c} = " in p for c in missing)]
            run_problems += named or [f"metrics.json has no {', '.join(missing)} (trained before they were recorded?)"]
    return values, problems


def _metrics_unread(said: object) -> bool:
    """Whether the reader named a run's metrics.json as a whole (unreadable, another run's, absent):
    collect lists that problem already, and "not recorded" would be wrong for a file of garbage bytes."""
    parts = str(said or "").split("; ") if isinstance(said, str) else []
    return any(rundir.METRICS in part and " = " not in part for part in parts)  # " = ": one value named


def _fraction(used: float | None, limit: float | None) -> float | None:
    return None if used is None or not limit else round(used / limit, 4)


def usage_frame(frame: pd.DataFrame, root: Path) -> pd.DataFrame:
    """One row per completed planned run whose metrics.json read (the reader names the others):
    executor, requested time and memory, used, fractions, problem."""
    import pandas as pd

    requests, manifest_problem = requests_by_run(root)
    done = frame[(frame["state"] == "completed") & frame["in_plan"].astype(bool)] if len(frame) else frame
    if "problem" in done:  # a run whose metrics.json did not read has no use to show: collect names it
        done = done[~done["problem"].map(_metrics_unread).astype(bool)]
    # By column, not by row: a pandas row costs ~10 us per field read, 1.4 s at 10,000 runs.
    used, problems = _used(done)
    jobs = [_job(run_id, requests, manifest_problem, p) for run_id, p in zip(done["run_id"], problems, strict=True)]
    names = done["name"].tolist() if "name" in done else [None] * len(done)
    out = pd.DataFrame(
        {
            "run_id": done["run_id"].tolist(),
            "name": names,
            "executor": [job[0] for job in jobs],
            "job_id": [job[1] for job in jobs],
            **{key: [job[2][key] for job in jobs] for key in ("time_limit_s", "mem_requested_mib", "_nodes")},
            **used,
            "used_s": used["wall_s"],
            "problem": ["; ".join(p) or None for p in problems],
            "_started": done["started_at"].tolist() if "started_at" in done else None,
            "_finished": done["finished_at"].tolist() if "finished_at" in done else None,
        },
        columns=[*COLUMNS, "_started", "_finished", "_nodes"],
    )
    _per_node_and_task(out)
    out["time_fraction"] = [_fraction(u, t) for u, t in zip(out["used_s"], out["time_limit_s"], strict=True)]
    out["mem_fraction"] = [_fraction(u, m) for u, m in zip(out["mem_used_mib"], out["mem_requested_mib"], strict=True)]
    out["gpu_fraction"] = [
        _fraction(u, t) for u, t in zip(out["gpu_peak_reserved_mib"], out["gpu_total_mib"], strict=True)
    ]
    return out[COLUMNS].astype(object).where(out[COLUMNS].notna(), None)


def _job(
    run_id: Any,
    requests: dict[str, tuple[str, dict[str, Any] | None]],
    manifest_problem: str | None,
    problems: list[str],
) -> tuple[str, str | None, dict[str, Any]]:
    """Where a completed run ran, its SLURM job id and what its job requested (problems appended)."""
    job_id, asked = requests.get(str(run_id), (None, None))
    executor = "slurm" if job_id is not None else ("unknown" if manifest_problem else "local")
    if manifest_problem:
        problems.append(f"{store.MANIFEST_FILE}: {manifest_problem}")
    elif job_id is not None and asked is None:
        problems.append("its SLURM request was not recorded (submitted before requests were recorded)")
    return executor, job_id, _requested(asked)


def _requested(asked: dict[str, Any] | None) -> dict[str, Any]:
    """Time limit (s) and memory per node (MiB) of a SLURM request; None where there is none."""
    if asked is None:
        return {"time_limit_s": None, "mem_requested_mib": None, "_nodes": 1}
    timeout_min, mem_gb = asked.get("timeout_min"), asked.get("mem_gb")
    number = (int, float)
    return {
        "time_limit_s": float(timeout_min) * 60 if isinstance(timeout_min, number) else None,
        "mem_requested_mib": float(mem_gb) * MIB_PER_GB if isinstance(mem_gb, number) else None,
        "_nodes": asked.get("nodes") if isinstance(asked.get("nodes"), int) else 1,
    }


def _per_node_and_task(out: pd.DataFrame) -> None:
    """Host memory used per node, and runs sharing one SLURM task: the task's span is their time used."""
    if out.empty:
        return
    out["mem_used_mib"] = [
        None if total is None or math.isnan(total) else total / max(1, int(nodes))
        for total, nodes in zip(out["peak_rss_sum_mib"], out["_nodes"], strict=True)
    ]
    for _job_id, members in out[out["job_id"].notna()].groupby("job_id"):
        if len(members) < 2:
            continue
        start, end = members["_started"].min(), members["_finished"].max()
        span = end - start if members["_started"].notna().all() and members["_finished"].notna().all() else None
        out.loc[members.index, "used_s"] = span


def summary_lines(usage: pd.DataFrame) -> list[str]:
    """What `collect` prints after the tables: per time limit (SLURM) or for local runs, the use."""
    if usage.empty:
        return []
    lines = [f"requested vs used ({len(usage)} completed runs):"]
    ok = usage[usage["problem"].isna()]
    limits = ok["time_limit_s"].astype(float).fillna(-1.0)
    for (executor, limit_s), group in ok.groupby([ok["executor"], limits]):
        limit = float(limit_s)  # type: ignore[arg-type]  # groupby keys are typed Hashable
        lines += _group_lines(str(executor), None if limit < 0 else limit, group)
    named = usage[usage["problem"].notna()]
    for _, row in named.head(10).iterrows():
        lines.append(f"  not counted: {row['run_id']} {row['name']}: {row['problem']}")
    if len(named) > 10:
        lines.append(f"  ... {len(named) - 10} more runs not counted (usage.csv, column problem)")
    return lines


def _group_lines(executor: str, limit_s: float | None, group: pd.DataFrame) -> list[str]:
    """Time, host memory and GPU memory lines of the runs sharing one time limit."""
    used = group["used_s"].dropna().astype(float)
    head = f"  {executor}, {len(group)} runs"
    if executor != "slurm" or limit_s is None:
        lines = [f"{head} (no request): wall median {_minutes(used.median())}, max {_minutes(used.max())}"]
    else:
        share = used.max() / limit_s
        lines = [
            f"{head}, time limit {_minutes(limit_s)}: wall median {_minutes(used.median())}, max "
            f"{_minutes(used.max())} ({share:.0%} of the limit)"
        ]
        risky = group[group["time_fraction"].astype(float) > AT_RISK_FRACTION]
        if len(risky):
            lines.append(f"    at risk (> {AT_RISK_FRACTION:.0%} of the limit): {_ids(risky['run_id'])}")
        elif share < LOWER_FRACTION:
            lines.append(f"    the limit could be lowered: the longest run used {share:.0%} of it")
    return lines + _memory_lines(group)


def _memory_lines(group: pd.DataFrame) -> list[str]:
    rss = group["mem_used_mib"].dropna().astype(float)
    asked = group["mem_requested_mib"].dropna().astype(float)
    if len(asked) and len(rss):
        text = f"    memory: requested {_mib(asked.max())} per node, peak RSS median {_mib(rss.median())}, max "
        lines = [text + f"{_mib(rss.max())} ({rss.max() / asked.max():.0%} of the request)"]
    elif len(rss):
        host = group["host_total_mib"].dropna().astype(float)
        of_host = f" of {_mib(host.min())} on the host" if len(host) else ""
        lines = [f"    memory: peak RSS median {_mib(rss.median())}, max {_mib(rss.max())}{of_host}"]
    else:
        lines = []
    gpu = group[group["gpu_fraction"].notna()]
    if len(gpu):
        peak = gpu["gpu_peak_reserved_mib"].astype(float).max()
        total = gpu["gpu_total_mib"].astype(float).min()
        lines.append(f"    GPU memory: peak reserved max {_mib(peak)} of {_mib(total)} ({peak / total:.0%})")
    return lines


def _ids(ids: Iterable[Any], shown: int = 8) -> str:
    items = [str(i) for i in ids]
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _mib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"
