"""Retries that learn: the next attempt's resources from how the last one ended (pure functions).

`decide` reads the run's attempts (status.json's `attempts`, each with the resources it asked for and
the class it ended with) and the latest verdict, and answers: do not retry (and why), or retry with
these resources. Everything it changes is passed through SlurmConfig's validators again, so a node
name or a memory size bound for sbatch meets the same allow-lists as the user's own values.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.launch.failures import Failure, Verdict
from orchestrator.sweep import site
from orchestrator.sweep.errors import SpecError, describe_error
from orchestrator.sweep.retry import RetryPolicy
from orchestrator.sweep.site import SlurmConfig
from orchestrator.sweep.spec import SweepSpec


@dataclass(frozen=True)
class Decision:
    """Whether to try a run again, with what, and why (the line `submit` prints)."""

    retry: bool
    why: str = ""
    mem_gb: float | None = None
    timeout_min: int | None = None
    grad_accum_factor: int = 1
    """The trainer's gradient accumulation times this (CUDA OOM: half the batch per device)."""
    exclude: tuple[str, ...] = ()
    """Nodes this run's own failures rule out (the sweep's quarantine is added by the launcher)."""
    previous: dict[str, Any] = field(default_factory=dict)
    """The verdict on the last attempt, recorded on its entry in status.json."""


MAX_PREEMPTIONS = 20
"""Preempted attempts of one run that are retried. They do not use retry.max_attempts (the run did
nothing wrong), but a run preempted at every start must not loop forever either."""
EXCLUDE_MAX_CHARS = 1024
"""The longest `--exclude` host list SlurmConfig takes (its allow-list, and sbatch's own bound)."""


def last_resources(attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """What the latest recorded attempt asked for ({} before the first)."""
    resources = attempts[-1].get("resources") if attempts else None
    return resources if isinstance(resources, dict) else {}


def decide(
    policy: RetryPolicy,
    verdict: Verdict | None,
    attempts: list[dict[str, Any]],
    base: SlurmConfig,
    max_time_min: int | None,
    job_id: str | None = None,
    submitted: int = 0,
    fresh: bool = False,
) -> Decision:
    """The next attempt of a run whose latest attempt (job `job_id`) ended as `verdict` (None: never ran,
    or it is not known how it ended: submit as planned). `submitted`: how often the run was submitted
    (the manifest's arrays), so that attempts that ended before the job wrote status.json (a failing
    setup line, a cancelled pending task, BOOT_FAIL) still count. `fresh`: this is the submit the user
    just asked for, which runs a cancelled run again (a --follow's later polls keep cancels)."""
    if verdict is None or verdict.failure is Failure.COMPLETED:
        tries = len(counted(attempts, submitted, job_id)[0])
        if verdict is None and tries >= policy.max_attempts + policy.max_node_attempts:  # ended unseen, again
            return Decision(False, f"{tries} attempts, none known to have ended (retry.max_attempts)")
        return Decision(True)
    previous = {"job_id": job_id, "failure": verdict.failure.value, "node": verdict.node, "reason": verdict.reason}
    if fresh and verdict.failure is Failure.CANCELLED:  # the user's new request outranks the cancel before it
        return Decision(True, "cancelled: submitted again", previous=previous)
    last = last_resources(attempts)
    attempts, unseen = counted(attempts, submitted, job_id)
    exclude = _excluded(attempts, verdict)
    refused = _refused(verdict)
    if refused:
        return Decision(False, refused, previous=previous)
    run_tries, node_tries, preempted = _tries(attempts, verdict)
    if verdict.failure.infrastructure:
        if node_tries > policy.max_node_attempts:
            return Decision(False, f"{node_tries} node failures (retry.max_node_attempts)", previous=previous)
        if unseen and run_tries >= policy.max_attempts:
            # Submissions that left no status.json count as the run's (a BOOT_FAIL, a node lost before the
            # job started, a failing setup line): without this, a run whose every job ends so before it
            # writes anything is one node failure again and again, and --follow submits it forever.
            why = f"{run_tries + node_tries} attempts (retry.max_attempts), the last {verdict.failure.value}"
            return Decision(False, f"{why}; {unseen} ended before the job wrote status.json", previous=previous)
        on = f" on {verdict.node}: retried without it" if verdict.node else ": retried (no node can be named)"
        return _same(last, base, f"{verdict.failure.value}{on}", exclude, previous)
    if verdict.failure is Failure.PREEMPTED:
        if preempted > MAX_PREEMPTIONS:
            return Decision(False, f"preempted {preempted} times (at most {MAX_PREEMPTIONS})", previous=previous)
        return _same(last, base, "preempted: retried as it was (not counted in retry.max_attempts)", exclude, previous)
    if run_tries >= policy.max_attempts:
        why = f"{run_tries} attempts (retry.max_attempts), the last {verdict.failure.value}"
        if unseen:
            why += f"; {unseen} ended before the job wrote status.json (a setup line, the environment: see the log)"
        return Decision(False, why, previous=previous)
    if verdict.failure is Failure.OOM:
        return _after_oom(policy, verdict, last, base, exclude, previous)
    if verdict.failure is Failure.TIMEOUT:
        return _after_timeout(policy, last, base, max_time_min, exclude, previous)
    return _same(last, base, f"{verdict.failure.value}: retried as it was", exclude, previous)


def _refused(verdict: Verdict) -> str:
    """Why a class is never retried ("" for the others): retrying gives the same end, or undoes a decision."""
    if verdict.failure is Failure.USER_ERROR:
        return f"user error, not retried: {verdict.reason}"
    if verdict.failure is Failure.CANCELLED:
        if verdict.by_uid is not None and verdict.by_uid != os.getuid():
            return f"cancelled by uid {verdict.by_uid} (an administrator or SLURM), not retried"
        return "cancelled (scancel), not retried"
    if verdict.failure is Failure.DEADLINE:
        return "its --deadline passed (DEADLINE), not retried: a longer time limit cannot help"
    return ""


def _same(
    last: dict[str, Any], base: SlurmConfig, why: str, exclude: tuple[str, ...], previous: dict[str, Any]
) -> Decision:
    return Decision(
        True,
        why,
        mem_gb=_float(last.get("mem_gb"), base.mem_gb),
        timeout_min=_int(last.get("timeout_min"), base.timeout_min),
        grad_accum_factor=_int(last.get("grad_accum_factor"), 1) or 1,
        exclude=exclude,
        previous=previous,
    )


def _after_oom(
    policy: RetryPolicy,
    verdict: Verdict,
    last: dict[str, Any],
    base: SlurmConfig,
    exclude: tuple[str, ...],
    previous: dict[str, Any],
) -> Decision:
    same = _same(last, base, "", exclude, previous)
    asked = same.mem_gb if same.mem_gb is not None else verdict.mem_gb
    if verdict.cuda:
        if not policy.cuda_oom_halve_batch:
            return Decision(False, "CUDA out of memory (retry.cuda_oom_halve_batch is off)", previous=previous)
        factor = same.grad_accum_factor * 2
        why = f"CUDA out of memory: batch per device halved, gradient accumulation x{factor}"
        return Decision(True, why, same.mem_gb, same.timeout_min, factor, exclude, previous)
    # What the job really had (sacct) where known: a partition default may exceed oom_start_mem_gb, and a
    # retry must never ask for less than the attempt that ran out.
    known = [mem for mem in (asked, verdict.mem_gb) if mem is not None]
    was = max(known) if known else policy.oom_start_mem_gb
    if was >= policy.oom_mem_cap_gb:
        return Decision(False, f"host out of memory at {was:g} GB, the cap (retry.oom_mem_cap_gb)", previous=previous)
    mem = min(policy.oom_mem_cap_gb, math.ceil(was * policy.oom_mem_factor * 10) / 10)
    why = f"host out of memory: {was:g} -> {mem:g} GB"
    return Decision(True, why, mem, same.timeout_min, same.grad_accum_factor, exclude, previous)


def _after_timeout(
    policy: RetryPolicy,
    last: dict[str, Any],
    base: SlurmConfig,
    max_time_min: int | None,
    exclude: tuple[str, ...],
    previous: dict[str, Any],
) -> Decision:
    same = _same(last, base, "", exclude, previous)
    was = same.timeout_min or base.timeout_min
    time_min = math.ceil(was * policy.time_factor)
    if max_time_min is not None:
        time_min = min(time_min, max_time_min)
    why = f"time limit: {was} -> {time_min} min (resumes from its last checkpoint)"
    return Decision(True, why, same.mem_gb, time_min, same.grad_accum_factor, exclude, previous)


def _tries(attempts: list[dict[str, Any]], verdict: Verdict) -> tuple[int, int, int]:
    """(attempts that ended for a reason of the run, for a reason of the node, preempted), the latest
    (judged by `verdict`) included; earlier ones by the class recorded on their entry (none: the run's)."""
    kinds = [str(a.get("failure", "")) for a in attempts[:-1]] + [verdict.failure.value]
    node = sum(1 for kind in kinds if kind in {f.value for f in Failure if f.infrastructure})
    preempted = kinds.count(Failure.PREEMPTED.value)
    return len(kinds) - node - preempted, node, preempted


def counted(
    attempts: list[dict[str, Any]], submitted: int, job_id: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The attempts as the policy counts them (and `orchestrate status` shows them): status.json's,
    then the latest job `job_id` when it never started (no entry of its own), with one classless entry
    (counted as the run's) before them for each submission that left no entry, and how many those are.
    A requeued job is one submission with several entries: each counts."""
    if job_id is not None and (not attempts or attempts[-1].get("job_id") != job_id):
        attempts = [*attempts, {"job_id": job_id}]
    return _with_unseen(attempts, submitted)


def _with_unseen(attempts: list[dict[str, Any]], submitted: int) -> tuple[list[dict[str, Any]], int]:
    """The attempts, with one classless entry (counted as the run's) before them for each submission of
    the run that left no entry of its own, and how many those are."""
    jobs = {a.get("job_id") for a in attempts if a.get("job_id")}
    unseen = max(0, submitted - len(jobs))
    return [{} for _ in range(unseen)] + attempts, unseen


def _excluded(attempts: list[dict[str, Any]], verdict: Verdict) -> tuple[str, ...]:
    """Nodes where this run's attempts failed for the node's reasons."""
    infra = {f.value for f in Failure if f.infrastructure}
    nodes = [str(a.get("node")) for a in attempts[:-1] if a.get("failure") in infra and a.get("node")]
    if verdict.failure.infrastructure and verdict.node:
        nodes.append(verdict.node)
    return tuple(dict.fromkeys(nodes))


def excluded(
    base: SlurmConfig, decision: Decision, quarantined: list[str], partition: frozenset[str] | None = None
) -> tuple[list[str], list[str]]:
    """(the nodes the next attempt's --exclude names, the failed nodes left out of it). The user's own
    `exclude` always stands; the run's failed nodes and the quarantine are added while at least one node
    of `partition` (its nodes; None: unknown) stays usable: an --exclude of every node leaves the job
    pending forever or sbatch refusing it, so the last node is tried again instead (max_node_attempts
    still ends a run that keeps failing there)."""
    chosen = [n for n in (base.exclude or "").split(",") if n]
    spared: list[str] = []
    for node in dict.fromkeys([*decision.exclude, *quarantined]):
        if node in chosen:
            continue
        if partition is not None and not partition - {*chosen, node}:
            spared.append(node)
        else:
            chosen.append(node)
    return chosen, spared


def resources(
    base: SlurmConfig, decision: Decision, quarantined: list[str], partition: frozenset[str] | None = None
) -> SlurmConfig:
    """The job resources of the next attempt, validated again (node names and sizes meet the allow-lists);
    a SpecError (one line) when they do not, an --exclude list too long for SLURM above all. `partition`:
    the nodes the job may run on (slurmcli.partition_nodes), never all excluded (see `excluded`)."""
    nodes = excluded(base, decision, quarantined, partition)[0]
    update: dict[str, Any] = {"exclude": ",".join(nodes) or None}
    if len(update["exclude"] or "") > EXCLUDE_MAX_CHARS:
        raise SpecError(
            f"--exclude would name {len(nodes)} nodes ({len(update['exclude'])} characters, SLURM takes "
            f"{EXCLUDE_MAX_CHARS}): see the quarantined nodes in `orchestrate status`, then "
            "`submit --clear-quarantine` or fix what fails on every node"
        )
    if decision.mem_gb is not None:
        update["mem_gb"] = decision.mem_gb
    if decision.timeout_min is not None:
        update["timeout_min"] = decision.timeout_min
    try:
        return SlurmConfig.model_validate({**base.model_dump(), **update})
    except ValidationError as exc:
        raise SpecError(f"retry resources: {describe_error(exc, SlurmConfig)}") from None


def recorded(config: SlurmConfig, decision: Decision) -> dict[str, Any]:
    """What the attempt asks for, as status.json's attempt entry keeps it."""
    return {
        "mem_gb": config.mem_gb,
        "timeout_min": config.timeout_min,
        "exclude": config.exclude,
        "grad_accum_factor": decision.grad_accum_factor,
    }


def _float(value: Any, default: float | None) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else default


def policy_for(spec: SweepSpec, profile: str | None = None) -> RetryPolicy:
    """The sweep's retry block on top of its cluster's (`--profile`, else the spec's site file): the
    values the spec sets win, the cluster's fill the rest, the defaults what neither sets."""
    named = site.profile_file(profile, spec.source.parent if spec.source else None)  # a NAME or a path
    path = Path(named) if named is not None else Path(spec.site) if spec.site else None
    if path is None:
        return spec.retry
    try:
        base = site.load_site(path, "cluster profile" if profile is not None else "site file").retry
    except site.SiteError as exc:
        raise SpecError(str(exc)) from None
    if base is None:
        return spec.retry
    merged = {**base.model_dump(exclude_unset=True), **spec.retry.model_dump(exclude_unset=True)}
    try:
        return RetryPolicy.model_validate(merged)
    except ValidationError as exc:
        raise SpecError(f"{path}: retry: {describe_error(exc, RetryPolicy)}") from None
