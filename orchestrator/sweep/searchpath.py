"""Where a profile or site NAME (`--profile NAME`, `site: NAME`, $ORCHESTRATE_SITE=NAME) is looked
up, the same from any working directory. First match wins:

1. each folder of $ORCHESTRATE_PROFILE_PATH (colon-separated),
2. the user's config folder: $XDG_CONFIG_HOME/orchestrate/profiles (default ~/.config/...),
3. the sweep file's folder,
4. the profiles and sites shipped with the tool (the repository's slurm/profiles/ and sites/,
   as package data in orchestrator/examples/).

A value with a `/` or a `.yaml`/`.yml` suffix is a path, not a name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from orchestrator import examples
from orchestrator.sweep.errors import one_line

ENV_PATH = "ORCHESTRATE_PROFILE_PATH"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def is_name(value: str) -> bool:
    """A bare profile or site name (looked up on the search path), not a path."""
    return bool(_NAME.fullmatch(value)) and not value.endswith((".yaml", ".yml"))


def search_dirs(spec_dir: Path | None = None) -> list[Path]:
    """The folders searched, in order (see the module docstring)."""
    dirs = [Path(p).expanduser() for p in os.environ.get(ENV_PATH, "").split(":") if p]
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    dirs.append(Path(config_home).expanduser() / "orchestrate" / "profiles")
    if spec_dir is not None:
        dirs.append(spec_dir)
    dirs += [examples.root() / "slurm" / "profiles", examples.root() / "sites"]
    return dirs


def find(name: str, what: str, spec_dir: Path | None = None) -> Path:
    """`<dir>/<name>.yaml` of the first search folder that has it; ValueError listing where it looked
    and the names found there."""
    dirs = search_dirs(spec_dir)
    for folder in dirs:
        path = folder / f"{name}.yaml"
        if path.is_file():
            return path.resolve()
    known = sorted({p.stem for folder in dirs if folder.is_dir() for p in folder.glob("*.yaml")})
    raise ValueError(
        f"{one_line(name, 64)}: no such {what} ({name}.yaml in none of {', '.join(str(d) for d in dirs)}; "
        f"names found: {one_line(', '.join(known) or 'none', 300)}; ${ENV_PATH} adds folders)"
    )
