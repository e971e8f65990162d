"""A user's template rendered with a bound on its time, memory and output (render.render_file).

The sandbox (render.Sandbox) stops a template from reaching Python internals; it does not stop one
from running for hours (`{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}
{% endfor %}`) or filling the login node's memory (`{{ 'x'|center(10**10) }}`,
`{{ '%2000000000d'|format(1) }}`). So the template renders in a forked child process:

- memory: the child's address space (RLIMIT_AS) may grow by MAX_RENDER_MEMORY over what it
  inherited; past that an allocation fails (MemoryError) before it takes the memory, whichever
  filter, method or operator asked for it;
- time: this process waits at most MAX_RENDER_SECONDS (wall clock) for the child's result, then
  kills it; RLIMIT_CPU stops a child whose parent died;
- output: the child streams the text back through a pipe and stops at MAX_OUTPUT_CHARS.

Why a child process and not more caps inside the sandbox: a cap per filter (center, format,
indent, wordwrap, replace, join, ...) misses the next way to build a big string (`str.ljust`,
`'{:>{}}'.format`, `~` doubling a namespace attribute in a loop), and a cap on `range` misses a
loop over anything else; one address-space limit and one clock cover every way at once, including
one long C call that no Python-level check interrupts. Forking costs about 25 ms per custom
template (measured with a 700 MB parent on two busy cores, 10 ms of it the bare fork; rendering in
this process took 1 ms): the table model reaches the child without being pickled, and only the text
comes back, in frames (kind, length, bytes). The packaged templates are ours and still render in
this process, at no cost. The
child freezes the garbage collector's view of what it inherited (no finaliser of this process's
objects runs twice) and leaves with os._exit. Where no process can be forked, the template is
refused (fail closed). The address-space limit needs Linux (`/proc/self/statm`); elsewhere only
the time and output limits hold.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import select
import signal
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

import jinja2
from jinja2.exceptions import SecurityError

from orchestrator.sweep.templates import TemplateFileError

MAX_RENDER_SECONDS = 30.0
"""Wall-clock seconds a user's template may take to render (the packaged ones take milliseconds)."""
MAX_RENDER_MEMORY = 1024**3
"""Bytes of address space a user's template may add while it renders (RLIMIT_AS of its process)."""
MAX_OUTPUT_CHARS = 64_000_000
"""Characters a user's template may write (a table of 10,000 rows is a few MB)."""
MAX_MESSAGE_CHARS = 1000
"""Longest error message of a failing template that is passed on (an exception may quote a huge value)."""

_BATCH_CHARS = 1 << 16
_HEADER = struct.Struct(">cI")
_TEXT, _DONE, _REFUSED, _FILE_ERROR = b"T", b"K", b"R", b"F"


class TemplateRefused(ValueError):
    """A user template that failed, tried what the sandbox forbids or went over a limit; one line."""


class _OutputLimit(Exception):
    """The template wrote more than MAX_OUTPUT_CHARS."""


def render(env: jinja2.Environment, name: str, context: dict[str, Any], label: str) -> str:
    """Template `name` of `env` rendered with `context` in a forked child within the limits above;
    TemplateFileError for a file it may not use, else TemplateRefused (one line starting `label`)."""
    read_end, write_end = os.pipe()
    collecting = gc.isenabled()
    gc.disable()  # no collection between the fork and the child's gc.freeze
    try:
        pid = os.fork()
    except OSError as exc:
        if collecting:
            gc.enable()
        os.close(read_end)
        os.close(write_end)
        raise TemplateRefused(f"{label} refused: no process to render it in ({exc.strerror})") from None
    if pid == 0:
        _child((read_end, write_end), lambda: env.get_template(name).generate(**context), label, collecting)
    if collecting:
        gc.enable()
    os.close(write_end)
    try:
        data, stopped = _receive(read_end, time.monotonic() + MAX_RENDER_SECONDS)
    finally:
        os.close(read_end)
        status = _reap(pid)
    if stopped:
        raise TemplateRefused(f"{label} refused: {stopped}")
    return _result(data, status, label)


def _receive(fd: int, deadline: float) -> tuple[bytearray, str]:
    """What the child sends until it closes the pipe, and why reading stopped before that ("" if not)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    data = bytearray()
    most = 4 * (MAX_OUTPUT_CHARS + MAX_MESSAGE_CHARS) + (1 << 20)  # UTF-8 of the most text, and frame headers
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, _over_time()
        if not poller.poll(math.ceil(left * 1000)):
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return data, ""
        data += chunk
        if len(data) > most:  # the child counts characters; this is the backstop
            return data, _over_output()


def _result(data: bytearray, status: int, label: str) -> str:
    """The text of a complete answer, or the refusal it carries, or why there was none."""
    texts: list[memoryview] = []
    view, offset = memoryview(data), 0
    while offset + _HEADER.size <= len(data):
        kind, size = _HEADER.unpack_from(data, offset)
        payload = view[offset + _HEADER.size : offset + _HEADER.size + size]
        offset += _HEADER.size + size
        if len(payload) < size:
            break
        if kind == _TEXT:
            texts.append(payload)
        elif kind == _DONE:
            return b"".join(texts).decode("utf-8", "surrogatepass")
        elif kind == _FILE_ERROR:
            raise TemplateFileError(str(payload, "utf-8", "replace"))
        elif kind == _REFUSED:
            raise TemplateRefused(str(payload, "utf-8", "replace"))
    code = os.waitstatus_to_exitcode(status) if status >= 0 else None
    if code == -signal.SIGXCPU:
        raise TemplateRefused(f"{label} refused: {_over_time()}")
    ended = "" if code is None else f" (signal {-code})" if code < 0 else f" (exit status {code})"
    raise TemplateRefused(f"{label} refused: its rendering process ended without a result{ended}")


def _reap(pid: int) -> int:
    """Wait for the child, killing it first if it is still running; its wait status (-1: reaped elsewhere)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            done, status = os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):
        return -1
    return status


def _over_time() -> str:
    return f"rendering took over {MAX_RENDER_SECONDS:g} s"


def _over_output() -> str:
    return f"output over {MAX_OUTPUT_CHARS:,} characters"


def _size(count: int) -> str:
    return f"{count / 1024**3:g} GiB" if count >= 1024**3 else f"{count / 1024**2:g} MiB"


# ----------------------------------------------------------------- the child


def _child(pipe: tuple[int, int], generate: Callable[[], Iterator[str]], label: str, collect: bool) -> NoReturn:
    """Render (generate() -> the text's pieces) within the limits, send the answer on the pipe's
    write end, exit; nothing raised here reaches the caller's code (it is the parent's)."""
    status = 1
    try:
        gc.freeze()  # collections here see only the child's own objects: nothing of ours is finalised twice
        if collect:
            gc.enable()
        os.close(pipe[0])
        fd = pipe[1]
        _limit_resources()
        kind, message = _render_into(fd, generate, label)
        _send(fd, kind, message.encode("utf-8", "surrogatepass"))
        status = 0
    except BaseException:  # nothing to tell: the parent names a child that ended without an answer
        pass
    finally:
        os._exit(status)


def _render_into(fd: int, generate: Callable[[], Iterator[str]], label: str) -> tuple[bytes, str]:
    """Stream the text to `fd`; the closing frame: (_DONE, "") or the refusal's kind and line."""
    try:
        _stream(fd, generate())
    except TemplateFileError as exc:
        return _FILE_ERROR, _short(str(exc))
    except MemoryError:
        return _REFUSED, f"{label} refused: rendering needed over {_size(MAX_RENDER_MEMORY)} of memory"
    except _OutputLimit:
        return _REFUSED, f"{label} refused: {_over_output()}"
    except RecursionError:
        return _REFUSED, f"{label}: nested too deeply"
    except Exception as exc:  # user code: any failure is a one-line refusal, never a traceback
        kind = "refused by the sandbox" if isinstance(exc, SecurityError) else f"failed ({type(exc).__name__})"
        return _REFUSED, _short(f"{label} {kind}: {exc}")
    return _DONE, ""


def _stream(fd: int, pieces: Iterable[str]) -> None:
    """Send the pieces in batches of about _BATCH_CHARS; _OutputLimit past MAX_OUTPUT_CHARS."""
    batch: list[str] = []
    pending = total = 0
    for piece in pieces:
        batch.append(piece)
        pending += len(piece)
        if pending >= _BATCH_CHARS:
            total += pending
            if total > MAX_OUTPUT_CHARS:
                raise _OutputLimit
            _send(fd, _TEXT, "".join(batch).encode("utf-8", "surrogatepass"))
            batch, pending = [], 0
    if total + pending > MAX_OUTPUT_CHARS:
        raise _OutputLimit
    _send(fd, _TEXT, "".join(batch).encode("utf-8", "surrogatepass"))


def _send(fd: int, kind: bytes, payload: bytes) -> None:
    view = memoryview(_HEADER.pack(kind, len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _short(message: str) -> str:
    """One line of at most MAX_MESSAGE_CHARS characters."""
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 1] + "…"


def _limit_resources() -> None:
    """Lower this (child) process's limits: address space, CPU seconds, no core file."""
    import resource

    _lower(resource.RLIMIT_CORE, 0)
    _lower(resource.RLIMIT_CPU, math.ceil(MAX_RENDER_SECONDS) + 1)
    inherited = _address_space()
    if inherited is not None:
        _lower(resource.RLIMIT_AS, inherited + MAX_RENDER_MEMORY)


def _lower(which: int, value: int) -> None:
    """Set the soft limit `which` to `value` unless it is lower already (never above the hard limit)."""
    import resource

    soft, hard = resource.getrlimit(which)
    if soft != resource.RLIM_INFINITY and soft <= value:
        return
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(which, (value, hard))


def _address_space() -> int | None:
    """Bytes of address space this process has mapped (Linux), or None where that is unknown."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
