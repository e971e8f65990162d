"""`orchestrate completion bash|zsh`: shell completion scripts generated from the parser (shtab).

The script is static: pressing TAB runs no Python, so completion is instant and never imports torch.
Arguments are completed by what they name: sweep files (`*.yaml`), run and dataset folders, and
backbone names from the list that ships with the package (where present).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import shtab

# Completers by argument dest; shtab calls the bash function with the word being completed.
_BASH_PREAMBLE = """
_orchestrate_yaml_files() {
  local f
  compgen -d -S / -- "$1"
  while IFS= read -r f; do
    case "$f" in *.yaml|*.yml) printf '%s\n' "$f" ;; esac
  done < <(compgen -f -- "$1")
}
"""
YAML_FILES = {"bash": "_orchestrate_yaml_files", "zsh": "_files -g '*.(yaml|yml)'"}
_BY_DEST: dict[str, Any] = {
    "spec": YAML_FILES,
    "target": YAML_FILES,
    "run_dir": shtab.DIRECTORY,
    "images_dir": shtab.DIRECTORY,
    "root": shtab.DIRECTORY,
    "out": shtab.FILE,
    "profile": YAML_FILES,
    "site": YAML_FILES,
}


def cmd_completion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Print the completion script for one shell."""
    annotate(parser)
    print(shtab.complete(parser, shell=args.shell, preamble={"bash": _BASH_PREAMBLE}.get(args.shell, "")))
    return 0


def annotate(parser: argparse.ArgumentParser) -> None:
    """Give every argument that names a file or folder its completer (shtab reads `action.complete`)."""
    for action in _all_actions(parser):
        completer = _BY_DEST.get(action.dest)
        if completer is not None:
            action.complete = completer  # type: ignore[attr-defined]


def _all_actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_actions(sub)
