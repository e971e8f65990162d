"""A cluster, typed: where it keeps datasets and checkpoints, its DeepSpeed tuning, and how
its jobs are submitted (the SLURM profile). Written once per site, in one file format:

    # sites/mycluster.yaml
    datasets:
      cub200: {name: cub200, root: /shared/data/CUB_200_2011}
    checkpoints:
      convnextv2_large_22k: /shared/ckpt/convnextv2_large_22k.pth
    deepspeed:
      zero3_tuned: {zero_optimization: {overlap_comm: true, reduce_bucket_size: 5.0e8}}
    slurm:
      partition: gpu
      account: my_project
      setup: [module load cuda/12.4]

A sweep names it with `site: ../sites/mycluster.yaml` (relative to the sweep file; or
`site=...` on the command line, or the ORCHESTRATE_SITE environment variable) and
refers to entries as `site:NAME`: as a dataset (grid `dataset:` values, `data.dataset`,
the `parts` of a combined dataset; `{site: NAME, val_fraction: 0}` is that entry with fields
changed), as `model.pretrained_path`, or as `distributed.deepspeed`
(the cluster's named DeepSpeed tuning). References are replaced before validation, so run
ids and snapshots hold the real values. Its `slurm:` section is the cluster profile of
`submit --executor slurm` unless `--profile` names another.

`--profile NAME` reads NAME.yaml from the search path of orchestrator/sweep/searchpath.py
($ORCHESTRATE_PROFILE_PATH, ~/.config/orchestrate/profiles, the sweep's folder, the shipped
slurm/profiles/), or a path, with the same loader; `site: NAME` is looked up the same way. A file
whose keys are all SLURM keys (the profiles of slurm/profiles/) is the short form of a site
file with only a `slurm:` section.

Every string that ends up in the sbatch script is checked against an allow-list (the SLURM block:
orchestrator/sweep/slurm_config.py): the script is a shell script, and a newline in a partition
name is a command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from orchestrator.sweep import searchpath, yamlio
from orchestrator.sweep.errors import SpecError, describe_error, one_line, short
from orchestrator.sweep.retry import RetryPolicy
from orchestrator.sweep.seeds import SeedSpread
from orchestrator.sweep.slurm_config import SlurmConfig as SlurmConfig  # re-exported: spec and profiles name it here
from trainers.config import DatasetConfig, StrictModel
from trainers.contract import MAX_VALUE, MIN_IMAGES_PER_S

PREFIX = "site:"
ENV_VAR = "ORCHESTRATE_SITE"
_DATASET_KEYS = {"dataset", "parts"}


class ThroughputEntry(StrictModel):
    """A device's training speed for one backbone at one input size, measured by the site (for
    `plan`'s cost estimate of cells that have no smoke measurement)."""

    backbone: str = Field(min_length=1)
    """timm backbone name, as the sweep's grid writes it (model.backbone)."""
    image_size_px: int = Field(ge=8)
    """Input side it was measured at; a run at another size does not match (speed is not scaled)."""
    images_per_s: float = Field(ge=MIN_IMAGES_PER_S, le=MAX_VALUE, allow_inf_nan=False)
    """Training images per second of ONE device (forward, backward and optimizer step); 0.001 at least."""
    device: str = Field(min_length=1)
    """What it was measured on, e.g. NVIDIA A100-SXM4-80GB; `cpu` makes the estimate CPU-hours."""
    precision: Literal["auto", "no", "bf16", "fp16"] | None = None
    """Only runs with this `precision` match; None matches any."""
    batch_per_device: int | None = Field(None, ge=1)
    """Only runs with this per-device batch (data.batch_size / processes / grad_accum_steps) match;
    None matches any."""

    def key(self) -> tuple[str, int, str | None, int | None]:
        """What a run is matched on: two entries with the same key would be ambiguous."""
        return (self.backbone, self.image_size_px, self.precision, self.batch_per_device)


class Site(StrictModel):
    """One cluster: its datasets, checkpoints, DeepSpeed tuning and SLURM profile."""

    datasets: dict[str, DatasetConfig] = {}
    """Named datasets (`site:NAME` as a dataset); relative roots are relative to the site file."""
    checkpoints: dict[str, str] = {}
    """Named checkpoint files (`site:NAME` as model.pretrained_path); relative to the site file."""
    deepspeed: dict[str, dict[str, Any]] = {}
    """Named DeepSpeed tuning merged over the generated config (`site:NAME` as distributed.deepspeed)."""
    slurm: SlurmConfig | None = None
    """The cluster's SLURM profile; a sweep's own `slurm:` values win over it."""
    retry: RetryPolicy | None = None
    """The cluster's retry policy (its memory cap...); a sweep's own `retry:` values win over it."""
    throughput: list[ThroughputEntry] = []
    """Declared training speed per backbone and input size on this cluster's device: `plan` and the
    budget check estimate device-hours from it where a cell has no smoke measurement."""
    seed_sd: list[SeedSpread] = []
    """Declared seed-to-seed spread per backbone and dataset: `plan --detect` uses it when no finished
    sweep or pilot round shows one."""

    @field_validator("throughput")
    @classmethod
    def _one_entry_per_key(cls, value: list[ThroughputEntry]) -> list[ThroughputEntry]:
        seen: dict[tuple[str, int, str | None, int | None], int] = {}
        for index, entry in enumerate(value):
            first = seen.setdefault(entry.key(), index)
            if first != index:
                raise ValueError(
                    f"entries {first} and {index} both declare {entry.backbone} at {entry.image_size_px} px "
                    "with the same precision and batch_per_device; keep one"
                )
        return value

    @field_validator("datasets", mode="before")
    @classmethod
    def _named_datasets(cls, value: Any) -> Any:
        for name, entry in value.items() if isinstance(value, dict) else ():
            if not isinstance(entry, dict) or "name" not in entry:
                raise ValueError(f"datasets.{one_line(str(name), 40)} must be a mapping with at least `name`")
        return value

    @field_validator("deepspeed", mode="before")
    @classmethod
    def _deepspeed_mappings(cls, value: Any) -> Any:
        for name, entry in value.items() if isinstance(value, dict) else ():
            if not isinstance(entry, dict):
                raise ValueError(f"deepspeed.{one_line(str(name), 40)} must be a mapping of DeepSpeed config keys")
        return value


class SiteError(ValueError):
    """A site reference or site file problem (message without the spec path)."""


def site_path(raw: dict[str, Any], spec_path: Path) -> Path | None:
    """The site file a spec uses: its `site:` key (a path relative to the spec, or a NAME on the
    search path of orchestrator/sweep/searchpath.py), else $ORCHESTRATE_SITE (a path or a NAME)."""
    named = raw.get("site") or os.environ.get(ENV_VAR)
    if not named:
        return None
    if not isinstance(named, str):
        raise SiteError(f"site: expected a file path or a site name (got {short(named)})")
    if searchpath.is_name(named):
        spec_dir = spec_path.resolve().parent if "site" in raw else None  # $ORCHESTRATE_SITE: no spec's folder
        try:
            return searchpath.find(named, "site", spec_dir)
        except ValueError as exc:
            raise SiteError(f"site: {exc}") from None
    path = Path(named).expanduser()
    return path if path.is_absolute() or "site" not in raw else (spec_path.parent / path)


def load_site(path: Path, what: str = "site file") -> Site:
    """Read and validate a site file (or a flat SLURM profile); relative paths become absolute.

    Errors name the file and field but never quote the file's content: a mistyped path may
    point at a file that is not a site file at all.
    """
    try:
        data = yamlio.load_file(path, what) or {}
    except yamlio.YamlFileError as exc:
        raise SiteError(str(exc)) from None
    if not isinstance(data, dict):
        raise SiteError(f"{what} {path}: top level must be a mapping with keys {', '.join(Site.model_fields)}")
    flat = bool(data) and not set(data) & set(Site.model_fields)
    try:
        site = Site.model_validate({"slurm": data} if flat else data)
    except ValidationError as exc:
        message = describe_error(exc, Site, echo=False)
        raise SiteError(f"{what} {path}: {message.removeprefix('slurm.') if flat else message}") from None
    return _absolute_paths(site, path.parent)


def _absolute_paths(site: Site, base: Path) -> Site:
    datasets = {
        name: entry.model_copy(update={"root": str(_absolute(entry.root, base))}) if entry.root else entry
        for name, entry in site.datasets.items()
    }
    checkpoints = {name: str(_absolute(value, base)) for name, value in site.checkpoints.items()}
    return site.model_copy(update={"datasets": datasets, "checkpoints": checkpoints})


def _absolute(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def dataset_entry(site: Site, name: str) -> dict[str, Any]:
    """A site dataset as the mapping a spec would have written (only the fields the file sets)."""
    return site.datasets[name].dump_with_hints(mode="json", exclude_unset=True)


_FILE_KEYS = ("pretrained_path", "class_map_path")


def resolve(raw: dict[str, Any], spec_path: Path) -> dict[str, Any]:
    """Replace every `site:NAME` reference in a parsed spec with the site file's entry, and make
    relative checkpoint and class-map paths absolute against the spec's folder (not the working
    directory, which differs between the login node and the job)."""
    path = site_path(raw, spec_path)
    site = load_site(path) if path is not None else None
    out = dict(raw)
    context = (site, path, spec_path.resolve().parent)
    for section in ("defaults", "grid", "modifiers", "per_backbone"):
        if section in out:
            out[section] = _walk(out[section], section, context)
    if path is not None:
        out["site"] = str(path.resolve())
    return out


def _walk(value: Any, key: str, context: tuple[Site | None, Path | None, Path]) -> Any:
    # The last segment decides: a modifier, per_backbone entry or grid axis writes `data.dataset` where
    # `defaults` nests `dataset` (the dotted form read `site` as a dataset field: "unknown key").
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(value, dict) and leaf in _DATASET_KEYS and isinstance(value.get("site"), str):
        # `{site: cub200, val_fraction: 0}`: the site's dataset entry with these fields changed.
        changes = {k: _walk(v, str(k), context) for k, v in value.items() if k != "site"}
        return {**_lookup(value["site"].removeprefix(PREFIX), leaf, context[0], context[1]), **changes}
    if isinstance(value, dict):
        return {k: _walk(v, str(k), context) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, key, context) for v in value]
    if isinstance(value, str) and value.startswith(PREFIX):
        return _lookup(value.removeprefix(PREFIX), leaf, context[0], context[1])
    if isinstance(value, str) and leaf in _FILE_KEYS and value:
        return str(_absolute(value, context[2]))
    return value


def _lookup(name: str, key: str, site: Site | None, path: Path | None) -> Any:
    if key in _DATASET_KEYS:
        section = "datasets"
    elif key == "pretrained_path":
        section = "checkpoints"
    elif key == "deepspeed":
        section = "deepspeed"
    else:
        raise SiteError(
            f"{key}: '{PREFIX}{name}' can only name a dataset, model.pretrained_path or distributed.deepspeed"
        )
    if site is None:
        raise SiteError(f"{key}: '{PREFIX}{name}' needs a site file (`site:` in the spec or ${ENV_VAR})")
    entries: dict[str, Any] = getattr(site, section)
    if name not in entries:
        known = one_line(", ".join(entries) or "none", 200)
        raise SiteError(f"{key}: '{PREFIX}{name}' is not in {section} of {path} (known: {known})")
    if section == "datasets":
        return dataset_entry(site, name)
    return entries[name]


def resolve_slurm(given: SlurmConfig, profile: str | None, site_file: str | None = None) -> SlurmConfig:
    """A spec's slurm block (`given`) on top of a cluster profile: `--profile` (a NAME on the search path,
    or a path), else the `slurm:` section of the spec's site file (`site_file`), else nothing."""
    base: SlurmConfig | None = None
    where = "profile"
    if profile is not None:
        where = str(_profile_path(profile))
        try:
            base = load_site(_profile_path(profile), "cluster profile").slurm
        except SiteError as exc:
            raise SpecError(str(exc)) from None
    elif site_file is not None:
        where = site_file
        try:
            base = load_site(Path(site_file)).slurm
        except SiteError as exc:
            raise SpecError(str(exc)) from None
    if base is None:
        return given
    merged = {**base.model_dump(exclude_unset=True), **given.model_dump(exclude_unset=True)}
    if "additional_parameters" in given.model_fields_set:  # `{}` too: it adds nothing, it drops nothing
        merged["additional_parameters"] = _merged_flags(base.additional_parameters, given.additional_parameters)
    try:
        return SlurmConfig.model_validate(merged)
    except ValidationError as exc:
        raise SpecError(f"{where}: {describe_error(exc, SlurmConfig)}") from None


def _merged_flags(base: dict[str, bool | str | int], given: dict[str, bool | str | int]) -> dict[str, bool | str | int]:
    """The profile's extra sbatch flags with the spec's added, the spec's value winning for an option both
    set (`mail_type` and `mail-type` are one option): a spec's `mail-type` must not drop the profile's `qos`."""
    spelled = {key.replace("_", "-") for key in given}
    return {**{k: v for k, v in base.items() if k.replace("_", "-") not in spelled}, **given}


def _profile_path(profile: str) -> Path:
    """A `--profile` value: a NAME on the search path (searchpath.py), else a file path."""
    if searchpath.is_name(profile):
        try:
            return searchpath.find(profile, "cluster profile")
        except ValueError as exc:
            raise SpecError(str(exc)) from None
    path = Path(profile).expanduser()
    if not path.is_file():
        raise SpecError(f"{one_line(profile, 100)}: no such cluster profile file")
    return path


def profile_file(profile: str | None, spec_dir: Path | None) -> str | None:
    """`--profile` as an absolute file path, a NAME looked up with the sweep file's folder in the
    search path too (the submit command resolves it here, once)."""
    if profile is None:
        return None
    if not searchpath.is_name(profile):
        return str(_profile_path(profile).resolve())
    try:
        return str(searchpath.find(profile, "cluster profile", spec_dir))
    except ValueError as exc:
        raise SpecError(str(exc)) from None
