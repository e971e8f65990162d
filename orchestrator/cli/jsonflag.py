"""The `--json` flag alone (no output models): parsing and dispatch import this, and only a
command asked for `--json` imports orchestrator.cli.jsonout (its pydantic models cost start-up time)."""

from __future__ import annotations

import argparse

COMMANDS = ("plan", "status", "profile", "collect", "datasets", "submit")
"""The subcommands that take `--json`."""


def add_flag(parser: argparse.ArgumentParser) -> None:
    """The `--json` option of one subcommand."""
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout (progress and warnings on stderr)"
    )


def wanted(args: argparse.Namespace) -> bool:
    """Whether the command was asked for `--json`."""
    return bool(getattr(args, "json", False))
