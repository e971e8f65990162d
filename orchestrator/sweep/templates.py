"""Which files may be a custom table template, and how one is read.

A template is code that `collect` runs, so the rule is narrow: a regular file named `*.j2` or
`*.jinja`, at most MAX_TEMPLATE_BYTES, owned by the spec file's owner and inside the spec file's
folder once every symlink is resolved (`templates/rows.md.j2` beside the spec). `/etc/passwd`,
`/proc/self/environ`, `../elsewhere.j2` and a symlink out of that folder are refused at plan,
with one line that quotes nothing of the file. The same rule applies to every `{% include %}`
and `{% extends %}` a template names (TemplateLoader), and templates are only ever rendered in
Jinja's ImmutableSandboxedEnvironment (orchestrator/results/render.py).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import jinja2
from jinja2.loaders import split_template_path

TEMPLATE_SUFFIXES = (".j2", ".jinja")
MAX_TEMPLATE_BYTES = 256 * 1024
"""Largest template read (the packaged ones are under 8 KiB)."""


class TemplateFileError(ValueError):
    """A file that may not be used as a template; one line, none of its content."""


def user_template(spec_source: Path | None, name: str) -> tuple[Path, str, int]:
    """(root, name under root, owner uid) of a template a spec names: checked and readable, or a
    TemplateFileError. `spec_source` is the spec file; without one (a results folder's sweep.yaml
    snapshot) there is no folder a template may come from."""
    if spec_source is None:
        raise TemplateFileError(
            f"template {name}: custom templates are rendered only from a spec file (collect SPEC), "
            "never from a results folder's sweep.yaml"
        )
    root = spec_source.resolve().parent
    relative = locate(name, root)
    owner = owner_of(spec_source)
    read_template(root, relative, owner)
    return root, relative, owner


def locate(name: str, root: Path) -> str:
    """The template named in a spec as a '/'-separated name relative to `root`, or a TemplateFileError."""
    path = Path(name).expanduser()
    full = path if path.is_absolute() else root / path
    try:
        relative = full.resolve().relative_to(root)
    except (ValueError, OSError, RuntimeError):
        raise TemplateFileError(
            f"template {name} is outside {root} (templates come from the spec file's folder)"
        ) from None
    return relative.as_posix()


def read_template(root: Path, name: str, owner: int | None = None, search: Path | None = None) -> str:
    """The text of template `name` (under `search`, default `root`), checked: suffix, inside `root`
    after symlinks, a regular file, size, owner (`owner`: the uid the file must have; None: any)."""
    try:
        pieces = split_template_path(name)
    except jinja2.TemplateNotFound:
        raise TemplateFileError(f"template {name}: '..' is not allowed in a template name") from None
    path = (search or root).joinpath(*pieces)
    resolved = path.resolve()
    if not any(resolved.name.endswith(s) for s in TEMPLATE_SUFFIXES):
        raise TemplateFileError(f"template {path}: not a template file (names end with .j2 or .jinja)")
    if not resolved.is_relative_to(root):
        raise TemplateFileError(f"template {path} resolves outside {root} (templates come from the spec's folder)")
    return _read_checked(path, resolved, owner)


def _read_checked(path: Path, resolved: Path, owner: int | None) -> str:
    """Open without following a last symlink, then check type, size and owner on the open file."""
    try:
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise TemplateFileError(f"template {path} does not exist") from None
    except OSError as exc:
        raise TemplateFileError(f"template {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TemplateFileError(f"template {path} is not a regular file")
        if info.st_size > MAX_TEMPLATE_BYTES:
            raise TemplateFileError(f"template {path} is larger than {MAX_TEMPLATE_BYTES // 1024} KiB")
        if owner is not None and info.st_uid != owner:
            raise TemplateFileError(f"template {path} is not owned by the spec file's owner (uid {owner})")
        data = os.read(fd, MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        raise TemplateFileError(f"template {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateFileError(f"template {path} is not UTF-8 text (byte {exc.start})") from None


class TemplateLoader(jinja2.BaseLoader):
    """Loads templates (and what they include or extend) by name from `search`, each through
    `read_template`: whatever a name resolves to must lie inside `root`."""

    def __init__(self, root: Path, search: Path, owner: int | None = None) -> None:
        self.root = root
        self.search = search
        self.owner = owner

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        """The checked text of `template`; never cached stale (always re-read)."""
        text = read_template(self.root, template, self.owner, self.search)
        return text, str(self.search / template), lambda: False


def owner_of(path: Path) -> int:
    """The uid owning a file (the spec file: its templates must be that user's too)."""
    return path.stat().st_uid
