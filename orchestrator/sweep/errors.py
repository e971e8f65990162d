"""One-line errors for everything a user writes: `file: dotted.field.path: what is wrong (got ...)`."""

from __future__ import annotations

import re
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

# Characters that would let a value escape its #SBATCH line or run a command.
SHELL_META = re.compile(r"[\n\r;`]|\$\(")


class SpecError(ValueError):
    """A sweep spec problem, already formatted as one line naming file and field."""


def describe_error(exc: ValidationError, root: type[BaseModel]) -> str:
    """First pydantic error as `dotted.path: message`, listing valid keys for unknown ones."""
    path, message = error_parts(exc, root)
    return f"{path or '(top level)'}: {message}"


def error_parts(exc: ValidationError, root: type[BaseModel]) -> tuple[str, str]:
    """(dotted path, message) of the first pydantic error."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    path = ".".join(loc)
    if err["type"] == "extra_forbidden":
        model = _model_at(root, loc[:-1])
        valid = ", ".join(model.model_fields) if model else "?"
        return path, f"unknown key; valid keys: {valid}"
    if err["type"] == "missing":
        return path, "required key missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    return path, f"{message} (got {short(err.get('input'))})"


def _model_at(root: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    """The pydantic model class found by walking `loc` down from `root`."""
    model: type[BaseModel] = root
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return None if part not in ("0", "1") else model
        sub = _model_in(field.annotation)
        if sub is None:
            return None
        model = sub
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class inside an annotation such as `X | None`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def short(value: Any) -> str:
    """repr of a value, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def yaml_reason(exc: yaml.YAMLError) -> str:
    """The problem and line of a YAML error, on one line."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)
