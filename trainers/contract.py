"""The run folder's files as types: status.json, metrics.json and history.csv rows.

Both sides import this module (it is torch-free): the trainer builds these models and writes
their dump; the orchestrator reads every run-folder value through the functions below, so a
field renamed on the node side fails a test here instead of a table silently losing a column.

Versions: `schema_version` is written into status.json and metrics.json. A file without one was
written before the contract existed and reads as version 1 (same keys, same meaning). A file of a
newer version than this code knows is a named problem, never a guess.

Readers are tolerant and never raise: a value that does not have its field's type is left out and
named (the `problems` lists), the rest of the file is kept. The metric rules (scores are finite,
fractions within [0, 1], counts positive...) live here, beside the models they describe.

Tables read metrics as flat columns (`test.top1`); `column()` and the constants below are the
only places those names are spelled.
"""

from __future__ import annotations

import functools
import json
import math
from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

CONFIG = "config.yaml"
STATUS = "status.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
CHECKPOINTS = "checkpoints"
LOGS = "logs"
DEEPSPEED_CONFIG = "deepspeed_config.json"
SPLIT = "split.json"
EVAL = "eval"
PREDICTIONS = "predictions"
"""File names of a run folder (see trainers.rundir for what each holds)."""

SCHEMA_VERSION = 2
"""Version of status.json and metrics.json this code writes (1: files written before the contract)."""
LEGACY_VERSION = 1
"""What a file without `schema_version` is."""
MAX_PID = 2**22
"""Linux's largest process id (pid_max's ceiling)."""
MAX_VALUE = 1e15
"""Largest magnitude of a recorded number (a parameter count is ~1e11; 10**30 is an edit, not a run)."""
MIN_IMAGES_PER_S = 1e-3
"""Slowest training speed taken as a measurement (one image per 1,000 s): below it an estimate's
hours are unbounded (a site's 1e-320 images/s made `plan` print inf GPU-hours)."""


class State(str, Enum):
    """Lifecycle of one run as recorded in status.json."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    MISSING = "missing"  # never reported by a file: no status.json yet


KNOWN_STATES = frozenset(state.value for state in State)
UNKNOWN = "unknown"
"""State of a run whose status.json is unreadable or names a state this version does not know."""
BROKEN = "broken"
"""State of a run-folder entry that cannot be read as a run (a file, no readable config.yaml)."""


# ------------------------------------------------------------------------------------ lenient types


def _text_or_none(value: Any) -> str | None:
    """Free text as written; a value of another type reads as its text (an error message may be a
    number), None stays None."""
    return None if value is None else value if isinstance(value, str) else str(value)


def _str_or_none(value: Any) -> str | None:
    """A name (host, log path): a value that is not a string is not one."""
    return value if isinstance(value, str) else None


def _number_or_none(value: Any) -> float | None:
    """A timestamp or measure: numbers only (a bool or text is no time)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _list_or_empty(value: Any) -> list[Any]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


Text = Annotated[str | None, BeforeValidator(_text_or_none)]
Name = Annotated[str | None, BeforeValidator(_str_or_none)]
Seconds = Annotated[float | None, BeforeValidator(_number_or_none)]


class _Open(BaseModel):
    """A record that keeps keys it does not type (the trainer writes open-ended facts too)."""

    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------------------------ status.json


class StatusEvent(_Open):
    """One state change: the state entered and when."""

    state: Name = None
    """The state entered (a State value)."""
    at: Seconds = None
    """Unix time of the change, seconds."""


def _dict_or_empty(value: Any) -> Any:
    return value if isinstance(value, dict) else {}


class AttemptResources(_Open):
    """The resources one attempt asked for; a retry changes them by its failure class."""

    mem_gb: Annotated[float | None, BeforeValidator(_number_or_none)] = None
    """Host memory per node in GB (None: the partition default)."""
    timeout_min: Annotated[int | None, BeforeValidator(lambda v: v if isinstance(v, int) else None)] = None
    """Time limit in minutes."""
    exclude: Name = None
    """Nodes excluded (`--exclude`): the run's failed nodes and the sweep's quarantine."""
    grad_accum_factor: Annotated[int, BeforeValidator(lambda v: v if isinstance(v, int) and v >= 1 else 1)] = 1
    """Gradient accumulation times this, batch per device divided by it (after a CUDA out-of-memory error)."""


class Attempt(_Open):
    """One try of a run (a job start, a requeue). Every field is optional: launchers record what
    they know (the failure class, the node, the exit code) as they learn it."""

    at: Seconds = None
    """Unix time the attempt started, seconds."""
    host: Name = None
    """Node the attempt ran on (its hostname)."""
    slurm_node: Name = None
    """SLURM's name of that node (SLURMD_NODENAME: what `--exclude` takes), None outside SLURM."""
    job_id: Name = None
    """SLURM job (or array task) id of the attempt."""
    state: Name = None
    """How the attempt ended (a State value), None while it runs."""
    failure: Name = None
    """Class of failure (e.g. oom, node_fail, timeout, preempted), None when none."""
    error: Text = None
    """One-line error of a failed attempt."""
    exit_code: Annotated[int | None, BeforeValidator(lambda v: v if isinstance(v, int) else None)] = None
    """Process exit code, when known."""
    node: Name = None
    """Node the failure is counted against: recorded by the job for its own failures (a multi-node
    preflight names the unfit rank's node, the hang watchdog its own), else by the launcher (the first
    of sacct's NodeList)."""
    reason: Text = None
    """Why the attempt got its failure class, in words (the error line, a preflight check's reason)."""
    resources: Annotated[AttemptResources, BeforeValidator(_dict_or_empty)] = Field(
        default_factory=lambda: AttemptResources()
    )
    """What the attempt asked SLURM for, as the retry policy chose (orchestrator/launch/retries.py)."""


class RunStatus(_Open):
    """status.json: where the run is in its lifecycle, where it ran and why it failed."""

    schema_version: int = LEGACY_VERSION
    """Contract version of the file (missing: 1)."""
    state: str = State.MISSING.value
    """A State value; `unknown` on the read side when the file names none this version knows."""
    updated_at: Seconds = None
    """Unix time of the last change, seconds."""
    started_at: Seconds = None
    """Unix time the run first started running, seconds."""
    finished_at: Seconds = None
    """Unix time it completed or failed, seconds."""
    host: Name = None
    """Host of the process that runs (ran) it."""
    pid: int | None = None
    """Process id of that process (checked before anything signals it)."""
    boot_id: Name = None
    """Linux boot id of `host` when that process started: after a reboot (a workstation that crashed
    mid-run) its pid may be another process's, and the run is no longer running."""
    slurm_job_id: Name = None
    """SLURM job id when it ran under SLURM (then its liveness is asked of SLURM, not of a pid)."""
    log_out: Name = None
    """Path of the job's stdout log."""
    log_err: Name = None
    """Path of the job's stderr log."""
    error: Text = None
    """One-line error of a failed run."""
    traceback: Text = None
    """The last lines of the failed run's traceback."""
    failure: Name = None
    """Class of the latest attempt's failure as the launcher recorded it (orchestrator.launch.failures)."""
    failure_reason: Text = None
    """Why that class, in words."""
    history: Annotated[list[StatusEvent], BeforeValidator(_list_or_empty)] = Field(default_factory=list)
    """Every state change, oldest first."""
    attempts: Annotated[list[Attempt], BeforeValidator(_list_or_empty)] = Field(default_factory=list)
    """Every try of the run, oldest first (filled by launchers that record tries)."""

    @property
    def known_state(self) -> State:
        """The state as a State; MISSING when unknown (an unknown run counts as not started)."""
        return State(self.state) if self.state in KNOWN_STATES else State.MISSING

    def dump(self) -> dict[str, Any]:
        """The JSON object to write: what was set, with the current schema version."""
        return {**self.model_dump(mode="json", exclude_unset=True), "schema_version": SCHEMA_VERSION}


def parse_status(data: dict[str, Any] | None) -> tuple[RunStatus, str | None]:
    """status.json's object as a RunStatus and what is wrong with it (None: nothing). No file: an
    empty status (state missing). An unknown state or a pid that is no process id reads as state
    `unknown` (submit runs it again) with a problem; other odd values read as absent."""
    data = data or {}
    state = data.get("state", State.MISSING.value)
    if not isinstance(state, str) or state not in KNOWN_STATES:
        return _status_without(data, "state", UNKNOWN), (
            f"{STATUS}: unknown state {_repr(state)} (treated as unknown: submit runs it again)"
        )
    pid = data.get("pid")
    if pid is not None and not (isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid <= MAX_PID):
        # os.kill(10**30, 0) raised OverflowError: a pid is checked before anything signals it.
        return _status_without(data, "pid", UNKNOWN), (
            f"{STATUS}: pid {_repr(pid)} is not a process id (treated as unknown: submit runs it again)"
        )
    problem = _version_problem(data, STATUS)  # a newer writer: read what this version knows, and say so
    try:
        return RunStatus.model_validate({**data, "schema_version": LEGACY_VERSION} if problem else data), problem
    except ValidationError as exc:  # every typed field is lenient: only a bug of this module lands here
        return RunStatus(state=UNKNOWN), f"{STATUS}: {_first_error(exc)}"


def _status_without(data: dict[str, Any], field: str, state: str) -> RunStatus:
    """The status with `field` dropped and the state set (the fields that may still be read)."""
    kept = {k: v for k, v in data.items() if k not in (field, "state", "pid", "schema_version")}
    kept["schema_version"] = LEGACY_VERSION
    if field != "pid" and isinstance(data.get("pid"), int) and 0 < data["pid"] <= MAX_PID:
        kept["pid"] = data["pid"]
    try:
        return RunStatus.model_validate({**kept, "state": state})
    except ValidationError:
        return RunStatus(state=state)


def next_status(previous: dict[str, Any] | None, state: State, now: float, fields: dict[str, Any]) -> RunStatus:
    """The status after a state change: earlier fields kept (start time, ids), `fields` set, the
    change appended to the history, start and finish times stamped. Validated: a field of the
    wrong type is a bug of the writer, raised here rather than written."""
    status = dict(previous or {})
    status.update(fields)
    status["state"] = state.value
    status["updated_at"] = now
    history = status.get("history")
    status["history"] = [*(history if isinstance(history, list) else []), {"state": state.value, "at": now}]
    if state is State.RUNNING:
        status.setdefault("started_at", now)
        status.pop("error", None)
    if state in (State.COMPLETED, State.FAILED):
        status["finished_at"] = now
    try:
        return RunStatus.model_validate(status)
    except ValidationError as exc:
        # An earlier value this version cannot type (an edited pid): the new fields win, it goes.
        bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]} - set(fields)
        if not bad:
            raise
        return RunStatus.model_validate({k: v for k, v in status.items() if k not in bad})


# ------------------------------------------------------------------------------------ metrics.json

TEST = "test"
VAL = "val"
SPLITS = (TEST, VAL)
"""Sections of metrics.json whose every value is a score (per level too: `test.super.top1`)."""
TIMING = "timing"
COMPLEXITY = "complexity"
PROVENANCE = "provenance"
LEVELS = ("super", "sub")
"""Levels of a hierarchical task: each has its own scores under the split."""


def column(*path: str) -> str:
    """The flat column name of a metrics.json value (`column("test", "top1")` is `test.top1`)."""
    return ".".join(path)


def metric_column(metric: str) -> str:
    """The column of a table's metric: `top1` -> `test.top1`; a key under a section stays (`val.top1`)."""
    head = metric.split(".", 1)[0]
    return metric if head in (*SPLITS, COMPLEXITY, TIMING) else column(TEST, metric)


def is_fraction(key: str) -> bool:
    """Whether a score column holds a fraction within [0, 1] (`test.top1`, `val.super.macro_f1`; not a
    loss): tables show those times 100, as percent, unless a table sets its own `scale`."""
    return key.split(".", 1)[0] in SPLITS and any(f in key.rsplit(".", 1)[-1] for f in _FRACTIONS)


TEST_TOP1 = column(TEST, "top1")
WALL_S = column(TIMING, "wall_s")
GFLOPS = column(COMPLEXITY, "gflops")
PARAMS_M = column(COMPLEXITY, "params_m")
TORCH_VERSION = column(COMPLEXITY, "torch_version")
DEVICE = column(PROVENANCE, "device")
NUM_PROCESSES = column(PROVENANCE, "num_processes")
GIT_COMMIT = column(PROVENANCE, "git_commit")
GIT_DIRTY = column(PROVENANCE, "git_dirty")
TOOL_VERSION = column(PROVENANCE, "environment", "tool_version")


class Scores(_Open):
    """Scores of one split (or one level of it); fractions within [0, 1]. Other scores a task
    reports (exact_match, hamming_loss...) are kept as extra keys."""

    top1: float | None = None
    """Top-1 accuracy, fraction (multi-label: exact match)."""
    top5: float | None = None
    """Top-5 accuracy, fraction (tasks of at least 5 classes)."""
    loss: float | None = None
    """Mean loss of the split."""
    macro_f1: float | None = None
    """Macro-averaged F1, fraction."""
    n_images: int | None = None
    """Images scored."""
    super: Scores | None = None
    """Scores of the super-class level (hierarchical tasks)."""
    sub: Scores | None = None
    """Scores of the sub-class level (hierarchical tasks; the split's own scores repeat it)."""


class Timing(_Open):
    """What varies between reruns of the same config: time, speed and memory."""

    wall_s: float | None = None
    """Wall time of the whole run, seconds."""
    train_images: int | None = None
    """Training images seen, all epochs."""
    train_images_per_s: float | None = None
    """Training images per second, all processes together."""
    peak_rss_mib: float | None = None
    """Largest resident set of one training process, MiB."""
    peak_rss_sum_mib: float | None = None
    """Sum over processes of their peak resident set, MiB."""
    host_total_mib: float | None = None
    """Memory of the host, MiB."""
    rss_scope: str | None = None
    """What the RSS peaks measure, in words."""
    gpu_peak_allocated_mib: float | None = None
    """Peak GPU memory allocated by tensors, MiB (None on CPU)."""
    gpu_peak_reserved_mib: float | None = None
    """Peak GPU memory reserved by the caching allocator, MiB."""
    gpu_total_mib: float | None = None
    """Memory of one GPU, MiB."""


TIMING_KEYS = tuple(Timing.model_fields)
"""Every typed timing key (usage tables read these)."""


class Complexity(_Open):
    """Parameters and FLOPs of the exact model trained."""

    gflops: float | None = None
    """GFLOPs of one forward pass (2 x multiply-adds, batch 1)."""
    params: int | None = None
    """Parameters."""
    params_m: float | None = None
    """Parameters, millions."""
    params_trainable: int | None = None
    """Parameters that train."""
    counter: str | None = None
    """The FLOP counter used."""
    convention: str | None = None
    """How FLOPs are counted, in words."""
    torch_version: str | None = None
    """torch version that counted."""
    counted_on: str | None = None
    """Device the count ran on (meta: no memory)."""


class Provenance(_Open):
    """Where and with what the run ran."""

    git_commit: str | None = None
    """Commit of the code (None outside a git checkout)."""
    git_dirty: bool | None = None
    """Whether the checkout had uncommitted changes."""
    host: str | None = None
    """Host of rank 0."""
    device: str | None = None
    """Device type the run trained on (cpu, cuda...)."""
    num_processes: int | None = None
    """Training processes (ranks)."""
    python: str | None = None
    """Python version."""
    packages: dict[str, Any] = Field(default_factory=dict)
    """Versions of the libraries that shape the numbers."""


class Parallel(_Open):
    """How the run was spread over devices."""

    distributed_type: str | None = None
    """Accelerate's distributed type (NO, MULTI_GPU, DEEPSPEED...)."""
    processes: int | None = None
    """Processes (ranks)."""
    global_batch: int | None = None
    """Images per optimizer step, all ranks."""
    per_device_batch: int | None = None
    """Images per forward pass on one device."""
    grad_accum_steps: int | None = None
    """Micro-batches per optimizer step."""
    mixed_precision: str | None = None
    """Mixed precision in effect (no, bf16, fp16)."""


class Metrics(_Open):
    """metrics.json of a finished training run (written once, at the end, by rank 0)."""

    schema_version: int = LEGACY_VERSION
    """Contract version of the file (missing: 1)."""
    run_id: str | None = None
    """The run that wrote it (the reader refuses a copy in another run's folder; older files: None)."""
    test: Scores | None = None
    """Scores of the test split, of the checkpoint `tested` names."""
    val: Scores | None = None
    """Scores of the validation split, same checkpoint."""
    task: str | None = None
    """Task kind (single, hierarchical, multilabel)."""
    regime: str | None = None
    """Training regime."""
    best_epoch: int | None = None
    """Epoch of the best checkpoint (0: nothing trained)."""
    epochs_trained: int | None = None
    """Epochs run."""
    stopped_early: bool | None = None
    """Whether early stopping ended the run."""
    tables: list[str] = Field(default_factory=list)
    """CSV tables written beside this file."""
    complexity: Complexity | None = None
    """Parameters and FLOPs."""
    provenance: Provenance | None = None
    """Where and with what the run ran."""
    parallel: Parallel | None = None
    """How it was spread over devices."""
    timing: Timing | None = None
    """Time, speed and memory."""


def metrics_to_write(data: dict[str, Any]) -> dict[str, Any]:
    """The metrics.json object a training run writes: `data` checked against Metrics (a field of the
    wrong type is the trainer's bug, raised before anything is written) with the schema version.
    Written as given (not as dumped): the key order is the table's column order."""
    Metrics.model_validate(data)
    return {"schema_version": SCHEMA_VERSION, **data}


def eval_metrics_to_write(data: dict[str, Any]) -> dict[str, Any]:
    """The metrics.json object `orchestrate eval` writes, checked against EvalMetrics."""
    EvalMetrics.model_validate(data)
    return {"schema_version": SCHEMA_VERSION, **data}


class EvalMetrics(_Open):
    """metrics.json of `orchestrate eval` (eval/<name>/): the test scores of another dataset."""

    schema_version: int = LEGACY_VERSION
    """Contract version of the file (missing: 1)."""
    test: Scores
    """Scores of the evaluated split."""
    split: str
    """Which split of the dataset was scored."""
    dataset: dict[str, Any] = Field(default_factory=dict)
    """The dataset config scored (its `name` names it)."""
    checkpoint: str | None = None
    """Which checkpoint of the run was loaded (best, last...)."""
    checkpoint_epoch: int | None = None
    """Epoch of that checkpoint."""
    task: str
    """Task kind."""
    tables: list[str] = Field(default_factory=list)
    """CSV tables written beside this file."""


# Metrics that are fractions: a value outside [0, 1] is a broken value, not a score.
_FRACTIONS = ("top1", "top5", "f1", "precision", "recall", "exact_match", "accuracy")
_NUMBER_SECTIONS = (COMPLEXITY, TIMING)
"""Sections whose values are numbers or null, except the text keys below (gflops, wall_s, peaks...)."""
_TEXT_KEYS = frozenset(column(COMPLEXITY, k) for k in ("counter", "convention", "torch_version", "counted_on")) | {
    column(TIMING, "rss_scope")
}
_COUNTS = {NUM_PROCESSES: 1}
"""Integers that must be at least this much (a process count read from text was a traceback)."""
META_COLUMNS = ("run_id", "name", "ablation", "backbone", "dataset", "seed", "state", "in_plan", "path")
"""A run row's own columns (from the plan and status.json), before its metric columns."""
_RESERVED = frozenset(
    {*META_COLUMNS, "problem", "started_at", "finished_at", "pretrained_path", "retry_grad_accum_factor"}
)
"""Row columns a metrics.json key may not set (a top-level `state: completed` in it set the run's state)."""


def metric_values(data: dict[str, Any], run_ids: tuple[str | None, ...]) -> tuple[dict[str, Any], list[str]]:
    """metrics.json's object as flat typed values (`test.top1` -> 0.98) and its problems: another
    run's file (its `run_id` is none of `run_ids`), a newer schema, values that are not what they
    claim to be (left out, named). Top-level keys other than sections are not values."""
    problem = owner_problem(data, run_ids) or _version_problem(data, METRICS)
    if problem is not None:
        return {}, [problem]
    walked = _clean_walk(data)
    return walked if walked is not None else clean_metrics(flatten(data))


_FLAT_KEYS: dict[tuple[str, str], tuple[str, tuple[float, float] | None, bool]] = {}
"""(prefix, key) -> (flat key, its column's bounds, whether the key holds a `.`): 100,000 runs
repeat the same hundred keys (orjson hands them out as the same texts, so their hashes are kept)."""
_MAX_FLAT_KEYS = 65_536
"""Entries kept at most: a file of made-up keys is walked at full cost rather than grow it."""


def _clean_walk(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
    """clean_metrics(flatten(data)) in one walk, without building the flat dict (39 us against the two
    steps' 52 us for a trainer's metrics.json, for every run `collect` reads). None when a key holds
    a `.`: two paths may then flatten to one key, and the two steps settle which value is kept."""
    clean: dict[str, Any] = {}
    problems: list[str] = []
    return (clean, problems) if _walk_into(clean, problems, data, "") else None


def _walk_into(clean: dict[str, Any], problems: list[str], data: dict[str, Any], prefix: str) -> bool:
    for key, value in data.items():
        entry = _FLAT_KEYS.get((prefix, key)) or _flat_key(prefix, key)
        flat, bounds, dotted = entry
        kind = type(value)
        if dotted:
            return False
        if kind is dict:
            if not _walk_into(clean, problems, value, f"{flat}."):
                return False
        elif bounds is None or kind is list:
            continue  # no metric column (flatten leaves lists to their own files)
        elif kind is float and bounds[0] <= value <= bounds[1]:
            clean[flat] = value
        else:
            keep, stored, problem = _checked(flat, kind.__name__, value) if kind in _REPEATED else _check(flat, value)
            if keep:
                clean[flat] = stored
            else:
                problems.append(problem)
    return True


def _flat_key(prefix: str, key: str) -> tuple[str, tuple[float, float] | None, bool]:
    """The _FLAT_KEYS entry of a key under `prefix` (kept while there is room)."""
    flat = f"{prefix}{key}"
    entry = (flat, _column_rule(flat), "." in key)
    if len(_FLAT_KEYS) < _MAX_FLAT_KEYS:
        _FLAT_KEYS[(prefix, key)] = entry
    return entry


def owner_problem(data: dict[str, Any], run_ids: tuple[str | None, ...]) -> str | None:
    """A metrics.json that names another run: a copy of another run's file, whose numbers are not
    this run's. (Files written before metrics carried `run_id` name none and are taken as they are.)"""
    owner = data.get("run_id")
    if owner is None or owner in run_ids:
        return None
    return f"{METRICS}: written by run {_shown(owner)}, not by this run"


def _version_problem(data: dict[str, Any], name: str) -> str | None:
    version = data.get("schema_version", LEGACY_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and LEGACY_VERSION <= version <= SCHEMA_VERSION:
        return None
    return f"{name}: schema_version {_shown(version)} is not one this version reads (at most {SCHEMA_VERSION})"


def result_problem(data: dict[str, Any], run_ids: tuple[str | None, ...]) -> str | None:
    """Why a completed run's metrics.json cannot count as its result (another run's, a newer schema,
    a score that is not one, no test score at all), or None."""
    problem = owner_problem(data, run_ids) or _version_problem(data, METRICS)
    if problem is not None:
        return problem
    plain = _plain_scores(data)
    return plain if plain is not _UNSURE else _scores_problem(data)


def _scores_problem(data: dict[str, Any]) -> str | None:
    """result_problem's rule for the score sections, every value flattened and checked."""
    # Only the score sections are flattened (the whole file, every section, was most of `status`).
    sections = {k: v for k, v in data.items() if k.split(".", 1)[0] in SPLITS}
    scores = {k: v for k, v in flatten(sections).items() if k.split(".", 1)[0] in SPLITS}
    for key, value in scores.items():
        reason = _bad_value(key, value)
        if reason is not None:
            return f"{METRICS}: {key} = {_shown(value)} {reason}"
    return None if any(key.startswith(f"{TEST}.") for key in scores) else f"{METRICS} has no test scores"


_UNSURE = "unsure"
"""_plain_scores' answer when the full rule must decide."""
_SCORE_PREFIXES = tuple(f"{split}." for split in SPLITS)


def _plain_scores(data: dict[str, Any]) -> str | None:
    """result_problem's answer for the usual file, whose score sections hold numbers within their
    columns' bounds one level deep (the first `status` checks 100,000 of them: 5 us against 18 us
    for flattening and checking each); _UNSURE for anything else (a nested or dotted key, a value out of
    bounds or of another type), which the full rule names."""
    if any("." in key for key in data):
        return _UNSURE
    tested = False
    for section, prefix in zip(SPLITS, _SCORE_PREFIXES, strict=True):
        scores = data.get(section)
        if scores is None:
            continue
        if type(scores) is not dict:
            return _UNSURE
        for key, value in scores.items():
            _, bounds, dotted = _FLAT_KEYS.get((prefix, key)) or _flat_key(prefix, key)
            kind = type(value)
            if dotted or bounds is None or not (kind is float or kind is int) or not bounds[0] <= value <= bounds[1]:
                return _UNSURE
        tested = tested or (section == TEST and bool(scores))
    return None if tested else _UNSURE


def clean_metrics(flat: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Metric values typed by section: scores are finite numbers (fractions within [0, 1]),
    complexity and timing values numbers or null (a few text keys aside), the process count a
    positive integer, every number within MAX_VALUE; others dropped and named. Keys that would set
    a row's own columns (a top-level `state`) are dropped."""
    clean: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in flat.items():
        bounds = _column_rule(key)
        if bounds is None:
            continue  # the trainer writes sections only; a top-level key would set a row column
        kind = type(value)
        if kind is float and bounds[0] <= value <= bounds[1]:  # most values: settled by the column's bounds
            clean[key] = value
            continue
        # Text, integers, flags and nulls repeat across runs (versions, hosts, counts): checked once.
        keep, stored, problem = _checked(key, kind.__name__, value) if kind in _REPEATED else _check(key, value)
        if keep:
            clean[key] = stored
        else:
            problems.append(problem)
    return clean, problems


_REPEATED = frozenset({str, int, bool, type(None)})
"""Value types whose verdict clean_metrics remembers per (column, type, value): 10,000 runs repeat them."""


@functools.lru_cache(maxsize=4096)
def _column_rule(key: str) -> tuple[float, float] | None:
    """float_bounds of a metric column, or None for a key that is no metric column (no section, a
    row's own column, an axis)."""
    if "." not in key or key in _RESERVED or key.startswith("axis."):
        return None
    return float_bounds(key)


def _check(key: str, value: Any) -> tuple[bool, Any, str]:
    """(kept, the value stored, the problem when not kept) of one flat metric value."""
    reason = typed_reason(key, value)
    if reason is None:
        return True, float(value) if _is_number(value) and key not in _COUNTS else value, ""
    return False, None, f"{METRICS}: {key} = {_shown(value)} {reason}"


@functools.lru_cache(maxsize=65536)
def _checked(key: str, kind: str, value: Any) -> tuple[bool, Any, str]:
    """_check remembered; `kind` (the type's name) keeps 1, 1.0 and True apart (equal as dict keys)."""
    return _check(key, value)


def typed_reason(key: str, value: Any) -> str | None:
    """Why a flat metric value does not have its column's type (None: it does)."""
    kind = type(value)
    if kind is float or kind is int:  # the common case, settled by the column's bounds (bool is not int)
        low, high = _bounds(key)
        if low <= value <= high:
            return None
    section = key.split(".", 1)[0]
    if section in SPLITS:
        return _bad_value(key, value)
    if key in _COUNTS:
        ok = isinstance(value, int) and not isinstance(value, bool) and _COUNTS[key] <= value <= MAX_VALUE
        return None if ok or value is None else f"is not an integer of at least {_COUNTS[key]}"
    if section in _NUMBER_SECTIONS and key not in _TEXT_KEYS and value is not None:
        return _bad_value(key, value)
    if _is_number(value) and not (math.isfinite(value) and abs(value) <= MAX_VALUE):
        return "is not a finite number within 1e15"
    return None


def count_floor(column: str) -> int | None:
    """The least value of an integer count column (a process count), None for any other column."""
    return _COUNTS.get(column)


def float_bounds(column: str) -> tuple[float, float]:
    """[low, high]: a float within them is a valid value of a flat metric `column` (clean_metrics
    stores numbers as floats); anything else needs the column's full rule (typed_reason). A quick
    pre-check for re-validating 10,000 cached rows."""
    section = column.split(".", 1)[0]
    if column in _COUNTS:
        return math.inf, -math.inf  # integers: always the full rule
    if section in SPLITS:
        return 0.0, 1.0 if is_fraction(column) else MAX_VALUE
    if section in _NUMBER_SECTIONS and column not in _TEXT_KEYS:
        return 0.0, MAX_VALUE
    return -MAX_VALUE, MAX_VALUE


def metrics_model(values: dict[str, Any]) -> Metrics:
    """Flat values that passed `clean_metrics` as a Metrics (the typed view of one run's result)."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        *parents, leaf = key.split(".")
        level = nested
        for part in parents:
            child = level.setdefault(part, {})
            level = child if isinstance(child, dict) else {}
        level[leaf] = value
    try:
        return Metrics.model_validate(nested)
    except ValidationError:  # clean values type-check by construction; keep the scores regardless
        return Metrics()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@functools.lru_cache(maxsize=4096)
def _bounds(key: str) -> tuple[float, float]:
    """float_bounds of a column, remembered: 10,000 runs repeat the same hundred keys."""
    return float_bounds(key)


def _bad_value(key: str, value: Any) -> str | None:
    """Why a metric value is not a score (None: it is one)."""
    kind = type(value)
    if (kind is float or kind is int) and key.split(".", 1)[0] in SPLITS:
        low, high = _bounds(key)  # a score column's bounds are exactly this rule's
        if low <= value <= high:
            return None
    if not _is_number(value):
        return "is not a number"
    if not math.isfinite(value):
        return "is not finite"
    fraction = is_fraction(key)
    if fraction and not 0.0 <= value <= 1.0:
        return "is outside [0, 1]"
    if not fraction and value < 0:
        return "is negative"
    if abs(value) > MAX_VALUE:
        return "is larger than 1e15"
    return None


_LEAVES = (str, int, float, bool, type(None))


def flatten(data: dict[str, Any], prefix: str = "", keep_lists: bool = False) -> dict[str, Any]:
    """Nested dict -> {"a.b": scalar}; lists are left to their own files unless `keep_lists`."""
    out: dict[str, Any] = {}
    _flatten_into(out, data, prefix, keep_lists)
    return out


def _flatten_into(out: dict[str, Any], data: dict[str, Any], prefix: str, keep_lists: bool) -> None:
    """flatten, writing into one dict (no intermediate dict per level: 10,000 files of 14 levels)."""
    for key, value in data.items():
        if isinstance(value, dict):
            _flatten_into(out, value, f"{prefix}{key}.", keep_lists)
        elif keep_lists or isinstance(value, _LEAVES):
            out[f"{prefix}{key}"] = value


# ------------------------------------------------------------------------------------ history.csv


def _blank_none(value: Any) -> Any:
    """A CSV cell: empty is no value (the column belongs to another row's metrics)."""
    return None if value == "" else value


CsvFloat = Annotated[float | None, BeforeValidator(_blank_none)]


class HistoryRow(_Open):
    """One history.csv row (one finished epoch). Task- and selection-specific metrics
    (`val_super.top1`, `train_sub_loss`...) are extra keys."""

    epoch: int
    """Epoch number, from 1."""
    train_loss: CsvFloat = None
    """Mean training loss of the epoch."""
    val_loss: CsvFloat = None
    """Validation loss after the epoch."""
    val_top1: CsvFloat = None
    """Validation top-1 after the epoch, fraction."""
    val_macro_f1: CsvFloat = None
    """Validation macro F1 after the epoch, fraction."""
    lr: CsvFloat = None
    """Learning rate at the end of the epoch."""
    epoch_s: CsvFloat = None
    """Wall time of the epoch, seconds."""
    train_images_per_s: CsvFloat = None
    """Training images per second of the epoch, all processes together."""


def history_speed(row: dict[str, Any]) -> float | None:
    """A history row's training speed (images per second, within [MIN_IMAGES_PER_S, MAX_VALUE]); None when the row
    does not validate or records none."""
    try:
        speed = HistoryRow.model_validate(row).train_images_per_s
    except ValidationError:
        return None
    return speed if speed is not None and MIN_IMAGES_PER_S <= speed <= MAX_VALUE else None


# ------------------------------------------------------------------------------------ helpers


def _shown(value: Any, limit: int = 40) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{column(*map(str, error['loc']))}: {error['msg']}"
