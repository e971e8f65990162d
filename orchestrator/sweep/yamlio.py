"""YAML reading and writing with numbers parsed the way users write them, and the
guards a file from someone else needs.

PyYAML implements YAML 1.1, whose float pattern needs a dot: `1e-4` loads as the
string "1e-4". Researchers write learning rates exactly like that, so the loader
below resolves floats with the YAML 1.2 core-schema pattern instead.

Guards (each a one-line error, never a traceback):
- a key written twice in one mapping is an error naming both lines (PyYAML keeps the last);
- aliases may not expand the document beyond MAX_EXPANDED_NODES nodes (a "billion laughs"
  file is a few hundred bytes and expands to gigabytes in any code that walks it);
- files are read only when they are regular files under MAX_FILE_BYTES, and must be UTF-8;
- `!!binary`, `!!set`, `!!omap` and `!!pairs` values are refused (they slipped past the checks on text);
- an integer has at most MAX_INT_DIGITS digits (over 4,300 Python's int() raises a ValueError).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_EXPANDED_NODES = 100_000
"""Nodes a document may have once its aliases are expanded (a real spec has a few hundred)."""

_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlFileError(ValueError):
    """A file that cannot be read as YAML; the message is one line and quotes none of its content."""


class _NoDuplicateKeys(SafeConstructor):
    """Both loaders' mappings: a key given twice is an error naming both lines (PyYAML keeps the last)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            _check_duplicates(node)
        return super().construct_mapping(node, deep=deep)


class _Loader(_NoDuplicateKeys, yaml.SafeLoader):
    """SafeLoader with YAML 1.2 float resolution, duplicate-key errors and bounded aliases."""

    def compose_document(self) -> Node | None:
        node: Node | None = super().compose_document()
        if node is not None:
            _check_expansion(node)
        return node


_REFUSED_TAGS = ("binary", "set", "omap", "pairs")
"""Explicit tags whose values are not text, lists or mappings: `!!binary` bytes became text in pydantic
without passing the control-character and length checks; a `!!set` was never walked by them."""


def _refuse_tag(loader: _Loader, node: Node) -> Any:
    tag = node.tag.rsplit(":", 1)[-1]
    raise ConstructorError(None, None, f"explicit !!{tag} value: not accepted here (write plain text)", node.start_mark)


for _tag in _REFUSED_TAGS:
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)

MAX_INT_DIGITS = 20
"""Digits of the largest integer a document may hold (no count, size or seed has more; int64 has 19)."""
_MAX_INT_CHARS = 64
"""Characters of an integer's text converted at all (`0x` and `_` included)."""


def _bounded_int(loader: _Loader, node: Node) -> Any:
    """An integer of at most MAX_INT_DIGITS digits. A longer one (5,000 digits, or a sexagesimal `1:59:...`
    of as many) raised Python's ValueError past the YAML errors, or, written in hex, reached the run id's
    json.dumps and raised there: a traceback either way."""
    text = str(node.value)
    if len(text) > _MAX_INT_CHARS:
        raise ConstructorError(
            None,
            None,
            f"an integer written with {len(text)} characters (at most {MAX_INT_DIGITS} digits)",
            node.start_mark,
        )
    value = SafeConstructor.construct_yaml_int(loader, node)  # type: ignore[arg-type]
    digits = len(str(abs(value)))
    if digits > MAX_INT_DIGITS:
        raise ConstructorError(None, None, f"an integer of {digits} digits (at most {MAX_INT_DIGITS})", node.start_mark)
    return value


_Loader.add_constructor("tag:yaml.org,2002:int", _bounded_int)

# Replace (not extend) the float resolver so `1e-4` is a float and `1_000` stays an int.
_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def _check_duplicates(node: MappingNode) -> None:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
            continue
        line = key_node.start_mark.line + 1
        if key_node.value in seen:
            key = key_node.value if len(key_node.value) <= 40 else key_node.value[:37] + "..."
            raise ConstructorError(
                None, None, f"duplicate key {key!r} at lines {seen[key_node.value]} and {line}", None
            )
        seen[key_node.value] = line


def _check_expansion(root: Node) -> None:
    """Count the nodes the document has once aliases are expanded, without expanding them; an alias
    inside the node it names (`&a [*a]`: infinite) is refused."""
    sizes: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: deep documents must not hit the recursion limit
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        if not done and id(node) in entered:
            # Entered, not finished: everything popped since is inside it, so it contains itself.
            raise ComposerError(None, None, "an alias refers to the node that contains it", node.start_mark)
        entered.add(id(node))
        children = _children(node)
        if done or not children:
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_EXPANDED_NODES:
                raise ComposerError(
                    None, None, f"aliases expand the document beyond {MAX_EXPANDED_NODES} nodes", root.start_mark
                )
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


class _CLoader(_NoDuplicateKeys, yaml.CSafeLoader):
    """_Loader's rules on LibYAML's parser (8x faster: a 100,000-run spec lists 16,667 seeds): the
    same resolvers and constructors, the expansion check on the composed document."""

    def get_single_node(self) -> Node | None:
        node: Node | None = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node


_CLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
_CLoader.yaml_constructors = _Loader.yaml_constructors


def loads(text: str, fast: bool = False) -> Any:
    """Parse YAML text safely; raises yaml.YAMLError on bad syntax, duplicate keys or alias bombs.

    LibYAML parses (`load_spec` of a spec listing 1,667 seeds: 42 -> 11 ms); a document it refuses
    is parsed again by the pure-Python parser, whose messages are the friendlier ones users see.
    `fast`: no second parse for a YAML error (files this tool wrote); nesting too deep is reported
    as one either way."""
    try:
        return yaml.load(text, Loader=_CLoader)
    except yaml.YAMLError:
        if fast:
            raise
    except RecursionError:
        pass  # the pure-Python parser recurses as deep, and its RecursionError becomes a YAML error below
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader derives from SafeLoader
    except RecursionError:
        # Deep nesting (`[[[[...`) exhausts the pure-Python composer: a YAML error like any other,
        # so callers name the file (a bare RecursionError line named nothing).
        raise yaml.MarkedYAMLError(problem="nested too deeply (hundreds of levels)") from None


def dumps(data: Any) -> str:
    """Serialise to block-style YAML, keeping key order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of a regular file of at most MAX_FILE_BYTES, or a one-line YamlFileError."""
    try:
        if not path.exists():
            raise YamlFileError(f"{what} {path} does not exist")
        if path.is_dir():
            raise YamlFileError(f"{what} {path} is a folder, not a file")
        if not path.is_file():
            raise YamlFileError(f"{what} {path} is not a regular file")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise YamlFileError(f"{what} {path} is larger than {MAX_FILE_BYTES // 2**20} MiB")
        data = path.read_bytes()
    except PermissionError:
        raise YamlFileError(f"{what} {path} is not readable (permission denied)") from None
    except OSError as exc:
        raise YamlFileError(f"{what} {path} cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlFileError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def reason(exc: yaml.YAMLError) -> str:
    """The problem and line of a YAML error on one line, without quoting the file's text."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "syntax error"
    problem = " ".join(str(problem).split())
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return problem


def load_file(path: Path, what: str) -> Any:
    """Read and parse a YAML file; every problem is a one-line YamlFileError."""
    text = read_text(path, what)
    try:
        return loads(text)
    except yaml.YAMLError as exc:
        raise YamlFileError(f"{what} {path}: invalid YAML: {reason(exc)}") from None
