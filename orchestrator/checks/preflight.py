"""Preflight: every check that can run before submission, in one place.

A job that waits hours in a queue must not die on a typo: `plan` and `submit` run these
before anything is queued. Checks fail closed: a check that could not run is an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import ValidationError

from orchestrator import store
from orchestrator.sweep import backbones, templates
from orchestrator.sweep.errors import SpecError, short
from orchestrator.sweep.plan import RunSpec
from orchestrator.sweep.spec import SweepSpec
from trainers import rules
from trainers.config import DatasetConfig


def check(spec: SweepSpec, runs: Sequence[RunSpec], where: str, data: bool = True) -> None:
    """Everything `plan` checks before it shows the plan (files on disk unless `data` is False)."""
    check_rules(runs, where)
    check_backbones(spec, runs, where)
    check_output(spec, where)
    check_templates(spec, where)
    if data:
        check_files(runs, where)
        check_datasets(spec, runs, where)


def warnings(spec: SweepSpec, where: str) -> list[str]:
    """What `plan` says without refusing: one line per thing that runs but will disappoint."""
    found = []
    seeds = spec.grid.get("seed")
    if spec.seeds is None and (seeds is None or len(seeds) < 2):  # adaptive seeds start at 2 or more
        what = "no seed axis" if seeds is None else f"one seed ({short(seeds[0])})"
        found.append(
            f"{where}: grid.seed: {what}: one run per cell, so its tables will have no interval and no "
            "paired test; add seeds, e.g. `seed: [0, 1, 2]` under `grid:`"
        )
    return found


def check_output(spec: SweepSpec, where: str) -> None:
    """The output folder can be a folder, and holds no file of the user's that a submit would replace."""
    root = spec.output_path
    for folder in (root, *root.parents):
        if folder.exists():
            if not folder.is_dir():
                raise SpecError(f"{where}: output_dir: {folder} is a file, not a folder")
            break
    foreign = store.foreign_snapshot(root)
    if foreign is not None:
        raise SpecError(
            f"{where}: output_dir: {foreign} exists and was not written by orchestrate (your own file?); "
            "move it or pick another output_dir: submit would replace it"
        )


def check_templates(spec: SweepSpec, where: str) -> None:
    """Custom table templates are template files in the spec file's folder (orchestrator.sweep.templates)
    and valid Jinja."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    for table in spec.tables:
        if table.template is None:
            continue
        field = f"tables.{table.name}.template"
        try:
            root, name, owner = templates.user_template(spec.source, table.template)
            ImmutableSandboxedEnvironment().parse(templates.read_template(root, name, owner))
        except templates.TemplateFileError as exc:
            raise SpecError(f"{where}: {field}: {exc}") from None
        except jinja2.TemplateSyntaxError as exc:
            raise SpecError(f"{where}: {field}: {root / name} line {exc.lineno}: {exc.message}") from None


def check_backbones(spec: SweepSpec, runs: Sequence[RunSpec], where: str) -> None:
    """Backbone names (and `name.tag`s) against the installed timm's models, and image sizes against
    the patch size of models built on a patch grid (a ViT at 225 px would drop a pixel row and column):
    torch-free, from the table of orchestrator/sweep/backbones.py. Fails closed: no table for the
    installed timm is an error that says how to make one."""
    try:
        table = backbones.load()
    except backbones.BackboneTableError as exc:
        raise SpecError(f"{where}: {exc}") from None
    seen: set[tuple[str, int]] = set()
    for run in runs:
        name, size = run.config.model.backbone, run.config.data.image_size_px
        if (name, size) in seen:
            continue
        seen.add((name, size))
        problem = table.problem(name)
        if problem is not None:
            raise SpecError(f"{where}: {_backbone_origin(spec, run)}: {short(name)} {problem}")
        patch = table.patch(name)
        if patch and size % patch:
            lower = size // patch * patch
            fits = f"{lower} or {lower + patch}" if lower else f"{patch}"
            raise SpecError(
                f"{where}: run {run.name}: data.image_size_px {size} is not a multiple of {name}'s {patch} px "
                f"patch (the last {size % patch} px of each row and column would be dropped); use {fits}"
            )


def _backbone_origin(spec: SweepSpec, run: RunSpec) -> str:
    """The spec field a run's backbone comes from: a grid value, a modifier, or the defaults."""
    name = run.config.model.backbone
    for index, value in enumerate(spec.grid.get("backbone", [])):
        if value == name:
            return f"grid.backbone[{index}]"
    for modifier in spec.ablations.get(run.ablation, []):
        if spec.modifiers.get(modifier, {}).get("model.backbone") == name:
            return f"modifiers.{modifier}.model.backbone"
    if "backbone" not in spec.grid:
        return "defaults.model.backbone"
    return f"run {run.name}: model.backbone"


def check_rules(runs: Sequence[RunSpec], where: str) -> None:
    """The trainer's pure-config rules (trainers.rules) for every run: what would fail on the node."""
    for run in runs:
        try:
            rules.check_config(run.config)
        except ValueError as exc:
            raise SpecError(f"{where}: run {run.name}: {exc}") from None


def check_files(runs: Sequence[RunSpec], where: str) -> None:
    """Checkpoint and class-map files of every run exist (paths are absolute by now: see site.resolve)."""
    seen: set[tuple[str | None, str | None]] = set()
    for run in runs:
        model = run.config.model
        key = (model.pretrained_path, model.class_map_path)
        if key in seen:
            continue
        seen.add(key)
        try:
            rules.check_files(model)
        except FileNotFoundError as exc:
            raise SpecError(f"{where}: run {run.name}: {exc}") from None


def check_datasets(spec: SweepSpec, runs: Sequence[RunSpec], where: str) -> None:
    """Check every distinct dataset of the planned runs on disk (roots, annotation files,
    listed images), raising a one-line SpecError that names the spec field."""
    from trainers.datasets.check import check_dataset

    seen: set[str] = set()
    same: set[int] = set()  # a row's seeds share one (frozen) dataset config: no dump per run
    for run in runs:
        ds = run.config.data.dataset
        if id(ds) in same:
            continue
        same.add(id(ds))
        key = json.dumps(ds.model_dump(mode="json"), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_dataset(ds)
        except (FileNotFoundError, ValueError) as exc:
            raise SpecError(f"{where}: {_origin(spec, run)}: {exc}") from None


def _origin(spec: SweepSpec, run: RunSpec) -> str:
    """The spec field a run's dataset comes from: `grid.dataset[i]`, else `defaults.data.dataset`."""
    resolved = run.config.data.dataset.model_dump(mode="json")
    for index, value in enumerate(spec.grid.get("dataset", [])):
        given = {"name": value} if isinstance(value, str) else value
        if not isinstance(given, dict):
            continue
        try:
            candidate = DatasetConfig.model_validate(given).model_dump(mode="json")
        except ValidationError:
            continue
        if all(candidate.get(k) == resolved.get(k) for k in given):
            return f"grid.dataset[{index}]"
    if "dataset" not in spec.grid:
        return "defaults.data.dataset"
    return f"run {run.name}: data.dataset"
