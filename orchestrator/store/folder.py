"""The sweep's folder on disk: its layout, the spec snapshots and the manifest of submitted jobs.

<output_dir>/sweep.yaml            the spec as last submitted (overrides applied)
<output_dir>/submissions/          one snapshot per submit, never overwritten
<output_dir>/runs/<run_id>/        one folder per run (see trainers.rundir)
<output_dir>/archive/<stamp>/      run folders moved aside by --force (nothing is deleted)
<output_dir>/smoke/...             the same layout for --smoke runs, never counted as done
<output_dir>/tables/               collect's output
<output_dir>/run_ids.json          cache: today's run id of each folder named under an older id rule
                                   (orchestrator.store.run_ids)
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from orchestrator.sweep import bounded, yamlio
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SpecError, SweepSpec
from trainers import rundir
from trainers.rundir import State

SWEEP_FILE = "sweep.yaml"
MANIFEST_FILE = "manifest.json"
RUN_IDS_FILE = "run_ids.json"
SUBMITIT_DIR = "slurm"
_JOB_ID = re.compile(r"[0-9]{1,20}(_[0-9]{1,10})?")


def sweep_root(spec: SweepSpec, smoke: bool = False) -> Path:
    """Output folder of the sweep (or of its smoke runs)."""
    return spec.output_path / "smoke" if smoke else spec.output_path


def run_path(root: Path, run_id: str) -> Path:
    """Folder of one run under a sweep root."""
    return root / "runs" / run_id


def prepare(run: RunSpec, path: Path) -> None:
    """Create the run folder with its config.yaml and a pending status."""
    write_config(path, run.metadata(), run.config.model_dump(mode="json"))
    if not (path / rundir.STATUS).exists():
        rundir.update_status(path, State.PENDING)


def write_config(path: Path, metadata: dict[str, Any], trainer: dict[str, Any]) -> None:
    """config.yaml of a run folder: plan metadata + the resolved trainer config."""
    path.mkdir(parents=True, exist_ok=True)
    rundir.write_text(path / rundir.CONFIG, yamlio.dumps({**metadata, "trainer": trainer}))


def archive(path: Path, root: Path, stamp: str) -> Path:
    """Move a run folder aside (used by --force); returns where it went."""
    target = root / "archive" / stamp / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), str(target))
    return target


def timestamp() -> str:
    """Sortable local timestamp used in folder names."""
    return time.strftime("%Y%m%d-%H%M%S")


def foreign_snapshot(root: Path) -> Path | None:
    """`root/sweep.yaml` when it exists and is not a snapshot this tool wrote (a user's own file)."""
    path = root / SWEEP_FILE
    if not path.exists():
        return None
    if _recorded_snapshot(root):  # the very bytes submit wrote (parsing 5,000 rows' snapshot took 0.5 s)
        return None
    try:
        data = yamlio.load_file(path, "snapshot")
    except yamlio.YamlFileError:
        return path
    ours = isinstance(data, dict) and {"spec", "source", "overrides"} <= set(data) and isinstance(data["spec"], dict)
    return None if ours else path


def write_snapshot(spec: SweepSpec, root: Path) -> None:
    """Record the spec as submitted: sweep.yaml (latest) and submissions/<stamp>.yaml (history).

    A sweep.yaml that this tool did not write (say, the user's own spec kept in the output
    folder) is never replaced: SpecError instead.
    """
    foreign = foreign_snapshot(root)
    if foreign is not None:
        raise SpecError(f"{foreign}: exists and was not written by orchestrate; move it or pick another output_dir")
    text = yamlio.dumps(spec.snapshot())
    rundir.write_text(root / SWEEP_FILE, text)
    history = root / "submissions" / f"{timestamp()}-{os.getpid()}.yaml"
    rundir.write_text(history, text)
    manifest, problem = load_manifest(root)
    if problem is None or not (root / MANIFEST_FILE).exists():  # a broken manifest is left for submit to refuse
        rundir.write_json(root / MANIFEST_FILE, {**manifest, SNAPSHOT_HASH: _snapshot_digest(text.encode("utf-8"))})


SNAPSHOT_HASH = "sweep_yaml_blake2b"
"""manifest.json key: the hash of the sweep.yaml submit wrote, so an edit made afterwards is found."""


def _snapshot_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _recorded_snapshot(root: Path) -> bool:
    """Whether sweep.yaml holds the bytes whose hash submit recorded in manifest.json."""
    try:
        recorded = (bounded.read_json_object(root / MANIFEST_FILE) or {}).get(SNAPSHOT_HASH)
    except bounded.Unreadable:
        return False
    return isinstance(recorded, str) and _snapshot_edited(root, recorded) is None


def snapshot_problem(root: Path) -> str | None:
    """Why the sweep folder's sweep.yaml is not the one submit wrote (edited afterwards: tables read
    from it would relabel the runs), or None (unchanged, or written before its hash was recorded)."""
    manifest, _ = load_manifest(root)
    recorded = manifest.get(SNAPSHOT_HASH)
    return _snapshot_edited(root, recorded) if isinstance(recorded, str) else None


def _snapshot_edited(root: Path, recorded: str) -> str | None:
    """Why sweep.yaml is not the bytes whose hash is `recorded` (None: it is)."""
    try:
        data = bounded.read_bytes(root / SWEEP_FILE)
    except bounded.Unreadable as exc:
        return str(exc)
    if data is None or _snapshot_digest(data) != recorded:
        return f"{SWEEP_FILE} was changed after submit wrote it (its hash differs from {MANIFEST_FILE}'s); resubmit"
    return None


def read_manifest(root: Path, strict: bool = False) -> dict[str, Any]:
    """run_id -> SLURM job of the sweep's latest submission of that run, and the arrays submitted.
    Tolerant (status, collect): an unreadable manifest, or entries not of its shape, read as none
    (manifest_problem names why). `strict` (submit): a ManifestError instead, since submitting with
    a manifest that cannot be read could start a second copy of a job that still runs."""
    manifest, problem = load_manifest(root)
    if problem is not None and strict:
        raise ManifestError(f"{root}: {problem}; check squeue for this sweep's jobs, then move it aside")
    return manifest


class ManifestError(SpecError):
    """manifest.json cannot be read, and what is about to happen needs it."""


def manifest_problem(root: Path) -> str | None:
    """What is wrong with the sweep's manifest.json (None: nothing, or there is none)."""
    return load_manifest(root)[1]


def load_manifest(root: Path) -> tuple[dict[str, Any], str | None]:
    """The manifest with only well-formed entries ({"runs": {}, "arrays": {}} when there is none) and
    what is wrong with it: unreadable (bounded: a FIFO, a folder, too large, invalid JSON), or entries
    that are not `run_id -> {job_id: str, ...}` and `array_id -> {...}` (those are left out)."""
    try:
        data = bounded.read_json_object(root / MANIFEST_FILE) or {}
    except bounded.Unreadable as exc:
        return {"runs": {}, "arrays": {}}, str(exc)
    runs, arrays = data.get("runs", {}), data.get("arrays", {})
    runs = runs if isinstance(runs, dict) else {}
    arrays = arrays if isinstance(arrays, dict) else {}
    good_runs = {k: v for k, v in runs.items() if isinstance(v, dict) and _job_id(v.get("job_id"))}
    good_arrays = {k: v for k, v in arrays.items() if _job_id(k) and isinstance(v, dict)}
    dropped = len(runs) - len(good_runs) + len(arrays) - len(good_arrays)
    if not isinstance(data.get("runs", {}), dict) or not isinstance(data.get("arrays", {}), dict):
        dropped += 1
    problem = f"{MANIFEST_FILE}: {dropped} entries not of its shape (left out)" if dropped else None
    return {**data, "runs": good_runs, "arrays": good_arrays}, problem


def _job_id(value: Any) -> bool:
    """A SLURM job or array task id as submitit records it: `123` or `123_4` (it reaches squeue/sacct)."""
    return isinstance(value, str) and _JOB_ID.fullmatch(value) is not None


def record_array(
    root: Path, manifest: dict[str, Any], array_id: str, jobs: dict[str, str], extra: dict[str, Any]
) -> None:
    """Add one submitted array (run_id -> job id `A_i`) to the manifest and write it atomically."""
    now = time.time()
    manifest["arrays"][array_id] = {"size": len(jobs), "submitted_at": now, **extra}
    for run_id, job_id in jobs.items():
        manifest["runs"][run_id] = {"job_id": job_id, "array_id": array_id, "submitted_at": now}
    rundir.write_json(root / MANIFEST_FILE, manifest)


def forget_submissions(root: Path, run_ids: set[str]) -> None:
    """Drop runs from the manifest (their latest job, and every array's list of its runs): --force
    redoes them from scratch, so their earlier submissions neither name their job any more nor count
    as attempts against the retry policy (the attempts in the archived status.json went with it)."""
    manifest, _ = load_manifest(root)
    arrays = [array for array in manifest["arrays"].values() if isinstance(array.get("runs"), list)]
    if not (run_ids & manifest["runs"].keys() or any(run_ids.intersection(a["runs"]) for a in arrays)):
        return
    for run_id in run_ids:
        manifest["runs"].pop(run_id, None)
    for array in arrays:
        array["runs"] = [run_id for run_id in array["runs"] if run_id not in run_ids]
    rundir.write_json(root / MANIFEST_FILE, manifest)


def submissions(manifest: dict[str, Any]) -> dict[str, int]:
    """run_id -> how many of the manifest's arrays hold it: each submission is an attempt, even one that
    ended before the job wrote status.json (arrays recorded before arrays listed their runs count none)."""
    counts: dict[str, int] = {}
    for array in manifest["arrays"].values():
        runs = array.get("runs")
        if isinstance(runs, list):
            for run_id in {run_id for run_id in runs if isinstance(run_id, str)}:
                counts[run_id] = counts.get(run_id, 0) + 1
    return counts
