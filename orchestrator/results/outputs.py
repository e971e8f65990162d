"""Where `collect` writes: only inside the sweep folder, never through a symlink, and only over or
away files it wrote itself.

A symlinked `report/img` made collect write its figures elsewhere and delete every other `*.png`
there; a symlinked `tables/` received every table; collect pointed at someone else's folder
replaced their `tables/table.md`. Now every folder on the way down from the sweep folder is
checked (a symlink or a file there is refused), and a manifest, `<root>/.collect-written.json`,
records each file collect wrote with the hash of its bytes: an existing file is replaced, and a
stale figure removed, only when the manifest lists it with its current content. A folder collected
before the manifest existed has none: its files owned by the user running collect are taken as
collect's (that is how they were made); anyone else's are refused. `check` makes those refusals for
every file a collect will write before it writes the first (an edited table.md was refused only
after runs.csv had been replaced).

Every file is written as UTF-8: a lone surrogate in its text (a folder name or path that is no
UTF-8, as os.listdir decodes it) is written escaped (`escaped`), never a UnicodeEncodeError midway.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

from orchestrator.sweep import bounded
from orchestrator.sweep.spec import SpecError
from trainers import rundir

MANIFEST = ".collect-written.json"


_SURROGATE = re.compile("[\ud800-\udfff]")


def digest(data: bytes) -> str:
    """The hash the records of written files keep (collect's, datasets describe's, runs.csv's cache)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def utf8(text: str) -> bytes:
    """`text` as written files hold it: UTF-8, lone surrogates `escaped`."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return escaped(text).encode("utf-8")


def escaped(text: str) -> str:
    """`text` with its lone surrogates shown as text: U+DC80-U+DCFF, the bytes os.listdir could not
    decode, as the byte (`\\xff`), any other as `\\ud800`. Valid UTF-8 to write or print."""
    return _SURROGATE.sub(_escape_surrogate, text)


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


class Outputs:
    """collect's writes under one sweep folder (`root`, already resolved): checked, then recorded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files, self.legacy = self._load()
        self._verified: dict[str, tuple[int, ...]] = {}
        """Files whose hash `ours` matched, by their lstat then: `check` and the write that follows
        hash a file once (runs.csv is 130 MB at 100,000 runs); any write since changes its ctime."""

    def _load(self) -> tuple[dict[str, str], bool]:
        """The manifest's files (relative path -> hash) and whether there was none (a legacy folder)."""
        try:
            data = bounded.read_json_object(self.root / MANIFEST)
        except bounded.Unreadable as exc:
            raise SpecError(f"{self.root}: {exc}; collect's record of what it wrote is unreadable") from None
        if data is None:
            return {}, True
        files = data.get("files")
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise SpecError(f"{self.root / MANIFEST}: not collect's record of what it wrote; move it aside")
        return dict(files), False

    def folder(self, *parts: str) -> Path:
        """`root/parts...`, created as needed; SpecError when a step of it is a symlink or not a folder."""
        path = self.root
        for part in parts:
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                path.mkdir()
                continue
            self._refuse_step(path, mode)
        return path

    def _refuse_step(self, path: Path, mode: int) -> None:
        """SpecError when the existing folder step `path` (of lstat mode `mode`) is a symlink or no folder."""
        if stat.S_ISLNK(mode):
            raise SpecError(f"{path}: a symbolic link; collect writes only inside {self.root}, never through one")
        if not stat.S_ISDIR(mode):
            raise SpecError(f"{path}: not a folder; collect writes its outputs there (move it aside)")

    def _key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def ours(self, path: Path) -> bool:
        """Whether `path` may be replaced or removed: absent, or a regular file collect wrote (the
        manifest's hash matches; in a legacy folder, owned by this user)."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return True
        if not stat.S_ISREG(info.st_mode):
            return False
        if self.legacy:
            return info.st_uid == os.getuid()
        key = self._key(path)
        recorded = self.files.get(key)
        if recorded is None:
            return False
        seen = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if self._verified.get(key) == seen:
            return True
        try:
            data = bounded.read_bytes(path, bounded.INDEX_LIMIT)
        except bounded.Unreadable:
            return False
        if data is None or digest(data) != recorded:
            return False
        self._verified[key] = seen
        return True

    def claim(self, path: Path) -> None:
        """SpecError unless collect may write `path` (see `ours`)."""
        if not self.ours(path):
            raise SpecError(
                f"{path}: exists and was not written by collect (or was edited since); move it aside to collect here"
            )

    def check(self, paths: list[Path]) -> None:
        """SpecError, before anything is written, when any of `paths` could not be written: a step of
        its folder is a symlink or not a folder (as `folder` refuses), or the file is not ours."""
        for path in paths:
            self._check_folders(path.parent)
            self.claim(path)

    def existing(self, folder: Path, suffix: str) -> list[Path]:
        """The files ending in `suffix` already in `folder` (none when it is absent), for `check` by
        a writer that may replace any of them; SpecError as `check` when a step to it is refused."""
        self._check_folders(folder)
        try:
            return sorted(entry for entry in folder.iterdir() if entry.name.endswith(suffix))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _check_folders(self, folder: Path) -> None:
        """`folder` refuses nothing `folder()` would: each existing step below root a real folder."""
        path = self.root
        for part in folder.relative_to(self.root).parts:
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                return  # made by `folder` when written; nothing below it exists
            self._refuse_step(path, mode)

    def write_bytes(self, path: Path, data: bytes) -> None:
        """Atomically write `path` (its folder checked with `folder`) and record it."""
        self.folder(*path.parent.relative_to(self.root).parts)
        self.claim(path)
        with rundir.atomic_open(path) as handle:
            handle.write(data)
        self.record(path, data)

    def write_text(self, path: Path, text: str) -> None:
        """write_bytes of UTF-8 text (lone surrogates `escaped`: a run folder or sweep folder whose
        name is no UTF-8 reaches runs.csv's paths so)."""
        self.write_bytes(path, utf8(text))

    def record(self, path: Path, data: bytes) -> None:
        """Note a file collect has just written (with its bytes)."""
        self.files[self._key(path)] = digest(data)

    def remove_stale(self, folder: Path, suffix: str, keep: set[str]) -> None:
        """Remove collect's own files ending in `suffix` in `folder` that are not in `keep`
        (figures of cells that no longer exist); anything else there is left alone."""
        for entry in sorted(folder.iterdir()):
            if entry.name.endswith(suffix) and entry.name not in keep and self._key(entry) in self.files:
                if self.ours(entry):
                    entry.unlink()
                self.files.pop(self._key(entry), None)

    def save(self) -> None:
        """Write the manifest (atomically, beside the outputs)."""
        listed = {key: value for key, value in sorted(self.files.items()) if (self.root / key).is_file()}
        data = {"version": 1, "files": listed}
        path = self.root / MANIFEST
        if os.path.islink(path):
            raise SpecError(f"{path}: a symbolic link; collect writes only inside {self.root}")
        rundir.write_text(path, json.dumps(data, indent=1) + "\n")
