"""Where and with what a run was produced: git state, package versions, host, device."""

from __future__ import annotations

import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import trainers
from trainers.runtime import envinfo

PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "accelerate",
    "scikit-learn",
    "numpy",
    "pillow",
    "pydantic",
    "deepspeed",
)


def _git(*args: str) -> str | None:
    # The repository holding this package: the code that actually ran, whatever the cwd. Only a
    # checkout of this tool counts: an installed copy inside another repository (a venv in the
    # user's project) would otherwise record that project's commit as the code version.
    repo = Path(trainers.__file__).resolve().parents[1]  # the folder holding the `trainers` package
    try:
        top = subprocess.run(["git", "-C", str(repo), "rev-parse", "--show-toplevel"], **_QUIET)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != repo:
            return None
        done = subprocess.run(["git", "-C", str(repo), *args], **_QUIET)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


_QUIET: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 10}


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on (absent ones omitted)."""
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def device_name(device: torch.device) -> str:
    """'cpu', or the accelerator's marketing name (e.g. 'NVIDIA H100 80GB HBM3')."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def provenance(device: torch.device, num_processes: int) -> dict[str, Any]:
    """The provenance block of metrics.json."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "packages": package_versions(),
        "host": socket.gethostname(),
        "device": device_name(device),
        "num_processes": num_processes,
        "python": platform.python_version(),
        "environment": envinfo.environment(),
    }
