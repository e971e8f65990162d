"""Config fields' descriptions come from their attribute docstrings when shown (schema, reference pages),
and no longer from pydantic reading every model's source at import."""

from __future__ import annotations

import subprocess
import sys
import typing
from typing import Any

from pydantic import BaseModel

from orchestrator.sweep import schema
from trainers.config import OptimConfig, TrainConfig, _Strict
from trainers.field_docs import field_docs


class _Parent(_Strict):
    kept: int = 1
    """The parent's words."""
    replaced: int = 2
    """Overridden below."""
    bare: int = 3


class _Child(_Parent):
    replaced: int = 4
    """The child's words,
    on two lines."""
    odd: int = 5
    "Single-quoted."
    not_a_doc: int = 6


def test_docstrings_follow_attribute_lookup() -> None:
    docs = field_docs(_Child)
    assert docs == {
        "kept": "The parent's words.",
        "replaced": "The child's words,\non two lines.",
        "odd": "Single-quoted.",
    }
    assert "bare" not in field_docs(_Parent)


def test_models_are_created_without_reading_their_source() -> None:
    """The start-up cost this replaces: pydantic fills `description` only when asked to read source."""
    assert TrainConfig.model_fields["optim"].description is None
    assert field_docs(OptimConfig)["lr"]  # the text is still there for those who show it


def _models(annotation: Any, seen: set[type[BaseModel]]) -> None:
    """Every model `annotation` names, at any depth of `X | None`, `list[X]`, `dict[str, X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation not in seen:
            seen.add(annotation)
            for field in annotation.model_fields.values():
                _models(field.annotation, seen)
        return
    for arg in typing.get_args(annotation):
        _models(arg, seen)


def _undescribed(node: dict[str, Any]) -> list[str]:
    return [name for name, prop in node.get("properties", {}).items() if not prop.get("description")]


def test_every_config_key_is_described_in_the_schemas() -> None:
    """Every key an editor completes carries its docstring (the promise of trainers/config.py)."""
    sweep = schema.sweep_schema()
    models: set[type[BaseModel]] = set()
    for root in (TrainConfig, schema.SweepSpec, schema.Site):
        _models(root, models)
    assert len(models) > 25
    missing = {model.__name__: _undescribed(schema.described(model)) for model in models}
    assert {name: keys for name, keys in missing.items() if keys} == {}
    assert sweep["properties"]["tables"]["description"]
    assert schema.described(TrainConfig)["properties"]["optim"]["description"] == field_docs(TrainConfig)["optim"]


def test_import_reads_no_model_source() -> None:
    """A fresh `import orchestrator.cli.main` never asks `inspect` for source (pydantic's docstring
    path: about 0.06 s of every command's start-up)."""
    probe = (
        "import inspect\n"
        "calls = []\n"
        "for name in ('findsource', 'getsourcelines', 'getsource'):\n"
        "    real = getattr(inspect, name)\n"
        "    setattr(inspect, name, lambda obj, real=real: calls.append(obj) or real(obj))\n"
        "import orchestrator.cli.main\n"
        "print(len(calls))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
