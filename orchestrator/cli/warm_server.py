"""The warm process (see warm.py): imports the libraries once, then forks a fresh process per command.

Per connection, a handler process (forked) takes the request, forks the command's process and
supervises it: the client's signals are passed on, the client's end (a closed connection) ends the
command with SIGTERM, and the command's exit status goes back. The warm process itself runs no
command and keeps nothing from one to the next; it exits after `idle_s` seconds without one.

Only our own user reaches it: the socket lives in a folder of that user's alone (warm.folder), and
a peer of another uid (SO_PEERCRED) is closed before a byte is read.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import gc
import importlib
import io
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, NoReturn

from orchestrator.cli import warm
from orchestrator.cli import warm_ahead as ahead

PRELOAD = (
    "pandas",
    "scipy.special",
    "jinja2",
    "rich.console",
    "rich.table",
    "orchestrator.results.collect",
    "orchestrator.results.tables",
    "orchestrator.results.adaptive",
    "orchestrator.store.profile",
    "orchestrator.store.run_states",
    "orchestrator.launch.status",
    "orchestrator.cli.terminal",
    "orchestrator.cli.views",
)
"""What `collect` and `status` import, less the command modules that make their consoles at import
(orchestrator.cli.commands: their width and colour follow the client's streams, known only later)."""
MAX_REQUEST = 16 << 20
"""Bytes of a request's JSON (its environment) at most."""


def serve(where: str, name: str, idle_s: float, first: dict[str, Any] | None = None) -> None:
    """Serve commands on `where`/`name`.sock until `idle_s` seconds pass without one; returns at
    once when another warm process holds this key's lock. `first`: the argv and cwd of the command
    that started it, whose sweep it reads ahead before it listens."""
    folder = Path(where)
    lock = os.open(folder / f"{name}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another warm process serves (or is starting for) this key
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())  # for warm.stop
    for module in PRELOAD:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()  # the forks' collections never walk the libraries (nor copy their pages)
    if first is not None:
        with contextlib.suppress(OSError, KeyError, TypeError):
            here = os.open(first["cwd"], os.O_PATH | os.O_DIRECTORY)
            ahead.read_ahead([str(a) for a in first["argv"]], dict(os.environ), here)
            os.close(here)
    path = warm.socket_path(folder, name)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a warm process of this key that was killed: its socket answers no one
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(mask)
    listener.listen(16)
    try:
        _accept(listener, lock, idle_s)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        listener.close()


def _accept(listener: socket.socket, lock: int, idle_s: float) -> None:
    handlers: set[int] = set()
    signal.signal(signal.SIGCHLD, lambda *_: _reap(handlers))  # no handler left a zombie while idle
    while True:
        ready, _, _ = select.select([listener], [], [], idle_s)
        _reap(handlers)
        if not ready:
            if not handlers:
                return  # idle_s without a command
            continue
        _fork_handler(listener, lock, handlers)


def _fork_handler(listener: socket.socket, lock: int, handlers: set[int]) -> None:
    """Take the next connection's request and fork its handler."""
    connection, _ = listener.accept()
    with connection:
        request, fds = _taken(connection)
        if request is None:
            return
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(lock)
            listener.close()
            _handle(connection, request, fds)
        for fd in fds:
            os.close(fd)
        handlers.add(pid)


def _taken(connection: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The request of a peer of this user (within ANSWER_S), else None."""
    if not _same_user(connection):
        return None, []
    connection.settimeout(warm.ANSWER_S)
    try:
        return _request(connection)
    except OSError:
        return None, []


def _reap(handlers: set[int]) -> None:
    for pid in list(handlers):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue
        handlers.discard(pid)


def _same_user(connection: socket.socket) -> bool:
    creds = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def _handle(connection: socket.socket, request: dict[str, Any], fds: list[int]) -> NoReturn:
    """In the handler process: run the request's command in a fork, answer its exit status."""
    try:
        connection.settimeout(None)
        connection.sendall(b"P")
        said, says = os.pipe()
        worker = os.fork()
        if worker == 0:
            connection.close()
            os.close(said)
            _run(request, fds, says)
        for fd in (*fds, says):
            os.close(fd)
        status = _supervise(connection, worker, said)
        connection.sendall(b"X" + struct.pack("!i", status))
    except OSError:
        pass  # the client went away: nothing to answer
    finally:
        os._exit(0)


def _request(connection: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The client's JSON and its four descriptors (stdin, stdout, stderr, working folder); None when
    the request is not one (a probe that closed, a short message, another shape)."""
    head, fds, _, _ = socket.recv_fds(connection, 4, 4)
    head += warm._receive(connection, 4 - len(head)) if head else b""
    if len(head) != 4 or len(fds) != 4:
        for fd in fds:
            os.close(fd)
        return None, []
    (size,) = struct.unpack("!I", head)
    body = warm._receive(connection, size) if size <= MAX_REQUEST else b""
    try:
        request = json.loads(body)
    except ValueError:
        request = None
    valid = isinstance(request, dict) and isinstance(request.get("argv"), list) and isinstance(request.get("env"), dict)
    if not valid or not warm.served([str(a) for a in request["argv"]]):
        for fd in fds:
            os.close(fd)
        return None, []
    return request, fds


def _supervise(connection: socket.socket, worker: int, said: int) -> int:
    """Pass the client's signals on until the worker ends; SIGTERM to it when the client is gone.
    The exit status the worker `said` (its streams closed: all it will print is out), else the
    status it ended with, or -N when signal N ended it."""
    ended = os.pidfd_open(worker)
    watching: list[Any] = [connection, ended, said]
    try:
        while True:
            ready, _, _ = select.select(watching, [], [])
            if said in ready:
                told = os.read(said, 4)
                if len(told) == 4:  # the status ahead of the exit (a large process takes ~0.1 s to end)
                    return int(struct.unpack("!i", told)[0])
                watching.remove(said)  # closed unsaid: killed, or failed before it could say
                continue
            if ended in ready:
                _, status = os.waitpid(worker, 0)
                return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            message = connection.recv(2)
            if len(message) == 2 and message[:1] == b"S" and message[1] in {int(s) for s in warm.FORWARDED}:
                os.kill(worker, message[1])
            elif not message:
                os.kill(worker, signal.SIGTERM)
                watching = [ended]
    finally:
        os.close(ended)
        os.close(said)


def _run(request: dict[str, Any], fds: list[int], says: int) -> NoReturn:
    """In the command's process: the client's streams, folder, environment and umask, then the
    command as `orchestrate` runs it in its own process; exits with its status (said on `says`)."""
    code = 1
    try:
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.fchdir(fds[3])
        for fd in fds:
            os.close(fd)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        os.umask(int(request["umask"]) & 0o777)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        _fresh_streams()
        argv = [str(a) for a in request["argv"]]
        sys.argv = ["orchestrate", *argv]
        from orchestrator.cli.main import main
        from orchestrator.cli.process import run_main

        code = run_main(main)
    except SystemExit as exc:  # argparse's usage errors and --help: what the interpreter does with it
        code = _exit_status(exc.code)
    except BaseException:  # a traceback, as the command's own process would print it
        traceback.print_exc()
    finally:
        _end(code, says)


def _exit_status(code: object) -> int:
    """SystemExit's code as the interpreter ends a process with it: None 0, an int itself, anything
    else printed on stderr and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _fresh_streams() -> None:
    """sys.stdin/stdout/stderr on the client's descriptors, buffered as Python buffers them at start
    (stdout line by line on a terminal), with the warm process's encoding (its key holds the locale)."""
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        old = getattr(sys, f"__{name}__") or getattr(sys, name)
        encoding = getattr(old, "encoding", None) or "utf-8"
        errors = getattr(old, "errors", None) or "strict"
        lines = fd == 2 or (fd == 1 and os.isatty(fd))
        raw = open(fd, "rb" if fd == 0 else "wb", closefd=False)  # noqa: SIM115 - lives as the process does
        stream = io.TextIOWrapper(raw, encoding=encoding, errors=errors, line_buffering=lines, write_through=fd == 2)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)


def _end(code: int, says: int) -> NoReturn:
    """What an interpreter does at exit that a command may need (its threads joined, atexit, the
    streams flushed), the streams closed and the status said, then the exit itself without the warm
    process's finalisation. The client ends on the status and a pipe's reader gets its end of file
    at once: the kernel's teardown of a few hundred MB comes after."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    with contextlib.suppress(OSError):
        os.write(says, struct.pack("!i", code & 0xFF))
    os._exit(code)
