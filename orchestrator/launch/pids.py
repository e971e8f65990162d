"""Whether a process id is alive: read by sweep status (base) and by the hang watchdog, which runs
as `python -m orchestrator.launch.watchdog` (so the launch package must not import that module:
runpy warned in every job log that it was already imported)."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process of that id exists on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
"""Linux's id of the current boot: a random UUID drawn at each start of the kernel."""


def boot_id() -> str | None:
    """This machine's boot id, None where it has none (not Linux) or it cannot be read. A process
    recorded under another boot is gone, whatever process holds its pid now."""
    try:
        with open(BOOT_ID_FILE, encoding="ascii") as handle:
            text = handle.read(64).strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch, to about a second), None where /proc cannot
    say (not Linux, the process gone). A process that started after a record of `pid` was written
    is not the one recorded: its pid was handed out again."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            # The fields after the command name, which is in parentheses and may hold spaces or ")".
            fields = handle.read().rpartition(b")")[2].split()
        with open("/proc/stat", "rb") as handle:
            btime = next(line for line in handle if line.startswith(b"btime "))
        ticks = int(fields[19])  # field 22 of proc(5), `starttime`: clock ticks after boot
        return int(btime.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
