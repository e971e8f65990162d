"""Sweep spec: one YAML file describing a whole study, validated into typed models.

    name, output_dir, defaults (a TrainConfig), grid (axes), modifiers (named
    overrides), ablations (ordered table rows), slurm (resources)

Errors are one line: `sweeps/x.yaml: defaults.optim.lrr: unknown key; valid keys: ...`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
)

from orchestrator import textsafe
from orchestrator.sweep import paths, site, values, yamlio
from orchestrator.sweep.errors import (
    CONTROL,
    SpecError,
    describe_error,
    did_you_mean,
    error_parts,
    one_line,
    short,
    yaml_reason,
)
from orchestrator.sweep.overrides import apply_dotted, apply_overrides, check_axes_apart, check_written_once, nested
from orchestrator.sweep.retry import RetryPolicy
from orchestrator.sweep.seeds import AdaptiveSeeds
from orchestrator.sweep.site import SlurmConfig
from orchestrator.sweep.spec_tables import (
    SAFE_NAME,
    BudgetSpec,
    CleanupSpec,
    TableSpec,
    unique_table_names,
)
from trainers.config import StrictModel, TrainConfig

# Grid axes with a short name; every other axis is a dotted TrainConfig key.
AXIS_ALIASES: dict[str, str] = {
    "backbone": "model.backbone",
    "dataset": "data.dataset",
    "seed": "seed",
}
MAX_LABEL_CHARS = 80
MAX_RUNS = 50_000
"""Default cap on the runs one sweep may plan (`--max-runs` lifts it): a grid typo must not queue 600,000 jobs."""


class SweepSpec(StrictModel):
    """A whole study: the grid of runs and how they are run and tabulated."""

    name: str
    """Sweep name; results go to `results/<name>/` unless output_dir says otherwise."""
    output_dir: str | None = None
    """Where run folders, logs and tables go; relative to the spec file's folder (never the working
    directory); default `results/<name>` beside the spec file."""
    defaults: dict[str, Any] = {}
    """The trainer config every run starts from (see trainers/config.py)."""
    grid: dict[str, list[Any]] = {}
    """Axes: backbone, dataset, seed, or any dotted trainer key; runs = product of the axes."""
    modifiers: dict[str, dict[str, Any]] = {}
    """Named config overrides (dotted keys), switched on by ablation rows."""
    per_backbone: dict[str, dict[str, Any]] = {}
    """Dotted trainer overrides for every cell of one backbone (its GPUs, batch size, input size...)."""
    ablations: dict[str, list[str]] = {"Baseline": []}
    """Ordered table rows, each a list of modifier names; the first row is the baseline."""
    slurm: SlurmConfig = SlurmConfig()
    """Job resources."""
    site: str | None = None
    """Site file naming dataset roots and checkpoints (`site:NAME` references); relative to the spec."""
    tables: Annotated[list[TableSpec], AfterValidator(unique_table_names)] = Field(
        default_factory=lambda: [TableSpec()]
    )
    """Tables `collect` writes (metric, rows, columns, formats); default: one top-1 table named `table`."""
    budget: BudgetSpec | None = None
    """Compute budget against the baseline row: checked by `plan` and `profile`, marked in tables."""
    seeds: AdaptiveSeeds | None = None
    """Adaptive seeds instead of `grid.seed`: more seeds where a delta is unresolved (orchestrator/sweep/seeds.py)."""
    cleanup: CleanupSpec = Field(default_factory=lambda: CleanupSpec())
    """What finished runs keep on disk (not part of any run id): resume state, smoke checkpoints."""
    retry: RetryPolicy = Field(default_factory=lambda: RetryPolicy())
    """How failed runs are retried by failure class, and when a node is quarantined (not part of any run id)."""

    _source: Path | None = PrivateAttr(default=None)
    _overrides: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not SAFE_NAME.fullmatch(value) or ".." in value:
            raise ValueError(
                f"{short(value)} must be letters, digits, '_', '-', '.', without '/' or '..', at most 64 characters"
            )
        return value

    @field_validator("output_dir")
    @classmethod
    def _safe_output(cls, value: str | None) -> str | None:
        if value is not None:
            check_output_dir(value)
        return value

    @field_validator("grid")
    @classmethod
    def _axes_not_empty(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for axis, axis_values in value.items():
            if not axis_values:
                raise ValueError(f"axis {axis!r} has no values")
        return value

    @field_validator("ablations")
    @classmethod
    def _rows(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value:
            raise ValueError("needs at least one row (the baseline)")
        for row in value:
            _check_label(row, "ablation row")
        return value

    @field_validator("modifiers")
    @classmethod
    def _modifier_names(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name in value:
            _check_label(name, "modifier")
        return value

    @property
    def source(self) -> Path | None:
        """The YAML file this spec was loaded from."""
        return self._source

    @property
    def overrides(self) -> tuple[str, ...]:
        """Command-line `key=value` overrides applied before validation."""
        return self._overrides

    @property
    def output_path(self) -> Path:
        """Absolute output folder of the sweep: the path the output_dir check saw (paths.output_folder:
        `~` expanded, symlinks resolved), so the folder checked is the folder written. A relative one
        is relative to the spec file's folder, so every command finds it from any working directory."""
        value = self.output_dir or f"results/{self.name}"
        base = self._source.parent if self._source is not None else None
        try:
            return paths.output_folder(value, base)
        except ValueError as exc:
            where = self._source or self.name
            raise SpecError(f"{where}: output_dir: {short(value)} {one_line(str(exc), 200)}") from None

    def snapshot(self) -> dict[str, Any]:
        """The spec as run (overrides applied), with its origin, for `sweep.yaml`."""
        data = self.model_dump(mode="json")
        data["output_dir"] = str(self.output_path)
        return {"spec": data, "source": str(self._source), "overrides": list(self._overrides)}


def _check_label(name: str, what: str) -> None:
    """Names that end up in run names, tables and the terminal: no path tricks, no control characters,
    no bidi or zero-width characters (they make a name display as another)."""
    unsafe = textsafe.first_unsafe(name)
    if unsafe is not None:
        raise ValueError(f"{unsafe} in {what} name {short(name)}: invisible or reordering characters are refused")
    bad = "/" in name or ".." in name or ";" in name or "`" in name or "$(" in name or CONTROL.search(name)
    if bad or not name.strip() or len(name) > MAX_LABEL_CHARS:
        raise ValueError(
            f"{what} name {short(name)} must be non-empty, at most {MAX_LABEL_CHARS} characters, "
            "without '/', '..', ';', '`', '$(', newlines or other control characters"
        )


def check_output_dir(value: str) -> None:
    """An output folder: plain path characters, and not `/`, a system folder or the home folder itself
    (a relative one is checked against the spec file's folder by `load_spec`, through output_path)."""
    if not paths.SAFE_PATH.fullmatch(value):
        raise ValueError(f"{short(value)} may hold only {paths.SAFE_PATH_CHARS} (it reaches sbatch)")
    if not Path(value).expanduser().is_absolute():
        return
    try:
        paths.output_folder(value)
    except ValueError as exc:
        raise ValueError(f"{short(value)} {one_line(str(exc), 200)}") from None


def load_spec(path: str | Path, overrides: Sequence[str] = (), max_runs: int | None = MAX_RUNS) -> SweepSpec:
    """Read, override and validate a sweep file; every problem is a one-line SpecError.

    `max_runs` caps the runs the grid may expand to (None: no cap); it is checked before any
    run is built, so a 600,000-run grid is refused at once.
    """
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such sweep file")
    if path.is_dir():
        raise SpecError(f"{path}: is a folder, not a sweep file")
    try:
        text = yamlio.read_text(path, "sweep file")
    except yamlio.YamlFileError as exc:
        raise SpecError(str(exc)) from None
    try:
        raw = yamlio.loads(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: invalid YAML: {yaml_reason(exc)}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: top level must be a mapping with keys {', '.join(SweepSpec.model_fields)}")
    check_written_once(raw, str(path))
    try:
        raw = apply_overrides(raw, overrides)
    except ValueError as exc:
        raise SpecError(f"{path}: override {exc}") from None
    try:
        raw = site.resolve(raw, path)
    except site.SiteError as exc:
        raise SpecError(f"{path}: {exc}") from None
    spec = spec_from_dict(raw, where=str(path), max_runs=max_runs)
    spec._source = path.resolve()
    _ = spec.output_path  # the output folder checked now, against the spec's folder (SpecError)
    spec._overrides = tuple(overrides)
    return spec


def spec_from_dict(raw: Mapping[str, Any], where: str, max_runs: int | None = MAX_RUNS) -> SweepSpec:
    """Validate a parsed spec (structure, run count, then every default, modifier and grid value)."""
    wrong = values.not_a_number(raw, SweepSpec)
    if wrong is not None:
        raise SpecError(f"{where}: {wrong[0]}: {wrong[1]}, not a number")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{where}: {describe_error(exc, SweepSpec)}") from None
    try:
        values.check_values(raw)
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from None
    check_run_count(spec, where, max_runs)
    _check_adaptive(spec, where)
    _check_trainer_parts(spec, where)
    return spec


def _check_adaptive(spec: SweepSpec, where: str) -> None:
    """`seeds:` replaces `grid.seed`, and its `table` names a table of the spec."""
    if spec.seeds is None:
        return
    if "seed" in spec.grid:
        raise SpecError(f"{where}: seeds: adaptive seeds replace grid.seed; remove one of them")
    names = [table.name for table in spec.tables]
    if spec.seeds.table is not None and spec.seeds.table not in names:
        raise SpecError(f"{where}: seeds.table: {spec.seeds.table!r} is not a table of the spec ({', '.join(names)})")


def run_count(spec: SweepSpec) -> int:
    """How many runs the spec expands to (product of the grid axes times ablation rows), without building them."""
    seeds = spec.seeds.max if spec.seeds is not None else 1
    return math.prod(len(axis) for axis in spec.grid.values()) * len(spec.ablations) * seeds


def check_run_count(spec: SweepSpec, where: str, max_runs: int | None) -> None:
    """SpecError when the grid expands to more than `max_runs` runs (None: no cap)."""
    count = run_count(spec)
    if max_runs is not None and count > max_runs:
        axes = " x ".join(f"{len(v)} {k}" for k, v in spec.grid.items())
        raise SpecError(
            f"{where}: grid: {count:,} runs ({axes} x {len(spec.ablations)} ablation rows) exceed the cap of "
            f"{max_runs:,}; check the grid, or pass --max-runs {count} if you mean it"
        )


def _check_trainer_parts(spec: SweepSpec, where: str) -> None:
    """Validate defaults, each modifier and each grid value against TrainConfig, naming the YAML path."""
    _no_bools(spec.defaults, where, "defaults.")
    base = validate_train(spec.defaults, where, "defaults")
    base_dict = base.model_dump()
    for name, changes in spec.modifiers.items():
        _no_bools(apply_dotted({}, changes), where, f"modifiers.{name}.")
        validate_train(apply_dotted(base_dict, changes), where, f"modifiers.{name}", changes)
    backbones = spec.grid.get("backbone", [base.model.backbone])
    for backbone, changes in spec.per_backbone.items():
        if backbone not in backbones:
            known = one_line(", ".join(str(b) for b in backbones), 200)
            hint = did_you_mean(backbone, [str(b) for b in backbones])
            raise SpecError(f"{where}: per_backbone.{backbone}: not a backbone of the grid{hint} ({known})")
        _no_bools(apply_dotted({}, changes), where, f"per_backbone.{backbone}.")
        validate_train(apply_dotted(base_dict, changes), where, f"per_backbone.{backbone}", changes)
    for row, names in spec.ablations.items():
        unknown = [m for m in names if m not in spec.modifiers]
        if unknown:
            valid = ", ".join(spec.modifiers) or "(none defined)"
            hint = did_you_mean(unknown[0], spec.modifiers)
            raise SpecError(f"{where}: ablations.{row}: unknown modifier {unknown[0]!r}{hint}; defined: {valid}")
    for axis in spec.grid:
        _check_axis_name(axis, where)
    check_axes_apart(spec.grid, AXIS_ALIASES, where)
    for axis, axis_values in spec.grid.items():
        key = AXIS_ALIASES.get(axis, axis)
        if key in PLAIN_INT_FIELDS and all(type(v) is int for v in axis_values):
            axis_values = axis_values[:1]  # any int is valid, and no validator reads it: one config says so
        shown: dict[str, int] = {}
        for index, value in enumerate(axis_values):
            found = values.not_a_number(nested(key, value), TrainConfig)
            if found is not None:
                inner = found[0].removeprefix(key).lstrip(".")
                field = f"grid.{axis}[{index}]{'.' + inner if inner else ''}"
                raise SpecError(f"{where}: {field}: {found[1]}, not a number")
            config = validate_train(apply_dotted(base_dict, {key: value}), where, f"grid.{axis}[{index}]", {key: value})
            text = config.data.dataset.display_name if key == "data.dataset" else values.display(value)
            _check_shown(shown, text, axis_values, (axis, index), where)


def _check_shown(shown: dict[str, int], text: str, axis_values: list[Any], at: tuple[str, int], where: str) -> None:
    """Two values of a grid axis that tables show alike (as `text`; `shown`: the first value shown
    so, by text) would be one table cell: its seeds pooled twice over, its delta compared unpaired."""
    axis, index = at
    first = shown.setdefault(text, index)
    if first == index:
        return
    if axis_values[first] == axis_values[index]:
        raise SpecError(f"{where}: grid.{axis}[{index}]: repeats grid.{axis}[{first}]")
    how = "give each a distinct `label`" if axis == "dataset" else f"sweep what differs as an axis (grid.{axis}.<key>)"
    field = f"grid.{axis}[{index}]"
    raise SpecError(f"{where}: {field}: tables would show it as {short(text)}, like grid.{axis}[{first}]; {how}")


PLAIN_INT_FIELDS = ("seed",)
"""TrainConfig fields typed plain `int` that no validator reads (tests/unit/sweep pins both): an axis
of ints there is valid when its first value is, so the seeds of a 100,000-run sweep are not
validated as 16,667 whole configs (1.5 s of every plan, status and collect)."""


def _check_axis_name(axis: str, where: str) -> None:
    """A grid axis is a short name (backbone, dataset, seed) or starts with a trainer config field:
    a typo gets the nearest of those, not the trainer's field list."""
    if axis in AXIS_ALIASES or axis.split(".", 1)[0] in TrainConfig.model_fields:
        return
    hint = did_you_mean(axis, [*AXIS_ALIASES, *TrainConfig.model_fields])
    valid = ", ".join(AXIS_ALIASES)
    raise SpecError(f"{where}: grid.{one_line(axis, 40)}: unknown axis{hint}; axes are {valid} or a dotted trainer key")


def _no_bools(data: Mapping[str, Any], where: str, field: str) -> None:
    """SpecError when a boolean or a string stands where the trainer config wants a number (`lr: yes`, `lr: "inf"`)."""
    found = values.not_a_number(data, TrainConfig)
    if found is not None:
        raise SpecError(f"{where}: {field}{found[0]}: {found[1]}, not a number")


def validate_train(
    data: Mapping[str, Any], where: str, field: str, changes: Mapping[str, Any] | None = None
) -> TrainConfig:
    """TrainConfig from a dict, or a SpecError naming `field` (and the offending key inside it)."""
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        path, message = error_parts(exc, TrainConfig)
        if not path:  # a rule across fields (e.g. batch size vs processes): its message names them
            raise SpecError(f"{where}: {field}: {message}") from None
        if changes is not None and not _touches(exc, changes):
            raise SpecError(f"{where}: {field}: conflicts with defaults.{path}: {message}") from None
        if field.startswith("grid."):
            # The field names the axis already: `grid.model.head_dropout[1]`, plus any key inside the value.
            key = next(iter(changes or {}), "")
            inner = path.removeprefix(key).lstrip(".")
            raise SpecError(f"{where}: {field}{'.' + inner if inner else ''}: {message}") from None
        raise SpecError(f"{where}: {field}.{path}: {message}") from None


def _touches(exc: ValidationError, changes: Mapping[str, Any]) -> bool:
    """Whether the first error lies under one of the changed dotted keys."""
    loc = ".".join(str(p) for p in exc.errors()[0]["loc"])
    return any(loc == key or loc.startswith(f"{key}.") or key.startswith(f"{loc}.") for key in changes)


SweepSpec.model_rebuild()

__all__ = [
    "AXIS_ALIASES",
    "BudgetSpec",
    "CleanupSpec",
    "SlurmConfig",
    "SpecError",
    "SweepSpec",
    "TableSpec",
    "load_spec",
    "nested",
]
