"""Stop requests (USR2 before a preemption or time limit) honoured at a step boundary.

SLURM sends USR2 `signal_delay_s` before it kills a job. submitit's handler for it calls the
job's `checkpoint()` and requeues the job right away, in the middle of whatever Python was
doing, so a trainer could only save the state of the last finished epoch. The trainer
therefore takes the signal over while it trains: `StopRequest` only records it, the loop
saves the full state at the next optimizer-step boundary (every rank, collectively), and
only then hands the signal to the handler that was installed before (submitit's: checkpoint
and requeue on rank 0, nothing on the others). Without such a handler (a debug run, a test)
the trainer raises `Preempted` after saving.

After training, the final evaluation (test, then validation scores of the tested model) honours a
stop before each of its batches the same way: training's state is saved already (`last`, and
`best`), so it hands over at once and writes no metrics.json; the requeued job resumes with no
epoch left and goes straight to the final evaluation (trainers/loop/resume.py).

SIGTERM is what SLURM sends before it kills a job without USR2: `scancel`, `scontrol requeue`,
a preemption with GraceTime (PreemptMode REQUEUE or CANCEL), a time limit reached without
`--signal`; SIGKILL follows KillWait or GraceTime later. submitit's job ignores it (its handler
only logs), so the trainer trained on until SIGKILL and a requeued or resubmitted run resumed from
the last epoch. Where SIGTERM does not kill the process (a handler other than the default is
installed), the trainer now also saves the full state at the next step boundary on SIGTERM, and
trains on as before: what ends the process, and what status.json says, do not change.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any


class Preempted(RuntimeError):
    """Training stopped on request after saving its state; rerunning resumes it."""


class StopRequest:
    """Records a stop signal; `poll` says at a step boundary whether to save (and stop).

    `checkpoint_every_min` also asks for a save (without stopping) when that many minutes
    passed since the last one.
    """

    def __init__(
        self,
        signum: int = signal.SIGUSR2,
        checkpoint_every_min: float | None = None,
        save_signum: int | None = signal.SIGTERM,
    ) -> None:
        self.signum = signum
        self.requested = False
        self.save_signum = save_signum
        """A signal that asks for a save without a stop (SIGTERM: the job is about to be killed)."""
        self.save_requested = False
        self.answered: str | None = None
        """Why the last save was made when it answered a save signal (`why`), else None."""
        self.checkpoint_every_s = None if checkpoint_every_min is None else checkpoint_every_min * 60.0
        self.last_save = time.monotonic()
        self._previous: Any = None
        self._previous_save: Any = None
        self._installed = False
        self._save_installed = False

    def install(self) -> None:
        """Catch the signals from now on (main thread only: Python delivers signals there). The save
        signal only where it does not end the process already (SIG_DFL): there the process would die."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous = signal.signal(self.signum, self._record)
        self._installed = True
        if self.save_signum is not None and signal.getsignal(self.save_signum) not in (signal.SIG_DFL, None):
            self._previous_save = signal.signal(self.save_signum, self._record_save)
            self._save_installed = True

    def uninstall(self) -> None:
        """Give the signals back to the handlers they had before `install`."""
        if self._installed:
            signal.signal(self.signum, self._previous)
            self._installed = False
        if self._save_installed and self.save_signum is not None:
            signal.signal(self.save_signum, self._previous_save)
            self._save_installed = False

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True

    def _record_save(self, signum: int, frame: FrameType | None) -> None:
        """Note the save, then let the handler that was there act as before (submitit's logs and ignores)."""
        self.save_requested = True
        if callable(self._previous_save):
            self._previous_save(signum, frame)

    def save_due(self) -> bool:
        """Whether the periodic checkpoint interval has passed since the last save."""
        return self.checkpoint_every_s is not None and time.monotonic() - self.last_save >= self.checkpoint_every_s

    def poll(self, epoch: int, done: int) -> tuple[bool, bool]:
        """At a step boundary, `done` micro-batches into epoch `epoch` (0-based): (save, stop).

        Subclasses in tests request a stop at a given step here.
        """
        return self.requested or self.save_requested or self.save_due(), self.requested

    def poll_final(self, split: str, batch: int) -> bool:
        """Before batch `batch` (0-based) of the final evaluation of `split` (test, then val): stop?
        Only a stop counts there: the trained state is saved already (a save request has nothing to add).

        Subclasses in tests request a stop at a given batch here.
        """
        return self.requested

    def why(self) -> str:
        """Why a save is due now, for the log line after it."""
        if self.requested:
            return f"on {signal.Signals(self.signum).name}"
        if self.save_requested and self.save_signum is not None:
            return f"on {signal.Signals(self.save_signum).name}; training on until the job is killed"
        return "periodic" if self.save_due() else "another rank's signal"

    def saved(self) -> None:
        """Note a finished save (restarts the periodic interval; a save signal is answered, and
        `answered` says so: a signal after an epoch's last step boundary is answered by the epoch's
        own save, which the log then names as the signal's)."""
        self.last_save = time.monotonic()
        self.answered = self.why() if self.save_requested and not self.requested else None
        self.save_requested = False

    def hand_over(self, where: str) -> None:
        """After the state is saved: pass the signal to the previous handler (submitit requeues
        the job and exits on rank 0), then stop this process by raising `Preempted`."""
        previous = self._previous
        self.uninstall()
        if callable(previous):
            previous(self.signum, None)
        raise Preempted(f"stopped on request after saving the state at {where}")


class StopAt(StopRequest):
    """A stop requested at one step boundary, (epoch, micro-batches done) with (e + 1, 0) the end
    of epoch e, on every rank alike: how tests and benchmarks save and stop a run at a known point
    (a signal arrives wherever the run happens to be)."""

    def __init__(self, epoch: int, done: int) -> None:
        super().__init__()
        self.at = (epoch, done)

    def poll(self, epoch: int, done: int) -> tuple[bool, bool]:
        hit = (epoch, done) == self.at
        return hit, hit
