"""launch.worker.cpu_shares: workers sharing a machine get disjoint slices of its CPUs."""

from __future__ import annotations

import os

import pytest

from orchestrator.launch.worker import cpu_shares


@pytest.mark.parametrize(("cpus", "count"), [(range(8), 3), (range(64), 8), (range(4, 12), 2), (range(5), 5)])
def test_shares_are_disjoint_and_cover_the_cpus(monkeypatch: pytest.MonkeyPatch, cpus: range, count: int) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(cpus))
    shares = cpu_shares(count)
    assert len(shares) == count and all(shares)
    assert sorted(cpu for share in shares for cpu in share) == list(cpus)  # each CPU once
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_more_workers_than_cpus_share_one_cpu_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 7})
    assert cpu_shares(5) == [[3], [7], [3], [7], [3]]
