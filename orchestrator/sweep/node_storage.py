"""Where a job's files live as the nodes see them: whether the interpreter a job would run is on a
filesystem the nodes share, and whether a container binds the output folder. Read on the login node
from /proc/mounts; each finding is one line `submit` prints or refuses with.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from orchestrator.sweep.nodeenv import ApptainerEnv, CharliecloudEnv, NodeEnv, PyxisEnv

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "cifs", "smb3", "glusterfs", "fuse.glusterfs"}
    | {"fuse.sshfs", "wekafs", "panfs", "fuse.weka", "orangefs", "pvfs2", "fuse.juicefs"}
)
_OS_DIRS = ("/usr/", "/bin/", "/lib/", "/lib64/")
"""Interpreter folders of the operating system itself: every node of a cluster has its own copy."""


def unshared_interpreter(output_dir: Path, home: str | None = None) -> list[str]:
    """Folders of this interpreter that compute nodes may not see (for a job without an env block).

    The rule: a folder counts as shared when it is (a) under $HOME, (b) on the filesystem of the
    sweep's output folder (the jobs must see that one anyway: submitit writes their logs there), or
    (c) on a network or parallel filesystem (NETWORK_FILESYSTEMS, read from /proc/mounts). The
    folders checked are the environment's (sys.prefix, where the packages are) and the base
    interpreter's, unless that is the operating system's own (/usr/bin/python3).
    """
    home = os.path.realpath(home or os.path.expanduser("~"))
    output_dev = _device(output_dir)
    mounts = _mounts()
    problems: list[str] = []
    for folder in dict.fromkeys([sys.prefix, os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))]):
        real = os.path.realpath(folder)
        if (real + "/").startswith(_OS_DIRS) or (real + "/").startswith(home.rstrip("/") + "/"):
            continue
        if output_dev is not None and _device(Path(real)) == output_dev:
            continue
        if _fstype(real, mounts) in NETWORK_FILESYSTEMS:
            continue
        problems.append(folder)
    return problems


def _device(path: Path) -> int | None:
    """st_dev of `path`, or of its nearest existing parent (the output folder may not exist yet)."""
    for candidate in [path, *path.absolute().parents]:
        try:
            return candidate.stat().st_dev
        except OSError:
            continue
    return None


def _mounts() -> list[tuple[str, str]]:
    """(mount point, type) of /proc/mounts, longest mount point first; [] where there is none."""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    pairs = [(parts[1].replace("\\040", " "), parts[2]) for parts in (line.split() for line in lines) if len(parts) > 2]
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def _fstype(path: str, mounts: list[tuple[str, str]]) -> str | None:
    for point, kind in mounts:
        if path == point or path.startswith(point.rstrip("/") + "/"):
            return kind
    return None


def unbound_output(env: NodeEnv | None, output_dir: Path, home: str | None = None) -> str | None:
    """For a container env: why the sweep's output folder may not be visible inside it, or None.

    The job writes its run folders and logs there, so the folder must be under a bind (SRC or
    DST of `binds`/`mounts`) or under what the runtime binds by default: Apptainer $HOME and
    /tmp, Pyxis the home folder unless `mount_home: false`, Charliecloud /tmp. Sites can bind
    more by configuration, hence a warning, not an error.
    """
    if not isinstance(env, ApptainerEnv | PyxisEnv | CharliecloudEnv):
        return None
    home = os.path.realpath(home or os.path.expanduser("~"))
    binds = env.mounts if isinstance(env, PyxisEnv) else env.binds
    covered = {part for bind in binds for part in bind.split(":")[:2]}
    covered |= {"/tmp"} if not isinstance(env, PyxisEnv) else set()
    covered |= {home} if isinstance(env, ApptainerEnv) or (isinstance(env, PyxisEnv) and env.mount_home) else set()
    target = os.path.realpath(output_dir)
    if any(target == os.path.realpath(p) or target.startswith(os.path.realpath(p).rstrip("/") + "/") for p in covered):
        return None
    return f"the output folder {target} is not under a bind of the {env.kind} container ({', '.join(sorted(covered))})"
