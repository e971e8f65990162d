"""The digest of a container image that a run's provenance records (`ORCHESTRATE_ENV_IMAGE_DIGEST`):
the sha256 of an image file, a digest of a directory image's listing. Read on the login node, where
the image must be visible.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

MAX_TREE_ENTRIES = 200_000
"""A directory image's digest covers at most this many entries (a listing, not the contents)."""
_HASH_CHUNK_BYTES = 1 << 22


def image_digest(image: str) -> str | None:
    """`sha256:<hex>` of an image file, `tree-sha256:<hex>` of a directory image's listing (paths,
    sizes, modification times of at most MAX_TREE_ENTRIES entries), None for a URI.

    A local path that does not exist is an error: the login node must see the image its jobs use
    (checks fail closed).
    """
    if not image.startswith("/"):
        return None
    path = Path(image)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ValueError(f"image {image}: {exc.strerror or exc} (the login node must see the jobs' image)") from None
    if path.is_dir():  # not cached: a file changed deep inside leaves the folder's own times alone
        return _tree_digest(path)
    if not path.is_file():  # a FIFO or /dev/zero: hashing it never ended
        raise ValueError(f"image {image}: neither a file nor a folder (a container image is one of those)")
    return _file_digest(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """Cached on (path, size, mtime): a submit with many arrays hashes a 10 GB SIF once."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            sha.update(chunk)
    return f"sha256:{sha.hexdigest()}"


def _tree_digest(path: Path) -> str:
    sha = hashlib.sha256()
    for count, line in enumerate(_listing(path)):
        if count >= MAX_TREE_ENTRIES:
            return f"tree-sha256-first{MAX_TREE_ENTRIES}:{sha.hexdigest()}"
        sha.update(line.encode("utf-8", "surrogateescape"))
    return f"tree-sha256:{sha.hexdigest()}"


def _listing(root: Path) -> Iterator[str]:
    """`relpath size mtime_ns` lines of a directory tree in sorted order (symlinks not followed)."""
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted([*files, *(d for d in dirs if os.path.islink(os.path.join(folder, d)))]):
            full = os.path.join(folder, name)
            try:
                info = os.lstat(full)
            except OSError:
                continue
            yield f"{os.path.relpath(full, root)} {info.st_size} {info.st_mtime_ns}\n"


# Filesystems every node of a cluster mounts by design (/proc/mounts type names).
