"""Ranks agreeing on (save, stop) at optimizer-step boundaries without stalling the device.

A vote sums each rank's (save, stop) flags over the processes, so any rank's signal or due
checkpoint counts and every rank saves and stops at the same boundary (a save is collective).
Read as soon as it is cast, a vote stalls every step of a multi-process run twice: the flags'
copy to the device and the sum's copy back each wait for every kernel queued so far, so the
GPU idles while the host prepares the next step (the single-process loop has no such wait).
So a vote cast at boundary k is read at boundary k + LAG_BOUNDARIES, when the device has long
finished it: its sum is copied to pinned host memory without blocking, and the read waits on
that copy's event alone. Every rank casts and reads the same votes at the same boundaries, so
they still agree. A stop is honoured LAG_BOUNDARIES optimizer steps after it was voted (against
the minutes of notice SLURM's signal gives); at an epoch end every vote cast is read at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch
from accelerate import Accelerator

LAG_BOUNDARIES = 1
"""Boundaries between casting a vote and reading it: one keeps the host a step ahead of the device."""


@dataclass(frozen=True)
class _Vote:
    summed: torch.Tensor
    """(save, stop) summed over the ranks; on the host once `ready` has completed."""
    ready: torch.cuda.Event | None
    """Recorded after the copy to the host (None where the sum is computed on the host)."""
    saves_before: int
    """Saves made when the vote was cast: its save flag asked for a save that a later one made."""


class Votes:
    """The (save, stop) decisions of one run's processes at step boundaries (see the module)."""

    def __init__(self, accelerator: Accelerator) -> None:
        self.accelerator = accelerator
        self.pending: deque[_Vote] = deque()
        self.saves = 0

    def at_boundary(self, save: bool, stop: bool) -> tuple[bool, bool]:
        """This rank's flags at a step boundary -> the decision agreed for this boundary: that of
        the vote cast LAG_BOUNDARIES boundaries ago (nothing before then)."""
        if self.accelerator.num_processes == 1:
            return save, stop
        self.pending.append(self._cast(save, stop))
        if len(self.pending) <= LAG_BOUNDARIES:
            return False, False
        return self._read(self.pending.popleft())

    def now(self, save: bool, stop: bool) -> tuple[bool, bool]:
        """This rank's flags -> the decision of this vote and of every vote not read yet, waiting for
        them (at an epoch end, where the loop waits for the device anyway)."""
        if self.accelerator.num_processes == 1:
            return save, stop
        votes = [*self.pending, self._cast(save, stop)]
        self.pending.clear()
        decisions = [self._read(vote) for vote in votes]
        return any(s for s, _ in decisions), any(t for _, t in decisions)

    def saved(self) -> None:
        """A save was made (on every rank, at the same boundary): the save flags of votes cast
        before it are answered."""
        self.saves += 1

    def _cast(self, save: bool, stop: bool) -> _Vote:
        device = self.accelerator.device
        flags = torch.zeros(2, device=device)
        # Filled on the device (a kernel launch): a tensor built from the host's values would be a
        # copy that waits for the queue (pytorch/pytorch#120996).
        if save:
            flags[0].fill_(1.0)
        if stop:
            flags[1].fill_(1.0)
        summed = self.accelerator.reduce(flags, reduction="sum")
        if device.type != "cuda":
            return _Vote(summed, None, self.saves)
        host = torch.empty(2, pin_memory=True)
        host.copy_(summed, non_blocking=True)
        ready = torch.cuda.Event()  # type: ignore[no-untyped-call]
        ready.record()
        return _Vote(host, ready, self.saves)

    def _read(self, vote: _Vote) -> tuple[bool, bool]:
        if vote.ready is not None:
            vote.ready.synchronize()
        save, stop = (flag > 0 for flag in vote.summed.tolist())
        return save and vote.saves_before == self.saves, stop
