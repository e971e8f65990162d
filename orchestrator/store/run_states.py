"""What each run's folder says about its state: status.json through trainers.contract, and whether a
completed run's metrics.json can count. `submit` and `status` decide on these; `results` reads rows
beside them. Never raises: an unreadable file is a named problem.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.store import run_ids, status_reads, verdicts
from orchestrator.sweep import bounded, forked, gcpause
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import RunSpec
from trainers import contract, rundir
from trainers.contract import RunStatus, State


@dataclass(frozen=True)
class Problem:
    """Why one run is left out of the numbers (or a value of it is)."""

    run_id: str
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.run_id} {self.name}: {self.reason}"


@dataclass(frozen=True)
class RunRecord:
    """A planned run joined with what its folder says."""

    run: RunSpec
    path: Path
    state: State
    status: RunStatus
    problem: str | None = None
    """Why the status could not be used (unreadable status.json, unknown state): the run counts as
    not started, so `submit` launches it again."""
    foreign: str | None = None
    """What stands where the run's folder belongs when it is not a plain folder (`<path> is a symbolic
    link to ...`, `... is a file`, or `runs` itself is not a folder): its files are not read, and
    `submit` refuses the run (refuse_foreign) rather than write through or over it."""


def inspect(runs: list[RunSpec], root: Path, check_results: bool = True) -> list[RunRecord]:
    """Read every planned run's status.json; never raises. Missing folders are State.MISSING, and so
    are unreadable status files and unknown states ("unknown, resubmittable"), with a `problem`.
    With `check_results`, so is a completed run whose metrics.json is missing, unreadable, another
    run's or without a valid test score: it needs running again (that verdict is remembered by the
    file's stat in store.verdicts, so a finished run's metrics.json is parsed once, not per call)."""
    with gcpause.paused_gc():
        return _inspect(runs, root, check_results)


def _inspect(runs: list[RunSpec], root: Path, check_results: bool) -> list[RunRecord]:
    names = run_ids.run_folder_names(root, runs)
    runs_dir = root / "runs"  # store.run_path's layout
    remembered = verdicts.Verdicts(root) if check_results else None
    ahead = _reads_ahead(runs, runs_dir, names, remembered)
    reads, started = (ahead.reads, ahead.started) if ahead is not None else (itertools.repeat(None, len(runs)), 0)
    runs_problem, odd = foreign_entries(runs_dir)  # while the workers (if any) start reading
    records = []
    for run, read in zip(runs, reads, strict=True):
        name = names[run.run_id]
        foreign = runs_problem or odd.get(name)
        records.append(_record(run, runs_dir / name, foreign, read, remembered, started))
    if remembered is not None:
        remembered.save()
    return records


def _record(
    run: RunSpec,
    path: Path,
    foreign: str | None,
    read: status_reads.Read | None,
    remembered: verdicts.Verdicts | None,
    started: int,
) -> RunRecord:
    """One run's record from its folder: as read ahead by a worker (`read`), or read here (None)."""
    if foreign is not None:  # a link's target or a file is not this run's: neither read nor written
        refused = f"{foreign}; submit refuses to run it until that is moved aside"
        return RunRecord(run, path, State.MISSING, RunStatus(), refused, foreign)
    data, problem, prepared, fresh = read if read is not None else (None, None, False, None)
    if read is None:
        status, problem = read_status(path)
    else:  # read_status's last step, on what the worker read
        status, problem = (RunStatus(), problem) if problem is not None else contract.parse_status(data)
    state = status.known_state
    if state is State.COMPLETED and remembered is not None:
        if prepared:
            broken = status_reads.verdict(remembered, path, (path.name, run.run_id), fresh, started)
        else:
            broken = _broken_result(path, run, remembered)
        if broken is not None:  # a completed run without usable metrics is not done: run it again
            state, problem = State.MISSING, f"completed, but {broken} (submit runs it again)"
    return RunRecord(run, path, state, status, problem)


CHECKS_AHEAD_FROM = 2_000
"""Planned runs from which forked workers read the run folders (status.json, and a completed run's
metrics.json unless its verdict is remembered) while this process makes the records; below it, or
with ORCHESTRATE_COLLECT_WORKERS=1, all are read here, one by one."""


def _reads_ahead(
    runs: list[RunSpec], runs_dir: Path, names: dict[str, str], remembered: verdicts.Verdicts | None
) -> status_reads.ReadsAhead | None:
    """Workers started on every run's folder, in order, for a large sweep with 2 or more workers
    (store.status_reads: the serial read was most of `status` at 100,000 runs); else None."""
    if len(runs) < CHECKS_AHEAD_FROM:
        return None
    workers = forked.worker_count(len(runs), CHECKS_AHEAD_FROM)
    if workers < 2:
        return None
    folders = [(names[run.run_id], run.run_id) for run in runs]
    return status_reads.start(runs_dir, folders, remembered, _metrics_problem, workers)


def _broken_result(path: Path, run: RunSpec, remembered: verdicts.Verdicts) -> str | None:
    """Why a completed run's metrics.json cannot be used (missing, unreadable, another run's, a
    score that is not one, no test score at all), or None."""
    kind = folder_kind(path)
    if kind is not None:
        return f"its folder is {kind}"
    ids = (path.name, run.run_id)
    return remembered.get(path, ids, lambda: _metrics_problem(path, ids))


def _metrics_problem(path: Path, ids: tuple[str, str]) -> str | None:
    metrics, problem = read_object(path / rundir.METRICS)
    if problem is not None or metrics is None:
        return problem or f"no {rundir.METRICS}"
    return contract.result_problem(metrics, ids)


def foreign_entries(runs_dir: Path) -> tuple[str | None, dict[str, str]]:
    """Why `runs_dir` cannot hold run folders (None: it is a folder, or there is none yet), and each
    entry in it that is not a plain folder -> `<path> is <what it is>, not a run folder`. Submit
    writes into run folders, so a symbolic link there would lead its writes into someone's files
    and a file would stop it halfway. One scandir: the entries' types come with it."""
    try:
        mode = os.lstat(runs_dir).st_mode
    except (FileNotFoundError, NotADirectoryError):  # no runs yet (a file as output_dir: preflight's)
        return None, {}
    except OSError as exc:
        return f"{runs_dir} is not readable ({exc.strerror or type(exc).__name__})", {}
    if not stat.S_ISDIR(mode):
        return f"{runs_dir} is {_what(runs_dir, mode)}, not the folder of run folders", {}
    try:
        with os.scandir(runs_dir) as entries:
            odd = [entry for entry in entries if not entry.is_dir(follow_symlinks=False)]
    except OSError as exc:
        return f"{runs_dir} is not readable ({exc.strerror or type(exc).__name__})", {}
    found: dict[str, str] = {}
    for entry in odd:
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError:  # gone since the listing: nothing stands there now
            continue
        found[entry.name] = f"{entry.path} is {_what(Path(entry.path), mode)}, not a run folder"
    return None, found


def _what(path: Path, mode: int) -> str:
    """What a non-folder entry is, for a message (a link with where it points: the user's to check)."""
    if not stat.S_ISLNK(mode):
        return "a file" if stat.S_ISREG(mode) else bounded.kind_name(mode)
    try:
        return f"a symbolic link to {os.readlink(path)}"
    except OSError:
        return "a symbolic link"


class RunFolderError(SpecError):
    """A run to launch has something else where its folder belongs (RunRecord.foreign)."""


def refuse_foreign(records: Iterable[RunRecord]) -> None:
    """RunFolderError, in one line, naming the first of `records` (runs about to be launched) whose
    folder is a symbolic link, a file or inside a `runs` that is not a folder, or holds one of those
    below it (`checkpoints` linked elsewhere: the trainer's checkpoint rotation deleted the files
    there). Never written through or moved aside: a link or file there is the user's, like a
    foreign sweep.yaml (store.write_snapshot)."""
    found = [(record, record.foreign or _inner_foreign(record.path)) for record in records]
    foreign = [(record, why) for record, why in found if why is not None]
    if not foreign:
        return
    first, why = foreign[0]
    others = f"; {len(foreign) - 1} more run(s) refused alike" if len(foreign) > 1 else ""
    raise RunFolderError(
        f"run {first.run.run_id}: {why}; submit never writes through or over it: "
        f"move it aside and submit again (nothing was written{others})"
    )


MAX_INNER_ENTRIES = 10_000
"""Entries of one run folder looked at (a run writes a few dozen; past this, the rest is not)."""


def _inner_foreign(folder: Path) -> str | None:
    """The first symbolic link, FIFO, socket or device below an existing run folder, described; None
    when there is none (or no folder yet). Walked without following links."""
    stack, seen = [folder], 0
    while stack and seen < MAX_INNER_ENTRIES:
        try:
            with os.scandir(stack.pop()) as entries:
                listed = list(entries)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            return f"{folder} is not readable ({exc.strerror or type(exc).__name__})"
        seen += len(listed)
        for entry in listed:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                try:
                    mode = entry.stat(follow_symlinks=False).st_mode
                except OSError:  # gone since the listing: nothing stands there now
                    continue
                return f"{entry.path} is {_what(Path(entry.path), mode)}, inside the run's folder"
    return None


def problems_of(records: list[RunRecord]) -> list[Problem]:
    """The problems `inspect` found, one per run."""
    return [Problem(r.run.run_id, r.run.name, r.problem) for r in records if r.problem]


def read_status(path: Path, preread: bounded.Preread | None = None) -> tuple[RunStatus, str | None]:
    """A run folder's status.json through the contract and what is wrong with it (state missing and
    None when there is none yet; unreadable: state missing and the reason). `preread`: its bytes
    when already read (bounded.Preread)."""
    status, problem = read_object(path / rundir.STATUS, preread=preread)
    if problem is not None:
        return RunStatus(), problem
    return contract.parse_status(status)


def read_object(
    path: Path, limit: int | None = None, preread: bounded.Preread | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in `path` and a problem text; (None, None) when the file does not exist.
    Bounded (bounded.read_bytes: regular files only, a size limit by name); a key written twice, an
    integer of more than 20 digits or invalid JSON is a problem, never a traceback."""
    try:
        return bounded.read_json_object(path, limit, preread), None
    except bounded.Unreadable as exc:
        return None, str(exc)


def folder_kind(path: Path) -> str | None:
    """Why a run-folder entry is not a run folder (None: it is a plain folder). A symlinked run folder
    is refused: it would count another run's (or anyone's) files as this run's."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "not readable"
    if stat.S_ISLNK(mode):
        return "a symbolic link, not a run folder"
    return None if stat.S_ISDIR(mode) else "not a folder"


def read_metrics(
    path: Path, run: RunSpec | None, preread: bounded.Preread | None = None
) -> tuple[dict[str, Any], list[str]]:
    """A run's metrics.json as flat validated values ({} when absent) and its problems: unreadable,
    written by another run (its `run_id`), values that are not what they claim to be."""
    metrics, problem = read_object(path / rundir.METRICS, preread=preread)
    if problem is not None:
        return {}, [problem]
    if metrics is None:
        return {}, []
    return contract.metric_values(metrics, (path.name, run.run_id if run is not None else None))


def completed_metrics(path: Path) -> dict[str, Any] | None:
    """metrics.json of a run that completed (status.json says so, metrics.json reads and validates
    without a problem); None otherwise (a run whose metrics were lost trains, or resumes, again)."""
    if status_of(path).state != State.COMPLETED.value:
        return None
    metrics, problem = read_object(path / rundir.METRICS)
    if problem is not None or not metrics:
        return None
    values, problems = contract.metric_values(metrics, (path.name, None))
    return metrics if values and not problems else None


def status_of(path: Path) -> RunStatus:
    """A run folder's status.json (state missing when there is none or it is unreadable)."""
    return read_status(path)[0]


def metrics_of(path: Path) -> contract.Metrics:
    """A run folder's metrics.json as the contract's typed Metrics (values that do not validate
    left out; empty when missing, unreadable or another run's)."""
    values, _ = read_metrics(path, None) if folder_kind(path) is None else ({}, [])
    return contract.metrics_model(values)


def result_line(path: Path) -> str:
    """`: test top-1 98.05%, 12.3 s` from a finished run's metrics.json (empty if unreadable)."""
    metrics = metrics_of(path)
    top1 = metrics.test.top1 if metrics.test is not None else None
    wall_s = metrics.timing.wall_s if metrics.timing is not None else None
    parts = ([f"test top-1 {100 * top1:.2f}%"] if top1 is not None else []) + (
        [f"{wall_s:.1f} s"] if wall_s is not None else []
    )
    return f": {', '.join(parts)}" if parts else ""


def epochs_done(path: Path) -> int:
    """Finished epochs of a run: the rows of its history.csv (0 before the first)."""
    try:
        data = bounded.read_bytes(path / rundir.HISTORY)
    except bounded.Unreadable:
        return 0
    return max(0, len(data.splitlines()) - 1) if data is not None else 0
