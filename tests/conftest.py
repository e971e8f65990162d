"""The suite's levels and shared fixtures.

tests/ is laid out by level, and the folder decides the markers, so a test cannot sit in the
quick loop by mistake:

- `unit/<package>/`: our logic alone (fakes allowed), milliseconds to seconds; trains nothing:
  an unmarked test that reaches the trainer fails (TRAINING_GUARD below).
- `training/`: real training in this process (marked `slow`).
- `e2e/`: whole commands on this machine: local executor, warm workers, the wheel (`slow`).
- `cluster/`: against the dev SLURM cluster (`slurm`); never a mock of SLURM.
- `architecture/`: layering, docs, start-up imports.
- `support/` (helpers the tests import), `fixtures/` (data), `golden/` (pinned outputs).
"""

from __future__ import annotations

import getpass
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS / "support"))  # `from config_helpers import ...` from any level

from orchestrator.cli import warm  # noqa: E402
from orchestrator.sweep import yamlio  # noqa: E402

WARM_DIR = Path(tempfile.mkdtemp(prefix="orchestrate-warm-"))
os.environ[warm.DIR_ENV] = str(WARM_DIR)
"""The session's warm processes (cli/warm.py) live here, not beside the user's own: commands the
tests run are served warm as a user's are, and the session stops them all when it ends."""


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the session's warm processes and remove their folder."""
    warm.stop(WARM_DIR)
    shutil.rmtree(WARM_DIR, ignore_errors=True)


LEVEL_MARKS = {"training": ("slow",), "e2e": ("slow",), "cluster": ("slurm",)}
TRAINING_GUARD = "ORCHESTRATE_TEST_FORBID_TRAINING"
"""Set for tests with neither `slow` nor `slurm`: trainers.loop.run.run_training then refuses to start
(in this process and in every worker or command it spawns), so `make test-unit` trains nothing."""


# Hypothesis's 200 ms per-example deadline measures the machine's load, not our code, on a shared 2-core
# box running two pytest processes beside SLURM jobs (`make test`); the property tests' own settings
# choose their example counts.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The markers of each test's level folder."""
    for item in items:
        parts = Path(str(item.path)).resolve().relative_to(TESTS).parts
        for mark in LEVEL_MARKS.get(parts[0], ()):
            item.add_marker(mark)


@pytest.fixture(autouse=True)
def _no_training_in_quick_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if not any(request.node.get_closest_marker(name) for name in ("slow", "slurm")):
        monkeypatch.setenv(TRAINING_GUARD, request.node.nodeid)


@pytest.fixture(autouse=True)
def _dev_cluster_without_leftovers(request: pytest.FixtureRequest) -> None:
    """Before the first `slurm` test, clear what a killed earlier session left on the dev cluster.

    A session killed mid-test (a CI machine reclaimed, Ctrl-C twice) runs no finalizers: the queue-limit
    test then leaves 50 future-dated jobs queued and MaxSubmitJobs=50 in the accounting database, which
    slurmctld keeps across restarts, and every later session finds its submissions held back.
    """
    if request.node.get_closest_marker("slurm"):
        request.getfixturevalue("_cleared_dev_cluster")


@pytest.fixture(scope="session")
def _cleared_dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> None:
    from cluster_leftovers import clear_leftovers

    from orchestrator.launch import slurmcli

    if slurmcli.available():  # otherwise each test fails with its own message
        this_session = tmp_path_factory.getbasetemp().resolve()
        clear_leftovers(getpass.getuser(), this_session.parent, this_session)


@pytest.fixture
def cleanup() -> Iterator[list[Callable[[], object]]]:
    """Steps run after the test whatever it asserted, last added first (the cluster tests stop a follow
    or submit, scancel its jobs and reset limits with them)."""
    steps: list[Callable[[], object]] = []
    yield steps
    for step in reversed(steps):
        step()


TINY_SPEC = """
name: tiny
output_dir: {out}
defaults:
  data: {{image_size_px: 16, batch_size: 32, num_workers: 0}}
  optim: {{name: adam, lr: 1e-3}}
  epochs: 1
grid:
  backbone: [resnet10t]
  dataset: [digits]
  seed: [0, 1]
modifiers:
  aug: {{data.augment: {{rotate_deg: 10}}}}
  dropout: {{model.head_dropout: 0.5}}
ablations:
  Baseline: []
  + Aug: [aug]
  + Aug + Dropout: [aug, dropout]
"""


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a sweep file (default: TINY_SPEC) into tmp_path; outputs go to tmp_path/out."""

    def write(text: str | None = None, filename: str = "sweep.yaml", **changes: object) -> Path:
        body = (text or TINY_SPEC).format(out=tmp_path / "out")
        if changes:
            data = yamlio.loads(body)
            data.update(changes)
            body = yamlio.dumps(data)
        path = tmp_path / filename
        path.write_text(body)
        return path

    return write
