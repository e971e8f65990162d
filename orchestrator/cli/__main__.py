"""`python -m orchestrator.cli`."""

from orchestrator.cli.main import main
from orchestrator.cli.process import run_command

run_command(main)
