"""Example files shipped with the tool (package data): the demo sweep, the example site and the
cluster profiles, laid out as in the repository (sweeps/, sites/, slurm/profiles/), whose files
these are (linked here, copied into the wheel). `orchestrate examples DEST` copies them out."""

from __future__ import annotations

import shutil
from pathlib import Path

FILES = ("sweeps/demo.yaml", "sites/example.yaml", "slurm/profiles/dev.yaml", "slurm/profiles/example-site.yaml")
"""Every example file, relative to `root()`."""


def root() -> Path:
    """The folder holding the example files (inside the installed package)."""
    return Path(__file__).resolve().parent


def path(name: str) -> Path:
    """One example file by its relative name (one of FILES); ValueError for another name."""
    if name not in FILES:
        raise ValueError(f"{name!r} is not an example file; examples: {', '.join(FILES)}")
    return root() / name


def copy_to(dest: Path) -> list[Path]:
    """Copy every example into `dest` with the same layout (so the demo's `output_dir:
    ../results/demo` is `dest/results/demo`); FileExistsError before copying anything when a file
    is already there: nothing a user made is overwritten."""
    targets = [dest / name for name in FILES]
    present = [target for target in targets if target.exists() or target.is_symlink()]
    if present:
        raise FileExistsError(f"{present[0]}: exists; pick an empty folder (nothing was copied)")
    folders = {dest, *(parent for target in targets for parent in target.relative_to(dest).parents)}
    for folder in sorted(dest / part for part in folders):  # `dest` or `dest/sites` a file: refused first
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            raise FileExistsError(f"{folder}: exists and is not a folder; pick an empty folder (nothing was copied)")
    for name, target in zip(FILES, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path(name), target)
    return targets
