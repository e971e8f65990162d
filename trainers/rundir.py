"""The run directory: the one contract between the trainer that writes it and the
orchestrator that reads it. File names live here and nowhere else.

    <run_dir>/config.yaml     resolved trainer config + plan metadata (written at submit)
    <run_dir>/status.json     state, timestamps, error message, SLURM ids
    <run_dir>/metrics.json    final metrics + complexity + provenance (written once, at the end)
    <run_dir>/history.csv     one row per epoch
    <run_dir>/split.json      how the data was split (counts, class counts, id hashes)
    <run_dir>/*.csv           per-class / confusion tables of the test split, beside metrics.json
    <run_dir>/checkpoints/    last/ (accelerate.save_state) and best/ (model.safetensors)
    <run_dir>/deepspeed_config.json  the DeepSpeed config in effect (DeepSpeed runs only)
    <run_dir>/logs/           stdout/stderr of the job
    <run_dir>/eval/<name>/    `orchestrate eval` outputs (metrics.json and tables)
    <run_dir>/predictions/    `orchestrate predict` outputs (.tsv)

The names and the types of the files are trainers.contract's (re-exported here). No torch here:
both sides import it. Every write is atomic (temp file in the same
folder, fsync, rename), so a killed job never leaves a half-written file that a
later step trusts.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from trainers import contract
from trainers.contract import (
    CHECKPOINTS,
    CONFIG,
    DEEPSPEED_CONFIG,
    EVAL,
    HISTORY,
    LOGS,
    METRICS,
    PREDICTIONS,
    SPLIT,
    STATUS,
    State,
)

__all__ = [
    "CHECKPOINTS",
    "CONFIG",
    "DEEPSPEED_CONFIG",
    "EVAL",
    "HISTORY",
    "LOGS",
    "METRICS",
    "PREDICTIONS",
    "SPLIT",
    "STATUS",
    "State",
    "atomic_open",
    "file_mode",
    "fsync_folder",
    "honour_umask",
    "read_json",
    "read_state",
    "update_status",
    "write_json",
    "write_text",
]


@contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; on success fsync and rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode open() would (0666 less the umask), so a
        # group's shared results folder stays readable by the group.
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    # The rename lives in the folder: without this a node that loses power may come back with the
    # old file (status.json `running` after metrics.json was written), or none for a first write.
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable. A filesystem that cannot fsync a folder (EINVAL:
    some network and FUSE mounts) is left as it is: the rename has happened, only its durability
    is the filesystem's."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # a folder one may write but not list (mode 0o300): the rename stands, as before
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def file_mode() -> int:
    """The mode open() gives a new file: 0666 less the process umask."""
    return 0o666 & ~_umask()


def honour_umask(folder: Path) -> None:
    """Give every file under `folder` the mode open() would (libraries such as safetensors write
    0600 through their own temp files, whatever the umask: a group's shared results folder
    could not read the checkpoints)."""
    mode = file_mode()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, mode)


def _umask() -> int:
    """The process umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A folder name a command takes or makes inside a run folder (eval/<name>/): one level, no `..`."""


def folder_name(name: str) -> str | None:
    """Why `name` is no FOLDER_NAME (None when it is one): `--name ..` wrote over the run's own files."""
    if FOLDER_NAME.fullmatch(name) and ".." not in name:
        return None
    return "a folder name of at most 64 letters, digits and _ . - (starting with a letter or digit, no '..')"


def folder_slug(text: str) -> str:
    """`text` as one FOLDER_NAME-like level: runs of other characters as `_`, at most 64 ('' if none left)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-")[:64]


def open_regular(path: Path, follow_links: bool = True) -> BinaryIO:
    """`path` opened for reading without blocking: OSError unless it is a regular file (a FIFO there
    blocked a plain open forever; with `follow_links` False a final symbolic link is refused too)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


def free_path(path: Path) -> Path:
    """`path` when nothing is there (no file, folder, FIFO or link, even dangling), else FileExistsError:
    what a user made is never overwritten."""
    if os.path.lexists(path):
        raise FileExistsError(f"{path} exists; not overwritten (choose another path or move it away)")
    return path


def write_text(path: Path, text: str) -> None:
    """Atomically replace `path` with `text` (UTF-8)."""
    with atomic_open(path) as handle:
        handle.write(text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    """Atomically write `data` as indented JSON."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


MAX_JSON_BYTES = 64 * 1024 * 1024
"""Largest run file read_json takes (status.json and metrics.json are kilobytes)."""


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when the file does not exist. A regular file only, opened
    without following a final link and without blocking (a FIFO there hung the job), at most
    MAX_JSON_BYTES: anything else is a ValueError, as a file that is no JSON object is."""
    try:
        handle = open_regular(path, follow_links=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{path}: unreadable ({exc.strerror or exc})") from None
    with handle:
        raw = handle.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise ValueError(f"{path}: more than {MAX_JSON_BYTES} bytes")
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def read_state(run_dir: Path) -> State:
    """The run's recorded state; MISSING when it never wrote a status (or names none known)."""
    return contract.parse_status(read_json(run_dir / STATUS))[0].known_state


def update_status(run_dir: Path, state: State, **fields: Any) -> contract.RunStatus:
    """Record a state change with its timestamp, keeping earlier fields (start time, ids); the
    file is written through contract.RunStatus."""
    path = run_dir / STATUS
    try:
        previous = read_json(path)
    except ValueError:  # not a JSON object (an edit, a torn file of an older writer): start afresh
        previous = None
    status = contract.next_status(previous, state, time.time(), fields)
    write_json(path, status.dump())
    return status


def node_name() -> str:
    """This node as SLURM names it (SLURMD_NODENAME: what `--exclude` and sacct's NodeList take, which
    may differ from the hostname, e.g. a fully qualified one), else the hostname: the node a job
    blames for a failure of its own (record_node_fault)."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def record_node_fault(run_dir: Path, failure: str, node: str | None, reason: str) -> contract.RunStatus:
    """Record that this attempt failed for its node's reasons (a preflight check, a hang): status.json
    FAILED with `failure` and `reason`, the same on the latest attempt's entry with the node blamed
    (None: none can be named). A status with no attempt (unreadable) gets no empty list."""
    try:
        previous = read_json(run_dir / STATUS)
    except ValueError:
        previous = None
    attempts = [a.model_dump(mode="json", exclude_unset=True) for a in contract.parse_status(previous)[0].attempts]
    fields: dict[str, Any] = {"failure": failure, "failure_reason": reason}
    if attempts:
        attempts[-1].update(failure=failure, node=node, reason=reason)
        fields["attempts"] = attempts
    return update_status(run_dir, State.FAILED, **fields)
