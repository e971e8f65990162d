"""sbatch failing although slurmctld took the array: the array is found by its job name, never submitted twice.

A busy controller can take a job and still leave sbatch with `Socket timed out on send/recv operation`.
So each array gets a fresh token in its job name (`orch-<sweep>-<token>`), recorded in manifest.json
under UNCONFIRMED before sbatch is called. When sbatch fails, one `squeue --name` call says whether
the controller holds the job: if it does, the array is adopted (recorded in the manifest like any
other, then given the pickles submitit would have put in place); if it does not, sbatch's error stands.
When squeue cannot say either, the entry stays, and the next submit or `--follow` poll asks again
before it selects any run (`resolve`): a squeue that still fails fails that submit, as it always has.
Until then `status` shows its runs `unconfirmed` with the job name (`held`), and `cancel` scancels the job by
that name and forgets the entry with its set-aside pickles (`cancel`), so no later submit adopts it.

Why no run trains twice: a task trains only once it finds `<job id>_submitted.pkl`, and that is
written only for an adopted array, after the manifest names it. A job slurmctld took but that was not
adopted (it shows up after squeue was asked, or it left the queue before) waits 60 s for its pickle and
fails without training anything; its runs are submitted again, once.
"""

from __future__ import annotations

import getpass
import re
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import store
from orchestrator.launch import lock, slurmcli
from orchestrator.sweep.spec import SlurmConfig
from trainers import rundir

UNCONFIRMED = "unconfirmed"
"""manifest.json key: token -> an array sbatch was asked for and did not confirm (job name, runs per task)."""
PICKLES = "unconfirmed"
"""Folder under submitit's where the tasks of an array wait while squeue cannot say whether it was taken."""
_NAME = re.compile(r"orch-[A-Za-z0-9_.-]{1,64}-(?P<token>[0-9a-f]{12})")
"""job_name's form: only such a name reaches `squeue --name` and `scancel --name` (an empty or edited one
could match every job of the user), only such a token a pickle's file name."""
SETTLES = "the next `submit` or `submit --follow` poll settles it"
"""What ends an unconfirmed array's wait (`resolve`): said wherever its runs are shown."""


def job_name(sweep: str) -> tuple[str, str]:
    """A fresh (token, job name) for one array: the name finds the job when sbatch does not say its id."""
    token = uuid.uuid4().hex[:12]
    return token, f"orch-{sweep}-{token}"


def expect(
    root: Path, manifest: dict[str, Any], token: str, name: str, tasks: list[list[str]], extra: dict[str, Any]
) -> None:
    """Record an array about to be submitted: its job name, its tasks' runs and `extra` (the array's entry
    once adopted). Before sbatch, so that a crash or an error after it leaves the array findable."""
    entries = pending(manifest)
    entries[token] = {"job_name": name, "tasks": tasks, "at": time.time(), "extra": extra}
    manifest[UNCONFIRMED] = entries
    rundir.write_json(root / store.MANIFEST_FILE, manifest)


def confirmed(manifest: dict[str, Any], token: str) -> None:
    """Forget the token of an array now recorded with its job id (written with that record)."""
    entries = manifest.get(UNCONFIRMED)
    if isinstance(entries, dict):
        entries.pop(token, None)


def pending(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest's unconfirmed arrays that are of their shape (a hand-edited entry is left out)."""
    entries = manifest.get(UNCONFIRMED)
    return {
        token: entry
        for token, entry in (entries.items() if isinstance(entries, dict) else [])
        if isinstance(entry, dict) and _named(token, entry.get("job_name")) and _tasks(entry.get("tasks"))
    }


def _named(token: Any, name: Any) -> bool:
    """Whether `name` is a job name job_name() gives, for `token`."""
    match = _NAME.fullmatch(name) if isinstance(name, str) else None
    return match is not None and isinstance(token, str) and match["token"] == token


def held(manifest: dict[str, Any]) -> dict[str, str]:
    """run_id -> job name of the unconfirmed array holding the run: a job of that name may be queued, so the
    run is neither `not submitted` nor its earlier attempt's end until `resolve` settles it."""
    return {run_id: e["job_name"] for e in pending(manifest).values() for task in e["tasks"] for run_id in task}


def _tasks(value: Any) -> bool:
    """Whether `value` is a list of tasks, each a list of run ids."""
    return isinstance(value, list) and all(isinstance(t, list) and all(isinstance(r, str) for r in t) for t in value)


def find(name: str) -> str | None:
    """The id of the live job (pending, running...) named `name`, from one squeue call; None when there is
    none. Raises SlurmError when squeue fails: then nobody can say whether the job exists."""
    result = slurmcli.run(["squeue", "-h", "-a", "-u", getpass.getuser(), "--name", name, "-o", "%i|%T"])
    if result.returncode != 0:
        raise slurmcli.SlurmError(f"squeue failed: {result.stderr.strip() or result.stdout.strip()}")
    # A pending array is one line `A_[0-9%2]`, its running tasks `A_i`: the array id is what comes first.
    ids = {
        job_id.strip().split("_", 1)[0]
        for job_id, _, state in (line.partition("|") for line in result.stdout.splitlines())
        if state.strip() in slurmcli.ACTIVE_STATES
    }
    return min(ids, key=lambda job: (len(job), job)) if ids else None


def task_ids(array_id: str, count: int) -> list[str]:
    """The job ids submitit gives the tasks: `A` for a lone job (it submits no array), else `A_i`."""
    return [array_id] if count == 1 else [f"{array_id}_{index}" for index in range(count)]


def after_failure(
    root: Path, manifest: dict[str, Any], token: str, callables: Sequence[Any], config: SlurmConfig, error: Exception
) -> list[str]:
    """After sbatch failed with `error`: the tasks' job ids when squeue holds the array (adopted), else
    `error` raised again, with the entry dropped (not taken) or kept and its tasks' pickles set aside
    (squeue failed too: the next submit asks again)."""
    name = pending(manifest)[token]["job_name"]
    try:
        array_id = find(name)
    except (slurmcli.SlurmError, subprocess.TimeoutExpired) as exc:
        folder = root / store.SUBMITIT_DIR / PICKLES
        for index, fn in enumerate(callables):
            _dump(fn, config, folder / f"{token}_{index}.pkl")
        why = f"squeue cannot say whether the controller took array {name} ({exc}): the next submit asks again"
        raise type(error)(f"{str(error).splitlines()[0] if str(error) else error!r}; {why}") from error
    if array_id is None:
        confirmed(manifest, token)
        rundir.write_json(root / store.MANIFEST_FILE, manifest)
        raise error
    return task_ids(array_id, len(callables))


def resolve(root: Path) -> list[str]:
    """Settle the arrays an earlier submit could not confirm, before any run is selected: one squeue call
    each; a live one is adopted (recorded, its tasks' pickles moved into place), any other forgotten (its
    runs are submitted again: a job that was not adopted trains nothing). The lines to print. Raises
    SlurmError when squeue fails: the runs stay held, as nobody can say whether their job exists."""
    manifest = store.read_manifest(root, strict=True)
    folder, lines = root / store.SUBMITIT_DIR, []
    for token, entry in pending(manifest).items():
        array_id = find(entry["job_name"])
        confirmed(manifest, token)
        tasks: list[list[str]] = entry["tasks"]
        saved = [folder / PICKLES / f"{token}_{index}.pkl" for index in range(len(tasks))]
        if array_id is None or not tasks:
            rundir.write_json(root / store.MANIFEST_FILE, manifest)
            for path in saved:
                path.unlink(missing_ok=True)
            continue
        job_ids = task_ids(array_id, len(tasks))
        submitted = {run_id: job_id for runs, job_id in zip(tasks, job_ids, strict=True) for run_id in runs}
        extra = entry.get("extra") if isinstance(entry.get("extra"), dict) else {}
        store.record_array(root, manifest, array_id, submitted, {**extra, "runs": list(submitted)})
        _move(saved, job_ids, folder)
        lines.append(f"array {array_id} ({len(submitted)} runs): sbatch failed, but the controller had taken it")
    return lines


def _move(saved: list[Path], job_ids: list[str], folder: Path) -> None:
    """Put the pickles set aside for an adopted array where its tasks look for them."""
    from submitit.core.utils import JobPaths

    for path, job_id in zip(saved, job_ids, strict=True):
        if path.exists():
            path.rename(JobPaths(folder, job_id=job_id).submitted_pickle)


def place(folder: Path, job_ids: list[str], callables: Sequence[Any], config: SlurmConfig) -> None:
    """Write each adopted task's pickle where submitit's job looks for it (`<job id>_submitted.pkl`)."""
    from submitit.core.utils import JobPaths

    for job_id, fn in zip(job_ids, callables, strict=True):
        _dump(fn, config, JobPaths(folder, job_id=job_id).submitted_pickle)


def _dump(fn: Any, config: SlurmConfig, path: Path) -> None:
    """Pickle a task as submitit's SlurmExecutor does (its timeout countdown for requeues included)."""
    from submitit.core.utils import DelayedSubmission

    delayed = DelayedSubmission(fn)
    delayed.set_timeout(config.timeout_min, config.max_timeouts)
    path.parent.mkdir(parents=True, exist_ok=True)
    delayed.dump(path)


@dataclass(frozen=True)
class Cancelled:
    """What `cancel` did to the unconfirmed arrays of a sweep."""

    names: list[str]
    """Job names scancelled (the user's jobs of that name, pending or running)."""
    runs: int
    """Runs those arrays held."""
    kept: str | None = None
    """Why the entries stay in the manifest (a submit of the sweep holds its lock); None: forgotten."""


def cancel(root: Path, holding_lock: bool = False) -> Cancelled:
    """scancel every unconfirmed array by its job name (one call each: scancel takes one name), then forget
    the entries and their set-aside pickles, so that no later submit adopts a job the user cancelled (their
    runs are then submitted again by a new submit, as cancelled runs are). `holding_lock`: the caller is the
    sweep's submitter (a `submit --follow` obeying a cancel). Raises SlurmError when scancel fails: the
    entries stay, since their job may still be queued."""
    entries = pending(store.read_manifest(root, strict=True))
    user = getpass.getuser()
    for entry in entries.values():
        result = slurmcli.run(["scancel", "-u", user, f"--name={entry['job_name']}"])
        if result.returncode != 0:
            why = result.stderr.strip() or result.stdout.strip() or f"exit {result.returncode}"
            raise slurmcli.SlurmError(f"scancel --name {entry['job_name']} failed: {why}")
    runs = sum(len(task) for entry in entries.values() for task in entry["tasks"])
    done = Cancelled([entry["job_name"] for entry in entries.values()], runs)
    if not entries:
        return done
    if holding_lock:
        forget(root, set(entries))
        return done
    try:
        # The lock: a running submit writes the manifest from its own copy; writing beside it could drop the
        # array it just recorded. A follow forgets the entries at its next poll (cancels.py); a plain submit's
        # next one settles them (their jobs are gone).
        with lock.hold(root):
            forget(root, set(entries))
    except lock.SweepLocked as exc:
        return Cancelled(done.names, done.runs, kept=str(exc).split(";", 1)[0])  # "<folder> is being submitted by ..."
    return done


def forget(root: Path, tokens: set[str]) -> None:
    """Drop the unconfirmed arrays `tokens` from the manifest and delete their set-aside pickles."""
    manifest = store.read_manifest(root, strict=True)
    entries = pending(manifest)
    for token in tokens:
        confirmed(manifest, token)
    rundir.write_json(root / store.MANIFEST_FILE, manifest)
    for token in tokens & set(entries):
        for index in range(len(entries[token]["tasks"])):
            (root / store.SUBMITIT_DIR / PICKLES / f"{token}_{index}.pkl").unlink(missing_ok=True)
