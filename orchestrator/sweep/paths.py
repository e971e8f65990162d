"""One path rule: a user's path is resolved once (`~`, relative to a base folder, symlinks), then
checked, and the resolved path is what every later step uses.

The check and the use must see the same path: `~/../../../etc/orch` checked with `~` expanded
but used without it named a folder under the working directory at the check and `/etc/orch` in
the batch script. Variables (`$HOME`) are not expanded: output folders reach sbatch and may not
hold `$` at all (spec.py's allow-list).
"""

from __future__ import annotations

import re
from pathlib import Path

# Output folders reach the sbatch script (--output/--error): characters of ordinary paths only,
# checked on what the user wrote and again on the resolved path (a symlink may lead to `/tmp/x;id`).
SAFE_PATH = re.compile(r"[A-Za-z0-9_.,+@=/~-]{1,400}")
SAFE_PATH_CHARS = "letters, digits and _ . , + @ = / ~ -"
# Folders no sweep may write into (nor their subfolders): the system's own.
SYSTEM_DIRS: tuple[str, ...] = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/sbin")
SYSTEM_DIRS += ("/sys", "/usr", "/var", "/root", "/run", "/snap")


def resolve_user_path(value: str | Path, base: Path | None = None) -> Path:
    """`value` with `~` expanded, made absolute against `base` (None: the working directory) and every
    symlink resolved: the one form of a user path that is checked and used."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (base if base is not None else Path.cwd()) / path
    return path.resolve()


def output_folder(value: str | Path, base: Path | None = None) -> Path:
    """The resolved output folder of `value` (see resolve_user_path); ValueError when it is `/`, a
    system folder or inside one, the home folder itself, or holds characters outside SAFE_PATH."""
    path = resolve_user_path(value, base)
    text = path.as_posix()
    if not SAFE_PATH.fullmatch(text):
        raise ValueError(f"resolves to {text!r}, which has characters other than {SAFE_PATH_CHARS} (it reaches sbatch)")
    system = [d for d in SYSTEM_DIRS if text == d or text.startswith(d + "/")]
    if len(path.parts) < 3 or system or path == Path.home().resolve():
        raise ValueError(f"resolves to {text}: not a folder for results (too high up)")
    return path
