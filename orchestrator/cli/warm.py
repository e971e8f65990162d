"""A warm process for `collect` and `status`: the libraries imported once, each command forked from it.

Measured at 10,002 run folders on the 2-core dev machine (issue 28, docs/benchmarks.md): a second
`collect` after 10 changed runs does 0.8 s of work, and importing what it needs (pandas, scipy,
jinja2, pydantic, the spec models) takes 0.6 s more before it starts: the libraries alone are 0.5 s
of that, which no change to our code can remove. So the first `collect` or `status` of a session
starts, after its own work, a warm process (warm_server.py) that imports them and waits; the next
such command, run from any shell of the same user with the same Python, code, import-time
environment and limits, is a fork of it: the same code, a fresh process per command (the shell's
standard streams and working folder handed over, the user's environment, umask and arguments set
before it runs), nothing kept from one command to the next.

This module is the client side and uses the standard library alone: `orchestrate` imports it
first, and a command the warm process serves costs its interpreter start and a few milliseconds.
Anything that goes wrong before the warm process has taken the command (no warm process, a stale
socket, a folder with the wrong owner or mode) runs the command here, as if there were none.

The warm process ends after ORCHESTRATE_WARM_IDLE_S seconds without a command (default 600), and
`ORCHESTRATE_WARM=0` neither uses nor starts one (a site that forbids idle processes on its login
nodes). Inside a SLURM job no warm process is started: the job's end would kill it anyway.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import resource
import signal
import socket
import stat
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SWITCH_ENV = "ORCHESTRATE_WARM"
"""`0` (or `off`, `no`, `false`): run every command in its own process and start no warm process."""
IDLE_ENV = "ORCHESTRATE_WARM_IDLE_S"
"""Seconds a warm process waits for its next command before it exits (default IDLE_DEFAULT_S)."""
DIR_ENV = "ORCHESTRATE_WARM_DIR"
"""The folder of the warm processes' sockets (default: $XDG_RUNTIME_DIR/orchestrate, else
/tmp/orchestrate-UID); it must be the user's own, with no access for group or others."""
IDLE_DEFAULT_S = 600.0
COMMANDS = frozenset({"collect", "status"})
"""Commands served warm: they read run folders and write tables, and end. `submit` (locks, SLURM,
workers that outlive it) and the torch commands always run in their own process."""
IMPORT_ENV = ("PYTHON", "LANG", "LC_", "OMP_", "OPENBLAS_", "MKL_", "NUMEXPR_", "NUMPY_", "MALLOC_", "LD_")
"""Environment variables read when the libraries are imported (the streams' encoding, thread pools,
the loader): a warm process serves only shells whose values of these equal its own."""
_LIMITS = ("AS", "CORE", "CPU", "DATA", "FSIZE", "MEMLOCK", "NOFILE", "NPROC", "RSS", "STACK")
ANSWER_S = 10.0
"""How long the client waits for the warm process to take a command before running it here (and
the warm process for a request to arrive whole)."""
_LOST = 255
"""The client's exit status when the warm process vanished while running the command."""


def enabled() -> bool:
    """Whether commands may be served warm (ORCHESTRATE_WARM unset or on, and not inside a SLURM job)."""
    if os.environ.get(SWITCH_ENV, "").strip().lower() in {"0", "off", "no", "false"}:
        return False
    return "SLURM_JOB_ID" not in os.environ


def served(argv: list[str]) -> bool:
    """Whether this command line is one a warm process may run (its command is in COMMANDS)."""
    return bool(argv) and argv[0] in COMMANDS


def folder() -> Path | None:
    """The sockets' folder, made if missing; None when it is not a folder of this user's alone (then
    nothing is served warm: another user could have put a socket of theirs there)."""
    configured = os.environ.get(DIR_ENV)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if configured:
        path = Path(configured)
    elif runtime and os.path.isabs(runtime):
        path = Path(runtime, "orchestrate")
    else:
        path = Path(os.environ.get("TMPDIR") or "/tmp", f"orchestrate-{os.getuid()}")
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return None
    private = stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
    return path if private else None


def key(roots: tuple[Path, ...] | None = None) -> str:
    """What a warm process must share with a shell to serve it: the interpreter and its flags, the
    import path and every file of our packages (name, size, mtime: an edit or `pip install` gives a
    new key), the import-time environment (IMPORT_ENV), the user, limits, CPUs and cgroup."""
    digest = hashlib.blake2b(digest_size=12)
    parts = [sys.executable, sys.version, repr(sys.flags), repr(sys.path), repr(os.getgroups())]
    parts += [f"{os.getuid()}:{os.getgid()}", repr(sorted(os.sched_getaffinity(0))), _cgroup()]
    limits = [getattr(resource, f"RLIMIT_{n}") for n in _LIMITS if hasattr(resource, f"RLIMIT_{n}")]
    parts += [repr(resource.getrlimit(limit)) for limit in limits]
    parts += [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(IMPORT_ENV)]
    # A relative entry ('' of `python -c`) is a folder of the working folder's: where one exists,
    # the imports depend on it. (The editable install's `...__path_hook__` entry is no folder.)
    parts += [os.path.abspath(entry) for entry in sys.path if not os.path.isabs(entry) and os.path.exists(entry)]
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    for entry in sys.path:  # a distribution installed, upgraded or removed changes its folder
        digest.update(_stamp(entry))
    for root in roots if roots is not None else _package_roots():
        _stamp_tree(digest, str(root))
    return digest.hexdigest()


def _package_roots() -> tuple[Path, ...]:
    """orchestrator/ and trainers/ (side by side in a checkout and in site-packages)."""
    here = Path(__file__).resolve().parents[1]
    return (here, here.with_name("trainers"))


def _cgroup() -> str:
    try:
        with open("/proc/self/cgroup", encoding="utf-8", errors="replace") as file:
            return file.read(4096)
    except OSError:
        return ""


def _stamp(path: str) -> bytes:
    try:
        info = os.stat(path)
    except OSError:
        return b"-\0"
    return f"{path}:{info.st_mtime_ns}:{info.st_size}:{info.st_ino}\0".encode("utf-8", "surrogateescape")


def _stamp_tree(digest: hashlib.blake2b, root: str) -> None:
    """Every entry under `root` but byte-code caches, by name, size, mtime and inode."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        digest.update(f"{root}:-\0".encode("utf-8", "surrogateescape"))
        return
    for entry in entries:
        if entry.name == "__pycache__":
            continue
        digest.update(_stamp(entry.path))
        if entry.is_dir(follow_symlinks=False):
            _stamp_tree(digest, entry.path)


def socket_path(where: Path, name: str) -> Path:
    """The warm process's socket for key `name` in folder `where`."""
    return where / f"{name}.sock"


def run(argv: list[str]) -> int | None:
    """The command's exit status, run by a warm process; None when none took it (run it here)."""
    if not (served(argv) and enabled()):
        return None
    where = folder()
    if where is None:
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with client:
        try:
            client.settimeout(ANSWER_S)
            client.connect(str(socket_path(where, key())))
        except OSError:
            return None
        before = {signum: signal.signal(signum, _forwarder(client)) for signum in FORWARDED}
        try:  # from here a Ctrl-C reaches the command once it starts (sent ahead, read by the warm process)
            _send_request(client, argv)
            taken = _receive(client, 1) == b"P"
        except OSError:
            taken = False
        if not taken:  # nothing ran: this process runs the command, with its own handlers
            for signum, handler in before.items():
                signal.signal(signum, handler)
            return None
        client.settimeout(None)
        return _await_end(client)


def _send_request(client: socket.socket, argv: list[str]) -> None:
    """The command line, environment and umask (JSON), with the standard streams and working folder
    as descriptors (SCM_RIGHTS: the command writes to this very terminal, pipe or file)."""
    mask = os.umask(0o077)
    os.umask(mask)
    body = json.dumps({"argv": argv, "env": dict(os.environ), "umask": mask}).encode("ascii")
    here = os.open(".", os.O_PATH | os.O_DIRECTORY)
    try:
        socket.send_fds(client, [struct.pack("!I", len(body))], [0, 1, 2, here])
    finally:
        os.close(here)
    client.sendall(body)


FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
"""Signals this process passes on to the command (Ctrl-C, a kill, a closed terminal)."""


def _forwarder(client: socket.socket) -> Callable[[int, Any], None]:
    """A signal handler that passes the signal on to the warm process's command."""

    def forward(signum: int, _frame: Any) -> None:
        with contextlib.suppress(OSError):  # the command ended meanwhile
            client.sendall(b"S" + bytes([signum]))

    return forward


def _await_end(client: socket.socket) -> int:
    """Forward signals until the command ends; its exit status (a command killed by a signal ends
    this process by the same signal, so the shell sees what it would have seen)."""
    try:
        answer = _receive(client, 5)
    except OSError:  # the warm process reset the connection
        answer = b""
    for signum in FORWARDED:
        signal.signal(signum, signal.SIG_DFL)
    if len(answer) != 5 or answer[:1] != b"X":
        print(
            "error: the warm orchestrate process ended before the command did; run it again "
            f"({SWITCH_ENV}=0 runs it in its own process)",
            file=sys.stderr,
        )
        return _LOST
    (status,) = struct.unpack("!i", answer[1:])
    if status < 0:  # killed by signal -status
        signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
        return 128 - int(status)
    return int(status)


def _receive(client: socket.socket, size: int) -> bytes:
    """Exactly `size` bytes, or fewer when the other end closed first."""
    data = b""
    while len(data) < size:
        part = client.recv(size - len(data))
        if not part:
            break
        data += part
    return data


def start(argv: list[str]) -> None:
    """After a command ran in its own process: start a warm process for the next one, unless one
    runs (or starts) for this key, the command is not served warm, or warm processes are off."""
    if not (served(argv) and enabled()):
        return
    where = folder()
    if where is None:
        return
    name = key()
    if _listening(socket_path(where, name)):
        return
    boot = (
        "import json, sys; a = json.loads(sys.argv[1]); sys.path[:] = a['path']; "
        "from orchestrator.cli import warm_server; warm_server.serve(a['folder'], a['key'], a['idle_s'], a['ahead'])"
    )
    ahead = {"argv": argv, "cwd": os.getcwd()}  # what it reads ahead first: this command's sweep
    settings = {"path": sys.path, "folder": str(where), "key": name, "idle_s": idle_s(), "ahead": ahead}
    import subprocess  # here: a command served warm never starts one

    with contextlib.suppress(OSError):  # no process to start (a limit): the next command runs here too
        subprocess.Popen(
            [sys.executable, "-c", boot, json.dumps(settings)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )


def idle_s() -> float:
    """ORCHESTRATE_WARM_IDLE_S, or IDLE_DEFAULT_S when unset or not a positive number."""
    try:
        value = float(os.environ.get(IDLE_ENV, ""))
    except ValueError:
        return IDLE_DEFAULT_S
    return value if 0 < value < 1e7 else IDLE_DEFAULT_S


def stop(where: Path) -> list[int]:
    """SIGTERM to every warm process serving from folder `where` (the pid each wrote into the lock
    it holds); their pids. Commands they are running go on to their end."""
    import fcntl

    stopped = []
    for lock in sorted(where.glob("*.lock")):
        try:
            fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            continue  # no process holds it
        except OSError:
            pid = os.read(fd, 32).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        if pid.isdigit():
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGTERM)
                stopped.append(int(pid))
    return stopped


def _listening(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
