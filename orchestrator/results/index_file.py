"""collect's index on disk (`.collect-index.json` in the sweep folder): results.index's rows by
column, validated as they are read. A folder whose cached row the reader could not have produced is
read again; a file of another shape or version is no index (everything is read again).

A collect that read a few folders again writes only their rows, to a change file beside the index
(`.collect-index.changes.json`: the same document for those folders, with their positions and the
generation of the index file it applies to); the whole index is written again when the changes
pass their limit (CHANGES_SHARE), the folders or columns differ, or there is no index file. A
change file that does not fit its index file (another generation, other folders) is ignored: its
folders' files then differ from the index's signatures, and they are read again."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from orchestrator.results import index_checks
from orchestrator.results.index import Index
from orchestrator.sweep import bounded, warm_memo
from trainers import contract, rundir

INDEX_VERSION = 5
CHANGES_SHARE, CHANGES_MIN = 20, 64
"""The change file holds at most 1/CHANGES_SHARE of the folders (CHANGES_MIN at least); beyond,
the whole index is written (a second collect of 10,000 runs with 10 changed wrote 10.9 MB, 0.25 s
of CPU; a change file of 500 folders parses in a twentieth of the index's time)."""
_GENERATION_CHARS = 16
_DIGEST_CHARS = 32
_NO_DIGEST = "0" * _DIGEST_CHARS
_STATS = 5
"""Per file and folder: mtime ns, size, inode, ctime ns, hashed at ns (the digest is kept apart)."""


@functools.lru_cache(maxsize=1)
def reader_version() -> str:
    """The index's validity: its format and this module's source (rows read by other rules are stale)."""
    here = Path(__file__)
    rules = (
        here,
        here.with_name("index.py"),
        here.with_name("index_checks.py"),
        here.with_name("reader.py"),
        Path(bounded.__file__),
        Path(contract.__file__),
    )
    source = b"".join(path.read_bytes() for path in rules)
    return f"{INDEX_VERSION}-{hashlib.sha256(source).hexdigest()[:16]}"


class _Stale(Exception):
    """The index file is not one this module wrote (or of another version): everything is read again."""


def load_index(path: Path) -> Index:
    """The cached rows of a sweep (empty when absent, of another version or unreadable: all is read
    again). Validated as it is read: a folder whose cached values break the reader's own rules (an
    edited index put 402.58% top-1 in a table) or have another shape is not cached, and is read
    again; a file of another shape is no index at all.

    The index is this module's own file, so it is parsed without bounded's per-object hooks (a
    repeated key or a long integer in it changes nothing the checks below let through), and its
    values are checked a column at a time (a column of floats within its bounds at C speed; the
    exact per-value rule only in a column where that fails).

    A process forked from the warm process (cli/warm_server.py) gets the index file it decoded
    ahead when the file holds the same bytes (sweep/warm_memo.py); the change file, small and
    rewritten by every collect, is read here."""
    try:
        index = _recalled(path) or _decoded(_parsed(path))
    except _Stale:
        return Index([])
    with contextlib.suppress(_Stale):  # a change file that does not fit: its folders are read again
        data = _parsed(changes_path(path))
        changes = _decoded(data)
        _apply_changes(index, changes, _changed_positions(data))
        index.state = changes.state
    return index


def keep_ahead(path: Path) -> None:
    """In the warm process: decode the index file `path` (without its change file) and keep it for
    the commands it forks, when its bytes did not change while it was read."""
    proof = warm_memo.file_proof(str(path))
    with contextlib.suppress(_Stale):
        index = _decoded(_parsed(path))
        if proof is not None and warm_memo.file_proof(str(path)) == proof:
            warm_memo.keep("index", str(path), proof, index, len(index.names))


def _recalled(path: Path) -> Index | None:
    """The index file as the warm process decoded it, when it still holds those bytes (else None)."""
    if not warm_memo.active():
        return None
    kept = warm_memo.recall("index", str(path), warm_memo.file_proof(str(path)))
    return kept if isinstance(kept, Index) else None


def changes_path(path: Path) -> Path:
    """The change file of the index file `path`."""
    return path.with_name(f"{path.stem}.changes{path.suffix}")


def _parsed(path: Path) -> Any:
    try:
        raw = bounded.read_bytes(path, bounded.INDEX_LIMIT)
        return _loads(raw) if raw else None
    except (bounded.Unreadable, ValueError, RecursionError):
        raise _Stale from None


def _loads(raw: bytes) -> Any:
    """The index document: orjson (0.06 s for the 11 MB index of 10,000 runs, against json's 0.19 s,
    a tenth of a second collect). It reads strict JSON only: what `json` wrote that it refuses (a
    lone surrogate from a folder name that is no UTF-8) goes to `json`, so the document read is the
    same, but for integers past 64 bits, which orjson reads as floats: no index of ours holds one
    (stat numbers and counts are far below); in an edited file, a stat number or count read so is
    refused (read again), and anywhere else the float is the same number to 16 digits."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _changed_positions(data: dict[str, Any]) -> list[int]:
    positions = data.get("positions")
    if not (isinstance(positions, list) and set(map(type, positions)) <= {int}):
        raise _Stale
    if len(set(positions)) != len(positions):
        raise _Stale
    return positions


def _apply_changes(index: Index, changes: Index, positions: list[int]) -> None:
    """The change file's rows over the index file's, at their positions (checked: same generation
    and columns, each position the folder of that name)."""
    n = len(index.names)
    if index.generation is None or changes.generation != index.generation or changes.columns != index.columns:
        raise _Stale
    if len(positions) != len(changes.names):
        raise _Stale
    if any(not 0 <= p < n or index.names[p] != name for p, name in zip(positions, changes.names, strict=True)):
        raise _Stale
    for k, p in enumerate(positions):
        for values, changed in zip(index.values, changes.values, strict=True):
            values[p] = changed[k]
        index.signatures[p] = changes.signatures[k]
        index.problems[p] = changes.problems[k]
    index.in_changes = set(positions)


def _decoded(data: Any) -> Index:
    if not isinstance(data, dict) or data.get("version") != reader_version():
        raise _Stale
    generation = data.get("generation")
    if not _token(generation):
        raise _Stale
    columns, names = _texts(data.get("columns")), _texts(data.get("names"))
    if len(set(columns)) != len(columns) or len(set(names)) != len(names):
        raise _Stale
    n = len(names)
    encoded = data.get("values")
    if not isinstance(encoded, list) or len(encoded) != len(columns):
        raise _Stale
    values = [_decoded_column(column, n) for column in encoded]
    in_plan, files = data.get("in_plan"), data.get("files")
    if not (isinstance(in_plan, list) and len(in_plan) == n and set(map(type, in_plan)) <= {bool}):
        raise _Stale
    if not (isinstance(files, list) and len(files) == 3):
        raise _Stale
    per_file = [_decoded_files(f, n) for f in files]
    signatures: list[Any] = [[p, [a, b, c]] for p, a, b, c in zip(in_plan, *per_file, strict=True)]
    problems: list[list[str]] = [[] for _ in range(n)]
    found = data.get("problems")
    if not isinstance(found, dict):
        raise _Stale
    for key, texts in found.items():
        i = _position(key, n)
        if isinstance(texts, list) and all(isinstance(t, str) for t in texts):
            problems[i] = texts
        else:
            signatures[i] = None  # a problem that is no text: read that folder again
    kinds = [set(map(type, column)) for column in values]
    if "run_id" not in columns or "state" not in columns:
        raise _Stale
    bad = index_checks.bad_shapes(values, kinds) | index_checks.bad_values(columns, values, kinds)
    for i in bad | index_checks.bad_identity(columns, names, values):
        signatures[i] = None
    state = data.get("state")
    return Index(
        columns=columns,
        names=names,
        values=values,
        signatures=signatures,
        problems=problems,
        generation=generation,
        state=state if _token(state) else None,
    )


def _token(value: Any) -> bool:
    """Whether `value` is a generation or save token as new_state makes them."""
    return isinstance(value, str) and len(value) == _GENERATION_CHARS and value.isascii()


def _texts(value: Any) -> list[str]:
    if not (isinstance(value, list) and set(map(type, value)) <= {str}):
        raise _Stale
    return value


def _position(key: Any, n: int) -> int:
    """A folder's position written as a JSON key."""
    if not (isinstance(key, str) and key.isascii() and key.isdecimal() and len(key) < 12 and int(key) < n):
        raise _Stale
    return int(key)


def _decoded_column(column: Any, n: int) -> list[Any]:
    """A column's values: a list, or the distinct texts and a code per folder."""
    if isinstance(column, list) and len(column) == n:
        return column
    if not isinstance(column, dict) or set(column) != {"distinct", "codes"}:
        raise _Stale
    distinct, codes = column["distinct"], column["codes"]
    if not (isinstance(distinct, list) and isinstance(codes, list) and len(codes) == n):
        raise _Stale
    if codes and not (set(map(type, codes)) <= {int} and min(codes) >= 0 and max(codes) < len(distinct)):
        raise _Stale
    return [distinct[code] for code in codes]


def _decoded_files(files: Any, n: int) -> list[Any]:
    """One file's signature per folder (see signature) from its stat numbers, digests and others."""
    if not isinstance(files, dict) or set(files) != {"stat", "digest", "other"}:
        raise _Stale
    numbers, digests, other = files["stat"], files["digest"], files["other"]
    if not (isinstance(numbers, list) and len(numbers) == _STATS * n and set(map(type, numbers)) <= {int}):
        raise _Stale
    if not (isinstance(digests, str) and len(digests) == _DIGEST_CHARS * n and isinstance(other, dict)):
        raise _Stale
    step = _DIGEST_CHARS
    texts = (digests[j : j + step] for j in range(0, step * n, step))
    out: list[Any] = [
        [mtime, size, digest, inode, ctime, hashed]
        for mtime, size, digest, inode, ctime, hashed in zip(
            numbers[0::_STATS],
            numbers[1::_STATS],
            texts,
            numbers[2::_STATS],
            numbers[3::_STATS],
            numbers[4::_STATS],
            strict=True,
        )
    ]
    for key, value in other.items():
        if not (value is None or isinstance(value, str)):
            raise _Stale
        out[_position(key, n)] = value
    return out


def new_state() -> str:
    """A token for the next save_index (Index.state once loaded)."""
    return secrets.token_hex(_GENERATION_CHARS // 2)


def save_index(path: Path, index: Index, changed: Iterable[int] = (), state: str | None = None) -> None:
    """Write the index (every folder of it read or cached: no signature is None): only the rows of
    the folders read again since it was loaded (`changed`) to its change file while they are few
    and its folders and columns those of the index file it was loaded from; else the whole file.
    `state` (new_state) names this save: the index loaded next has it as its Index.state."""
    pending = sorted(index.in_changes.union(changed))
    few = len(pending) <= max(CHANGES_MIN, len(index.names) // CHANGES_SHARE)
    # A read-only results folder: collect still works, only slower next time.
    with contextlib.suppress(OSError):
        if index.generation is not None and len(index.columns) == index.width and few:
            document = _document(_rows(index, pending), index.generation, state)
            rundir.write_text(changes_path(path), _json({**document, "positions": pending}))
            return
        rundir.write_text(path, _json(_document(index, new_state(), state)))
        changes_path(path).unlink(missing_ok=True)  # of the generation before: ignored, but stale


def _rows(index: Index, positions: list[int]) -> Index:
    """The index of only the folders at `positions`."""
    return Index(
        columns=index.columns,
        names=[index.names[p] for p in positions],
        values=[[values[p] for p in positions] for values in index.values],
        signatures=[index.signatures[p] for p in positions],
        problems=[index.problems[p] for p in positions],
    )


def _document(index: Index, generation: str, state: str | None) -> dict[str, Any]:
    return {
        "version": reader_version(),
        "generation": generation,
        "state": state,
        "columns": index.columns,
        "names": index.names,
        "values": [_encoded_column(values) for values in index.values],
        "problems": {str(i): texts for i, texts in enumerate(index.problems) if texts},
        "in_plan": [sig[0] for sig in index.signatures],
        "files": [_encoded_files([sig[1][k] for sig in index.signatures]) for k in range(3)],
    }


def _json(document: dict[str, Any]) -> str:
    """The document as json writes it compactly: by orjson (0.47 s with the finite check for the 114 MB
    index of 100,000 runs, against json's 2.39 s) when no float in it is NaN or infinite (orjson
    writes those as null; a status.json may hold one) and orjson takes every value (a lone
    surrogate, an integer past 64 bits: it refuses them); else by json."""
    if all(_finite(values) for values in document["values"]):
        try:
            return orjson.dumps(document).decode()
        except orjson.JSONEncodeError:
            pass
    return json.dumps(document, separators=(",", ":"))


def _finite(column: Any) -> bool:
    """Whether the floats of an encoded column are all finite (an encoded text column has none)."""
    if not isinstance(column, list):
        return True
    floats = itertools.compress(column, map(isinstance, column, itertools.repeat(float)))  # in C
    try:
        return math.isfinite(math.fsum(floats))  # a NaN or an infinity makes the sum one
    except (OverflowError, ValueError):  # past 1e308 together, or both infinities: json decides
        return False


def _encoded_column(values: list[Any]) -> Any:
    """A column of texts repeated across folders (hosts, versions, states) as its distinct texts and
    a code per folder; any other column as it is."""
    if len(values) < 8 or not set(map(type, values)) <= index_checks.TEXTS:
        return values
    distinct = list(dict.fromkeys(values))
    if len(distinct) * 4 > len(values):
        return values
    code = {value: i for i, value in enumerate(distinct)}
    return {"distinct": distinct, "codes": [code[value] for value in values]}


def _encoded_files(files: list[Any]) -> dict[str, Any]:
    """One file's signatures across folders: stat numbers in one list, digests in one string, and
    the folders where the file is absent (None) or unreadable (its reason) apart."""
    numbers: list[int] = []
    digests: list[str] = []
    other: dict[str, Any] = {}
    for i, sig in enumerate(files):
        if isinstance(sig, list):
            numbers += (sig[0], sig[1], sig[3], sig[4], sig[5])
            digests.append(sig[2])
        else:
            numbers += (0, 0, 0, 0, 0)
            digests.append(_NO_DIGEST)
            other[str(i)] = sig
    return {"stat": numbers, "digest": "".join(digests), "other": other}
