"""The environment a run trained in, for its provenance: interpreter, packages, container image,
torch/CUDA/cuDNN/NCCL, driver, GPU.

The batch script of a job with a `slurm.env` block exports what only the login node knows (the
env's kind, the image reference and its digest, orchestrator/sweep/nodeenv.py); everything else
is read here, on the node, inside the container if there is one. Importing this module is
torch-free (the login side imports the variable names).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from importlib import metadata
from typing import Any

ENV_KIND = "ORCHESTRATE_ENV_KIND"
"""The env block's kind (venv, conda, modules, apptainer, pyxis, charliecloud); unset: none."""
ENV_IMAGE = "ORCHESTRATE_ENV_IMAGE"
"""The container image as the env block names it (path or URI)."""
ENV_IMAGE_DIGEST = "ORCHESTRATE_ENV_IMAGE_DIGEST"
"""`sha256:<hex>` of an image file, `tree-sha256:<hex>` of a directory image's listing (at submit)."""
_ENTRY_POINT = "orchestrator.cli"
"""The tool's console script lives here: its distribution is the tool's, whatever it is named."""
# Variables a container runtime sets inside its containers: which runtime the process is really in.
_RUNTIME_MARKERS = (
    ("CH_RUNNING", "charliecloud"),
    ("APPTAINER_CONTAINER", "apptainer"),
    ("SINGULARITY_CONTAINER", "singularity"),
)


def environment() -> dict[str, Any]:
    """The provenance block `environment` of metrics.json (flat: the results reader makes columns of it)."""
    packages, tool = installed_packages()
    info: dict[str, Any] = {
        "kind": os.environ.get(ENV_KIND, "none"),
        "interpreter": sys.executable,
        "prefix": sys.prefix,
        "tool_version": tool,
        "packages_sha256": hashlib.sha256("\n".join(packages).encode()).hexdigest(),
        "packages_count": len(packages),
        "image": os.environ.get(ENV_IMAGE),
        "image_digest": os.environ.get(ENV_IMAGE_DIGEST),
        "container": container_runtime(),
        "user_site_disabled": bool(sys.flags.no_user_site),
        "modules": os.environ.get("LOADEDMODULES") or None,
        "conda_prefix": os.environ.get("CONDA_PREFIX"),
    }
    info.update(torch_stack())
    return info


def installed_packages() -> tuple[list[str], str | None]:
    """`name==version` of every distribution this interpreter imports from, sorted (the first of
    duplicate names on sys.path, as import would pick), and the version of the one that installed
    this tool (found by its console script, whatever the distribution is named; None when the code
    runs from a source tree that is not installed). One pass: metadata reads cost ~ms per package."""
    seen: dict[str, str] = {}
    tool: str | None = None
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").strip().lower().replace("_", "-")
        if not name or name in seen:
            continue
        seen[name] = dist.version
        if tool is None and any(ep.value.startswith(_ENTRY_POINT) for ep in dist.entry_points):
            tool = dist.version
    return sorted(f"{name}=={version}" for name, version in seen.items()), tool


def container_runtime() -> str | None:
    """The container runtime this process runs in, from the variables each runtime sets; None: none."""
    for variable, runtime in _RUNTIME_MARKERS:
        if variable in os.environ:
            return runtime
    return None


def torch_stack() -> dict[str, Any]:
    """torch, its CUDA and cuDNN builds, NCCL, the NVIDIA driver and the visible GPUs (None where absent)."""
    import torch

    cuda = torch.cuda.is_available()
    stack: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": _quiet(torch.backends.cudnn.version) if cuda else None,
        "nccl": None,
        "driver": nvidia_driver() if cuda else None,
        "gpus": None,
    }
    if cuda:
        nccl = _quiet(torch.cuda.nccl.version)
        stack["nccl"] = ".".join(str(part) for part in nccl) if isinstance(nccl, tuple) else nccl
        names = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
        stack["gpus"] = ", ".join(names)
    return stack


def _quiet(read: Any) -> Any:
    """A version read that may fail on builds without that library: None rather than a failed run."""
    try:
        return read()
    except Exception:
        return None


def nvidia_driver() -> str | None:
    """The NVIDIA driver version (nvidia-smi), None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None
