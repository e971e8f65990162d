"""The sweep's folders on disk: which runs are done, running or failed (files only).

<output_dir>/sweep.yaml            the spec as last submitted (overrides applied)
<output_dir>/submissions/          one snapshot per submit, never overwritten
<output_dir>/runs/<run_id>/        one folder per run (see trainers.rundir)
<output_dir>/archive/<stamp>/      run folders moved aside by --force (nothing is deleted)
<output_dir>/smoke/...             the same layout for --smoke runs, never counted as done
<output_dir>/tables/               collect's output
<output_dir>/run_ids.json          cache: today's run id of each folder named under an older id rule
                                   (orchestrator.results.folders)
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from orchestrator.sweep import yamlio
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SpecError, SweepSpec
from trainers import rundir
from trainers.rundir import State

SWEEP_FILE = "sweep.yaml"
MANIFEST_FILE = "manifest.json"
RUN_IDS_FILE = "run_ids.json"
SUBMITIT_DIR = "slurm"


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


def read_manifest(root: Path) -> dict[str, Any]:
    """run_id -> SLURM job of the sweep's latest submission of that run, and the arrays submitted."""
    manifest = rundir.read_json(root / MANIFEST_FILE) or {}
    manifest.setdefault("runs", {})
    manifest.setdefault("arrays", {})
    return manifest


def record_array(
    root: Path, manifest: dict[str, Any], array_id: str, jobs: dict[str, str], extra: dict[str, Any]
) -> None:
    """Add one submitted array (run_id -> job id `A_i`) to the manifest and write it atomically."""
    now = time.time()
    manifest["arrays"][array_id] = {"size": len(jobs), "submitted_at": now, **extra}
    for run_id, job_id in jobs.items():
        manifest["runs"][run_id] = {"job_id": job_id, "array_id": array_id, "submitted_at": now}
    rundir.write_json(root / MANIFEST_FILE, manifest)
