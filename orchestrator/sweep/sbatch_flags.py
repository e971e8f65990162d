"""Which sbatch option a key of `slurm.additional_parameters` really is, and whether the tool owns it.

submitit writes each extra key as `#SBATCH --key=value`, and sbatch reads those lines with
getopt_long: an unambiguous prefix is the option it abbreviates (`arr` is `--array`), and several
options are aliases of one another (`tasks-per-node` is `--ntasks-per-node`). A check by exact
name alone lets `arr: 0-99` replace the array submitit sets. So a key is resolved the way
getopt_long resolves it, against the complete long-option table of sbatch (sbatch_options.txt),
and refused when it is not the full name of an option, is ambiguous, or resolves to a flag the
tool sets or records itself. A value must also fit how sbatch takes the option: submitit writes
`true` as the bare flag (`--exclusive`), which only an option with no or an optional argument
accepts (`comment: true` would be `--comment` with no comment), and `false` is refused, never dropped.
"""

from __future__ import annotations

import functools
from importlib import resources

_SUBMITIT = "submitit (it writes the batch script, the array and the log files)"
_TASKS = "tasks_per_node and nodes (the job's processes are recorded from them)"
_GPUS = "gpus_per_node (the run's devices are recorded from it)"
_MEM = "mem_gb"
_ENV = "the job's environment (setup lines of the slurm block; a changed environment is not recorded)"
_OUTPUT = "submitit (it reads sbatch's answer for the job id)"
OWNED: dict[str, str] = {
    "time": "timeout_min",
    "time-min": "timeout_min",
    "nodes": "nodes",
    "ntasks": _TASKS,
    "ntasks-per-node": _TASKS,
    "tasks-per-node": _TASKS,
    "ntasks-per-core": _TASKS,
    "ntasks-per-socket": _TASKS,
    "ntasks-per-gpu": _TASKS,
    "ntasks-per-tres": _TASKS,
    "cpus-per-task": "cpus_per_task",
    "cpus-per-gpu": "cpus_per_task",
    "gpus": _GPUS,
    "gpus-per-node": _GPUS,
    "gpus-per-task": _GPUS,
    "gpus-per-socket": _GPUS,
    "gres": _GPUS,
    "mem": _MEM,
    "mem-per-cpu": _MEM,
    "mem-per-gpu": _MEM,
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "constraint": "constraint",
    "exclude": "exclude",
    "clusters": "the cluster status asks (squeue and sacct query this cluster only)",
    "cluster": "the cluster status asks (squeue and sacct query this cluster only)",
    "job-name": "the sweep's name",
    "array": _SUBMITIT,
    "output": _SUBMITIT,
    "error": _SUBMITIT,
    "input": _SUBMITIT,
    "open-mode": _SUBMITIT,
    "signal": "submitit (the timeout signal that requeues a job)",
    "requeue": "submitit (timed-out jobs are requeued to resume; max_timeouts)",
    "no-requeue": "submitit (timed-out jobs are requeued to resume; max_timeouts)",
    "wrap": _SUBMITIT,
    "chdir": _SUBMITIT,
    "export": _ENV,
    "export-file": _ENV,
    "get-user-env": _ENV,
    "uid": "SLURM (root only: jobs run as the submitting user)",
    "gid": "SLURM (root only: jobs run as the submitting user)",
    "parsable": _OUTPUT,
    "quiet": _OUTPUT,
    "wait": "submit (it must return once the jobs are queued)",
    "test-only": "submit (a test-only job is never queued, yet would be recorded as submitted)",
    "help": _OUTPUT,
    "usage": _OUTPUT,
    "version": _OUTPUT,
}
"""Canonical sbatch option -> the field or part of the tool that sets or records it."""


@functools.lru_cache(maxsize=1)
def options() -> frozenset[str]:
    """Every long option name of the sbatch the table was read from (sbatch_options.txt)."""
    text = resources.files("orchestrator.sweep").joinpath("sbatch_options.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def resolve(name: str, table: frozenset[str] | None = None) -> list[str]:
    """The options getopt_long takes `--name` for: [name] when it is a full option name, else every
    option it is a prefix of (one: the abbreviated option; several: ambiguous; none: unknown)."""
    table = options() if table is None else table
    if name in table:
        return [name]
    return sorted(option for option in table if option.startswith(name))


def check_key(key: str) -> None:
    """ValueError unless `key` (submitit turns `_` into `-`) is the full name of an sbatch option
    that the tool neither sets nor records."""
    name = key.replace("_", "-")
    found = resolve(name)
    if not found:
        raise ValueError(f"--{name} is not an sbatch option (sbatch 22.05's option table, sbatch_options.txt)")
    if len(found) > 1:
        shown = ", ".join(f"--{option}" for option in found[:6]) + (", ..." if len(found) > 6 else "")
        owned = [option for option in found if option in OWNED]
        also = f"; {', '.join('--' + o for o in owned[:3])} set by the tool" if owned else ""
        raise ValueError(f"--{name} is ambiguous to sbatch ({shown}){also}; write an option's full name")
    option = found[0]
    if option in OWNED:
        alias = "" if option == name else f" (sbatch reads it as --{option})"
        raise ValueError(f"--{name}{alias} is set by {OWNED[option]}; set that instead")
    if option != name:
        raise ValueError(f"--{name} abbreviates --{option}; write the full option name")


NO_VALUE = frozenset(
    {"contiguous", "help", "hold", "ignore-pbs", "no-requeue", "overcommit", "oversubscribe", "parsable", "quiet"}
    | {"reboot", "requeue", "spread-job", "test-only", "usage", "use-min-nodes", "verbose", "version", "wait"}
)
"""Options sbatch takes bare only (getopt no_argument; `--hold=x` is an error): written as `key: true`."""
OPTIONAL_VALUE = frozenset({"exclusive", "get-user-env", "nice", "no-kill", "propagate"})
"""Options sbatch takes bare or with a value (`--exclusive` or `--exclusive=user`); every other option of
sbatch_options.txt needs a value. Both sets are checked against the installed sbatch by the tests."""
WORDS = {"exclusive": ("user", "mcs"), "no-kill": ("off",)}
"""The values sbatch 22.05 takes for these optional-value options (`--exclusive=1` is refused by sbatch)."""


def check_value(key: str, value: bool | str | int) -> None:
    """ValueError unless `value` fits how sbatch takes the option `key` (already checked by check_key):
    true (the bare flag) only where sbatch takes the option without a value, a value where it needs
    one, and never false: leaving a flag out is not turning it off where the partition sets it."""
    name = key.replace("_", "-")
    if value is False:
        raise ValueError(
            f"false is refused: leaving --{name} out is not the same as turning it off (a partition may set it);"
            " remove the key, or write the value sbatch takes"
        )
    if value is True and name not in NO_VALUE | OPTIONAL_VALUE:
        raise ValueError(f"--{name} needs a value (--{name}=VALUE); true would write a bare --{name}")
    if value is not True and name in NO_VALUE:
        raise ValueError(f"--{name} takes no value; write {key}: true for the bare flag")
    if value is not True and name in WORDS and value not in WORDS[name]:
        raise ValueError(f"--{name} takes true (the bare flag) or one of {', '.join(WORDS[name])}")
