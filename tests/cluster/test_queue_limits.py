"""Scheduler headroom: submit only what the user's queue limits allow; --follow feeds in the rest.

The `slurm` tests set MaxSubmitJobs on the dev cluster's association with sacctmgr (the real
accounting database) and submit against it.
"""

from __future__ import annotations

import functools
import getpass
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster_leftovers import clear_leftovers, set_max_submit
from config_helpers import DEV_PROFILE, FAST_RUNS

from orchestrator import launch, store
from orchestrator.launch import slurmcli
from orchestrator.launch.limits import QueueLimits, max_submit_jobs, queue_limits
from orchestrator.launch.slurm import within
from orchestrator.launch.status import sweep_status
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec

PROFILE = DEV_PROFILE
SMALL = [item for item in FAST_RUNS if not item.startswith("grid.seed")]
# MaxSubmitJobs of the --follow test: a third of its sweep (3 ablations x LIMIT seeds).
LIMIT = 2


def test_headroom_is_the_tightest_limit() -> None:
    assert QueueLimits(50, 20000, 48, 100).headroom() == 2
    assert QueueLimits(None, 20000, 48, 19990).headroom() == 10
    assert QueueLimits(5, None, 9, 9).headroom() == 0, "over the limit already: nothing, never negative"
    assert QueueLimits(None, None, 9, 9).headroom() is None


def test_within_keeps_plan_order_and_counts_held_runs() -> None:
    config = object()
    arrays = [(config, [["a"], ["b"], ["c"]]), (config, [["d", "e"], ["f"]])]
    kept, held = within(arrays, 4)  # type: ignore[arg-type]
    assert [tasks for _, tasks in kept] == [[["a"], ["b"], ["c"]], [["d", "e"]]]
    assert held == 1
    assert within(arrays, None) == (arrays, 0)  # type: ignore[arg-type]
    assert within(arrays, 0) == ([], 6)  # type: ignore[arg-type]


@pytest.fixture
def max_submit() -> Iterator[Callable[[int], None]]:
    """Set this user's MaxSubmitJobs on the dev cluster; always reset afterwards."""
    user = getpass.getuser()

    yield functools.partial(set_max_submit, user)
    set_max_submit(user, -1)


@pytest.mark.slurm
def test_max_submit_jobs_caps_a_submission(write_spec: Callable[..., Path], max_submit: Callable[[int], None]) -> None:
    max_submit(50)
    assert max_submit_jobs(getpass.getuser())[0] == 50
    seeds = "grid.seed=[" + ",".join(str(i) for i in range(40)) + "]"
    spec = load_spec(write_spec(), [*SMALL, seeds, "slurm.additional_parameters.begin=now+1hour"])
    assert len(plan(spec)) == 120
    queued = queue_limits().queued_by_user  # jobs of this user already in the queue count too
    try:
        outcome = launch.submit(spec, plan(spec), "slurm", profile=PROFILE)
        assert len(outcome.submitted) == 50 - queued and outcome.held == 70 + queued
        again = launch.submit(spec, plan(spec), "slurm", profile=PROFILE)
        assert again.submitted == {} and again.held == 70 + queued, "the 50 queued count against the limit"
    finally:
        slurmcli.cancel(store.read_manifest(spec.output_path)["arrays"])


@pytest.mark.slurm
@pytest.mark.slow
def test_follow_completes_a_sweep_larger_than_the_limit(
    write_spec: Callable[..., Path], max_submit: Callable[[int], None]
) -> None:
    """The issue's case (MaxSubmitJobs=50, a 120-run sweep) at the smallest size that still fills a
    submission of more than one run and needs three of them, since every run is a process start-up on
    a node (CI time; the dev nodes share 2 real cores, so more runs at once do not go faster):
    MaxSubmitJobs=2 and 6 runs; --follow runs all 6."""
    max_submit(LIMIT)
    seeds = "grid.seed=[" + ",".join(str(i) for i in range(LIMIT)) + "]"
    spec = load_spec(write_spec(), [*SMALL, seeds, "defaults.max_steps_per_epoch=1"])
    runs = plan(spec)
    assert len(runs) == 3 * LIMIT
    queued = queue_limits().queued_by_user  # jobs of this user already in the queue count too
    outcome = launch.submit(spec, runs, "slurm", profile=PROFILE, follow_s=1.0)
    assert len(outcome.submitted) == len(runs) and outcome.held == 0
    sizes = [entry["size"] for entry in store.read_manifest(spec.output_path)["arrays"].values()]
    # Jobs queued before may leave between that count and the first submission: at most the limit.
    assert LIMIT - queued <= sizes[0] <= LIMIT, "the first submission fills the limit, no more"
    assert max(sizes) <= LIMIT and len(sizes) >= 3 and sum(sizes) == len(runs), sizes
    assert {row.state for row in sweep_status(runs, spec.output_path).runs} == {"completed"}


@pytest.mark.slurm
def test_a_killed_sessions_jobs_and_limit_are_cleared(tmp_path_factory: pytest.TempPathFactory) -> None:
    """What a session killed inside test_max_submit_jobs_caps_a_submission leaves, the next one clears."""
    user = getpass.getuser()
    this_session = tmp_path_factory.getbasetemp().resolve()
    earlier = this_session.parent / f"{this_session.name}-earlier"  # never created: the job never runs
    mine = tmp_path_factory.mktemp("current")
    # A concurrent session's folder: its .lock names a live process (this one), so its jobs stay.
    concurrent = this_session.parent / f"{this_session.name}-concurrent"
    concurrent.mkdir()
    (concurrent / ".lock").write_text(str(os.getpid()))
    submitted = []
    for folder in (earlier, mine, concurrent):
        command = ["sbatch", "--parsable", "--hold", "--array=0-1", "-o", f"{folder}/%A_%a.out", "--wrap", "true"]
        submitted.append(subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip())
    try:
        set_max_submit(user, 50)
        assert clear_leftovers(user, this_session.parent, this_session) == [submitted[0]]
        assert max_submit_jobs(user)[0] is None
        queued = subprocess.run(["squeue", "-h", "-u", user, "-o", "%F"], capture_output=True, text=True).stdout
        assert submitted[0] not in queued.split() and {submitted[1], submitted[2]} <= set(queued.split())
    finally:
        shutil.rmtree(concurrent, ignore_errors=True)
        slurmcli.cancel(submitted)
        set_max_submit(user, -1)
