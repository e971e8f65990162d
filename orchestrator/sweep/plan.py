"""Planner: a pure function from a sweep spec to the ordered list of runs.

Order is backbone x dataset x ablation row x other axes x seed, each in spec
order, so the same spec always gives the same runs in the same order. A run's
id is a short content hash of its fully resolved trainer config: resubmitting a
sweep finds finished runs by id, whatever else changed in the file.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from orchestrator.sweep import gcpause, warm_memo
from orchestrator.sweep.overrides import apply_dotted
from orchestrator.sweep.spec import AXIS_ALIASES, SpecError, SweepSpec, validate_train
from trainers.config import TrainConfig

RUN_ID_CHARS = 12
# TrainConfig fields (dotted paths) outside a run's identity, each with why: they feed, speed up,
# watch or save the run, never change what it computes. Every other field is hashed (docs "Run
# identity" lists the decisions). Evidence: tests/training/test_resume_steps.py trains bit for bit the same
# with 0 and 2 loader workers; tests/unit/trainers/test_image_cache.py the same with and without the image cache.
NOT_HASHED: dict[str, str] = {
    "data.num_workers": "loader processes: order and augmentation are seeded per (seed, epoch, image)",
    "data.pin_memory": "page-locked host copies: the same tensors reach the device",
    "data.persistent_workers": "whether loader workers outlive an epoch: same per-image seeds",
    "data.prefetch_factor": "batches loaded ahead: the same batches",
    "data.cache_max_mib": "decoded-image cache: the same pixels",
    "data.dataset.max_bad_fraction": "when unreadable images fail a run; a run that finishes read the same images",
    "torch_threads": "CPU threads: the same computation (float summation order aside)",
    "channels_last": "memory layout: the same computation (kernel choice aside)",
    "compile": "torch.compile: the same graph, fused (kernel choice aside)",
    "trackers": "who watches the run",
    "checkpoint_every_min": "how often it saves (resume is exact)",
    "distributed.grad_accum_steps": "micro-batches per optimizer step: the same effective batch (BatchNorm "
    "statistics over the smaller micro-batch aside); a retry after a CUDA out-of-memory error doubles it",
}
_MAIN_AXES = ("backbone", "dataset", "seed")


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One cell of the grid: what to train and where it belongs in the tables."""

    run_id: str
    """Content hash of `config` (12 hex characters)."""
    name: str
    """Readable name, e.g. `resnet18/digits/+aug/s0`."""
    ablation: str
    """Ablation row (table row) this run belongs to."""
    backbone: str
    dataset: str
    """Dataset label as shown in table columns."""
    seed: int
    config: TrainConfig
    axes: dict[str, Any] = field(default_factory=dict)
    """Values of the extra grid axes (dotted key -> value)."""

    def metadata(self) -> dict[str, Any]:
        """Plan facts recorded beside the config in the run folder."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "ablation": self.ablation,
            "backbone": self.backbone,
            "dataset": self.dataset,
            "seed": self.seed,
            "axes": self.axes,
        }


@dataclass(frozen=True)
class _Resolved:
    """The last validated cell: its input values, config and hashed (non-default) values."""

    values: dict[str, Any]
    config: TrainConfig
    parts: list[tuple[str, str]]
    """The canonical JSON of the hashed values, top-level key by key (sorted), without `seed`."""
    around_seed: tuple[str, str] = ("", "")
    """The canonical JSON of `parts` with a seed, cut where the seed goes: (before, after)."""

    @staticmethod
    def of(values: dict[str, Any], config: TrainConfig, parts: list[tuple[str, str]]) -> _Resolved:
        """The cell with its canonical JSON cut around the seed (so a reseeded id is one hash)."""
        before = [f"{json.dumps(k)}:{v}" for k, v in parts if k < "seed"]
        after = [f"{json.dumps(k)}:{v}" for k, v in parts if k > "seed"]
        head = "{" + "".join(f"{item}," for item in before)
        return _Resolved(values, config, parts, (head, "".join(f",{item}" for item in after) + "}"))


_SEED_DEFAULT = TrainConfig.model_fields["seed"].default


def _only_seed_differs(values: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two cells' input values are equal but for an integer `seed` (dict equality runs in C)."""
    seed = values.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or values.keys() != other.keys():
        return False
    return all(values[key] == other[key] for key in values if key != "seed")


def _reseeded(cell: _Cell, previous: _Resolved) -> tuple[RunSpec, _Resolved]:
    """The previous cell's run with this cell's seed: same validated config otherwise (frozen, shared)."""
    seed = cell.values["seed"]
    config = previous.config.model_copy(update={"seed": seed})
    if seed != _SEED_DEFAULT:  # a default seed is not hashed (exclude_defaults)
        head, tail = previous.around_seed
        run_id = hashlib.sha256(f'{head}"seed":{seed}{tail}'.encode()).hexdigest()[:RUN_ID_CHARS]
    else:
        run_id = _digest_parts(previous.parts)
    run = RunSpec(
        run_id=run_id,
        name=cell.name,
        ablation=cell.ablation,
        backbone=config.model.backbone,
        dataset=config.data.dataset.display_name,
        seed=seed,
        config=config,
        axes=cell.axes,
    )
    return run, _Resolved(cell.values, config, previous.parts, previous.around_seed)


def _hashed(config: TrainConfig) -> dict[str, Any]:
    """What a run id hashes: the values that differ from the defaults, less NOT_HASHED."""
    return _without_not_hashed(config.model_dump(mode="json", exclude_defaults=True), NOT_HASHED)


def _digest(hashed: dict[str, Any]) -> str:
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:RUN_ID_CHARS]


def _json_parts(hashed: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, JSON of its value) of the top level, sorted, without `seed`: _digest_parts of these
    (plus a seed) is _digest of the dict, byte for byte."""
    return sorted((k, json.dumps(v, sort_keys=True, separators=(",", ":"))) for k, v in hashed.items() if k != "seed")


def _digest_parts(parts: list[tuple[str, str]]) -> str:
    canonical = "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in parts) + "}"
    return hashlib.sha256(canonical.encode()).hexdigest()[:RUN_ID_CHARS]


def run_id_of(config: TrainConfig) -> str:
    """Short, stable content hash of a resolved config.

    Only values that differ from the defaults are hashed, so a new config field (added with a
    default that keeps the old behaviour) leaves every existing run id, and so every finished
    run of a study, as it was. The other side of that bargain: a default never changes
    (tests/unit/sweep/test_plan.py pins them). Fields that cannot change what a run learns (which trackers
    watch it, how often it saves) are not hashed: switching them on never retrains a study.
    """
    return _digest(_hashed(config))


def run_id_of_recorded(trainer: dict[str, Any]) -> str:
    """Today's run id of a trainer config as a run folder recorded it (the full dump of any earlier
    version); ValidationError when it is not a valid config. Settings outside the id are dropped
    first, so one this version would refuse (a tracker not installed here) does not matter."""
    kept = _without_not_hashed(copy.deepcopy(trainer), NOT_HASHED)
    return run_id_of(TrainConfig.model_validate(kept))


def _without_not_hashed(changed: dict[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """`changed` less each of `paths`, and less a section left empty by that alone (so setting
    only `data.cache_max_mib` hashes like setting nothing)."""
    for path in paths:
        _drop(changed, path.split("."))
    return changed


def _drop(tree: dict[str, Any], keys: list[str]) -> None:
    """Delete tree[k0][k1]...[kn] if present, then each section it leaves empty."""
    head, *rest = keys
    if not rest:
        tree.pop(head, None)
        return
    section = tree.get(head)
    if isinstance(section, dict):
        _drop(section, rest)
        if not section:
            del tree[head]


def plan(spec: SweepSpec) -> list[RunSpec]:
    """Every run of the sweep, in stable order. Pure: no I/O.

    Seeds are the innermost loop and the only difference between consecutive cells of one row:
    such a cell is the previous config with its seed replaced (`model_copy`, sharing the frozen
    sub-configs) instead of a fresh validation, and its id the previous hashed values with the
    seed replaced. 50,000 runs planned in seconds and a few hundred MB rather than 27 s and 1.2 GB;
    the ids are the same (tests/golden/golden_run_ids.json)."""
    key = _memo_key(spec) if warm_memo.active() else None
    if key is not None:
        kept = warm_memo.recall("plan", key, True)
        if kept is not None:  # the warm process planned this very spec before it forked this process
            return list(kept)
    with gcpause.paused_gc():
        runs = _plan(spec)
    if key is not None:
        warm_memo.keep("plan", key, True, runs, len(runs))
    return runs


def _memo_key(spec: SweepSpec) -> str | None:
    """Every field of the spec, which is all plan() reads (None: a spec that does not dump)."""
    try:
        return spec.model_dump_json(round_trip=True)
    except Exception:
        return None


def _plan(spec: SweepSpec) -> list[RunSpec]:
    runs: list[RunSpec] = []
    seen: dict[str, RunSpec] = {}
    where = str(spec.source or spec.name)
    previous: _Resolved | None = None
    for cell in _cells(spec):
        if previous is not None and (cell.reseeded or _only_seed_differs(cell.values, previous.values)):
            run, previous = _reseeded(cell, previous)
        else:
            config = validate_train(cell.values, where, f"run {cell.name}")
            run = _make_run(cell, config)
            previous = _Resolved.of(cell.values, config, _json_parts(_hashed(config)))
        first = seen.setdefault(run.run_id, run)
        if first is not run:
            why = "two ablation rows or grid values are identical"
            if first.config != run.config:
                why = f"they differ only in settings outside the run id ({', '.join(NOT_HASHED)})"
            raise SpecError(f"{where}: runs {first.name!r} and {run.name!r} resolve to the same config; {why}")
        runs.append(run)
    return runs


def id_rule() -> str:
    """Fingerprint of the run-id rule (the hashed length and the fields left out): a cache of ids
    computed under another rule is stale."""
    text = json.dumps([RUN_ID_CHARS, sorted(NOT_HASHED)])
    return hashlib.sha256(text.encode()).hexdigest()[:RUN_ID_CHARS]


@dataclass
class _Cell:
    name: str
    ablation: str
    values: dict[str, Any]
    axes: dict[str, Any]
    reseeded: bool = False
    """The previous cell's values with another integer seed (known by construction: no comparison)."""


def _cells(spec: SweepSpec) -> Iterator[_Cell]:
    """Resolved config dicts of all cells: defaults <- grid values <- modifiers of the row."""
    validated = TrainConfig.model_validate(spec.defaults)
    defaults = validated.model_dump()
    defaults["data"]["dataset"] = validated.data.dataset.dump_with_hints()  # its label_shape too
    backbones = spec.grid.get("backbone", [defaults["model"]["backbone"]])
    datasets = spec.grid.get("dataset", [defaults["data"]["dataset"]])
    seeds = spec.grid.get("seed", [defaults["seed"]])
    if spec.seeds is not None:  # adaptive: every seed up to max; a round runs those scheduled so far
        seeds = list(range(spec.seeds.max))
    extra = {k: v for k, v in spec.grid.items() if k not in _MAIN_AXES}
    for backbone, dataset in itertools.product(backbones, datasets):
        base = apply_dotted(defaults, {"model.backbone": backbone, AXIS_ALIASES["dataset"]: dataset})
        base = apply_dotted(base, spec.per_backbone.get(backbone, {}))
        for row, modifier_names in spec.ablations.items():
            # A row whose modifiers leave the seed alone differs between its seeds by the seed alone.
            fixed_seed = any(key.split(".")[0] == "seed" for m in modifier_names for key in spec.modifiers[m])
            for combo in itertools.product(*extra.values()):
                axes = dict(zip(extra, combo, strict=True))
                first: dict[str, Any] | None = None
                for seed in seeds:
                    if first is not None and _plain_int(seed):
                        values = {**first, "seed": seed}  # what apply_dotted gives, without its copies
                        yield _Cell(_run_name(values, modifier_names, axes, seed), row, values, axes, True)
                        continue
                    values = apply_dotted(base, {**axes, "seed": seed})
                    for name in modifier_names:
                        values = apply_dotted(values, spec.modifiers[name])
                    first = values if _plain_int(seed) and not fixed_seed else None
                    yield _Cell(_run_name(values, modifier_names, axes, seed), row, values, axes)


def _plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _run_name(values: dict[str, Any], modifiers: list[str], axes: dict[str, Any], seed: int) -> str:
    dataset = values["data"]["dataset"]
    dataset_name = dataset if isinstance(dataset, str) else dataset.get("label") or dataset.get("name")
    parts = [str(values["model"]["backbone"]), str(dataset_name)]
    parts.append("".join(f"+{m}" for m in modifiers) or "base")
    parts.extend(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in axes.items())
    parts.append(f"s{seed}")
    return "/".join(parts)


def _make_run(cell: _Cell, config: TrainConfig) -> RunSpec:
    return RunSpec(
        run_id=run_id_of(config),
        name=cell.name,
        ablation=cell.ablation,
        backbone=config.model.backbone,
        dataset=config.data.dataset.display_name,
        seed=config.seed,
        config=config,
        axes=cell.axes,
    )


def smoke_variant(config: TrainConfig) -> TrainConfig:
    """The same cell shrunk to a few batches on a small subset: checks a grid before cluster hours.

    The loader settings stay the run's (workers, start method, pinned memory): a dataset or transform
    that cannot go to a worker process, or a node whose shared memory is too small, fails the smoke
    run as it would fail the real one."""
    batch = min(config.data.batch_size, 16)
    changes = {
        "epochs": 1,
        "max_steps_per_epoch": 2,
        "data.batch_size": batch,
        "data.dataset.max_samples": batch * 4,
    }
    return TrainConfig.model_validate(apply_dotted(config.model_dump(), changes))


def smoke_plan(runs: list[RunSpec]) -> list[RunSpec]:
    """Smoke variants of planned runs (their own ids, so they never count as the real runs)."""
    out = []
    for run in runs:
        config = smoke_variant(run.config)
        out.append(dataclasses.replace(run, run_id=run_id_of(config), config=config))
    return out


def smoke_seeds(spec: SweepSpec, runs: list[RunSpec]) -> list[RunSpec]:
    """The planned runs whose smoke variants `submit --smoke` runs: all of them; with adaptive seeds,
    the first round's seeds (submit, status and collect agree on what a smoke sweep holds)."""
    return runs if spec.seeds is None else [run for run in runs if run.seed < spec.seeds.initial]
