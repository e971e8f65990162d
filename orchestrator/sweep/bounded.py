"""Bounded reads of files a results folder holds: what `reader`, `collect` and `status` open.

A results folder may be shared, or broken by hand: a FIFO where metrics.json should be blocked
`collect` forever, a symlink to /dev/zero ran out of memory, a 1 GB sparse history.csv took
minutes, a YAML alias bomb in an unplanned run's config.yaml expanded to gigabytes. So every
file is opened without following a final symlink and without blocking (O_NOFOLLOW, O_NONBLOCK),
checked on the open descriptor to be a regular file (fstat), and read only up to its limit.
Every failure is an `Unreadable` whose text names the file and the reason on one line.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml

KIB = 1024
MIB = 1024 * KIB
LIMITS: dict[str, int] = {
    "config.yaml": 4 * MIB,
    "status.json": 1 * MIB,
    "metrics.json": 1 * MIB,
    "split.json": 16 * MIB,
    "history.csv": 64 * MIB,
    "manifest.json": 64 * MIB,
    "sweep.yaml": 16 * MIB,
}
"""Largest file read, by name: ten to a hundred times what the trainer writes for a large run
(a 10,000-class split.json is about 1 MiB, a 1,000-epoch history.csv about 200 KiB)."""
DEFAULT_LIMIT = 16 * MIB
"""Any other file: CSV tables beside metrics.json (a 1,000-class confusion matrix is ~4 MiB),
submission records."""
INDEX_LIMIT = 1024 * MIB
"""collect's index of a 50,000-run sweep is about 100 MiB."""
MAX_INT_DIGITS = 20
"""A JSON integer with more digits is no count, time or size a run records (int64 has 19)."""
MAX_YAML_EVENTS = 200_000
"""Nodes a run's config.yaml may have (the trainer writes about 300)."""

_KINDS = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}
_KINDS[stat.S_IFSOCK] = "a socket"


class Unreadable(Exception):
    """A file that was not read, and why (one line naming the file)."""


def limit_of(path: Path) -> int:
    """The read limit of a file, by its name."""
    return LIMITS.get(path.name, DEFAULT_LIMIT)


def kind_name(mode: int) -> str:
    """What a non-regular file of lstat `mode` is, for a message (`a FIFO`, `a device`, `a folder`)."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_bytes(path: Path, limit: int | None = None) -> bytes | None:
    """The bytes of `path` when it is a regular file of at most `limit` bytes (default: by name);
    None when it does not exist; Unreadable when it is something else (a symlink, a FIFO, a
    device, a folder, too large, unreadable). Never blocks and never follows a final symlink."""
    return read_bytes_and_stat(path, limit)[0]


def read_bytes_and_stat(path: Path, limit: int | None = None) -> tuple[bytes | None, os.stat_result | None]:
    """read_bytes, with the stat of the very file read (fstat of its descriptor, before reading:
    a write during the read moves it, so a cache keyed by it reads the file again)."""
    limit = limit_of(path) if limit is None else limit
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Unreadable(f"{path.name} is a symbolic link (a results folder holds plain files)") from None
        raise Unreadable(f"{path.name}: unreadable ({exc.strerror or type(exc).__name__})") from None
    except ValueError:  # a NUL in the name
        raise Unreadable(f"{path.name!r}: not a file name") from None
    try:
        info = os.fstat(fd)
        kind = stat.S_IFMT(info.st_mode)
        if kind != stat.S_IFREG:
            raise Unreadable(f"{path.name} is {kind_name(kind)}, not a file")
        if info.st_size > limit:
            raise Unreadable(f"{path.name}: {info.st_size:,} bytes, more than the {_size(limit)} it may have")
        data = _read_all(fd, limit + 1)
    except OSError as exc:
        raise Unreadable(f"{path.name}: unreadable ({exc.strerror or type(exc).__name__})") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # grew after fstat
        raise Unreadable(f"{path.name}: more than the {_size(limit)} it may have")
    return data, info


def _read_all(fd: int, most: int) -> bytes:
    chunks: list[bytes] = []
    left = most
    while left > 0:
        chunk = os.read(fd, min(left, 4 * MIB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _size(limit: int) -> str:
    return f"{limit // MIB} MiB" if limit >= MIB else f"{limit // KIB} KiB"


Preread = Mapping[str, "bytes | Unreadable | None"]
"""What was read already of a folder's files, by file name: read_bytes' outcome (bytes, None for
no file, or the Unreadable it raised). `collect` hashes and parses the same bytes, reading each once."""


def read_again(path: Path, preread: Preread | None, limit: int | None = None) -> bytes | None:
    """read_bytes(path, limit), or its outcome already in `preread` (read at the limit by name)."""
    if preread is None or path.name not in preread:
        return read_bytes(path, limit)
    got = preread[path.name]
    if isinstance(got, Unreadable):
        raise Unreadable(str(got))
    return got


def read_text(path: Path, limit: int | None = None, preread: Preread | None = None) -> str | None:
    """read_bytes as UTF-8 text (Unreadable when it is not UTF-8)."""
    data = read_again(path, preread, limit)
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"{path.name}: not UTF-8 text (byte {exc.start})") from None


class _Refused(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are each written once (json keeps the last of a repeated key silently)."""
    out = dict(pairs)
    if len(out) == len(pairs):  # no key twice: one C call instead of a Python loop per key
        return out
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _Refused(f"key {json.dumps(key)[:40]} written twice in one object")
        seen.add(key)
    return out


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def parse_json_object(data: bytes, name: str) -> dict[str, Any]:
    """A JSON object from bytes; Unreadable (naming `name`) for invalid JSON, a repeated key, an
    integer of more than MAX_INT_DIGITS digits, nesting deeper than Python reads, or a non-object.
    Read by orjson when that is surely json's reading (_fast_object), else by json with the checks."""
    fast = _fast_object(data)
    return fast if fast is not None else _checked_object(data, name)


def _checked_object(data: bytes, name: str) -> dict[str, Any]:
    """parse_json_object by json, every rule checked as it reads (a hook per object and integer)."""
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=_unique_pairs, parse_int=_bounded_int)
    except UnicodeDecodeError as exc:
        raise Unreadable(f"{name}: not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise Unreadable(
            f"{name}: truncated or invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except _Refused as exc:
        raise Unreadable(f"{name}: {exc}") from None
    except RecursionError:
        raise Unreadable(f"{name}: nested too deeply") from None
    except ValueError as exc:
        raise Unreadable(f"{name}: invalid JSON ({str(exc)[:80]})") from None
    if not isinstance(value, dict):
        raise Unreadable(f"{name}: a JSON {type(value).__name__}, not an object")
    return value


_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19
"""19 digits in a row (every digit read as 0): a number that orjson may read otherwise than json
(past 64 bits orjson reads an integer as a float, json exactly). One translate and one find, in C:
a regular expression for it took longer than parsing the file."""


def _fast_object(data: bytes) -> dict[str, Any] | None:
    """orjson's reading of `data` when it is json's under parse_json_object's rules, else None (read it
    the slow way, which names the reason). With its checks it reads a trainer's 3.6 KB metrics.json
    in 16 us against json's 36 us with its hooks (status and collect read 200,000 such files at
    100,000 runs), but orjson keeps the last of a key written twice. In a file without a backslash
    (no escapes: every text is its bytes), each key is followed by one `:` outside texts, so the
    file holds as many `:` bytes as orjson's compact writing of what it read exactly when no key was
    written twice (a dropped key takes its `:`, and those of its texts, with it). Anything orjson
    refuses to read or to write again (NaN, a BOM, nesting past 254 levels) goes the slow way too;
    the integers it reads are under 19 digits, so exact."""
    if b"\\" in data or _LONG_NUMBER in data.translate(_DIGITS_AS_ZERO):
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict:
        return None
    try:
        written = orjson.dumps(value)
    except orjson.JSONEncodeError:  # nested past orjson's writing depth (254): a TypeError, not a refusal
        return None
    return value if written.count(b":") == data.count(b":") else None


def read_json_object(path: Path, limit: int | None = None, preread: Preread | None = None) -> dict[str, Any] | None:
    """The JSON object in `path` (None when it does not exist); Unreadable for anything else."""
    data = read_again(path, preread, limit)
    return None if data is None else parse_json_object(data, path.name)


def check_yaml_budget(text: str, name: str, loader: type[Any]) -> None:
    """Unreadable when the YAML holds an alias (run files are written without them: an alias bomb
    is a few hundred bytes that expand to gigabytes) or more than MAX_YAML_EVENTS nodes.
    Parse events only, nothing is built; nesting is bounded by LibYAML itself (1,000 levels)."""
    if "*" not in text or "&" not in text:
        return  # no anchor and alias pair: nothing can expand (the fast path of every real config)
    try:
        for count, event in enumerate(yaml.parse(text, Loader=loader)):
            if isinstance(event, yaml.AliasEvent):
                anchor = str(event.anchor)[:20]
                raise Unreadable(f"{name}: a YAML alias (*{anchor}): run files are written without them")
            if count > MAX_YAML_EVENTS:
                raise Unreadable(f"{name}: more than {MAX_YAML_EVENTS:,} YAML nodes")
    except yaml.YAMLError:
        return  # the parse proper names the line


def read_csv_rows(path: Path, limit: int | None = None) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts (None values for short rows); Unreadable when the file is
    not a bounded regular UTF-8 file or not valid CSV (a field over the csv module's limit, a NUL)."""
    text = read_text(path, limit)
    if text is None:
        raise Unreadable(f"no {path.name}")
    try:
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise Unreadable(f"{path.name}: invalid CSV ({str(exc)[:80]})") from None


def cache_entries(path: Path, version: str) -> dict[str, Any]:
    """The `entries` of one of our cache files (`{"version": ..., "entries": {...}}`) written under
    `version`; empty when absent, unreadable, malformed or written under other rules."""
    try:
        raw = read_bytes(path, INDEX_LIMIT)
        data = json.loads(raw) if raw else None
    except (Unreadable, ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("version") != version:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}
