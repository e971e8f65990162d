"""sbatch flags in `slurm.additional_parameters`: resolved the way sbatch's getopt_long resolves them.

The option table (orchestrator/sweep/sbatch_options.txt) is checked against the installed sbatch:
sbatch itself answers which options a prefix could mean (`option '--a=' is ambiguous;
possibilities: ...`), so no job is ever submitted by these probes (an unknown option follows).
"""

from __future__ import annotations

import re
import shutil
import string
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.sweep import sbatch_flags
from orchestrator.sweep.spec import SpecError, load_spec

SBATCH = shutil.which("sbatch")
needs_sbatch = pytest.mark.skipif(SBATCH is None, reason="needs the sbatch client")
_UNKNOWN_AFTER = "--zzq-not-an-option"  # makes sbatch stop with an error before it could submit


def sbatch_verdict(prefix: str) -> tuple[str, list[str]]:
    """What the installed sbatch makes of `--prefix=`: ("ambiguous", options), ("unknown", []) or ("one", [])."""
    assert SBATCH is not None
    result = subprocess.run(
        [SBATCH, f"--{prefix}=", _UNKNOWN_AFTER], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30
    )
    first = (result.stderr or result.stdout).splitlines()[0] if (result.stderr or result.stdout) else ""
    assert result.returncode != 0, f"sbatch accepted --{prefix}= {_UNKNOWN_AFTER}: {first}"
    if "is ambiguous; possibilities:" in first:
        return "ambiguous", sorted(re.findall(r"'--([a-z0-9-]+)'", first.split("possibilities:", 1)[1]))
    if f"unrecognized option '--{prefix}=" in first:
        return "unknown", []
    return "one", []


def our_verdict(prefix: str) -> tuple[str, list[str]]:
    found = sbatch_flags.resolve(prefix)
    if len(found) > 1:
        return "ambiguous", found
    return ("one", []) if found else ("unknown", [])


@needs_sbatch
@pytest.mark.parametrize("letter", string.ascii_lowercase)
def test_option_table_matches_the_installed_sbatch(letter: str) -> None:
    """Every one-letter prefix: sbatch lists all its options starting with that letter (or resolves the
    only one, or knows none), so 26 probes check the whole table."""
    verdict, listed = sbatch_verdict(letter)
    table = sorted(o for o in sbatch_flags.options() if o.startswith(letter))
    if verdict == "ambiguous":
        assert listed == table
    else:
        assert len(table) == (1 if verdict == "one" else 0), (letter, verdict, table)


@needs_sbatch
@pytest.mark.slow
def test_every_prefix_resolves_as_sbatch_resolves_it() -> None:
    """getopt_long's prefix rule, for every prefix of every option (about a thousand sbatch calls)."""
    prefixes = sorted({option[:n] for option in sbatch_flags.options() for n in range(1, len(option) + 1)})
    wrong = [(p, our_verdict(p), sbatch_verdict(p)) for p in prefixes if our_verdict(p) != sbatch_verdict(p)]
    assert not wrong


def test_full_names_win_over_longer_options() -> None:
    assert sbatch_flags.resolve("mem") == ["mem"]  # not ambiguous with --mem-per-cpu: getopt takes the exact name
    assert sbatch_flags.resolve("arr") == ["array"]
    assert sbatch_flags.resolve("expor") == ["export", "export-file"]
    assert sbatch_flags.resolve("no-such") == []


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("arr", r"--arr \(sbatch reads it as --array\) is set by submitit"),
        ("chd", r"--chd \(sbatch reads it as --chdir\) is set by submitit"),
        ("tasks_per_node", r"--tasks-per-node is set by tasks_per_node and nodes"),
        ("ntasks", r"--ntasks is set by tasks_per_node"),
        ("gres", r"--gres is set by gpus_per_node"),
        ("gpus", r"--gpus is set by gpus_per_node"),
        ("export", r"--export is set by the job's environment"),
        ("expo", r"--expo is ambiguous to sbatch \(--export, --export-file\); --export, --export-file set by"),
        ("wa", r"--wa is ambiguous to sbatch \(--wait, --wait-all-nodes\); --wait set by the tool"),
        ("time_m", r"--time-m \(sbatch reads it as --time-min\) is set by timeout_min"),
        ("clusters", r"--clusters is set by the cluster status asks"),
        ("mail-ty", r"--mail-ty abbreviates --mail-type; write the full option name"),
        ("frobnicate", r"--frobnicate is not an sbatch option"),
    ],
)
def test_spec_refuses_owned_abbreviated_and_unknown_flags(
    write_spec: Callable[..., Path], key: str, message: str
) -> None:
    with pytest.raises(SpecError, match=r"slurm\.additional_parameters: " + message):
        load_spec(write_spec(slurm={"additional_parameters": {key: "1"}}))


def test_ordinary_flags_still_pass(write_spec: Callable[..., Path]) -> None:
    extra = {"mail-type": "END", "mail_user": "me@lab.org", "begin": "now+1hour", "comment": "x", "nice": 3}
    spec = load_spec(write_spec(slurm={"additional_parameters": extra}))
    assert spec.slurm.additional_parameters == extra
