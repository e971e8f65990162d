"""store.verdicts: a completed run's metrics.json is checked once per change of the file, and every
change (a rewrite, a same-size rewrite at the same mtime, a broken file, a file removed, another
run's copy) is checked again, as `status` and `submit` decide on it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tables_fixture import fake_run, finished_sweep

from orchestrator import store
from orchestrator.store import run_states, verdicts
from orchestrator.sweep import forked
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir
from trainers.rundir import State

SPEC = """
name: verdicts
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [resnet10t], dataset: [digits], seed: [0, 1]}}
ablations: {{Baseline: []}}
"""


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    return finished_sweep(write_spec(SPEC))


def _settle(path: Path) -> None:
    """Back-date the check's record past RACY_NS (a test cannot wait two seconds of ctime)."""
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry[1][4] += verdicts.RACY_NS
    path.write_text(json.dumps(data))


def _checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = run_states._metrics_problem

    def counted(path: Path, ids: tuple[str, str]) -> str | None:
        seen.append(path.name)
        return original(path, ids)

    monkeypatch.setattr(run_states, "_metrics_problem", counted)
    return seen


def _states(spec: SweepSpec, runs: list[RunSpec]) -> list[State]:
    return [record.state for record in run_states.inspect(runs, spec.output_path)]


def test_a_settled_verdict_is_not_checked_again(
    sweep: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = sweep
    seen = _checks(monkeypatch)
    assert _states(spec, runs) == [State.COMPLETED] * 2 and len(seen) == 2
    assert _states(spec, runs) == [State.COMPLETED] * 2 and len(seen) == 4, "checked just after a change: again"
    _settle(spec.output_path / verdicts.FILE)
    assert _states(spec, runs) == [State.COMPLETED] * 2 and len(seen) == 4, "settled: answered from the cache"


@pytest.mark.parametrize(
    "change",
    [
        lambda p: p.write_text('{"test": {"top1": 0.9'),  # broken
        lambda p: p.unlink(),
        lambda p: p.write_text('{"run_id": "someone-else", "test": {"top1": 0.9}}'),
        lambda p: p.write_text('{"val": {"top1": 0.9}}'),  # no test score
    ],
    ids=["broken", "removed", "another-runs", "no-test-score"],
)
def test_every_change_of_metrics_is_checked_again(
    sweep: tuple[SweepSpec, list[RunSpec]], change: Callable[[Path], None]
) -> None:
    spec, runs = sweep
    assert _states(spec, runs) == [State.COMPLETED] * 2
    _settle(spec.output_path / verdicts.FILE)
    change(store.run_path(spec.output_path, runs[0].run_id) / rundir.METRICS)
    records = run_states.inspect(runs, spec.output_path)
    assert [r.state for r in records] == [State.MISSING, State.COMPLETED]
    assert records[0].problem is not None and "submit runs it again" in records[0].problem


def test_a_same_size_rewrite_at_the_same_mtime_is_checked_again(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    path = store.run_path(spec.output_path, runs[0].run_id) / rundir.METRICS
    path.write_text('{"test": {"top1": 0.9}}')
    assert _states(spec, runs) == [State.COMPLETED] * 2
    _settle(spec.output_path / verdicts.FILE)
    before = os.stat(path)
    path.write_text('{"test": {"top1": 1.9}}')  # same length, out of [0, 1]
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _states(spec, runs) == [State.MISSING, State.COMPLETED], "the ctime moved: checked again"


def test_an_edited_or_foreign_cache_is_not_trusted(sweep: tuple[SweepSpec, list[RunSpec]]) -> None:
    spec, runs = sweep
    path = store.run_path(spec.output_path, runs[0].run_id) / rundir.METRICS
    path.write_text('{"test": {"top1": 7.0}}')
    assert _states(spec, runs) == [State.MISSING, State.COMPLETED]
    cache = spec.output_path / verdicts.FILE
    _settle(cache)
    data = json.loads(cache.read_text())
    data["entries"][runs[0].run_id][2] = None  # an edit that would call the broken run done
    data["version"] = "other rules"
    cache.write_text(json.dumps(data))
    assert _states(spec, runs) == [State.MISSING, State.COMPLETED]
    cache.write_text("{not json")
    assert _states(spec, runs) == [State.MISSING, State.COMPLETED]


def test_a_read_only_sweep_folder_still_answers(
    sweep: tuple[SweepSpec, list[RunSpec]], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, runs = sweep

    def refuse(*_: object) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(rundir, "write_text", refuse)
    assert _states(spec, runs) == [State.COMPLETED] * 2
    assert not (spec.output_path / verdicts.FILE).exists()


def test_checks_ahead_on_workers_give_what_one_process_gives(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(write_spec(SPEC.replace("seed: [0, 1]", "seed: [0, 1, 2, 3, 4, 5, 6, 7]")))
    runs = plan(spec)
    store.write_snapshot(spec, spec.output_path)
    for index, run in enumerate(runs):
        fake_run(spec, run, 0.90 + 0.01 * index)
    folder = lambda run: store.run_path(spec.output_path, run.run_id)  # noqa: E731
    (folder(runs[1]) / rundir.METRICS).write_text('{"test": {"top1": 0.9')  # broken
    (folder(runs[2]) / rundir.METRICS).unlink()
    (folder(runs[3]) / rundir.METRICS).write_text('{"run_id": "someone-else", "test": {"top1": 0.9}}')
    status = json.loads((folder(runs[4]) / rundir.STATUS).read_text())
    (folder(runs[4]) / rundir.STATUS).write_text(json.dumps({**status, "state": "running"}))  # its check is dropped
    cache = spec.output_path / verdicts.FILE
    monkeypatch.setattr(run_states, "CHECKS_AHEAD_FROM", 2)  # 8 runs, none remembered: ahead

    def inspected(workers: str) -> tuple[list[tuple[State, str | None]], dict[str, object]]:
        cache.unlink(missing_ok=True)
        monkeypatch.setenv(forked.WORKERS_ENV, workers)
        records = run_states.inspect(runs, spec.output_path)
        entries = json.loads(cache.read_text())["entries"]
        return [(r.state, r.problem) for r in records], {k: [e[0], e[1][:4], e[2]] for k, e in entries.items()}

    ahead_forked: list[int] = []
    original = forked.ForkedMap.__init__

    def counted(self: forked.ForkedMap[object, object], *args: object, **kwargs: object) -> None:
        ahead_forked.append(1)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(forked.ForkedMap, "__init__", counted)
    serial, pooled = inspected("1"), inspected("2")
    assert ahead_forked == [1], "only the run with two workers checks ahead"
    assert pooled == serial
    expected = [State.COMPLETED, *[State.MISSING] * 3, State.RUNNING, *[State.COMPLETED] * 3]
    assert [state for state, _ in serial[0]] == expected
    unrecorded = {folder(runs[2]).name, folder(runs[4]).name}  # no metrics.json; not completed
    assert sorted(serial[1]) == sorted(f.name for f in map(folder, runs) if f.name not in unrecorded)
