"""sbatch flags in `slurm.additional_parameters`: resolved the way sbatch's getopt_long resolves them.

The option table (orchestrator/sweep/sbatch_options.txt) is checked against the installed sbatch:
sbatch itself answers which options a prefix could mean (`option '--a=' is ambiguous;
possibilities: ...`), so no job is ever submitted by these probes (an unknown option follows, or
the script read from an empty stdin is refused). So are the options it takes bare (`true`).
"""

from __future__ import annotations

import re
import shutil
import string
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.launch import slurmcli
from orchestrator.sweep import sbatch_flags, site
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


# ------------------------------------------------------------------- true, false and bare flags


def sbatch_value_kind(option: str) -> str:
    """How the installed sbatch takes `--option`: "needs" a value, "none" (bare only) or "optional"."""
    assert SBATCH is not None

    def first_line(*args: str) -> str:
        result = subprocess.run([SBATCH, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
        return (result.stderr or result.stdout).partition("\n")[0]

    if f"option '--{option}' requires an argument" in first_line(f"--{option}"):  # nothing after it to take
        return "needs"
    if f"option '--{option}' doesn't allow an argument" in first_line(f"--{option}=x", _UNKNOWN_AFTER):
        return "none"
    return "optional"


@needs_sbatch
def test_value_kinds_match_the_installed_sbatch() -> None:
    """NO_VALUE and OPTIONAL_VALUE against sbatch's own answers, for every option of the table."""
    ours = {
        o: "none" if o in sbatch_flags.NO_VALUE else "optional" if o in sbatch_flags.OPTIONAL_VALUE else "needs"
        for o in sbatch_flags.options()
    }
    assert ours == {o: sbatch_value_kind(o) for o in sbatch_flags.options()}


@needs_sbatch
def test_words_match_the_installed_sbatch() -> None:
    """sbatch_flags.WORDS: sbatch takes each listed value and refuses another (`--exclusive=1`)."""
    assert SBATCH is not None

    def refused(option: str, value: str) -> bool:
        result = subprocess.run(
            [SBATCH, f"--{option}={value}"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30
        )
        return f"Invalid --{option} specification" in result.stderr

    for option, words in sbatch_flags.WORDS.items():
        assert not any(refused(option, word) for word in words), option
        assert refused(option, "1") and refused(option, "x"), option


def _script(config: site.SlurmConfig) -> tuple[str, dict[str, object]]:
    """The batch script `submit --dry-run` prints (submitit's renderer) and the executor parameters."""
    params = slurmcli.executor_parameters(config, "orch-x")
    return slurmcli.sbatch_header(Path("/shared/o/slurm"), params, 2), params


def test_true_is_kept_and_renders_the_bare_flag(write_spec: Callable[..., Path]) -> None:
    """YAML `true` was read as 1 (`str | int`, lax mode) and written `--exclusive=1`, which sbatch refuses."""
    extra = {"exclusive": True, "hold": True, "nice": 5, "comment": "true"}
    config = load_spec(write_spec(slurm={"additional_parameters": extra})).slurm
    assert config.additional_parameters == extra
    assert [type(v) for v in config.additional_parameters.values()] == [bool, bool, int, str]
    lines = _script(config)[0].splitlines()
    assert {"#SBATCH --exclusive", "#SBATCH --hold", "#SBATCH --nice=5", "#SBATCH --comment=true"} <= set(lines)
    assert not [line for line in lines if line.startswith(("#SBATCH --exclusive=", "#SBATCH --hold="))]


@pytest.mark.skipif(shutil.which("srun") is None, reason="submitit's SlurmExecutor needs srun on PATH")
def test_submitit_executor_writes_the_bare_flag_too() -> None:
    """The submit path (SlurmExecutor.update_parameters) writes the script the dry run prints."""
    import submitit

    config = site.SlurmConfig.model_validate({"additional_parameters": {"exclusive": True, "mail-type": "END"}})
    preview, params = _script(config)
    executor = submitit.SlurmExecutor(folder="/shared/o/slurm")
    executor.update_parameters(**params)
    executor.parameters["map_count"] = 2  # what submitit sets for an array (batch())
    assert executor._make_submission_file_text(executor._submitit_command_str, "uid") == preview
    assert "#SBATCH --exclusive\n" in preview


@pytest.mark.parametrize(
    ("extra", "where", "message"),
    [
        ({"comment": True}, ".comment", r"--comment needs a value \(--comment=VALUE\); true would write a bare"),
        ({"mail_type": True}, ".mail_type", r"--mail-type needs a value"),
        ({"exclusive": False}, ".exclusive", r"false is refused: leaving --exclusive out is not the same as turning"),
        ({"hold": False}, ".hold", r"false is refused"),
        ({"hold": "yes"}, ".hold", r"--hold takes no value; write hold: true for the bare flag"),
        ({"hold": 1}, ".hold", r"--hold takes no value"),
        (
            {"exclusive": 1},
            ".exclusive",
            r"--exclusive takes true \(the bare flag\) or one of user, mcs",
        ),  # sbatch refuses it
        ({"no_kill": "on"}, ".no_kill", r"--no-kill takes true \(the bare flag\) or one of off"),
        # the key checks come first, for booleans too
        ({"account": True}, "", r"--account is set by account; set that instead"),
        ({"time": True}, "", r"--time is set by timeout_min"),
        ({"requeue": True}, "", r"--requeue is set by submitit"),
        ({"arr": True}, "", r"--arr \(sbatch reads it as --array\) is set by submitit"),
        ({"excl": True}, "", r"--excl is ambiguous to sbatch \(--exclude, --exclusive\)"),
        ({"exclusive\n#SBATCH --x": True}, "", r"sbatch flag 'exclusive\\n#SBATCH --x' contains a newline"),
    ],
)
def test_booleans_refused_where_sbatch_takes_none(
    write_spec: Callable[..., Path], extra: dict[str, object], where: str, message: str
) -> None:
    field = r"sweep\.yaml: slurm\.additional_parameters" + re.escape(where) + ": "
    with pytest.raises(SpecError, match=field + message):
        load_spec(write_spec(slurm={"additional_parameters": extra}))


def test_cluster_profiles_keep_true_and_refuse_it_where_a_value_is_needed(tmp_path: Path) -> None:
    """A profile skips the spec's number check: `true` was written `--exclusive=1`, `comment: true` `--comment=1`."""
    profile = tmp_path / "cluster.yaml"
    profile.write_text("partition: gpu\nadditional_parameters: {exclusive: true}\n")
    config = site.resolve_slurm(site.SlurmConfig(), str(profile))
    assert config.additional_parameters == {"exclusive": True}
    assert "#SBATCH --exclusive\n" in _script(config)[0]
    profile.write_text("partition: gpu\nadditional_parameters: {comment: true}\n")
    with pytest.raises(site.SiteError, match=r"cluster.yaml: additional_parameters\.comment: --comment needs a value"):
        site.load_site(profile, "cluster profile")
