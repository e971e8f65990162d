"""YAML reading and writing with numbers parsed the way users write them.

PyYAML implements YAML 1.1, whose float pattern needs a dot: `1e-4` loads as the
string "1e-4". Researchers write learning rates exactly like that, so the loader
below resolves floats with the YAML 1.2 core-schema pattern instead.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 float resolution."""


# Replace (not extend) the float resolver so `1e-4` is a float and `1_000` stays an int.
_Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def loads(text: str) -> Any:
    """Parse YAML text safely; raises yaml.YAMLError on bad syntax."""
    return yaml.load(text, Loader=_Loader)  # _Loader derives from SafeLoader


def dumps(data: Any) -> str:
    """Serialise to block-style YAML, keeping key order."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
