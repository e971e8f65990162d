"""The dev cluster as the `slurm` tests need it: no limits and no jobs left by an earlier, killed session.

A test session killed mid-test (a CI machine reclaimed, Ctrl-C twice) cannot run its finalizers: the
queue-limit test then leaves its 50 future-dated jobs queued and MaxSubmitJobs=50 set in the
accounting database, and slurmctld keeps both across restarts. Every later session would find its
submissions held back. This fixture clears exactly those leftovers before the first cluster test:
this user's limit, and this user's jobs whose output lies in an earlier pytest session's folder.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator

import pytest
from cluster_leftovers import clear_leftovers

from orchestrator.launch import slurmcli


@pytest.fixture(scope="session", autouse=True)
def _dev_cluster_without_leftovers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if slurmcli.available():  # otherwise each test fails with its own message
        this_session = tmp_path_factory.getbasetemp().resolve()
        clear_leftovers(getpass.getuser(), this_session.parent, this_session)
    yield
