"""The ranks' (save, stop) votes read a boundary late (trainers/runtime/votes.py), against a fake
accelerator whose reduce adds another rank's flags (a real process group runs them in
tests/training/test_deepspeed.py, 2 processes stopped mid-epoch, and tests/cluster/test_distributed.py);
and the step's bookkeeping builds no tensor from host values (each would stall a GPU's step)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import torch

from trainers.runtime.votes import LAG_BOUNDARIES, Votes


@dataclass
class TwoRanks:
    """An accelerator of 2 processes on the CPU; `other` is the other rank's (save, stop) at the next reduce."""

    num_processes: int = 2
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    other: list[tuple[bool, bool]] = field(default_factory=list)
    reduces: int = 0

    def reduce(self, flags: torch.Tensor, reduction: str) -> torch.Tensor:
        assert reduction == "sum"
        self.reduces += 1
        others = torch.zeros(2)
        for position, flag in enumerate(self.other.pop(0) if self.other else (False, False)):
            others[position].fill_(float(flag))
        return flags + others


def votes(ranks: TwoRanks) -> Votes:
    return Votes(ranks)  # type: ignore[arg-type]  # the two members Votes uses


def test_one_process_decides_at_once_without_a_reduce() -> None:
    ranks = TwoRanks(num_processes=1)
    agreed = votes(ranks)
    assert agreed.at_boundary(True, False) == (True, False)
    assert agreed.at_boundary(False, True) == (False, True)
    assert agreed.now(True, True) == (True, True)
    assert ranks.reduces == 0


def test_a_stop_is_decided_one_boundary_after_its_vote_on_every_rank() -> None:
    ranks = TwoRanks()
    agreed = votes(ranks)
    assert LAG_BOUNDARIES == 1
    assert agreed.at_boundary(False, True) == (False, False)  # cast, not read yet
    assert agreed.at_boundary(False, False) == (False, True)
    assert agreed.at_boundary(False, False) == (False, False)
    assert ranks.reduces == 3


def test_another_ranks_signal_counts() -> None:
    ranks = TwoRanks(other=[(True, False), (False, False)])
    agreed = votes(ranks)
    agreed.at_boundary(False, False)
    assert agreed.at_boundary(False, False) == (True, False)


def test_a_save_flag_cast_before_a_save_is_answered_by_it_but_a_stop_flag_is_not() -> None:
    """A periodic save stays due on a rank until made: the votes cast meanwhile must not save twice."""
    ranks = TwoRanks()
    agreed = votes(ranks)
    agreed.at_boundary(True, False)  # due at boundary 1
    assert agreed.at_boundary(True, True) == (True, False)  # boundary 2 reads 1 (still due when cast)
    agreed.saved()
    assert agreed.at_boundary(False, False) == (False, True)  # boundary 2's save was made; its stop holds
    assert agreed.at_boundary(False, False) == (False, False)


def test_the_epoch_end_reads_every_vote_not_read_yet() -> None:
    """A stop voted at an epoch's last step boundary is not lost: the epoch end reads it."""
    ranks = TwoRanks()
    agreed = votes(ranks)
    agreed.at_boundary(False, False)
    agreed.at_boundary(False, True)  # the last boundary: read nowhere but at the epoch end
    assert agreed.now(False, False) == (False, True)
    assert not agreed.pending
    assert agreed.at_boundary(False, False) == (False, False)  # nothing left over into the next epoch


def test_a_save_at_the_epoch_end_answers_the_save_flags_still_pending() -> None:
    ranks = TwoRanks()
    agreed = votes(ranks)
    agreed.at_boundary(True, False)
    agreed.saved()  # the epoch end's save of `last`
    assert agreed.now(False, False) == (False, False)


@pytest.fixture
def no_host_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.tensor / as_tensor / new_tensor refused: on a GPU each copies host values to the device
    and waits for every kernel queued before it (pytorch/pytorch#120996), a stall of every step."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tensor built from host values in the step's bookkeeping")

    monkeypatch.setattr(torch, "tensor", refuse)
    monkeypatch.setattr(torch, "as_tensor", refuse)
    monkeypatch.setattr(torch.Tensor, "new_tensor", refuse)


def test_a_vote_is_cast_without_a_tensor_from_host_values(no_host_copies: None) -> None:
    agreed = votes(TwoRanks())
    agreed.at_boundary(True, True)
    assert agreed.now(False, False) == (True, True)


def test_a_micro_batchs_sums_are_built_without_a_tensor_from_host_values(no_host_copies: None) -> None:
    from trainers.loop.epoch import _batch_sums

    parts = SimpleNamespace(task=SimpleNamespace(kind="single"))
    outputs = torch.eye(4)[[0, 1, 2, 2]]  # argmax 0, 1, 2, 2 against targets 0, 1, 2, 3: 3 of 4 right
    targets = torch.arange(4)
    sums = _batch_sums(parts, torch.full((), 0.5), outputs, targets, torch.zeros(3))  # type: ignore[arg-type]
    assert sums.tolist() == [2.0, 4.0, 3.0]  # loss x images, images, correct
