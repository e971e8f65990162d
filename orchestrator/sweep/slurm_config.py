"""The SLURM block of a spec or cluster profile (`slurm:`), typed: partition, resources, limits,
the node environment and the sbatch flags a site adds. Every string that ends up in the sbatch
script is checked against an allow-list here: the script is a shell script, and a newline in a
partition name is a command. Part of orchestrator.sweep.site (which re-exports SlurmConfig).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from pydantic import Field, StrictBool, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from orchestrator.sweep import nodeenv, sbatch_flags
from orchestrator.sweep.errors import short
from trainers.config import StrictModel

# Allow-lists (not deny-lists) for every string that reaches an #SBATCH line or the script.
_SLURM_WORD = re.compile(r"[A-Za-z0-9_.+-]{1,64}(,[A-Za-z0-9_.+-]{1,64}){0,31}")  # partition, account, qos
_CONSTRAINT = re.compile(r"[A-Za-z0-9_.,&|*:\[\]()+-]{1,256}")  # SLURM feature expressions
_HOSTLIST = re.compile(r"[A-Za-z0-9_.,\[\]-]{1,1024}")  # node[01-04],gpu7
_SBATCH_KEY = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_SBATCH_VALUE = re.compile(r"[A-Za-z0-9_.,:@%+=/-]{0,256}")
# One plain command per setup item: words, paths, `$VAR`/`${VAR}` expansions, balanced quotes;
# no `;`, `&`, `|`, `<`, `>`, `(`, backticks, backslashes or newlines.
_SETUP_LINE = re.compile(r"[A-Za-z0-9_./:=@%+,~ \"'{}$-]{1,512}")


def _quotes_close(line: str) -> bool:
    """Whether every quote of `line` is closed as the shell reads it (shlex, POSIX rules): counting
    each quote character passed `echo "'"'`, whose last quote swallowed the script's next lines."""
    try:
        shlex.split(line)
    except ValueError:
        return False
    return True


_OPENS = {"if": "fi", "case": "esac", "for": "done", "select": "done", "while": "done", "until": "done", "{": "}"}
_CLOSES = frozenset(_OPENS.values())


def _compounds_closed(lines: list[str]) -> None:
    """ValueError unless every `if`, `case`, loop or `{` a setup item opens (its first word) is closed by a
    later item: an open one took the job's own srun line into its body, and the script ended in a syntax
    error on the node (`{` alone, `if test -d /scratch` with no `then` and `fi` items)."""
    stack: list[tuple[str, int]] = []
    for number, line in enumerate(lines, 1):
        first = next(iter(shlex.split(line)), "")
        if first in _OPENS:
            stack.append((first, number))
        elif first in _CLOSES:
            if not stack or _OPENS[stack[-1][0]] != first:
                raise ValueError(f"setup item {number} closes `{first}` that no earlier item opened")
            stack.pop()
    if stack:
        word, number = stack[-1]
        raise ValueError(
            f"setup item {number} opens `{word}` that no later item closes (`{_OPENS[word]}`): the job's own"
            " command would be read into it; one plain command per item"
        )


def _allowed(pattern: re.Pattern[str], value: str, what: str, chars: str) -> str:
    """`value` if the whole of it matches the allow-list `pattern`, else ValueError naming what is allowed."""
    if not pattern.fullmatch(value):
        raise ValueError(
            f"{what} {short(value)} contains a newline, ';', '`', '$(' or another character outside {chars}"
            " (or is too long)"
        )
    return value


_WORD_CHARS = "letters, digits and _ . + - ,"


_FAULTS_ENV = "ORCH_FAULT_INJECT"
"""trainers.runtime.faults.ENV (sweep/ may not import that module)."""


class SlurmConfig(StrictModel):
    """Resources of each job; a cluster profile fills what the spec leaves out."""

    partition: str | None = None
    """SLURM partition (`--partition`)."""
    account: str | None = None
    """Account charged (`--account`)."""
    qos: str | None = None
    """Quality of service (`--qos`)."""
    timeout_min: int = Field(60, ge=1, le=525_600)
    """Wall-time limit of each job in minutes (at most a year); a timed-out job is requeued and resumes."""
    nodes: int = Field(1, ge=1, le=10_000)
    """Nodes per job."""
    gpus_per_node: int = Field(0, ge=0, le=64)
    """GPUs per node (`--gpus-per-node=N`); a run's `distributed.gpus_per_node` sizes its own job."""
    tasks_per_node: int = Field(1, ge=1, le=1024)
    """Tasks (processes) per node."""
    cpus_per_task: int = Field(2, ge=1, le=1024)
    """CPU cores per task (data loading workers come from these)."""
    mem_gb: float | None = Field(None, ge=0.1, le=100_000, allow_inf_nan=False)
    """Memory per node in GB (at least 0.1: SLURM reads `--mem=0` as all of the node's memory); None uses
    the partition default."""
    constraint: str | None = None
    """Node feature constraint (`--constraint`)."""
    exclude: str | None = None
    """Nodes to avoid (`--exclude`)."""
    additional_parameters: dict[str, StrictBool | str | int] = {}
    """Extra sbatch flags by full name, e.g. {mail-type: END, exclusive: true}; true writes the bare flag (only for
    flags sbatch takes without a value), false is refused; flags the tool sets or records (time, mem, gres,
    array, export...), their abbreviations and aliases are refused (orchestrator/sweep/sbatch_flags.py)."""
    setup: list[str] = []
    """Shell lines run before the job (module loads, environment activation), one plain command each."""
    array_parallelism: int = Field(64, ge=1, le=100_000)
    """At most this many tasks of one array run at once (`%N`)."""
    max_array_size: int | None = Field(None, ge=1)
    """Override of the cluster's MaxArraySize; None reads it from `scontrol show config`."""
    max_timeouts: int = Field(3, ge=0, le=1000)
    """Times a job that hits its time limit is requeued to resume (preemptions are not counted)."""
    runs_per_task: int = Field(1, ge=1)
    """Runs one array task trains one after the other (fewer, longer jobs; imports paid once)."""
    pack_gpus: bool = False
    """Whole-node sites: a job of gpus_per_node G trains G single-GPU runs at once, one per GPU."""
    env: nodeenv.NodeEnv | None = None
    """The Python environment on the compute node (kind: venv, conda, modules, apptainer, pyxis or
    charliecloud; orchestrator/sweep/nodeenv.py); None runs the login node's interpreter by its path."""

    @field_validator("env", mode="before")
    @classmethod
    def _node_env(cls, value: Any) -> Any:
        return nodeenv.parse(value)

    @field_validator("partition", "account", "qos")
    @classmethod
    def _slurm_word(cls, value: str | None) -> str | None:
        return None if value is None else _allowed(_SLURM_WORD, value, "name", _WORD_CHARS)

    @field_validator("constraint")
    @classmethod
    def _constraint(cls, value: str | None) -> str | None:
        return (
            None
            if value is None
            else _allowed(_CONSTRAINT, value, "constraint", "letters, digits and _ . , & | * : [ ] ( ) + -")
        )

    @field_validator("exclude")
    @classmethod
    def _hostlist(cls, value: str | None) -> str | None:
        return None if value is None else _allowed(_HOSTLIST, value, "host list", "letters, digits and _ . , [ ] -")

    @field_validator("additional_parameters")
    @classmethod
    def _extra_flags(cls, value: dict[str, bool | str | int]) -> dict[str, bool | str | int]:
        spelled: dict[str, str] = {}
        for key, item in value.items():
            _allowed(_SBATCH_KEY, key, "sbatch flag", "lower-case letters, digits, _ and - (a long option name)")
            sbatch_flags.check_key(key)  # abbreviations and aliases too (`arr` is --array)
            # `mail_type` and `mail-type` are one flag: both were written, and sbatch kept the later #SBATCH line.
            other = spelled.setdefault(key.replace("_", "-"), key)
            if other != key:
                raise ValueError(f"{other} and {key} are one sbatch flag (--{key.replace('_', '-')}); set it once")
            if isinstance(item, str):
                _allowed(_SBATCH_VALUE, item, f"value of {key}:", "letters, digits and _ . , : @ % + = / -")
            try:  # true/false (kept as booleans by StrictBool, not read as 1/0) against how sbatch takes the option
                sbatch_flags.check_value(key, item)
            except ValueError as exc:  # named at its key: slurm.additional_parameters.<key>
                error = PydanticCustomError("sbatch_value", "{reason}", {"reason": str(exc)})
                raise ValidationError.from_exception_data(
                    cls.__name__, [{"type": error, "loc": (key,), "input": item}]
                ) from None
        return value

    @field_validator("setup")
    @classmethod
    def _one_command_each(cls, value: list[str]) -> list[str]:
        for line in value:
            plain = "letters, digits, spaces, quotes and _ . / : = @ % + , ~ { } $ -; one command per item"
            _allowed(_SETUP_LINE, line, "setup line", plain)
            if "$(" in line or not _quotes_close(line):
                raise ValueError(f"setup line {short(line)} has unbalanced quotes; one command per item")
            # trainers/runtime/faults.py: tests set it in their own environment, never a spec; read with the
            # quotes removed, as the shell reads it (`ORCH_FAULT_INJ""ECT=1` sets that name too).
            if _FAULTS_ENV in "".join(shlex.split(line)):
                raise ValueError(f"setup line {short(line)} names {_FAULTS_ENV}, a test-only switch")
        _compounds_closed(value)
        return value
