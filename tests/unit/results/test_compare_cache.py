"""results.compare_cache: a second collect bootstraps only the deltas whose cells changed, writes the
same tables as a cold collect, and a broken or tampered-with cache file only costs the recomputation."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.results import collect, compare_cache, resample
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec

SEEDS = 24  # from stats.BOOTSTRAP_MIN_SEEDS (20) a delta's interval is a bootstrap


@pytest.fixture
def sweep(write_spec: Callable[..., Path]) -> tuple[SweepSpec, list[RunSpec]]:
    grid = {"backbone": ["resnet10t"], "dataset": ["digits"], "seed": list(range(SEEDS))}
    spec = load_spec(write_spec(grid=grid))
    runs = plan(spec)
    rng = random.Random(0)
    for run in runs:
        fake_run(spec, run, round(0.8 + 0.02 * rng.random() + 0.01 * list(spec.ablations).index(run.ablation), 6))
    return spec, runs


@pytest.fixture
def bootstraps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts resample.bootstrap_interval calls (stats calls it through the module)."""
    calls = [0]
    real = resample.bootstrap_interval

    def counted(*args: Any, **kwargs: Any) -> tuple[float, float]:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(resample, "bootstrap_interval", counted)
    return calls


def _tables(spec: SweepSpec) -> dict[str, bytes]:
    written = collect.write_tables(spec, store.sweep_root(spec))
    return {path.name: path.read_bytes() for path in written.files}


def _cold(spec: SweepSpec) -> dict[str, bytes]:
    (store.sweep_root(spec) / compare_cache.FILE).unlink(missing_ok=True)
    return _tables(spec)


def test_second_collect_bootstraps_only_the_changed_cells(
    sweep: tuple[SweepSpec, list[RunSpec]], bootstraps: list[int]
) -> None:
    spec, runs = sweep
    cold = _cold(spec)
    cold_calls = bootstraps[0]
    assert cold_calls >= 2  # two deltas (and the best mark): bootstraps at 24 seeds
    assert _tables(spec) == cold
    assert bootstraps[0] == cold_calls  # nothing changed: nothing computed again
    last = next(run for run in reversed(runs) if run.ablation == list(spec.ablations)[-1])
    fake_run(spec, last, 0.5)  # one run of the last row changes: its delta, not the other row's
    warm = _tables(spec)
    recomputed = bootstraps[0] - cold_calls
    assert 0 < recomputed < cold_calls
    assert warm == _cold(spec) != cold


def _entries(change: Callable[[list[Any]], Any]) -> Callable[[dict[str, Any]], str]:
    """A tampering that changes every entry of a valid cache file."""
    return lambda data: json.dumps({**data, "entries": {key: change(e) for key, e in data["entries"].items()}})


@pytest.mark.parametrize(
    "tamper",
    [
        lambda data: "not json {",
        lambda data: json.dumps([1, 2, 3]),
        lambda data: json.dumps({**data, "version": "other rules"}),
        _entries(lambda e: "x"),
        _entries(lambda e: [e[0], -1, *e[2:]]),  # a negative count
        _entries(lambda e: [*e[:3], "0.1", *e[4:]]),  # a bound as text
        _entries(lambda e: [*e[:5], True, e[6]]),  # a p-value that is a flag
        _entries(lambda e: [*e[:3], float("nan"), *e[4:]]),  # NaN (json.dumps writes it)
        _entries(lambda e: e[:6]),  # a field short
    ],
)
def test_a_broken_cache_file_is_computed_again(
    sweep: tuple[SweepSpec, list[RunSpec]], bootstraps: list[int], tamper: Callable[[dict[str, Any]], str]
) -> None:
    spec, _ = sweep
    cold = _cold(spec)
    cold_calls = bootstraps[0]
    path = store.sweep_root(spec) / compare_cache.FILE
    path.write_text(tamper(json.loads(path.read_text())))
    assert _tables(spec) == cold
    assert bootstraps[0] == 2 * cold_calls  # every entry refused: all computed again
    assert compare_cache._load(path)  # and the file is whole again


def test_an_unwritable_cache_only_costs_time(sweep: tuple[SweepSpec, list[RunSpec]], bootstraps: list[int]) -> None:
    spec, _ = sweep
    path = store.sweep_root(spec) / compare_cache.FILE
    path.mkdir()  # in the way of the atomic write
    assert _tables(spec)
    assert path.is_dir() and bootstraps[0] > 0
