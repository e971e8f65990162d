"""The config models' attribute docstrings, read from their source when a description is asked for.

Every config field carries a docstring on the line below it. pydantic can turn those into field
descriptions (`use_attribute_docstrings`), but it reads and tokenizes every model's source at class
creation: about 0.06 s of every `orchestrate` command's start-up, for text that only the JSON schema
and the reference pages show. So the models are created without it, and those two ask here.
Torch-free (standard library only).
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import textwrap

from pydantic import BaseModel


def field_docs(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> its attribute docstring, for `model`'s own fields and those it inherits (the
    nearest class that documents a field wins, as attribute lookup would). Undocumented fields are absent."""
    docs: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if isinstance(klass, type) and issubclass(klass, BaseModel) and klass is not BaseModel:
            docs |= _own_docs(klass)
    return {name: text for name, text in docs.items() if name in model.model_fields}


@functools.cache
def _own_docs(klass: type[BaseModel]) -> dict[str, str]:
    """The docstrings written in `klass`'s own body: a string statement right after an annotated name."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # defined where no source is kept (an interactive session)
        return {}
    body = next((node.body for node in ast.parse(source).body if isinstance(node, ast.ClassDef)), [])
    docs: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        constant = following.value if isinstance(following, ast.Expr) else None
        text = constant.value if isinstance(constant, ast.Constant) else None
        if isinstance(text, str):
            docs[statement.target.id] = inspect.cleandoc(text)
    return docs
