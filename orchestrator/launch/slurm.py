"""Launching on SLURM: a sweep becomes a few job arrays (submitit `batch()`), never one sbatch per run.

Arrays are grouped by job size, chunked to the cluster's MaxArraySize and throttled with
`%parallelism`. The manifest (run_id -> job id) lets status, cancel and resubmission find every
run's job.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestrator import store, textsafe
from orchestrator.launch import cancels, judge, quarantine, retries, slurmcli, unconfirmed
from orchestrator.launch.arrays import Array, submit_arrays
from orchestrator.launch.arrays import requested as requested  # re-exported: results and tests import it here
from orchestrator.launch.arrays import task_job as task_job
from orchestrator.launch.base import Launcher, Outcome, select
from orchestrator.launch.limits import queue_limits, within
from orchestrator.launch.sbatch_failures import SbatchStreak
from orchestrator.store import run_states
from orchestrator.store.run_states import RunRecord
from orchestrator.sweep import node_storage, site
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SlurmConfig, SweepSpec

UNRECORDED_WAIT_S = 900.0
"""How long `submit --follow` keeps polling for a run whose job left the queue before accounting recorded
its end (slurmdbd lag); a record that stays unfinished longer (a runaway record) is left to the user."""


class SlurmLauncher(Launcher):
    """Submits the selected runs as job arrays, skipping runs a live SLURM job still owns."""

    def __init__(self, spec: SweepSpec, console: Console, profile: str | None = None) -> None:
        super().__init__(spec, console)
        self.config = site.resolve_slurm(spec.slurm, profile, spec.site)
        self.policy = retries.policy_for(spec, profile)
        """The spec's retry block over the cluster's (profile or site file)."""
        self._warned = False
        self.submitted: dict[str, str] = {}
        """run_id -> job id of the runs submitted, written array by array: each `follow` points it at its own
        total, which so keeps a poll's first arrays when sbatch fails at a later one."""
        self.retry_all = False
        self.fresh = True
        """Whether this is the submit the user just asked for (every plain submit; a --follow loop's
        first poll): runs they cancelled before it go again. Later polls keep cancels (a --follow must
        not undo `orchestrate cancel`)."""
        """Submit runs the retry policy would leave (user errors, attempts used up): after a fix."""
        self._next: dict[str, retries.Decision] = {}
        """run_id -> how its next attempt differs (resources, the verdict on the last), for this start."""
        self._quarantined: list[str] = []
        self._partition: frozenset[str] | None = None
        """The nodes the sweep's jobs may run on (sinfo), asked when a retry would exclude some."""
        self._told: set[str] = set()
        """Lines already printed (submit --follow plans retries at every poll)."""
        self._snapshotted = False
        """`follow` wrote the spec's snapshot (once, at its first submission)."""
        self._unrecorded: dict[str, float] = {}
        """run_id -> when (time.monotonic) its job was first seen out of the queue without a recorded end."""
        self._cancel_seen: cancels.Request | None = None
        """The sweep's latest `orchestrate cancel` when this submit started: a later one stops it."""
        self._watching = self._follows = False
        self._held = 0
        """The runs held back (queue limits) the last `held back` line named: a follow prints it as it changes."""
        self.stopped: cancels.Request | None = None
        """The cancel that stopped `follow` (every later `follow` of this launcher, the next adaptive round's
        too, then submits nothing)."""

    def where(self, runs: Sequence[RunSpec] = ()) -> str:
        """The partition, the runs' job sizes (job_resources) and the node environment they get."""
        c = self.config
        partition = f"partition {c.partition}" if c.partition else "the cluster's default partition"
        env = f"{c.env.kind} environment" if c.env is not None else f"this interpreter ({sys.executable})"
        shapes = sorted({(job.nodes, job.gpus_per_node) for job in (job_resources(c, run) for run in runs)})
        sizes = " or ".join(f"{n} node(s) x {g} GPU(s)" for n, g in shapes or [(c.nodes, c.gpus_per_node)])
        return textsafe.terminal(f"runs execute on SLURM: {partition}, {sizes}, {c.timeout_min} min per job, in {env}")

    def owned_elsewhere(self, root: Path, dry_run: bool) -> set[str]:
        """Run ids of the sweep that SLURM still has pending or running (one squeue call)."""
        if not slurmcli.available():
            if not dry_run:
                raise slurmcli.SlurmError("sbatch/squeue not found: not on a SLURM login node (try --executor local)")
            return set()
        if not dry_run:  # an array sbatch failed on at an earlier submit: adopted, or its runs go again
            for line in unconfirmed.resolve(root):
                self.console.print(f"[yellow]warning[/]: {textsafe.rich(line)}", highlight=False)
        return set(runs_in_slurm(root)[0])

    def preview(self, todo: list[RunRecord], root: Path) -> None:
        """The sbatch script of every array that would be submitted, and the command each node runs."""
        size, arrays = self._arrays(todo)
        _print_dry_run(arrays, root / store.SUBMITIT_DIR, self.spec.name, size, self.console)
        self._warn_unshared(root)

    def _warn_unshared(self, root: Path) -> None:
        """Where the nodes may not find Python (no env block) or the output folder (a container without
        a bind for it): warnings, once, since sites set up paths and default binds in many ways."""
        if self._warned:
            return
        self._warned = True
        warnings = [
            f"jobs run {sys.executable}, and {folder} is not under $HOME, not on the output folder's filesystem "
            "and not on a network filesystem: compute nodes may not have it; set `slurm.env`"
            for folder in (node_storage.unshared_interpreter(root) if self.config.env is None else [])
        ]
        unbound = node_storage.unbound_output(self.config.env, root)
        warnings += [f"{unbound}: add it to the env's binds"] if unbound else []
        for warning in warnings:
            self.console.print(f"[yellow]warning[/]: {textsafe.rich(warning)} (docs: your cluster)", highlight=False)

    def launch(
        self, runs: list[RunSpec], *, force: bool = False, smoke: bool = False, dry_run: bool = False
    ) -> Outcome:
        """Launch what is not done yet, noting the sweep's latest cancel first: a later one stops it."""
        if not dry_run and not self._watching:  # a cancel made before this submit does not stop it
            self._cancel_seen, self._watching = cancels.latest(store.sweep_root(self.spec, smoke)), True
        return super().launch(runs, force=force, smoke=smoke, dry_run=dry_run)

    def start(self, todo: list[RunRecord], root: Path) -> Outcome:
        """Submit the arrays that fit the user's queue limits; the manifest is written after each one."""
        todo = self._plan_retries(todo, root)
        _, arrays = self._arrays(todo)
        limits = queue_limits()
        arrays, held = within(arrays, limits.headroom())
        outcome = Outcome()
        if arrays:
            self._warn_unshared(root)
            outcome = submit_arrays(
                root,
                arrays,
                self.spec.name,
                self.console,
                self.cleanup,
                self.attempt_of,
                self.submitted,
                lambda: self._cancelled(root),
            )
        outcome.cancelled, outcome.held = self.stopped is not None, 0 if self.stopped else held
        if outcome.held and outcome.held != self._held:  # a follow's every poll: once per count, not each time
            self.console.print(
                f"[yellow]held back[/]: {held} runs, over the queue limits ({limits.describe()}); "
                "`submit --follow` submits them as the queue drains"
            )
        self._held = outcome.held
        return outcome

    def _cancelled(self, root: Path) -> bool:
        """Whether `orchestrate cancel` ran since this submit started (one small file read); if so, obey it."""
        if self.stopped is None and (asked := cancels.newer(root, self._cancel_seen)) is not None:
            self._stop(root, asked)
        return self.stopped is not None

    def follow(self, runs: list[RunSpec], interval_s: float) -> Outcome:
        """Stay in the foreground: top the queue up as runs finish and retry failed ones as the retry policy
        says, until nothing is left to submit and none is in SLURM (Ctrl-C leaves a consistent manifest:
        it is written per array)."""
        from submitit.core.utils import FailedJobError  # sbatch failed (submitit's error with its stderr)

        root = store.sweep_root(self.spec)
        self.owned_elsewhere(root, dry_run=False)  # not on a login node: the one error that ends it at once
        if not self._watching:  # a cancel made before this submit does not stop it (it is the later submit)
            self._cancel_seen, self._watching = cancels.latest(root), True
        self._follows = True
        total, sbatch = Outcome(cancelled=self.stopped is not None), SbatchStreak()
        if total.cancelled:
            return total
        self.submitted = total.submitted
        while True:
            try:
                busy = self._poll(runs, root, total)
                sbatch.polled(len(self.submitted))
            except (slurmcli.SlurmError, subprocess.TimeoutExpired, FailedJobError) as exc:
                # The controller is busy or restarting, or sbatch failed: the next poll tries again (a plain
                # submit fails); sbatch failing at a few polls in a row ends it (sbatch_failures).
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if isinstance(exc, FailedJobError):
                    sbatch.failed_again(len(self.submitted), why, exc)
                self.console.print(f"[yellow]warning[/]: {textsafe.rich(why)}; polling again in {interval_s:g} s")
                busy = True
            if not busy:
                break
            time.sleep(interval_s)  # a polling period against squeue, not a stand-in for synchronisation
        if self.stopped is not None:
            total.cancelled, total.held = True, 0
            return total
        done = f"{self.spec.name}: every run submitted and out of the queue ({len(total.submitted)} submitted)"
        self.console.print(done)
        if self._unrecorded:
            self.console.print(
                f"[yellow]{len(self._unrecorded)} run(s)[/] left the queue, but accounting has not recorded how "
                f"they ended after {UNRECORDED_WAIT_S / 60:g} min: `submit` again once sacct does (or --retry-all)"
            )
        return total

    def _poll(self, runs: list[RunSpec], root: Path, total: Outcome) -> bool:
        """One poll of `follow`: submit what is due; whether anything is still to wait for."""
        if self._cancelled(root):  # before anything is settled or submitted: `orchestrate cancel` ran since
            return False
        in_slurm = set(self.owned_elsewhere(root, dry_run=False))
        # Runs sent before come back only when they ended without completing: the retry policy
        # (start -> _plan_retries) decides whether, and with what, they run again.
        records = run_states.inspect(runs, root)
        # Node failures SLURM requeued in place never come back as todo: counted against the node here.
        quarantine.record(root, quarantine.restarted(r.status for r in records))
        todo = select(records, False, in_slurm).todo
        if todo:
            if not self._snapshotted:
                root.mkdir(parents=True, exist_ok=True)
                store.write_snapshot(self.spec, root)
                self._snapshotted = True
            outcome = self.start(todo, root)
            todo = [r for r in todo if r.run.run_id in outcome.submitted]
            total.held = outcome.held
        # --retry-all overrides the retry policy once, for the runs as they stood when submit started:
        # later polls follow the policy (a run that fails at every start would come back forever).
        self.retry_all = self.fresh = False
        now = time.monotonic()
        waiting = any(now - seen < UNRECORDED_WAIT_S for seen in self._unrecorded.values())
        return self.stopped is None and bool(total.held or todo or in_slurm or waiting)

    def _stop(self, root: Path, asked: cancels.Request) -> None:
        """Obey `orchestrate cancel`: scancel what is still live (what this submit sent after the cancel looked
        at the queue, its unconfirmed arrays by job name, forgotten: a submit holds the lock), submit nothing
        more and say so. SlurmError when squeue or scancel fails (a follow's next poll tries again)."""
        done = cancels.stop(root, runs_in_slurm(root)[1], holding_lock=True)
        self.stopped = asked
        command = "submit --follow" if self._follows else "submit"
        cancels.report(self.console, self.spec.name, command, asked, done)

    def _arrays(self, todo: list[RunRecord]) -> tuple[int, list[Array]]:
        config = self.config
        if slurmcli.available():
            size = slurmcli.max_array_size(config)
        else:
            size = config.max_array_size or slurmcli.DEFAULT_MAX_ARRAY_SIZE
        arrays = [
            (job_config, chunk)
            for job_config, members in by_resources(config, todo, self._adapt)
            for chunk in slurmcli.chunks(pack(job_config, members), size)
        ]
        return size, arrays

    def _adapt(self, record: RunRecord, config: SlurmConfig) -> SlurmConfig:
        """A run's job resources for this attempt: the retry's, less the quarantined nodes."""
        decision = self._next.get(record.run.run_id, retries.Decision(True))
        if decision == retries.Decision(True) and not self._quarantined:
            return config
        spared = retries.excluded(config, decision, self._quarantined, self._partition)[1]
        line = f"{', '.join(spared)}: not excluded after all (no other node of the partition is left): retried there"
        if spared and line not in self._told:  # once per node set, not once per run
            self._told.add(line)
            self.console.print(f"[yellow]warning[/]: {textsafe.rich(line)}", highlight=False)
        return retries.resources(config, decision, self._quarantined, self._partition)

    def attempt_of(self, record: RunRecord, config: SlurmConfig) -> dict[str, Any]:
        """status.json's entry for the attempt about to be submitted: resources, verdict on the last."""
        decision = self._next.get(record.run.run_id, retries.Decision(True))
        attempt: dict[str, Any] = {"resources": retries.recorded(config, decision), "previous": decision.previous}
        policy = self.policy
        if not policy.preflight_gpus:
            attempt["preflight_gpus"] = False
        watchdog = policy.watchdog_settings(policy.hang_max_requeues)
        if watchdog is not None:
            attempt["watchdog"] = watchdog
        return attempt

    def _plan_retries(self, todo: list[RunRecord], root: Path) -> list[RunRecord]:
        """Apply the retry policy: classify each run's last attempt (one sacct call), record the node
        failures in the quarantine, and keep the runs to try again with their next resources."""
        plans = judge.failed_before(todo, root)
        max_time = judge.max_time(self.config, plans)
        policy = self.policy
        quarantine.record(root, [event for judged in plans.values() if (event := judge.event(judged))])
        self._quarantined = [q.node for q in quarantine.nodes(root, policy.quarantine_after)]
        wide = quarantine.sweep_wide_keys(root)
        kept, left = [], []
        for record in todo:
            judged = plans.get(record.run.run_id)
            if judged is not None and judged.unrecorded and not self.retry_all:  # --retry-all submits it now
                self._unrecorded.setdefault(record.run.run_id, time.monotonic())
            else:
                self._unrecorded.pop(record.run.run_id, None)
            decision = judge.decide(policy, judged, record, self.config, max_time, wide, fresh=self.fresh)
            if decision.retry or self.retry_all:
                self._next[record.run.run_id] = replace(decision, retry=True)
                kept.append(record)
            else:
                left.append(f"{record.run.name}: {decision.why}")
        if self._quarantined or any(d.exclude for d in self._next.values()):  # else no sinfo call
            self._partition = slurmcli.partition_nodes(self.config.partition)
        self._report_retries(kept, left)
        return kept

    def _why(self, decision: retries.Decision) -> str:
        """The retry line's reason, true to the --exclude the attempt gets: a failed node that `excluded`
        kept (no other node of the partition is left) is retried there, not without it."""
        why = decision.why
        for node in retries.excluded(self.config, decision, self._quarantined, self._partition)[1]:
            kept = f" on {node}: retried there (no other node of the partition is left)"
            why = why.replace(f" on {node}: retried without it", kept)
        return why

    def _report_retries(self, kept: list[RunRecord], left: list[str]) -> None:
        lines = [f"{r.run.name}: {why}" for r in kept if (why := self._why(self._next[r.run.run_id]))]
        left = [line for line in left if line not in self._told]
        self._told.update(left)
        for line in lines[:10]:
            self.console.print(f"retry: {textsafe.rich(line)}", highlight=False)
        for line in left[:10]:
            self.console.print(f"[yellow]not retried[/]: {textsafe.rich(line)}", highlight=False)
        if len(left) > 10 or len(lines) > 10:
            self.console.print("... (`orchestrate status --all` lists every run's failure)")
        if left:
            self.console.print("submit --retry-all submits them anyway (after a fix)")
        if self._quarantined:
            self.console.print(f"quarantined nodes excluded: {textsafe.rich(', '.join(self._quarantined))}")


def runs_in_slurm(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(run_id -> live job id, job id -> state) for the sweep's runs SLURM still owns (one squeue call)."""
    manifest = store.read_manifest(root, strict=True)
    live = slurmcli.active_ids(manifest["arrays"]) if manifest["arrays"] else {}
    runs = {run_id: entry["job_id"] for run_id, entry in manifest["runs"].items() if entry["job_id"] in live}
    return runs, live


def job_resources(base: SlurmConfig, run: RunSpec) -> SlurmConfig:
    """The SLURM resources of one run: the slurm block, sized by the run's `distributed` block.

    A run with GPUs or several processes gets `nodes` and `gpus_per_node` from its trainer
    config and one task per GPU; a plain single-process run keeps the slurm block as is.
    """
    dist = run.config.distributed
    if dist.gpus_per_node == 0 and dist.processes == 1:
        return base
    if base.pack_gpus and packable(run):
        return base.model_copy(update={"nodes": 1, "tasks_per_node": 1})  # the whole node's GPUs, one per run
    tasks = max(1, dist.gpus_per_node)
    return base.model_copy(update={"nodes": dist.nodes, "gpus_per_node": dist.gpus_per_node, "tasks_per_node": tasks})


def packable(run: RunSpec) -> bool:
    """A run that fits on one GPU in one process (what `pack_gpus` may put beside others)."""
    dist = run.config.distributed
    return dist.processes == 1 and dist.gpus_per_node <= 1 and dist.nodes == 1


def pack(config: SlurmConfig, records: list[RunRecord]) -> list[list[RunRecord]]:
    """The tasks of one array: runs_per_task runs each, times the GPUs of a pack_gpus job."""
    per_task = config.runs_per_task
    if config.pack_gpus and config.gpus_per_node > 1 and all(packable(r.run) for r in records):
        per_task *= config.gpus_per_node
    return slurmcli.chunks(records, per_task)


def by_resources(
    base: SlurmConfig,
    records: list[RunRecord],
    adapt: Callable[[RunRecord, SlurmConfig], SlurmConfig] | None = None,
) -> list[tuple[SlurmConfig, list[RunRecord]]]:
    """Runs grouped by identical job resources (an array has one sbatch header), in plan order;
    `adapt` gives a retried run its next attempt's resources."""
    groups: dict[str, tuple[SlurmConfig, list[RunRecord]]] = {}
    for record in records:
        config = job_resources(base, record.run)
        if adapt is not None:
            config = adapt(record, config)
        groups.setdefault(config.model_dump_json(), (config, []))[1].append(record)
    return list(groups.values())


def _print_dry_run(arrays: list[Array], folder: Path, name: str, size: int, console: Console) -> None:
    sizes = ", ".join(str(len(group)) for _, group in arrays)
    console.print(f"dry run: would submit {len(arrays)} job array(s) of {sizes} tasks (MaxArraySize {size})")
    for index, (config, group) in enumerate(arrays):
        params = slurmcli.executor_parameters(config, f"orch-{name}")
        python = slurmcli.node_command(config).python
        header = slurmcli.sbatch_header(folder, params, len(group), python)
        names = textsafe.rich(f"{group[0][0].run.name} ... {group[-1][-1].run.name}")
        console.print(f"--- array {index + 1}/{len(arrays)}: {names}")
        console.print(header, markup=False, highlight=False, soft_wrap=True)
        # The script's last line, spelt out: what each node runs after the setup lines.
        console.print(
            f"each task runs: {header.rstrip().splitlines()[-1]}", markup=False, highlight=False, soft_wrap=True
        )
    console.print("nothing submitted")
