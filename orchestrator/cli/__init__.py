"""The command line: argparse and one small function per command (nothing here is imported by other modules)."""

from orchestrator.cli.main import console, main

__all__ = ["console", "main"]
