"""What the warm process keeps for its forks (orchestrator/sweep/warm_memo.py): a plan only for a spec
equal in every field, an index file only while it holds the same bytes, nothing outside `keeping()`,
each used once per process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tables_fixture import finished_sweep

from orchestrator.cli.main import main
from orchestrator.results import collect, index_file
from orchestrator.sweep import warm_memo
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec


@pytest.fixture(autouse=True)
def _nothing_kept() -> Iterator[None]:
    warm_memo._KEPT.clear()
    yield
    warm_memo._KEPT.clear()


def test_a_plan_is_kept_only_while_keeping_and_recalled_for_an_equal_spec(write_spec: Callable[..., Path]) -> None:
    path = write_spec()
    spec = load_spec(path)
    fresh = plan(spec)
    assert not warm_memo.active(), "a plan outside keeping() is not kept"
    with warm_memo.keeping():
        kept = plan(spec)
    assert warm_memo.active()
    other = plan(load_spec(path, ["defaults.epochs=2"]))  # one field differs: planned afresh
    assert [r.run_id for r in other] != [r.run_id for r in fresh]
    assert warm_memo.active(), "a different spec leaves the kept plan alone"
    again = plan(load_spec(path))
    assert again == fresh and all(a is k for a, k in zip(again, kept, strict=True)), "recalled"
    assert not warm_memo.active(), "used once"
    assert plan(spec)[0] is not kept[0]


def test_an_index_file_is_recalled_only_while_it_holds_the_same_bytes(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, _ = finished_sweep(write_spec())
    assert main(["collect", str(spec.output_path), "--no-report"]) == 0
    path = spec.output_path / collect.INDEX_FILE
    assert not index_file.changes_path(path).exists()
    fresh = index_file.load_index(path)
    decoded = _counting(monkeypatch)
    with warm_memo.keeping():
        index_file.keep_ahead(path)
    assert len(decoded) == 1 and warm_memo.active()
    recalled = index_file.load_index(path)
    assert len(decoded) == 1, "the kept decode, not the file's"
    assert (recalled.names, recalled.columns, recalled.values) == (fresh.names, fresh.columns, fresh.values)
    with warm_memo.keeping():
        index_file.keep_ahead(path)
    path.write_bytes(path.read_bytes() + b" ")  # other bytes, the same rows
    assert index_file.load_index(path).names == fresh.names
    assert len(decoded) == 3, "decoded again: the kept one no longer holds (and kept ahead, 2)"
    assert not warm_memo.active()


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every decode of an index document read from a file, from now on."""
    calls: list[Any] = []
    real = index_file._decoded

    def counted(data: Any) -> Any:
        if data is not None:  # None: no change file (refused as stale at once)
            calls.append(data)
        return real(data)

    monkeypatch.setattr(index_file, "_decoded", counted)
    return calls


def test_keep_needs_keeping_a_proof_and_a_small_sweep() -> None:
    warm_memo.keep("plan", "k", True, [1], 1)
    assert not warm_memo.active()
    with warm_memo.keeping():
        warm_memo.keep("plan", "big", True, [1], warm_memo.MAX_KEPT_RUNS + 1)
        warm_memo.keep("index", "unproven", None, [1], 1)
    assert not warm_memo.active()
    with warm_memo.keeping():
        warm_memo.keep("plan", "k", ("a",), [1], 1)
    assert warm_memo.recall("plan", "k", ("b",)) is None, "another proof"
    assert warm_memo.recall("plan", "k", ("a",)) is None, "forgotten at the first recall, held or not"


def test_file_proof_is_the_bytes(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_bytes(b"one")
    first = warm_memo.file_proof(str(file), str(tmp_path / "absent"))
    assert first is not None and first[1] is None
    file.write_bytes(b"two")
    assert warm_memo.file_proof(str(file), str(tmp_path / "absent")) != first
    file.write_bytes(b"one")
    assert warm_memo.file_proof(str(file), str(tmp_path / "absent")) == first
    (tmp_path / "dir").mkdir()
    assert warm_memo.file_proof(str(tmp_path / "dir")) is None, "not a readable file"
