"""MkDocs hook: the reference pages, generated from the code at build time so they cannot drift.

- `reference/spec.md`, `reference/site.md`, `reference/trainer.md`: every key of the pydantic models
  (the models' attribute docstrings are their descriptions), with type, default and constraints.
- `reference/cli.md`: every command and option from the argparse parser of `orchestrate`.

Nothing generated is committed: the pages are added to the build as virtual files (`on_files`).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from collections.abc import Iterator
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from orchestrator.cli.main import build_parser
from orchestrator.sweep.site import Site, SlurmConfig
from orchestrator.sweep.spec import BudgetSpec, CleanupSpec, SweepSpec, TableSpec
from trainers.config import TrainConfig
from trainers.field_docs import field_docs


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated reference pages to the site."""
    pages = {
        "reference/spec.md": _models_page(
            "Sweep spec keys",
            "The top level of a sweep file, then its typed blocks. "
            "Generated from `orchestrator/sweep/spec.py` and `spec_tables.py`.",
            [SweepSpec, TableSpec, BudgetSpec, CleanupSpec, SlurmConfig],
        ),
        "reference/site.md": _models_page(
            "Site file keys",
            "A site file names where datasets and checkpoints live on one cluster. "
            "Generated from `orchestrator/sweep/site.py`.",
            [Site, SlurmConfig],
        ),
        "reference/trainer.md": _models_page(
            "Trainer config keys",
            "What `defaults`, `modifiers` and dotted grid axes set, key by key. Generated from `trainers/config.py`.",
            [TrainConfig],
        ),
        "reference/cli.md": _cli_page(build_parser()),
    }
    for uri, text in pages.items():
        files.append(File.generated(config, uri, content=text))
    return files


def _models_page(title: str, intro: str, roots: list[type[BaseModel]]) -> str:
    lines = [f"# {title}", "", intro, ""]
    seen: set[type[BaseModel]] = set()
    for root in roots:
        for path, model in _walk(root, "", seen):
            lines += _model_section(path, model)
    return "\n".join(lines) + "\n"


def _walk(model: type[BaseModel], path: str, seen: set[type[BaseModel]]) -> Iterator[tuple[str, type[BaseModel]]]:
    """(dotted key path, model) of the model, then of every model its fields refer to, depth first, each once."""
    if model in seen:
        return
    seen.add(model)
    yield path, model
    for name, field in model.model_fields.items():
        for sub in _nested_models(field.annotation):
            yield from _walk(sub, f"{path}.{field.alias or name}".lstrip("."), seen)


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _nested_models(arg)
    return found


def _model_section(path: str, model: type[BaseModel]) -> list[str]:
    # The docstring's first paragraph, whole: its first line alone cut sentences short.
    summary = " ".join(inspect.cleandoc(model.__doc__ or "").split("\n\n")[0].split())
    where = f"`{path}`: " if path else ""
    lines = [f"## {where}{model.__name__} {{#{model.__name__.lower()}}}", "", summary, ""]
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    docs = field_docs(model)
    for name, field in model.model_fields.items():
        key = field.alias or name
        described = _describe(field, field.description or docs.get(name, ""))
        row = [f"`{key}`", _cell(_type_name(field.annotation)), _cell(_default(field)), _cell(described)]
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def _type_name(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if origin is typing.Literal:
        return " / ".join(repr(arg) for arg in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is not None:
        inner = ", ".join(_type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined:
        return "required" if field.default_factory is None else "(computed)"
    if isinstance(field.default, BaseModel):
        return "(its defaults)"
    return f"`{field.default!r}`"


def _describe(field: FieldInfo, description: str) -> str:
    text = " ".join(description.split())
    limits = [_limit(item) for item in field.metadata if type(item).__module__.startswith("annotated_types")]
    return f"{text} Constraints: {', '.join(limits)}." if limits else text


_LIMITS = {"Ge": ">=", "Gt": ">", "Le": "<=", "Lt": "<", "MinLen": "length >=", "MaxLen": "length <="}


def _limit(item: Any) -> str:
    """`Ge(ge=1)` -> `>= 1`: the constraint as a reader writes it."""
    name = type(item).__name__
    fields = dataclasses.fields(item) if dataclasses.is_dataclass(item) else ()
    values = [getattr(item, field.name) for field in fields]
    if name in _LIMITS and values:
        return f"{_LIMITS[name]} {values[0]}"
    return str(item)


def _cell(text: str) -> str:
    """Table cells: a `|` would end the cell, a newline the row."""
    return text.replace("|", "\\|").replace("\n", " ")


def _cli_page(parser: argparse.ArgumentParser) -> str:
    lines = ["# Command line", "", "Generated from the `orchestrate` argparse parser.", ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    for name, summary, sub in _subcommands(parser):
        lines += [f"## `orchestrate {name}`", "", summary, ""]
        lines += ["```text", sub.format_usage().strip(), "```", ""]
        lines += ["| argument | default | help |", "|---|---|---|"]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            names = ", ".join(action.option_strings) or action.dest
            default = "" if action.default in (None, False, argparse.SUPPRESS) else f"`{action.default}`"
            lines.append(f"| `{names}` | {_cell(default)} | {_cell(_help(sub, action))} |")
        lines += ["", "```text", (sub.epilog or "").strip(), "```", ""] if sub.epilog else [""]
    return "\n".join(lines) + "\n"


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text as `--help` prints it (`%(default)s` filled in), without the line wrapping."""
    return parser._get_formatter()._expand_help(action) if action.help else ""


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each command, in the order `--help` lists them."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, summaries.get(name, ""), sub
