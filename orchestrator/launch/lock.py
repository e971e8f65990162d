"""One submitter per sweep: an exclusive lock on `<sweep output>/submit.lock`.

Two `submit`s of one sweep at once would both find the same runs not done and train or queue
them twice. The lock is `fcntl.flock` on a file in the sweep's output folder: the kernel drops
it when its holder exits, however it exits (SIGKILL, a crash), so a stale file never blocks.
The file's content (pid, host, user, start time) only says who holds it; it is never deleted
(removing a locked file would let a third process lock a new file of the same name).
On NFS, Linux maps flock onto NFS byte-range locks, which hold across nodes.
"""

from __future__ import annotations

import errno
import fcntl
import getpass
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.launch import pids
from orchestrator.sweep.errors import SpecError

LOCK_FILE = "submit.lock"
CLOCK_SLACK_S = 2.0
"""How much later than its record a holder's process may seem to have started (/proc's start time is
to about a second; the boot time it counts from is whole seconds) and still be the holder."""
_HELD: set[Path] = set()
"""Folders whose lock this process holds now (held_here)."""


class SweepLocked(RuntimeError):
    """Another process is submitting this sweep."""


@dataclass(frozen=True)
class Holder:
    """Who holds a sweep's lock, as written into the lock file."""

    pid: int
    """Process id of the holding `orchestrate submit`."""
    host: str
    """Host it runs on (the pid means something only there)."""
    user: str
    """User it runs as."""
    since_s: float
    """When it took the lock (seconds since the epoch)."""
    boot_id: str | None = None
    """Linux's boot id when it took the lock (None: unknown, or a file of an older version)."""

    def describe(self) -> str:
        """e.g. `pid 4242 on login1 (user ana) since 2026-12-03 09:15:02 UTC`."""
        try:
            since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since_s))
        except (OverflowError, OSError, ValueError):  # a time no clock gives (an edited file)
            since = "an unknown time"
        return f"pid {self.pid} on {self.host} (user {self.user}) since {since}"


@contextmanager
def hold(folder: Path) -> Iterator[Holder]:
    """Hold the sweep lock of `folder` for the block; SweepLocked, naming the holder, if taken."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = _open_lock(folder / LOCK_FILE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepLocked(_taken_message(folder, _read_holder(fd))) from None
        me = Holder(os.getpid(), socket.gethostname(), _user(), time.time(), pids.boot_id())
        _write_holder(fd, me)
        _HELD.add(folder.resolve())
        try:
            yield me
        finally:
            _HELD.discard(folder.resolve())
    finally:
        os.close(fd)  # closing the last descriptor releases the flock


def held_here(folder: Path) -> bool:
    """Whether this process holds `folder`'s lock now (the CLI's submit takes it before the launcher
    runs; a flock taken again through another descriptor would be refused)."""
    return folder.resolve() in _HELD


def live_holder(folder: Path) -> Holder | None:
    """Who may still be submitting `folder`: the holder its lock file records, unless that process is
    known to be gone (its pid free, or another process's since a reboot or a reuse of the pid). None
    when there is no lock file or no holder in it. Read-only, and one file read plus a look at one pid,
    so `status` asks it once per sweep; it takes no lock, which would make a submit starting at that
    moment fail. A holder on another host is returned: its pid means nothing here."""
    holder = read_holder(folder)
    if holder is None or holder.host != socket.gethostname():
        return holder
    return holder if _alive(holder) else None


def read_holder(folder: Path) -> Holder | None:
    """The holder written in `folder`'s lock file (a past one, once it ended), None when there is no
    readable one. Never creates, follows a link to or blocks on a FIFO at the lock file's name."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_holder(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    finally:
        os.close(fd)


def _alive(holder: Holder) -> bool:
    """Whether the holder's process (on this host) still runs: its pid is taken, by a process of the
    same boot that started no later than the holder took the lock."""
    if not 0 < holder.pid < 2**31 or not pids.pid_alive(holder.pid):  # kill(0 or -n) signals a group
        return False
    current = pids.boot_id()
    if holder.boot_id is not None and current is not None and holder.boot_id != current:
        return False
    started = pids.start_time(holder.pid)
    return started is None or started <= holder.since_s + CLOCK_SLACK_S


def _taken_message(folder: Path, holder: Holder | None) -> str:
    who = holder.describe() if holder else "another process (it has not written its name yet)"
    return f"{folder} is being submitted by {who}; wait for it to end (or stop it), then submit again"


def _open_lock(path: Path) -> int:
    """The lock file's descriptor: a regular file, created if absent. Never through a symbolic link
    (one truncated and overwrote its target, a dangling one created it), never a FIFO or a folder
    (a blocking open, then tracebacks): SpecError naming it instead."""
    try:  # O_NONBLOCK: a FIFO there must not block the open; not inherited by workers (O_CLOEXEC)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        why = "a symbolic link" if exc.errno == errno.ELOOP else (exc.strerror or type(exc).__name__)
        raise SpecError(f"{path}: {why}; the sweep's lock must be a plain file: move it aside") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SpecError(f"{path}: not a regular file; the sweep's lock must be a plain file: move it aside")
    return fd


def _write_holder(fd: int, holder: Holder) -> None:
    """The holder's details, in place: the file itself must stay (see the module docstring)."""
    data = json.dumps(asdict(holder)).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _read_holder(fd: int) -> Holder | None:
    """The holder written in the lock file; None while it is being written, or if unreadable."""
    try:
        raw = json.loads(os.pread(fd, 4096, 0) or b"null")
        boot = raw.get("boot_id")
        pid, since = int(raw["pid"]), float(raw["since_s"])
        return Holder(pid, str(raw["host"]), str(raw["user"]), since, boot if isinstance(boot, str) else None)
    except (ValueError, TypeError, KeyError, OverflowError, AttributeError):  # Overflow: a pid of 1e400 (inf)
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return str(os.getuid())
