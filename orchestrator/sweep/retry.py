"""The retry policy of a sweep (`retry:` in the spec): how a failed attempt is tried again, by its class.

What `submit` (and `submit --follow`, which keeps retrying) does with a run whose latest attempt
failed, by failure class (orchestrator/launch/failures.py): a user error is not retried; host
memory grows by `oom_mem_factor` up to `oom_mem_cap_gb`; a CUDA out-of-memory error halves the
batch per device and doubles gradient accumulation (same effective batch, same run id); a time
limit grows by `time_factor` up to the partition's MaxTime; a node or preflight failure or a hang
is resubmitted without that node, which is quarantined for the whole sweep after
`quarantine_after` such failures.
"""

from __future__ import annotations

from pydantic import Field

from trainers.config import StrictModel


class RetryPolicy(StrictModel):
    """How failed runs are retried, per failure class (docs: Failures, retries and quarantine)."""

    max_attempts: int = Field(3, ge=1, le=100)
    """Attempts of one run, its first included, that end for a reason of the run (out of memory, time
    limit, crash, or no status.json written at all); a run that used them all is left failed.
    Preemptions do not count (the run did nothing wrong; at most 20 are retried)."""
    max_node_attempts: int = Field(5, ge=0, le=100)
    """Further attempts of one run after failures of the node (node failure, preflight failure, hang),
    which do not count against max_attempts."""
    oom_mem_factor: float = Field(1.5, ge=1.0, le=16.0, allow_inf_nan=False)
    """Host memory of the next attempt after a host out-of-memory kill: this many times the last one's."""
    oom_mem_cap_gb: float = Field(512.0, ge=0.1, le=100_000, allow_inf_nan=False)
    """Host memory (GB per node) that retries never ask beyond; at the cap an out-of-memory run is not retried."""
    oom_start_mem_gb: float = Field(16.0, ge=0.1, le=100_000, allow_inf_nan=False)
    """Memory assumed for an attempt that asked for the partition default (slurm.mem_gb unset)."""
    cuda_oom_halve_batch: bool = True
    """After a CUDA out-of-memory error: half the batch per device, twice the gradient accumulation (same
    effective batch; not part of the run id; the table notes name the runs trained so)."""
    time_factor: float = Field(2.0, ge=1.0, le=100.0, allow_inf_nan=False)
    """Time limit of the next attempt after a time-out: this many times the last one's, up to the
    partition's MaxTime (`scontrol show partition`); the attempt resumes from its last checkpoint."""
    quarantine_after: int = Field(2, ge=1, le=1000)
    """Failures of the node (node failure, preflight failure, hang) within the sweep after which a node is
    excluded from every later submission of the sweep (`submit --clear-quarantine` forgets them)."""
    preflight_gpus: bool = True
    """Check the requested GPUs on the node before training (CUDA sees them, a matmul on each, the driver
    is new enough); a node that fails is quarantined. Off only where GPU gres are not real GPUs (the dev
    cluster's fake ones), so that a CPU job with GPU gres is not taken for a broken node."""
    watchdog: bool = True
    """Watch each trainer's heartbeat from a separate process and end an attempt that stops making progress
    (a hang: under SLURM requeued, it resumes from its last checkpoint; locally the run fails, the next goes on)."""
    hang_step_factor: float = Field(10.0, ge=1.0, le=10_000, allow_inf_nan=False)
    """A training step without progress for this many times the run's typical step interval is a hang..."""
    hang_floor_s: float = Field(300.0, ge=1.0, le=604_800, allow_inf_nan=False)
    """...but never sooner than this many seconds."""
    hang_slow_phase_s: float = Field(1800.0, ge=1.0, le=604_800, allow_inf_nan=False)
    """Seconds without progress that count as a hang in the slow phases: start-up, first compilation,
    evaluation and checkpointing (never judged by the step time)."""
    hang_max_requeues: int = Field(2, ge=0, le=100)
    """Times the watchdog requeues a hung job in place (same job, resumes from its checkpoint); after that
    it ends the attempt and `submit --follow` retries it elsewhere."""

    def watchdog_settings(self, max_requeues: int) -> dict[str, float] | None:
        """The job's `attempt["watchdog"]` (launch/watchdog.py reads it): this policy's hang limits and
        `max_requeues` in place (SLURM: `hang_max_requeues`; a local run: 0, there is no queue); None
        when the watchdog is off. One place for both executors: their two copies could drift apart."""
        if not self.watchdog:
            return None
        limits = {"step_factor": self.hang_step_factor, "floor_s": self.hang_floor_s}
        return {**limits, "slow_phase_s": self.hang_slow_phase_s, "max_requeues": max_requeues}
