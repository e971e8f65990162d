"""Hostile and broken specs are refused at plan time with one line naming file and field;
nothing reaches sbatch (or a GPU node) that would fail or misbehave there."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TINY_SPEC
from plan_refusal import plan_error

from orchestrator import store
from orchestrator.checks import preflight
from orchestrator.cli.main import main
from orchestrator.launch import slurmcli
from orchestrator.sweep import site, yamlio
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SpecError, load_spec
from trainers import rundir

BASH = shutil.which("bash")


def bash_ok(script: str, tmp_path: Path) -> None:
    assert BASH is not None
    path = tmp_path / "job.sh"
    path.write_text(script)
    result = subprocess.run([BASH, "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def sbatch_lines_kept(script: str) -> list[str]:
    """The #SBATCH lines sbatch reads: those before the first line that is neither blank nor a comment."""
    kept = []
    for line in script.splitlines()[1:]:
        if line.startswith("#SBATCH"):
            kept.append(line)
        elif line.strip() and not line.startswith("#"):
            break
    assert kept == [line for line in script.splitlines() if line.startswith("#SBATCH")], "an #SBATCH line is ignored"
    return kept


# --------------------------------------------------------------- shell injection into the batch script


@pytest.mark.parametrize("output_dir", ["/x\ntouch ~/p #", "/tmp/a b", "/tmp/x;id", "/tmp/%j", "/", "/etc", "/etc/x"])
def test_output_dir_is_an_allow_listed_folder(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str], output_dir: str
) -> None:
    err = plan_error([str(write_spec(output_dir=output_dir))], capsys)
    assert "output_dir:" in err


def test_output_dir_climbing_to_the_root_is_refused(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    climb = "/".join([".."] * (len(Path.cwd().parts) + 2))
    assert "output_dir: " in plan_error([str(write_spec(output_dir=climb))], capsys)


@pytest.mark.parametrize("name", ["x\n", "a" * 300, "tiny\x1b[31m"])
def test_sweep_names_are_matched_whole(write_spec: Callable[..., Path], name: str) -> None:
    with pytest.raises(SpecError, match=r"name: .* must be letters"):
        load_spec(write_spec(name=name))


# `echo "'"'` has two of each quote, but its last quote stays open to the shell: it swallowed the
# script's next lines (the srun line too), so every job died.
@pytest.mark.parametrize(
    "line", ["module load a && rm -rf ~", "a || b", "a | b", "echo x > ~/.bashrc", "echo 'open", "echo \"'\"'"]
)
def test_setup_lines_allow_one_plain_command(write_spec: Callable[..., Path], line: str) -> None:
    with pytest.raises(SpecError, match=r"slurm\.setup: setup line .* one command per item"):
        load_spec(write_spec(slurm={"setup": [line]}))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"partition=evil --qos": "high"}, r"sbatch flag 'partition=evil --qos' contains"),
        ({"mail type": "END"}, r"sbatch flag 'mail type' contains"),
        ({"array": "0-99"}, r"--array is set by submitit"),
        ({"output": "/tmp/x"}, r"--output is set by submitit"),
        ({"wrap": "id"}, r"--wrap is set by submitit"),
        ({"time": 10}, r"--time is set by timeout_min; set that instead"),
        ({"mem_per_cpu": "1G", "mem": "1G"}, r"--mem-per-cpu is set by mem_gb"),
        ({"mail-type": "END\n#x"}, r"value of mail-type: .* contains"),
    ],
)
def test_additional_parameters_keys_and_values(write_spec: Callable[..., Path], extra: dict, message: str) -> None:
    with pytest.raises(SpecError, match=r"slurm\.additional_parameters: " + message):
        load_spec(write_spec(slurm={"additional_parameters": extra}))


@pytest.mark.parametrize(
    ("mem", "message"), [(0.0001, "greater than or equal to 0.1"), (float("inf"), "finite number"), (1e9, "less than")]
)
def test_memory_bounds(write_spec: Callable[..., Path], mem: float, message: str) -> None:
    with pytest.raises(SpecError, match=r"slurm\.mem_gb: Input should be .*" + message):
        load_spec(write_spec(slurm={"mem_gb": mem}))


def test_time_bounds(write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError, match=r"slurm\.timeout_min: Input should be less than or equal to 525600"):
        load_spec(write_spec(slurm={"timeout_min": 10**9}))


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_rendered_sbatch_script_with_odd_but_allowed_values_parses_and_keeps_every_line(tmp_path: Path) -> None:
    """submitit's own renderer, fed the strangest values the allow-lists let through."""
    config = site.SlurmConfig(
        partition="gpu-a100.x+y,cpu",
        account="lab_1",
        qos="normal",
        constraint="a100&(ib|eth)*2:[x]",
        exclude="node[01-04],gpu7",
        mem_gb=0.5,
        setup=['export A="x y" B=$HOME/${USER}/z', "module load cuda/12.4", "source '/opt/env x/bin/activate'"],
        additional_parameters={"mail-type": "END,FAIL", "mail_user": "me@lab.org", "comment": "a:b%c=d/e", "nice": 3},
    )
    folder = tmp_path / "out+1/odd,name=@x/slurm"
    script = slurmcli.sbatch_header(folder, slurmcli.executor_parameters(config, "orch-t.1_x"), 7)
    bash_ok(script, tmp_path)
    kept = sbatch_lines_kept(script)
    flags = {line.split("=", 1)[0].removeprefix("#SBATCH --") for line in kept}
    assert {"time", "mem", "signal", "output", "error", "array", "partition", "exclude", "mail-user"} <= flags
    assert "#SBATCH --mem=512MB" in kept


# ------------------------------------------------------------------------------- tracebacks


def test_non_utf8_spec_and_site_are_one_line_errors(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "latin.yaml"
    spec.write_bytes(TINY_SPEC.format(out=tmp_path / "out").replace("tiny", "caf\xe9").encode("latin-1"))
    assert "latin.yaml is not UTF-8 text" in plan_error([str(spec)], capsys)
    (tmp_path / "site.yaml").write_bytes(b"datasets: {d: {name: \xff}}\n")
    assert "site.yaml is not UTF-8 text" in plan_error([str(write_spec(site="site.yaml"))], capsys)


@pytest.mark.parametrize(
    ("site_text", "message"),
    [
        (None, r"is a folder, not a file"),
        ("datasets: [a, b]\n", r"datasets: Input should be a valid dictionary"),
        ("checkpoints:\n  7: /x.pth\n", r"checkpoints.7.\[key\]: Input should be a valid string"),
    ],
)
def test_broken_site_files_are_one_line_errors(
    write_spec: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    site_text: str | None,
    message: str,
) -> None:
    if site_text is None:
        (tmp_path / "s.yaml").mkdir()
    else:
        (tmp_path / "s.yaml").write_text(site_text)
    assert re.search(message, plan_error([str(write_spec(site="s.yaml"))], capsys))


def test_non_string_backbones_with_per_backbone(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_spec(grid={"backbone": [1, 2.5], "seed": [0]}, per_backbone={"resnet10t": {"epochs": 2}})
    assert "per_backbone.resnet10t: not a backbone of the grid (1, 2.5)" in plan_error([str(path)], capsys)


# ------------------------------------------------------------------------------ blow-ups


def alias_bomb(levels: int = 9) -> str:
    text = "name: bomb\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for level in range(1, levels):
        text += f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]\n"
    return text + f"grid: {{seed: *l{levels - 1}}}\n"


def test_alias_bomb_is_refused_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    started = time.perf_counter()
    err = plan_error([str(path)], capsys)
    assert time.perf_counter() - started < 5, "refused before anything expands"  # generous: a shared 2-core CI box
    assert "aliases expand the document beyond 100000 nodes" in err


SELF_ALIASES = ["grid: &a [*a]", "grid: {a: &b {c: [1, *b]}}", "x: &m {k: *m}"]


@pytest.mark.parametrize("line", SELF_ALIASES)
def test_an_alias_inside_the_node_it_names_is_refused_by_both_parsers(line: str) -> None:
    """Infinite when expanded: the expansion count looped on it forever, its memory growing (every
    YAML reader: specs, overrides, site files, a results folder's sweep.yaml). Run in a subprocess
    with a deadline, so the old behaviour fails the test instead of hanging the suite."""
    code = (
        "import sys, yaml\n"
        "from orchestrator.sweep import yamlio\n"
        "for fast in (True, False):\n"
        "    try:\n"
        "        yamlio.loads(sys.argv[1], fast=fast)\n"
        "    except yaml.YAMLError as exc:\n"
        "        print(yamlio.reason(exc))\n"
    )
    text = f"name: loop\n{line}\n"
    done = subprocess.run([sys.executable, "-c", code, text], capture_output=True, text=True, timeout=60)
    assert done.stdout.count("an alias refers to the node that contains it at line 2") == 2, done


def test_a_self_referring_override_gets_one_line(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    err = plan_error([str(write_spec()), "grid.seed=&a [*a]"], capsys)
    assert "override 'grid.seed=&a [*a]': value is not valid YAML" in err


def test_grid_over_the_run_cap_is_refused_before_any_run_is_built(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    grid = {"backbone": ["resnet10t"], "seed": list(range(1000)), "model.head_dropout": [i / 1000 for i in range(200)]}
    path = write_spec(grid=grid)  # 1000 x 200 x 3 rows = 600,000 runs
    err = plan_error([str(path)], capsys)
    assert "grid: 600,000 runs (1 backbone x 1000 seed x 200 model.head_dropout x 3 ablation rows)" in err
    assert "exceed the cap of 50,000" in err and "--max-runs" in err
    assert main(["plan", str(write_spec()), "--max-runs", "5", "--skip-data-check"]) == 2
    assert "6 runs" in capsys.readouterr().err
    assert main(["plan", str(write_spec()), "--max-runs", "6", "--skip-data-check"]) == 0


def test_a_megabyte_backbone_name_gives_a_short_error(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    err = plan_error([str(write_spec(grid={"backbone": ["x" * 1_000_000], "seed": [0]}))], capsys)
    assert len(err) < 700 and "grid.backbone[0]: a string of 1000000 characters" in err


# -------------------------------------------------------------------------- silently accepted


def test_duplicate_keys_name_both_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: dup\ndefaults:\n  epochs: 4\n  seed: 1\n  epochs: 400\n")
    assert "invalid YAML: duplicate key 'epochs' at lines 3 and 5" in plan_error([str(path)], capsys)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("defaults.optim.lr=yes", "defaults.optim.lr"),
        ("modifiers.aug={optim.weight_decay: true}", "modifiers.aug.optim.weight_decay"),
        ("grid.seed=[0, true]", "grid.seed[1]"),
        ("slurm.mem_gb=on", "slurm.mem_gb"),
    ],
)
def test_booleans_are_not_numbers(write_spec: Callable[..., Path], override: str, field: str) -> None:
    with pytest.raises(SpecError, match=re.escape(field) + ": a boolean, not a number"):
        load_spec(write_spec(), [override])


@pytest.mark.parametrize("key", ["defaults.optim.lr", "defaults.optim.weight_decay", "defaults.schedule.gamma"])
def test_non_finite_floats_are_refused(write_spec: Callable[..., Path], key: str) -> None:
    with pytest.raises(SpecError, match=re.escape(key) + r"|finite"):
        load_spec(write_spec(), [f"{key}=.inf"])
    with pytest.raises(SpecError):
        load_spec(write_spec(), [f"{key}=.nan"])


@pytest.mark.parametrize("label", ["Base\x1b[31mline", "row\tx", "r" * 81])
def test_control_characters_and_long_labels_are_refused(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str], label: str
) -> None:
    err = plan_error([str(write_spec(ablations={label: []}))], capsys)
    assert "\x1b" not in err and "ablation row name" in err
    err = plan_error([str(write_spec(modifiers={label: {"epochs": 2}}))], capsys)
    assert "\x1b" not in err and "modifier name" in err


# ----------------------------------------------------------------- accepted by plan, failed on the node


def test_table_definitions_are_checked_at_plan(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = plan_error([str(write_spec(tables=[{"rows": ["backbnoe"]}]))], capsys)
    assert "tables.table: rows: unknown dimension 'backbnoe'" in err
    err = plan_error([str(write_spec(tables=[{"template": "mine.md.j2"}]))], capsys)
    assert "tables.table.template: template" in err and "mine.md.j2 does not exist" in err
    (tmp_path / "mine.md.j2").write_text("{% for t in tables %}{{ t.title }\n")
    err = plan_error([str(write_spec(tables=[{"template": "mine.md.j2"}]))], capsys)
    assert "tables.table.template: " in err and "line 1" in err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        # Caught by plan's torch-free name check already (orchestrator/sweep/backbones.py).
        ("grid.backbone=[resnet10tt]", r"grid.backbone\[0\]: 'resnet10tt' is not a timm [0-9.]+ model; did you mean"),
        ("defaults.model.insert=[{module: scra, after_stage: 9}]", r"model.insert\[0\].after_stage 9: .* has stages"),
    ],
)
def test_model_checks_before_the_first_sbatch(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    """`submit` builds each distinct model on the meta device before anything is queued."""
    path = write_spec()
    assert main(["submit", str(path), override, "--dry-run", "--skip-data-check"]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (path.parent / "out" / "runs").exists(), "nothing was prepared"


# ---------------------------------------------------------------------------------------- budget


def test_budget_fails_closed_and_submit_refuses_over_budget(
    write_spec: Callable[..., Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cell the profiler cannot build: a name plan's backbone table would refuse first, let through here.
    monkeypatch.setattr(preflight, "check_backbones", lambda *args: None)
    typo = write_spec(budget={"max_gflops_increase_pct": 5}, grid={"backbone": ["resnet10tt"], "seed": [0]})
    err = plan_error([str(typo)], capsys)
    assert "budget: 3 cell(s) cannot be profiled" in err and "budget ok" not in capsys.readouterr().out
    bigger = write_spec(
        budget={"max_gflops_increase_pct": 5},
        grid={"backbone": ["test_resnet"], "seed": [0]},
        modifiers={"aug": {"data.image_size_px": 24}, "dropout": {"model.head_dropout": 0.5}},
    )
    assert main(["submit", str(bigger), "--dry-run", "--skip-data-check"]) == 2
    assert "2 cell(s) over budget; fix them or pass --over-budget" in capsys.readouterr().err
    assert main(["submit", str(bigger), "--dry-run", "--skip-data-check", "--over-budget"]) == 0


# ------------------------------------------------------------------------- overwrites, permissions


def test_a_users_own_sweep_yaml_in_the_output_folder_is_never_replaced(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_spec()
    out = tmp_path / "out"
    out.mkdir()
    mine = "# my notes\nname: mine\n"
    (out / "sweep.yaml").write_text(mine)
    assert "was not written by orchestrate" in plan_error([str(path)], capsys)
    spec = load_spec(path)
    with pytest.raises(SpecError, match="was not written by orchestrate"):
        store.write_snapshot(spec, out)
    assert (out / "sweep.yaml").read_text() == mine
    (out / "sweep.yaml").unlink()
    store.write_snapshot(spec, out)
    store.write_snapshot(spec, out)  # its own snapshot is replaced on the next submit
    assert yamlio.loads((out / "sweep.yaml").read_text())["spec"]["name"] == "tiny"
    parsed: list[Path] = []
    real_load = yamlio.load_file

    def load_file(path: Path, what: str) -> object:
        parsed.append(path)
        return real_load(path, what)

    monkeypatch.setattr(yamlio, "load_file", load_file)
    assert store.foreign_snapshot(out) is None and parsed == [], "the bytes whose hash submit recorded: not parsed"
    (out / "sweep.yaml").write_text(mine)  # the manifest records another file's hash
    assert store.foreign_snapshot(out) == out / "sweep.yaml" and parsed == [out / "sweep.yaml"]


def test_output_dir_that_is_a_file(
    write_spec: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("x")
    err = plan_error([str(write_spec(output_dir=str(tmp_path / "afile" / "sub")))], capsys)
    assert "afile is a file, not a folder" in err


def test_written_files_honour_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        rundir.write_text(tmp_path / "a.txt", "x")
        os.umask(0o002)
        rundir.write_json(tmp_path / "b.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o664


def test_plan_of_a_valid_spec_still_works(write_spec: Callable[..., Path]) -> None:
    assert len(plan(load_spec(write_spec()))) == 6
