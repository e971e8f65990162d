"""The Python environment of a compute node, as one typed block: `slurm.env`.

    slurm:
      env: {kind: conda, name: torch24}

One of six kinds (the `kind` key picks it): a venv, a conda environment (through conda's own
shell hook), Environment Modules / Lmod, an Apptainer (Singularity) image, a Pyxis (enroot)
container, a Charliecloud image. Each renders into what submitit already has parameters for:
the `python` command the task runs, `setup` lines of the batch script, and `srun_args`.
Without an env block a job runs the login node's interpreter by its absolute path, as before.

Every string here reaches the batch script, so each field passes an allow-list (no spaces,
quotes, `$`, `;`...) and is shell-quoted when rendered. Inside containers PYTHONNOUSERSITE=1
is set by default: a `~/.local` package must not shadow the image's.

The env is not part of a run's id: the same config trained in another environment is the same
run (its provenance records which environment it was).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from orchestrator.sweep.image_digest import image_digest
from trainers.config import StrictModel

# What the batch script exports for the run's provenance; trainers/runtime/envinfo.py reads the same names
# (a test pins them equal: orchestrator/ imports only the trainers' data modules).
ENV_KIND = "ORCHESTRATE_ENV_KIND"
ENV_IMAGE = "ORCHESTRATE_ENV_IMAGE"
ENV_IMAGE_DIGEST = "ORCHESTRATE_ENV_IMAGE_DIGEST"

# Allow-lists. Paths are absolute (the job's working directory is not the login shell's).
_PATH_CHARS = r"[A-Za-z0-9_.+@%,=-]"
_PATH = re.compile(rf"/(?:{_PATH_CHARS}|/){{0,1023}}")
# Never a leading `-`: a value must not turn into an option of conda, module, apptainer or ch-run.
_NAME = re.compile(r"[A-Za-z0-9_.+][A-Za-z0-9_.+-]{0,63}")  # a conda environment name
_MODULE = re.compile(r"[A-Za-z0-9_.+][A-Za-z0-9_./+-]{0,127}")  # cuda/12.4, Python/3.11.5-GCCcore-13.2.0
_COMMAND = re.compile(r"[A-Za-z0-9_./+][A-Za-z0-9_./+-]{0,255}")  # python3, /opt/conda/bin/python
_BIND_PART = r"/[A-Za-z0-9_./+@%=-]{0,511}"
_BIND = re.compile(rf"{_BIND_PART}(?::{_BIND_PART})?(?::[a-z+]{{1,32}})?")  # SRC[:DST[:ro]]
# /img.sif, docker://repo/img:tag, nvcr.io#nvidia/pytorch:24.05-py3
_IMAGE = re.compile(r"[A-Za-z0-9_./:#@+][A-Za-z0-9_./:#@+-]{0,511}")
_URI = re.compile(r"[a-z][a-z0-9+.-]*://")  # docker://, oras://, library://, instance://
_IMAGE_FILES = (".sif", ".simg", ".sqsh", ".squashfs", ".img")
_PATH_HELP = "an absolute path of letters, digits and _ . + @ % , = - /"
_COMMAND_HELP = "a command name or absolute path of letters, digits and _ . / + -"


def _check(pattern: re.Pattern[str], value: str, what: str, chars: str) -> str:
    if not pattern.fullmatch(value):
        refused = "a leading -, a space, quote, `$`, `;` or newline is refused"
        raise ValueError(f"{what} must be {chars} ({refused})")
    return value


def _path(value: str, what: str) -> str:
    expanded = os.path.expanduser(value) if value.startswith("~/") else value
    if not expanded.startswith("/"):
        raise ValueError(f"{what} must be an absolute path (jobs do not start in the login shell's folder)")
    return _check(_PATH, expanded, what, _PATH_HELP)


def _image(value: str, what: str = "image") -> str:
    value = os.path.expanduser(value) if value.startswith("~/") else value
    return _check(_IMAGE, value, what, "a path or image URI of letters, digits and _ . / : # @ + -")


def _not_relative(value: str, uris: bool) -> str:
    """`value` unless it names an image file by a relative path, which the runtime would read from the
    job's working folder: no digest, and no check on the login node that the image exists."""
    if value.startswith("/") or (uris and _URI.match(value)):
        return value
    if uris or value.startswith(".") or value.endswith(_IMAGE_FILES):
        uri = " or a URI (docker://, oras://, library://)" if uris else ""
        raise ValueError(f"an image file must be an absolute path{uri}: a relative one is read from the job's folder")
    return value


class _EnvBase(StrictModel):
    def render(self, gpus: int) -> NodeCommand:
        """What the batch script does to enter this environment, for a job with `gpus` GPUs per node."""
        raise NotImplementedError


class VenvEnv(_EnvBase):
    """A Python virtual environment on a filesystem the nodes share."""

    kind: Literal["venv"]
    """`venv`."""
    path: str
    """The venv's folder (absolute); its bin/python runs the job, after `source bin/activate`."""

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return _path(value, "path")

    def render(self, gpus: int) -> NodeCommand:
        """`source PATH/bin/activate`, then PATH/bin/python."""
        bin_dir = f"{self.path.rstrip('/')}/bin"
        return NodeCommand(shlex.quote(f"{bin_dir}/python"), [f"source {shlex.quote(bin_dir + '/activate')}"])


class CondaEnv(_EnvBase):
    """A conda (or mamba) environment, activated through conda's own shell hook (`conda activate`
    alone fails in batch shells: they never ran `conda init`'s lines)."""

    kind: Literal["conda"]
    """`conda`."""
    name: str | None = None
    """Environment name (`conda activate NAME`); set this or `prefix`."""
    prefix: str | None = None
    """Environment folder (`conda activate PREFIX`, absolute); set this or `name`."""
    executable: str = "conda"
    """The conda executable: a command on the batch shell's PATH, or an absolute path such as
    /opt/miniforge3/bin/conda when the batch shell does not have it on PATH."""
    python: str = "python"
    """The interpreter command inside the activated environment."""

    @field_validator("name")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return None if value is None else _check(_NAME, value, "name", "letters, digits and _ . + -")

    @field_validator("prefix")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return None if value is None else _path(value, "prefix")

    @field_validator("executable", "python")
    @classmethod
    def _command(cls, value: str) -> str:
        return _check(_COMMAND, value, "command", _COMMAND_HELP)

    @model_validator(mode="after")
    def _one_of(self) -> CondaEnv:
        if (self.name is None) == (self.prefix is None):
            raise ValueError("set exactly one of `name` and `prefix`")
        return self

    def render(self, gpus: int) -> NodeCommand:
        """`eval "$(conda shell.bash hook)"`, `conda activate X`, then the env's python."""
        target = shlex.quote(self.name or self.prefix or "")
        hook = f'eval "$({shlex.quote(self.executable)} shell.bash hook)"'
        return NodeCommand(shlex.quote(self.python), [hook, f"conda activate {target}"])


class ModulesEnv(_EnvBase):
    """Environment Modules or Lmod: `module load` of the site's modules (one of them providing Python
    with the packages, e.g. a module that prepends a shared venv's bin to PATH)."""

    kind: Literal["modules"]
    """`modules`."""
    load: list[str] = Field(min_length=1)
    """Module names, loaded in this order (`module load a b`)."""
    purge: bool = False
    """`module purge` first, so what the submitting shell had loaded does not leak into the job."""
    use: list[str] = Field(default_factory=list)
    """Extra module folders (`module use DIR`, absolute), e.g. a project's own modulefiles."""
    init: str | None = None
    """A script sourced first where batch shells lack the `module` command, e.g.
    /usr/share/lmod/lmod/init/bash (Lmod) or /etc/profile.d/modules.sh."""
    python: str = "python3"
    """The interpreter command once the modules are loaded."""

    @field_validator("load")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        return [_check(_MODULE, name, "module name", "letters, digits and _ . / + -") for name in value]

    @field_validator("use")
    @classmethod
    def _folders(cls, value: list[str]) -> list[str]:
        return [_path(folder, "use") for folder in value]

    @field_validator("init")
    @classmethod
    def _script(cls, value: str | None) -> str | None:
        return None if value is None else _path(value, "init")

    @field_validator("python")
    @classmethod
    def _command(cls, value: str) -> str:
        return _check(_COMMAND, value, "python", _COMMAND_HELP)

    def render(self, gpus: int) -> NodeCommand:
        """[source INIT], [module purge], module use DIR..., module load M..., then `python`."""
        lines = [f"source {shlex.quote(self.init)}"] if self.init else []
        lines += ["module purge"] if self.purge else []
        lines += [f"module use {shlex.quote(folder)}" for folder in self.use]
        lines.append("module load " + " ".join(shlex.quote(m) for m in self.load))
        return NodeCommand(shlex.quote(self.python), lines)


class _ContainerEnv(_EnvBase):
    image: str
    """The image."""
    python: str = "python3"
    """The interpreter command inside the image."""
    no_user_site: bool = True
    """Set PYTHONNOUSERSITE=1 inside the container: packages in the bind-mounted ~/.local must not
    shadow the image's (the commonest way a container job imports the wrong torch)."""

    @field_validator("image")
    @classmethod
    def _image_ref(cls, value: str) -> str:
        return _image(value)

    @field_validator("python")
    @classmethod
    def _command(cls, value: str) -> str:
        return _check(_COMMAND, value, "python", _COMMAND_HELP)

    def exports(self) -> list[str]:
        """Setup lines naming the image for the run's provenance (with its digest when it is a local file)."""
        lines = [f"export {ENV_IMAGE}={shlex.quote(self.image)}"]
        digest = image_digest(self.image)
        return lines + ([f"export {ENV_IMAGE_DIGEST}={shlex.quote(digest)}"] if digest else [])


class ApptainerEnv(_ContainerEnv):
    """An Apptainer (or Singularity) image: the task runs `apptainer exec [--nv] IMAGE python`."""

    kind: Literal["apptainer"]
    """`apptainer`."""
    image: str
    """A SIF file (absolute path; its sha256 goes into provenance) or a URI apptainer can exec
    (docker://..., oras://..., library://...)."""
    binds: list[str] = Field(default_factory=list)
    """Bind mounts, `SRC[:DST[:ro]]` (absolute paths): datasets, the results folder if apptainer does
    not bind it already."""
    nv: bool | None = None
    """`--nv` (the host's NVIDIA driver in the container); None: on when the job requests GPUs."""
    executable: Literal["apptainer", "singularity"] = "apptainer"
    """The runtime's command name (older sites only have `singularity`)."""

    @field_validator("image")
    @classmethod
    def _file_or_uri(cls, value: str) -> str:
        return _not_relative(value, uris=True)  # apptainer reads anything but SCHEME:// as a file

    @field_validator("binds")
    @classmethod
    def _binds(cls, value: list[str]) -> list[str]:
        return [_bind(bind) for bind in value]

    def render(self, gpus: int) -> NodeCommand:
        """`apptainer exec [--nv] [--env PYTHONNOUSERSITE=1] [--bind B]... IMAGE python`."""
        words = [self.executable, "exec"]
        words += ["--nv"] if (self.nv if self.nv is not None else gpus > 0) else []
        words += ["--env", "PYTHONNOUSERSITE=1"] if self.no_user_site else []
        for bind in self.binds:
            words += ["--bind", bind]
        words += [self.image, self.python]
        return NodeCommand(" ".join(shlex.quote(w) for w in words), self.exports())


class PyxisEnv(_ContainerEnv):
    """A container started by Pyxis (enroot) through srun's `--container-*` options."""

    kind: Literal["pyxis"]
    """`pyxis`."""
    image: str
    """An enroot image URI (e.g. nvcr.io#nvidia/pytorch:24.05-py3) or a squashfs file (absolute path;
    its sha256 goes into provenance)."""
    mounts: list[str] = Field(default_factory=list)
    """Bind mounts, `SRC[:DST[:FLAGS]]` (absolute paths), joined into `--container-mounts`."""
    mount_home: bool = True
    """False adds `--no-container-mount-home` (the user's home stays outside the container)."""
    python: str = "python"
    """The interpreter command inside the image."""

    @field_validator("image")
    @classmethod
    def _file_or_ref(cls, value: str) -> str:
        return _not_relative(value, uris=False)  # pyxis reads a leading `.` or `/` as a squashfs file

    @field_validator("mounts")
    @classmethod
    def _mounts(cls, value: list[str]) -> list[str]:
        return [_bind(mount) for mount in value]

    def render(self, gpus: int) -> NodeCommand:
        """srun `--container-image=IMAGE [--container-mounts=...]`; python runs inside."""
        args = [f"--container-image={self.image}"]
        args += [f"--container-mounts={','.join(self.mounts)}"] if self.mounts else []
        args += [] if self.mount_home else ["--no-container-mount-home"]
        setup = self.exports()
        if self.no_user_site:
            # The host's value, and --container-env makes it win over one the image sets.
            setup.append("export PYTHONNOUSERSITE=1")
            args.append("--container-env=PYTHONNOUSERSITE")
        return NodeCommand(shlex.quote(self.python), setup, args)


class CharliecloudEnv(_ContainerEnv):
    """A Charliecloud image: the task runs `ch-run [-b SRC:DST]... IMAGE -- python`."""

    kind: Literal["charliecloud"]
    """`charliecloud`."""
    image: str
    """A directory image or a squashfs file (absolute path; a squashfs file's sha256, or a digest of a
    directory's file list, sizes and times, goes into provenance)."""
    binds: list[str] = Field(default_factory=list)
    """Bind mounts, `SRC[:DST]` (absolute; DST must exist in the image): the results folder, datasets."""

    @field_validator("binds")
    @classmethod
    def _binds(cls, value: list[str]) -> list[str]:
        return [_bind(bind, flags=False) for bind in value]

    @field_validator("image")
    @classmethod
    def _local_image(cls, value: str) -> str:
        return _path(_image(value), "image")

    def render(self, gpus: int) -> NodeCommand:
        """`ch-run [--set-env=PYTHONNOUSERSITE=1] [-b B]... IMAGE -- python` ($USER set: ch-run needs it)."""
        words = ["ch-run"] + (["--set-env=PYTHONNOUSERSITE=1"] if self.no_user_site else [])
        for bind in self.binds:
            words += ["-b", bind]
        words += [self.image, "--", self.python]
        setup = ['export USER="${USER:-$(id -un)}"', *self.exports()]
        return NodeCommand(" ".join(shlex.quote(w) for w in words), setup)


def _bind(value: str, flags: bool = True) -> str:
    value = _check(_BIND, value, "bind", "SRC[:DST[:FLAGS]] with absolute paths of letters, digits and _ . / + @ % = -")
    parts = value.split(":")
    if not flags and len(parts) > 2:
        raise ValueError("bind takes SRC[:DST] here (no flags)")
    # `/data:ro` fits SRC:FLAGS, yet apptainer, pyxis and ch-run all read a second field as the destination.
    if not all(part.startswith("/") for part in parts[:2]):
        raise ValueError("bind takes SRC[:DST[:FLAGS]]: DST is an absolute path (`/data:ro` mounts at `ro`)")
    return value


NodeEnv = Annotated[
    VenvEnv | CondaEnv | ModulesEnv | ApptainerEnv | PyxisEnv | CharliecloudEnv, Field(discriminator="kind")
]
KINDS: dict[str, type[_EnvBase]] = {
    "venv": VenvEnv,
    "conda": CondaEnv,
    "modules": ModulesEnv,
    "apptainer": ApptainerEnv,
    "pyxis": PyxisEnv,
    "charliecloud": CharliecloudEnv,
}


def parse(value: Any) -> Any:
    """An env block validated by its kind, with a one-line error naming the field (pydantic's own
    union errors would name every kind). Already-built models pass through."""
    if value is None or isinstance(value, _EnvBase):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"env must be a mapping with `kind` ({', '.join(KINDS)})")
    kind = value.get("kind")
    model = KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ValueError(f"env.kind must be one of {', '.join(KINDS)}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        # An unknown key first: `pth` misspelt also makes `path` missing, and the typo is the news.
        err = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            reason = f"unknown key; valid keys of this kind: {', '.join(model.model_fields)}"
        elif err["type"] == "missing":
            reason = "required key missing"
        else:
            reason = str(err["msg"]).removeprefix("Value error, ")
        raise ValueError(f"{where}: {reason}" if where else reason) from None


@dataclass(frozen=True)
class NodeCommand:
    """An environment rendered for submitit: its `python` command, `setup` lines and `srun_args`."""

    python: str
    """Replaces submitit's default (the login node's interpreter) in `python -u -m submitit.core._submit`."""
    setup: list[str] = field(default_factory=list)
    srun_args: list[str] = field(default_factory=list)


def render(env: NodeEnv | None, gpus: int) -> NodeCommand:
    """The node command of an env block (None: the login interpreter by its absolute path, as submitit does)."""
    if env is None:
        return NodeCommand(shlex.quote(sys.executable))
    command = env.render(gpus)
    return NodeCommand(command.python, [f"export {ENV_KIND}={env.kind}", *command.setup], command.srun_args)
