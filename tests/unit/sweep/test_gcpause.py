"""The collector paused around a sweep's worth of acyclic objects, and resumed where cyclic garbage
is made inside such a pause (orchestrator.sweep.gcpause; collect's report figures)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tables_fixture import finished_sweep

from orchestrator.results import collect, report, tables
from orchestrator.sweep import gcpause


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        (gc.enable if was else gc.disable)()


def test_pause_and_resume_nest_and_restore(collector_on: None) -> None:
    with gcpause.paused_gc():
        assert not gc.isenabled()
        with gcpause.paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled(), "a nested pause leaves it off"
        with gcpause.resumed_gc():
            assert gc.isenabled()
        assert not gc.isenabled(), "back to the pause after a resumed block"
    assert gc.isenabled()
    with gcpause.resumed_gc():
        assert gc.isenabled()
    assert gc.isenabled()


SPEC = """
name: gc
output_dir: {out}
defaults: {{data: {{image_size_px: 16}}, epochs: 1}}
grid: {{backbone: [resnet10t], dataset: [digits], seed: [0, 1]}}
modifiers: {{aug: {{data.augment: {{rotate_deg: 10}}}}}}
ablations: {{Baseline: [], + Aug: [aug]}}
"""


def test_collect_builds_tables_paused_and_the_report_with_the_collector_on(
    write_spec: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, collector_on: None
) -> None:
    spec, _ = finished_sweep(write_spec(SPEC))
    seen: dict[str, bool] = {}
    build, write = tables.build_tables, report.write_report

    def building(*args: Any, **kwargs: Any) -> Any:
        seen["tables"] = gc.isenabled()
        return build(*args, **kwargs)

    def reporting(*args: Any, **kwargs: Any) -> Any:
        seen["report"] = gc.isenabled()
        return write(*args, **kwargs)

    monkeypatch.setattr(tables, "build_tables", building)
    monkeypatch.setattr(report, "write_report", reporting)
    written = collect.write_tables(spec, spec.output_path, report=True)
    assert written.report_path is not None and written.report_path.is_file()
    assert seen == {"tables": False, "report": True}
    assert gc.isenabled(), "as it was before collect"


def test_a_paused_block_ends_frozen_only_where_the_process_says(
    collector_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off (a library caller, this test session): a paused block's objects are left to the
    collector. On (the `orchestrate` process): the outermost block ends by freezing them, so no
    collection walks them; a nested block does not."""
    monkeypatch.setattr(gcpause, "_FREEZE_AT_END", [False])
    frozen = gc.get_freeze_count()
    with gcpause.paused_gc():
        made = [{"row": i} for i in range(1000)]
    assert gc.get_freeze_count() == frozen and gc.isenabled()
    gcpause.freeze_at_end()
    try:
        with gcpause.paused_gc():
            with gcpause.paused_gc():
                made += [{"row": i} for i in range(1000)]
            assert gc.get_freeze_count() == frozen, "not at the end of a nested block"
        assert gc.get_freeze_count() >= frozen + len(made) and gc.isenabled()
    finally:
        gc.unfreeze()  # the session's objects back to the collector
