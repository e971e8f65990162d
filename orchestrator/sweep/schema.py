"""JSON Schema of sweep specs and site files, for editors (yaml-language-server) and other tools.

pydantic exports the typed parts directly. The trainer config reaches a spec three ways that pydantic
sees only as `dict[str, Any]`: `defaults` (a partial, nested trainer config), `modifiers` and
`per_backbone` (dotted trainer keys such as `data.augment` or `optim.lr`) and `grid` axes (a dotted key
or an alias, each with a list of values). This module inlines the trainer config's schema at all
three, so an editor completes and checks every key there too. Torch-free.

The schema is a help for editors, not the validator: `plan` stays the authority (it also checks
values across fields, datasets on disk, backbone names). A test checks both agree on unknown keys
and wrong types for every shipped sweep and site file.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from orchestrator.sweep.site import Site, SlurmConfig
from orchestrator.sweep.spec import AXIS_ALIASES, SweepSpec
from trainers.config import TrainConfig
from trainers.field_docs import field_docs

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SWEEP_SCHEMA_ID = "orchestrate-sweep.schema.json"
SITE_SCHEMA_ID = "orchestrate-site.schema.json"
PROFILE_SCHEMA_ID = "orchestrate-profile.schema.json"


class _Described(GenerateJsonSchema):
    """pydantic's JSON Schema with every field's attribute docstring as its description (the models
    are created without pydantic reading them: see trainers.field_docs)."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        model: type[BaseModel] = schema["cls"]
        properties = json_schema.get("properties", {})
        for name, text in field_docs(model).items():
            field = model.model_fields[name]
            prop = properties.get(field.alias or name)
            if prop is not None and field.description is None:
                prop["description"] = text
        return json_schema


def described(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON Schema (validation mode), its fields described by their docstrings."""
    return model.model_json_schema(schema_generator=_Described)


def sweep_schema() -> dict[str, Any]:
    """The sweep spec's JSON Schema with the trainer config inlined under defaults, modifiers and grid."""
    schema = described(SweepSpec)
    trainer = described(TrainConfig)
    defs = _merge_defs(schema.pop("$defs", {}), trainer.pop("$defs", {}))
    _accept_dataset_names(defs)
    dotted = dict(_dotted_keys(trainer, defs, ""))
    props = schema["properties"]
    props["defaults"] = _partial(trainer) | {"description": props["defaults"].get("description", "")}
    props["modifiers"] = _named_overrides(dotted, props["modifiers"])
    props["per_backbone"] = _named_overrides(dotted, props["per_backbone"])
    props["grid"] = _grid(dotted, props["grid"])
    return {"$schema": SCHEMA_DIALECT, "$id": SWEEP_SCHEMA_ID, **schema, "$defs": defs}


def site_schema() -> dict[str, Any]:
    """The site file's JSON Schema (datasets, checkpoints, DeepSpeed tuning, SLURM profile, throughput)."""
    schema = described(Site)
    defs = schema.pop("$defs", {})
    _accept_dataset_names(defs)
    return {"$schema": SCHEMA_DIALECT, "$id": SITE_SCHEMA_ID, **schema, "$defs": defs}


def profile_schema() -> dict[str, Any]:
    """A cluster profile's JSON Schema (`slurm/profiles/NAME.yaml`), in either form site.load_site reads:
    flat (the keys of a spec's `slurm:` block) or a site file's (`slurm:`, `retry:`, ...)."""
    flat = described(SlurmConfig)
    site = site_schema()
    defs = _merge_defs(flat.pop("$defs", {}), site.pop("$defs"))
    del site["$schema"], site["$id"]
    return {"$schema": SCHEMA_DIALECT, "$id": PROFILE_SCHEMA_ID, "anyOf": [flat, site], "$defs": defs}


def _merge_defs(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    clashes = [name for name in first.keys() & second.keys() if first[name] != second[name]]
    if clashes:  # two models of one name: a `$ref` would silently point at the wrong one
        raise RuntimeError(f"schema: models {sorted(clashes)} are defined twice, differently")
    return first | second


def _accept_dataset_names(defs: dict[str, Any]) -> None:
    """The dataset shorthands the loaders accept: `dataset: digits` and `parts: [cub200, ...]` mean
    `{name: ...}` (the models' before-validators); `{site: NAME, ...}` is a site file's dataset with
    some fields changed (resolved before validation)."""
    dataset = defs.get("DatasetConfig")
    if dataset is None:
        return
    defs["DatasetFromSite"] = {
        "type": "object",
        "description": "A site file's dataset (`site: NAME`) with some of its fields changed.",
        "required": ["site"],
        "properties": {**copy.deepcopy(dataset["properties"]), "site": {"type": "string"}},
        "additionalProperties": False,
    }
    refs = [{"$ref": "#/$defs/DatasetConfig"}, {"$ref": "#/$defs/DatasetFromSite"}]
    any_dataset = {"anyOf": [*refs, {"type": "string"}]}
    data = defs.get("DataConfig", {}).get("properties", {})
    if "dataset" in data:
        data["dataset"] = any_dataset
    for model in (dataset, defs["DatasetFromSite"]):
        if "parts" in model["properties"]:
            model["properties"]["parts"]["items"] = copy.deepcopy(any_dataset)


def _partial(node: dict[str, Any]) -> dict[str, Any]:
    """A model's schema with nothing required: `defaults` sets some keys, the trainer fills the rest."""
    partial = copy.deepcopy(node)
    partial.pop("required", None)
    return partial


def _dotted_keys(node: dict[str, Any], defs: dict[str, Any], prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted key, its schema) for every key of the trainer config, nested blocks included."""
    for name, prop in node.get("properties", {}).items():
        key = f"{prefix}{name}"
        yield key, prop
        model = _model_of(prop, defs)
        if model is not None:
            yield from _dotted_keys(model, defs, f"{key}.")


def _model_of(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema a property refers to (directly or as `X | None`), else None."""
    refs = [prop.get("$ref")] + [option.get("$ref") for option in prop.get("anyOf", [])]
    for ref in refs:
        if ref and ref.startswith("#/$defs/"):
            target: dict[str, Any] = defs[ref.removeprefix("#/$defs/")]
            if target.get("type") == "object":
                return target
    return None


def _named_overrides(dotted: dict[str, dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """`{NAME: {dotted.key: value, ...}}`: each override's keys are trainer keys, nothing else."""
    override = {"type": "object", "properties": dotted, "additionalProperties": False}
    return {"type": "object", "additionalProperties": override, "description": base.get("description", "")}


def _grid(dotted: dict[str, dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """Grid axes: an alias or a dotted trainer key, each a non-empty list of that key's values."""
    axes = {key: {"type": "array", "minItems": 1, "items": prop} for key, prop in dotted.items()}
    for alias, key in AXIS_ALIASES.items():
        axes[alias] = axes[key]
    return {
        "type": "object",
        "properties": axes,
        "additionalProperties": False,
        "description": base.get("description", ""),
    }
