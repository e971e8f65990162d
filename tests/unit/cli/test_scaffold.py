"""`orchestrate init`, `orchestrate schema` and `--version`, through the CLI entry point."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image

from orchestrator.cli.main import main
from orchestrator.sweep import yamlio
from orchestrator.sweep.errors import SpecError
from orchestrator.sweep.plan import plan
from orchestrator.sweep.schema import profile_schema, site_schema, sweep_schema
from orchestrator.sweep.spec import spec_from_dict

REPO = Path(__file__).resolve().parents[3]
SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))


def _image_tree(root: Path, classes: list[str], splits: tuple[str, ...] = ()) -> Path:
    for split in splits or ("",):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (12, 12), (index * 60, i * 40, 0)).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("splits", [(), ("train", "val", "test"), ("train", "val")])
def test_init_writes_a_sweep_that_plans_clean(
    tmp_path: Path, splits: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _image_tree(tmp_path / "shapes", ["circle", "square", "triangle"], splits)
    out = tmp_path / "sweeps" / "shapes.yaml"
    out.parent.mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--root", str(data), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# yaml-language-server: $schema=orchestrate-sweep.schema.json\n")
    assert "3 classes" in text
    assert (out.parent / "orchestrate-sweep.schema.json").is_file()
    assert main(["plan", str(out)]) == 0
    assert "9 runs" in capsys.readouterr().out  # 1 backbone x 3 rows x 3 seeds
    raw = yamlio.load_file(out, "sweep")
    jsonschema.validate(raw, sweep_schema())


def test_init_never_overwrites_and_refuses_a_folder_without_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _image_tree(tmp_path / "d", ["a", "b"])
    out = tmp_path / "mine.yaml"
    out.write_text("my own notes\n")
    assert main(["init", "--root", str(data), "--out", str(out)]) == 2
    assert "never overwrites" in capsys.readouterr().err
    assert out.read_text() == "my own notes\n"
    _image_tree(tmp_path / "empty", ["only"])
    assert main(["init", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "x.yaml")]) == 2
    assert "1 class folder(s)" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (["--name", "inj\nslurm: {setup: [echo INJECTED]}"], "init --name 'inj\\nslurm"),
        (["--name", "$(id);[red]x"], "init --name '$(id);[red]x': letters, digits"),
        (["--name", ".."], "init --name '..'"),
        (["--backbone", "resnet18x"], "init --backbone 'resnet18x' is not a timm"),
        (["--backbone", "x\x1b[31m"], "init --backbone 'x\\x1b[31m' is not a timm"),
    ],
)
def test_init_checks_what_it_writes_into_the_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: list[str], says: str
) -> None:
    """--name and --backbone were written unquoted and unchecked: a newline added a key of its own
    (a slurm setup command), other values made a file that `plan` refused."""
    data = _image_tree(tmp_path / "d", ["a", "b"])
    out = tmp_path / "x.yaml"
    assert main(["init", "--root", str(data), "--out", str(out), *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {says}") and err.count("\n") == 1, err
    assert not out.exists()


def test_every_key_init_writes_is_explained_in_a_comment(tmp_path: Path) -> None:
    data = _image_tree(tmp_path / "d", ["a", "b"])
    assert main(["init", "--root", str(data), "--out", str(tmp_path / "x.yaml")]) == 0
    keyed = [line for line in (tmp_path / "x.yaml").read_text().splitlines() if re.match(r"\s*[a-z_]+:", line)]
    bare = [line for line in keyed if "#" not in line and not line.rstrip().endswith(":")]
    assert not bare and len(keyed) > 10, bare


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_shipped_sweep_validates_against_the_schema(path: Path) -> None:
    jsonschema.validate(yamlio.load_file(path, "sweep"), sweep_schema())


def test_shipped_sites_and_profiles_validate() -> None:
    for path in sorted((REPO / "sites").glob("*.yaml")):
        jsonschema.validate(yamlio.load_file(path, "site"), site_schema())
    for path in sorted((REPO / "slurm" / "profiles").glob("*.yaml")):
        jsonschema.validate(yamlio.load_file(path, "profile"), profile_schema())


# Mistakes plan refuses; the schema must refuse them too (an editor that accepts them would mislead).
MISTAKES: list[tuple[tuple[str, ...], Any]] = [
    (("nmae",), "x"),  # unknown top-level key
    (("defaults", "data", "image_size"), 32),  # unknown trainer key
    (("defaults", "epochs"), "ten"),  # wrong type
    (("defaults", "optim", "name"), "adamm"),  # not one of the choices
    (("modifiers", "bad", "optim.lrr"), 0.1),  # unknown dotted key in a modifier
    (("grid", "model.head_dropuot"), [0.1]),  # unknown grid axis
    (("slurm", "gpus_per_node"), "two"),  # wrong type in the slurm block
]


@pytest.mark.parametrize(("where", "value"), MISTAKES, ids=lambda item: str(item))
def test_schema_refuses_what_plan_refuses(where: tuple[str, ...], value: Any) -> None:
    raw = copy.deepcopy(yamlio.load_file(REPO / "sweeps" / "demo.yaml", "sweep"))
    node = raw
    for key in where[:-1]:
        node = node.setdefault(key, {})
    node[where[-1]] = value
    with pytest.raises(SpecError):
        plan(spec_from_dict(raw, "demo.yaml"))
    assert list(jsonschema.Draft202012Validator(sweep_schema()).iter_errors(raw)), f"schema accepted {where}"


def test_schema_command_writes_json_and_keeps_a_users_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "site"]) == 0
    assert json.loads(capsys.readouterr().out)["$id"] == "orchestrate-site.schema.json"
    theirs = tmp_path / "s.json"
    theirs.write_text('{"mine": true}\n')
    assert main(["schema", "--out", str(theirs)]) == 2
    assert "not overwritten" in capsys.readouterr().err
    assert theirs.read_text() == '{"mine": true}\n'
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # read to see whether it was ours: that read blocked forever
    assert main(["schema", "--out", str(fifo)]) == 2
    assert "not overwritten" in capsys.readouterr().err and fifo.is_fifo()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("orchestrate ")


def test_bash_completion_lists_sweep_files_and_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "orchestrate.bash"
    script.write_text(capsys.readouterr().out)
    probe = (
        f"source {script}\n"
        "COMP_WORDS=(orchestrate plan sweeps/); COMP_CWORD=2; _shtab_orchestrate\n"
        "printf 'F:%s\\n' \"${COMPREPLY[@]}\"\n"
        "COMP_WORDS=(orchestrate sub); COMP_CWORD=1; _shtab_orchestrate; printf 'C:%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    done = subprocess.run(["bash", "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    lines = done.stdout.splitlines()
    assert "F:sweeps/demo.yaml" in lines
    assert all(line.endswith((".yaml", ".yml", "/")) for line in lines if line.startswith("F:"))
    assert "C:submit" in lines


def test_zsh_completion_script_is_generated(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "zsh"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("#compdef orchestrate")
    assert "*.(yaml|yml)" in text
