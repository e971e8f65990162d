"""Site files: where a cluster keeps its datasets and checkpoints, written once per site.

    # sites/mycluster.yaml
    datasets:
      cub200: {name: cub200, root: /shared/data/CUB_200_2011}
    checkpoints:
      convnextv2_large_22k: /shared/ckpt/convnextv2_large_22k.pth
    deepspeed:
      zero3_tuned: {zero_optimization: {overlap_comm: true, reduce_bucket_size: 5.0e8}}

A sweep names it with `site: ../sites/mycluster.yaml` (relative to the sweep file; or
`site=...` on the command line, or the ORCHESTRATE_SITE environment variable) and
refers to entries as `site:NAME`: as a dataset (grid `dataset:` values, `data.dataset`,
the `parts` of a combined dataset), as `model.pretrained_path`, or as `distributed.deepspeed`
(the cluster's named DeepSpeed tuning). References are replaced before validation, so run
ids and snapshots hold the real values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from orchestrator.sweep import yamlio
from orchestrator.sweep.errors import SHELL_META, SpecError, describe_error
from trainers.config import StrictModel

PREFIX = "site:"
ENV_VAR = "ORCHESTRATE_SITE"
_SECTIONS = ("datasets", "checkpoints", "deepspeed")
_DATASET_KEYS = {"dataset", "parts"}
PROFILE_DIR = Path("slurm/profiles")


class SlurmConfig(StrictModel):
    """Resources of each job; a cluster profile fills what the spec leaves out."""

    partition: str | None = None
    """SLURM partition (`--partition`)."""
    account: str | None = None
    """Account charged (`--account`)."""
    qos: str | None = None
    """Quality of service (`--qos`)."""
    timeout_min: int = Field(60, ge=1)
    """Wall-time limit of each job in minutes; a timed-out job is requeued and resumes."""
    nodes: int = Field(1, ge=1)
    """Nodes per job."""
    gpus_per_node: int = Field(0, ge=0)
    """GPUs per node (`--gres=gpu:N`)."""
    tasks_per_node: int = Field(1, ge=1)
    """Tasks (processes) per node."""
    cpus_per_task: int = Field(2, ge=1)
    """CPU cores per task (data loading workers come from these)."""
    mem_gb: float | None = Field(None, gt=0)
    """Memory per node in GB; None uses the partition default."""
    constraint: str | None = None
    """Node feature constraint (`--constraint`)."""
    exclude: str | None = None
    """Nodes to avoid (`--exclude`)."""
    additional_parameters: dict[str, str | int] = {}
    """Extra sbatch flags, e.g. {mail-type: END}."""
    setup: list[str] = []
    """Shell lines run before the job (module loads, environment activation)."""
    array_parallelism: int = Field(64, ge=1)
    """At most this many tasks of one array run at once (`%N`)."""
    max_array_size: int | None = Field(None, ge=1)
    """Override of the cluster's MaxArraySize; None reads it from `scontrol show config`."""
    max_timeouts: int = Field(3, ge=0)
    """Times a job that hits its time limit is requeued to resume (preemptions are not counted)."""

    @field_validator("partition", "account", "qos", "constraint", "exclude")
    @classmethod
    def _no_shell(cls, value: str | None) -> str | None:
        if value is not None and SHELL_META.search(value):
            raise ValueError(f"{value!r} contains a newline, ';', '`' or '$('")
        return value

    @field_validator("additional_parameters")
    @classmethod
    def _no_shell_extra(cls, value: dict[str, str | int]) -> dict[str, str | int]:
        for key, item in value.items():
            if SHELL_META.search(f"{key}{item}"):
                raise ValueError(f"{key}={item!r} contains a newline, ';', '`' or '$('")
        return value

    @field_validator("setup")
    @classmethod
    def _one_command_each(cls, value: list[str]) -> list[str]:
        # One plain command per item: `;`, `$(...)` and backticks would smuggle in more.
        for line in value:
            if SHELL_META.search(line):
                raise ValueError(f"setup line {line!r} contains a newline, ';', '`' or '$('; one command per item")
        return value


class SiteError(ValueError):
    """A site reference or site file problem (message without the spec path)."""


def site_path(raw: dict[str, Any], spec_path: Path) -> Path | None:
    """The site file a spec uses: its `site:` key (relative to the spec), else $ORCHESTRATE_SITE."""
    named = raw.get("site") or os.environ.get(ENV_VAR)
    if not named:
        return None
    path = Path(str(named)).expanduser()
    return path if path.is_absolute() or "site" not in raw else (spec_path.parent / path)


def load_site(path: Path) -> dict[str, dict[str, Any]]:
    """Read and check a site file: {datasets: {name: mapping}, checkpoints: {name: path},
    deepspeed: {name: mapping of DeepSpeed config keys}}."""
    try:
        data = yamlio.loads(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SiteError(f"site file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise SiteError(f"site file {path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or set(data) - set(_SECTIONS):
        unknown = sorted(set(data) - set(_SECTIONS)) if isinstance(data, dict) else ["(not a mapping)"]
        raise SiteError(f"site file {path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(_SECTIONS)}")
    base = path.parent
    datasets = {name: _dataset_entry(entry, base, path, name) for name, entry in (data.get("datasets") or {}).items()}
    checkpoints = {name: str(_absolute(str(p), base)) for name, p in (data.get("checkpoints") or {}).items()}
    deepspeed = data.get("deepspeed") or {}
    for name, entry in deepspeed.items():
        if not isinstance(entry, dict):
            raise SiteError(f"site file {path}: deepspeed.{name} must be a mapping of DeepSpeed config keys")
    return {"datasets": datasets, "checkpoints": checkpoints, "deepspeed": deepspeed}


def _dataset_entry(entry: Any, base: Path, path: Path, name: str) -> dict[str, Any]:
    if not isinstance(entry, dict) or "name" not in entry:
        raise SiteError(f"site file {path}: datasets.{name} must be a mapping with at least `name`")
    out = dict(entry)
    if out.get("root"):
        out["root"] = str(_absolute(str(out["root"]), base))
    return out


def _absolute(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def resolve(raw: dict[str, Any], spec_path: Path) -> dict[str, Any]:
    """Replace every `site:NAME` reference in a parsed spec with the site file's entry."""
    path = site_path(raw, spec_path)
    site = load_site(path) if path is not None else None
    out = dict(raw)
    for section in ("defaults", "grid", "modifiers", "per_backbone"):
        if section in out:
            out[section] = _walk(out[section], section, site, path)
    if path is not None:
        out["site"] = str(path.resolve())
    return out


def _walk(value: Any, key: str, site: dict[str, dict[str, Any]] | None, path: Path | None) -> Any:
    if isinstance(value, dict):
        return {k: _walk(v, str(k), site, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, key, site, path) for v in value]
    if isinstance(value, str) and value.startswith(PREFIX):
        return _lookup(value.removeprefix(PREFIX), key.rsplit(".", 1)[-1], site, path)
    return value


def _lookup(name: str, key: str, site: dict[str, dict[str, Any]] | None, path: Path | None) -> Any:
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
    entries = site[section]
    if name not in entries:
        known = ", ".join(entries) or "none"
        raise SiteError(f"{key}: '{PREFIX}{name}' is not in {section} of {path} (known: {known})")
    return entries[name]


def resolve_slurm(given: SlurmConfig, profile: str | None) -> SlurmConfig:
    """A spec's slurm block (`given`) on top of a cluster profile (`slurm/profiles/<name>.yaml` or a path)."""
    if profile is None:
        return given
    path = Path(profile)
    if not path.is_file():
        path = PROFILE_DIR / f"{profile}.yaml"
    try:
        base = yamlio.loads(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))) or "none"
        raise SpecError(f"{path}: no such cluster profile (known in {PROFILE_DIR}/: {known})") from None
    if not isinstance(base, dict):
        raise SpecError(f"{path}: a profile is a mapping of slurm keys")
    merged = {**base, **given.model_dump(exclude_unset=True)}
    try:
        return SlurmConfig.model_validate(merged)
    except ValidationError as exc:
        raise SpecError(f"{path}: {describe_error(exc, SlurmConfig)}") from None
