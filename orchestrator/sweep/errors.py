"""One-line errors for everything a user writes: `file: dotted.field.path: what is wrong (got ...)`."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.sweep import yamlio

MAX_MESSAGE_CHARS = 600
"""Longest error message printed; longer ones (a 1 MB value) are cut."""
MAX_VALUE_CHARS = 60
"""Longest quoted value inside a message."""
# Keys printed from a file that may not be a spec: names only (anything else may be its content).
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-\[\]]{0,39}")
# C0/C1 control characters (newline, ESC of ANSI sequences, DEL...): never printed raw.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class SpecError(ValueError):
    """A sweep spec problem, already formatted as one line naming file and field.

    The message is forced onto one line (control characters escaped) and cut to
    MAX_MESSAGE_CHARS, whatever the value that caused it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(str(message)))


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text` with control characters escaped (`\\n`, `\\x1b`) and cut to `limit` characters."""
    text = CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_error(exc: ValidationError, root: type[BaseModel], echo: bool = True) -> str:
    """First pydantic error as `dotted.path: message`, listing valid keys for unknown ones.

    `echo=False` leaves out the offending value (for files that are not the user's spec:
    a mistyped `site: /etc/shadow` must not print that file).
    """
    path, message = error_parts(exc, root, echo)
    return f"{path or '(top level)'}: {message}"


def error_parts(exc: ValidationError, root: type[BaseModel], echo: bool = True) -> tuple[str, str]:
    """(dotted path, message) of the first pydantic error; an unknown key says which valid key it
    most likely means (`did you mean 'lr'?`) before listing them all."""
    err = _first_error(exc)
    loc = [short_key(p) if echo or p == "[key]" or _NAME.fullmatch(str(p)) else "<key>" for p in err["loc"]]
    path = ".".join(loc)
    if err["type"] == "extra_forbidden":
        model = _model_at(root, [str(p) for p in err["loc"][:-1]])
        if model is None:
            return path, "unknown key"
        hint = did_you_mean(str(err["loc"][-1]), model.model_fields)
        return path, f"unknown key{hint}; valid keys: {', '.join(model.model_fields)}"
    if err["type"] == "missing":
        return path, "required key missing"
    message = one_line(str(err["msg"]).removeprefix("Value error, "), 300)
    if not err["loc"]:  # a rule across fields: its input is the whole object, and the message names the values
        return path, message if echo else redact(message, err.get("input"))
    return path, f"{message} (got {short(err.get('input'))})" if echo else redact(message, err.get("input"))


# ---- redaction (issue 22): a file that is not the user's spec may be anyone's secrets


MAX_REDACTED_STRINGS = 1000
"""Strings of an offending value looked for in a message (a huge value is not walked whole)."""


def redact(message: str, value: Any) -> str:
    """`message` with every string of `value` (3 characters or more, quoted or not) replaced by
    `<value>`: a validator's message quotes what it refused, and in a site file that may be a token."""
    found = _strings(value)
    forms = {form for text in found if len(text) >= 3 for form in (text, repr(text), short(text), one_line(text))}
    for form in sorted(forms, key=len, reverse=True):  # the quoted form before the bare text inside it
        message = message.replace(form, "<value>")
    return message


def _strings(value: Any) -> list[str]:
    """The strings inside a parsed value (mapping values, list items), at most MAX_REDACTED_STRINGS."""
    out: list[str] = []
    stack = [value]
    while stack and len(out) < MAX_REDACTED_STRINGS:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` (or 'x' or 'y') for the closest names to a mistyped `word`, or "" when
    none is close (difflib's ratio >= 0.6, as Python's own NameError suggestions)."""
    close = difflib.get_close_matches(word, list(choices), n=2)
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)"


def _first_error(exc: ValidationError) -> Any:
    """The error to report: the first, except that a misspelt required key (`aftr_stage`) is
    reported as the unknown key it is, not as the key it left missing."""
    errors = exc.errors()
    first = errors[0]
    if first["type"] == "missing":
        parent = first["loc"][:-1]
        for err in errors:
            if err["type"] == "extra_forbidden" and err["loc"][:-1] == parent:
                return err
    return first


def short_key(part: Any) -> str:
    """A path segment as printed: control characters escaped, long keys cut."""
    text = one_line(str(part), 40)
    return text


def _model_at(root: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    """The pydantic model class found by walking `loc` down from `root` (list indexes and
    dict keys inside a field are stepped over)."""
    model: type[BaseModel] = root
    container = False  # the last field was a list or dict of models: the next part is its index or key
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            if container:
                container = False
                continue
            return None
        sub = _model_in(field.annotation)
        if sub is None:
            return None
        model, container = sub, _is_container(field.annotation)
    return model


def _is_container(annotation: Any) -> bool:
    """Whether an annotation is (an optional) list, tuple or dict."""
    origin = getattr(annotation, "__origin__", None)
    if origin in (list, tuple, dict):
        return True
    return any(_is_container(arg) for arg in getattr(annotation, "__args__", ()) if arg is not type(None))


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
    """repr of a value, cut to MAX_VALUE_CHARS characters (large containers are not rendered whole)."""
    if isinstance(value, dict | list | tuple) and len(value) > 20:
        return f"<{type(value).__name__} of {len(value)} items>"
    text = repr(value) if not isinstance(value, str) else repr(value[: MAX_VALUE_CHARS * 2])
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def yaml_reason(exc: yaml.YAMLError) -> str:
    """The problem and line of a YAML error, on one line."""
    return yamlio.reason(exc)
