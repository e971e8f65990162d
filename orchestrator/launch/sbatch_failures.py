"""sbatch refusing an array while `submit --follow` runs: a warning, and another try at the next poll.

submitit raises FailedJobError with sbatch's stderr when sbatch fails. Most of those pass: a controller
busy or restarting (`Socket timed out on send/recv operation`), a queue full for the moment (`job submit
limit`). A --follow that stays hours in the foreground must outlive them, but not repeat for hours one
that no retry fixes (`Invalid partition name specified`): a few failures in a row end it with sbatch's
message, as a plain `submit` ends at the first.
"""

from __future__ import annotations

MAX_FAILED_SUBMISSIONS = 3
"""Polls in a row at which sbatch may fail before `submit --follow` stops. A transient failure clears
within a poll or two (the controller is back, the queue drained); one that three polls in a row meet,
a poll interval apart, is taken for a refusal only the user can fix (a partition, account or QOS)."""


class SbatchStreak:
    """sbatch's failures in a row during one `submit --follow`; an array it accepts ends the streak."""

    def __init__(self) -> None:
        self.failed = 0
        self._sent = 0

    def polled(self, sent: int) -> None:
        """Note a poll; `sent`: how many runs the follow has submitted so far, array by array (it grows
        also in a poll whose later array failed: the arrays before it were accepted)."""
        if sent > self._sent:
            self.failed = 0
        self._sent = sent

    def failed_again(self, sent: int, why: str, error: BaseException) -> None:
        """Note a poll whose submission failed with `why` (sbatch's first line of stderr); after
        MAX_FAILED_SUBMISSIONS in a row, raise FailedJobError, what a plain `submit` raises at once."""
        self.polled(sent)
        self.failed += 1
        if self.failed >= MAX_FAILED_SUBMISSIONS:
            from submitit.core.utils import FailedJobError  # keeps `plan` and `status` free of submitit's imports

            raise FailedJobError(
                f"sbatch failed at {self.failed} polls in a row, the last time: {why} "
                "(runs already submitted stay in the manifest; fix it and submit again)"
            ) from error
