"""`python -m orchestrator.cli`: the `orchestrate` console script."""

from orchestrator.cli import console

console()
