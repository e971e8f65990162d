"""A busy controller, made on the real dev cluster: an sbatch that submits with the real one and then
reports `Socket timed out` (as slurmctld can after taking a job), and a squeue whose `--name` queries
fail the same way while a switch file exists. Put first on PATH; every other call is the real one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

TIMEOUT = "error: Socket timed out on send/recv operation"


def busy_controller(folder: Path, squeue_down: Path, once: bool = False) -> Path:
    """Write the two wrappers into `folder` (made here) and return it. While `squeue_down` exists, a
    `squeue --name` fails with the timeout; with `once`, the first such failure removes the switch."""
    real_sbatch, real_squeue = shutil.which("sbatch"), shutil.which("squeue")
    assert real_sbatch is not None and real_squeue is not None
    drop = f' rm -f "{squeue_down}";' if once else ""
    folder.mkdir()
    scripts = {
        "sbatch": f'"{real_sbatch}" "$@" > /dev/null 2>&1\necho "sbatch: {TIMEOUT}" >&2\nexit 1\n',
        "squeue": (
            f'case " $* " in *" --name "*) if [ -e "{squeue_down}" ]; then{drop}\n'
            f'  echo "squeue: {TIMEOUT}" >&2; exit 1; fi;; esac\nexec "{real_squeue}" "$@"\n'
        ),
    }
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}")
        (folder / name).chmod(0o755)
    return folder


def stop(process: subprocess.Popen[str]) -> None:
    """Kill a submit the test started, if it still runs (a cleanup step)."""
    if process.poll() is None:
        process.kill()
        process.wait()
