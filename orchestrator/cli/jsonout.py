"""`--json`: one object per command on stdout, for scripts (the human tables are for people).

Every object carries `schema_version` and `command`; keys are snake_case, numbers are numbers (NaN
and infinities null), paths are absolute strings. Each object is built from the same data the human
output prints (the plan's runs, the status rows, the files `collect` wrote), so the two never disagree. While the
object is built, anything printed to stdout (progress, warnings) goes to stderr instead: stdout
holds the object alone. An error is still one line on stderr and a non-zero exit (cli/main.py).

The models below are the documented shape (docs: how-to/cli.md, `--json`).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.cli.jsonflag import COMMANDS as COMMANDS  # re-exported: callers spell jsonout.wanted
from orchestrator.cli.jsonflag import add_flag as add_flag
from orchestrator.cli.jsonflag import wanted as wanted

if TYPE_CHECKING:
    from orchestrator.launch.status import RunStatus, SweepStatus
    from orchestrator.results.collect import Written
    from orchestrator.sweep.plan import RunSpec
    from orchestrator.sweep.spec import SweepSpec

SCHEMA_VERSION = 1
"""Bumped when a field is renamed or removed (adding a field keeps the version)."""


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


def emit(build: Callable[[], tuple[BaseModel, int]]) -> int:
    """Build the object with stdout redirected to stderr, then print it alone on stdout; the exit code."""
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        obj, code = build()
    # ASCII: a bidi override (U+202E) or other non-ASCII character from a run file is written as its
    # \u escape, so the line prints as it reads in a terminal; a JSON reader gets the same text.
    out.write(json.dumps(finite(obj.model_dump(mode="json")), ensure_ascii=True, separators=(",", ":")) + "\n")
    out.flush()
    return code


def finite(value: Any) -> Any:
    """`value` with NaN and infinities as None: JSON has neither (a site's 1e-320 images/s is inf hours)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def abs_path(path: Path | str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().absolute())


def number_or_none(value: Any) -> float | None:
    """A float, or None for NaN / missing (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else number


# ---------------------------------------------------------------- status


class StatusRun(Out):
    """One run's state."""

    run_id: str
    name: str
    state: str
    job_id: str | None
    detail: str
    """The error's last line or the log path, as the table's `error / log` column."""
    failure: str | None = None
    """Class of the latest finished attempt (completed, user_error, oom, timeout, deadline, preempted,
    node_fail, preflight_fail, hang, cancelled, crashed); null while it may still run."""
    node: str | None = None
    """Node the latest finished attempt is charged to: the one the job recorded (a multi-node
    preflight's unfit rank, the hang watchdog's), else the first of sacct's NodeList, else the SLURM
    node name the job recorded; null when none can be named (a multi-node NODE_FAIL)."""
    cuda_oom: bool = False
    """For an oom: the GPU ran out of memory, not the host."""
    attempts: int = 0
    """Attempts of the run as the retry policy counts them: those status.json records, or the
    submissions the manifest lists when more (a job that ended before it wrote status.json)."""
    job_name: str | None = None
    """State `unconfirmed`: the job name of the array sbatch did not confirm (`squeue --name` finds its job)."""


class StatusOut(Out):
    """`orchestrate status --json`."""

    schema_version: int = SCHEMA_VERSION
    command: Literal["status"] = "status"
    sweep: str
    output_dir: str
    runs_total: int
    counts: dict[str, int]
    """State -> runs (completed, pending, running, failed, unconfirmed, ...)."""
    failures: dict[str, int] = {}
    """Failure class of the latest attempt -> runs (completed runs left out)."""
    finished: bool
    """No run is pending or running."""
    warning: str | None
    quarantined: dict[str, list[str]] = {}
    """Node -> the failures (class: reason) that quarantined it; later submissions exclude it."""
    runs: list[StatusRun]
    """Every run, completed ones included."""
    problems: list[str]


def status_object(spec: SweepSpec, root: Path, current: SweepStatus) -> StatusOut:
    """The status as `status` prints it, every run listed."""
    return StatusOut(
        sweep=spec.name,
        output_dir=abs_path(root) or "",
        runs_total=len(current.runs),
        counts=dict(sorted(current.counts.items())),
        failures=dict(sorted(current.failures.items())),
        quarantined={node.node: node.reasons for node in current.quarantined},
        finished=current.finished,
        warning=current.warning,
        runs=[_status_run(r) for r in current.runs],
        problems=[str(p) for p in current.problems],
    )


def _status_run(row: RunStatus) -> StatusRun:
    verdict = row.verdict
    return StatusRun(
        run_id=row.run.run_id,
        name=row.run.name,
        state=row.state,
        job_id=row.job_id,
        detail=row.detail,
        failure=verdict.failure.value if verdict is not None else None,
        node=(verdict.node or None) if verdict is not None else None,
        cuda_oom=bool(verdict is not None and verdict.cuda),
        attempts=row.attempts,
        job_name=row.job_name,
    )


# ---------------------------------------------------------------- collect


class CollectSweep(Out):
    """What `collect` wrote for one sweep."""

    sweep: str
    output_dir: str
    tables: list[str]
    """Every table file written (absolute paths)."""
    runs_csv: str | None
    report: str | None
    usage_csv: str | None
    usable: int
    """Planned runs with a usable value of some table's metric."""
    counts: dict[str, int]
    """Planned runs per state; `counts["completed"]` is the completed count."""
    problems: list[str]
    error: str | None
    """Why nothing was tabulated (no completed run, or nothing usable); null when tables were written."""


class CollectOut(Out):
    """`orchestrate collect --json`: one entry per sweep collected."""

    schema_version: int = SCHEMA_VERSION
    command: Literal["collect"] = "collect"
    sweeps: list[CollectSweep]


def collect_written(spec: SweepSpec, root: Path, written: Written, error: str | None) -> CollectSweep:
    """One sweep's entry from what `write_tables` returned."""
    return CollectSweep(
        sweep=spec.name,
        output_dir=abs_path(root) or "",
        tables=[abs_path(p) or "" for p in written.files],
        runs_csv=abs_path(written.runs_path),
        report=abs_path(written.report_path),
        usage_csv=abs_path(written.usage_path),
        usable=written.usable,
        counts=dict(sorted(written.counts.items())),
        problems=[str(p) for p in written.problems],
        error=error,
    )


def collect_nothing(spec: SweepSpec, root: Path, message: str) -> CollectSweep:
    """One sweep's entry when no run had finished (no files written)."""
    return CollectSweep(
        sweep=spec.name,
        output_dir=abs_path(root) or "",
        tables=[],
        runs_csv=None,
        report=None,
        usage_csv=None,
        usable=0,
        counts={},
        problems=[],
        error=message,
    )


# ---------------------------------------------------------------- submit --dry-run


class DryRunRun(Out):
    """One run `submit` would launch."""

    run_id: str
    name: str
    run_dir: str


class DryRunArray(Out):
    """One SLURM job array `submit --executor slurm` would submit."""

    index: int
    tasks: int
    """Array tasks (a task may pack several runs: `runs_per_task`)."""
    runs: list[str]
    """Run ids, in task order."""
    script: str
    """The sbatch script, verbatim."""


class DryRunOut(Out):
    """`orchestrate submit --dry-run --json`: what would run; nothing is written or submitted."""

    schema_version: int = SCHEMA_VERSION
    command: Literal["submit --dry-run"] = "submit --dry-run"
    sweep: str
    executor: str
    smoke: bool
    output_dir: str
    runs_planned: int
    to_run: list[DryRunRun]
    skipped: dict[str, int]
    """Why runs are left alone (completed, pending or running in SLURM, running locally) -> count."""
    max_array_size: int | None
    arrays: list[DryRunArray]
    """SLURM only; empty for the local executors."""


def dry_run_object(
    spec: SweepSpec, runs: list[RunSpec], executor: str, *, force: bool, smoke: bool, profile: str | None
) -> DryRunOut:
    """The selection `submit` would make (the same select() the launcher calls) and, on SLURM, its arrays."""
    from rich.console import Console

    from orchestrator import launch, store
    from orchestrator.results import adaptive
    from orchestrator.store import run_states
    from orchestrator.sweep.plan import smoke_plan, smoke_seeds

    chosen = launch.launcher(spec, executor, Console(stderr=True), profile)
    if smoke:
        runs, force = smoke_plan(smoke_seeds(spec, runs)), True
    elif spec.seeds is not None:
        runs = adaptive.scheduled(spec, runs, store.sweep_root(spec))  # the current round, as submit launches it
    root = store.sweep_root(spec, smoke)
    selection = launch.select(run_states.inspect(runs, root), force, chosen.owned_elsewhere(root, dry_run=True))
    todo = [DryRunRun(run_id=r.run.run_id, name=r.run.name, run_dir=abs_path(r.path) or "") for r in selection.todo]
    size, arrays = _arrays(chosen, selection.todo, root, spec.name)
    return DryRunOut(
        sweep=spec.name,
        executor=executor,
        smoke=smoke,
        output_dir=abs_path(root) or "",
        runs_planned=len(runs),
        to_run=todo,
        skipped=dict(sorted(selection.skipped.items())),
        max_array_size=size,
        arrays=arrays,
    )


def _arrays(chosen: Any, todo: list[Any], root: Path, name: str) -> tuple[int | None, list[DryRunArray]]:
    """The arrays and sbatch scripts the SLURM launcher's preview prints (none for local executors)."""
    from orchestrator import store
    from orchestrator.launch import slurmcli
    from orchestrator.launch.slurm import SlurmLauncher

    if not isinstance(chosen, SlurmLauncher) or not todo:
        return None, []
    size, arrays = chosen._arrays(todo)  # the grouping preview() and start() use
    out = []
    for index, (config, group) in enumerate(arrays):
        params = slurmcli.executor_parameters(config, f"orch-{name}")
        python = slurmcli.node_command(config).python
        script = slurmcli.sbatch_header(root / store.SUBMITIT_DIR, params, len(group), python)
        ids = [record.run.run_id for task in group for record in task]
        out.append(DryRunArray(index=index, tasks=len(group), runs=ids, script=script))
    return size, out
