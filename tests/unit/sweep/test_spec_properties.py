"""Property-based: generated specs (mutations of a valid one with hostile values) give a valid
plan or one line `error: ...`, never a traceback, and never an sbatch script bash rejects."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TINY_SPEC
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from orchestrator.cli.main import main
from orchestrator.launch import slurmcli
from orchestrator.sweep import site, yamlio
from orchestrator.sweep.spec import load_spec

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Printable text plus the characters that break shells, YAML, terminals and file systems.
HOSTILE = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("\n\r\t\x1b\x00;&|<>`$()'\"\\ #%=,:@*[]{}~!?/.-_+")),
        st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs", "Cc")),
    ),
    max_size=40,
)
# Near the allow-lists' edges: mostly accepted, so the rendered scripts get tested too.
PLAUSIBLE = st.text(alphabet=st.sampled_from(list("abzAZ09_.-+,:@%=/&|*[]()~{}$ '\"")), min_size=1, max_size=20)
WORDS = st.from_regex(r"[a-z0-9_.+-]{1,12}", fullmatch=True)
SCALARS = st.one_of(
    WORDS,
    st.integers(1, 100),
    PLAUSIBLE,
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    HOSTILE,
)
VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE, inner, max_size=4), max_leaves=8
)
PATHS = [
    ("name",),
    ("output_dir",),
    ("site",),
    ("slurm", "partition"),
    ("slurm", "account"),
    ("slurm", "constraint"),
    ("slurm", "exclude"),
    ("slurm", "setup"),
    ("slurm", "additional_parameters"),
    ("slurm", "mem_gb"),
    ("slurm", "timeout_min"),
    ("defaults", "optim", "lr"),
    ("defaults", "seed"),
    ("defaults", "data", "augment"),
    ("grid", "seed"),
    ("grid", "backbone"),
    ("ablations",),
    ("modifiers",),
    ("per_backbone",),
    ("tables",),
]


def _base() -> dict[str, Any]:
    data = yamlio.loads(TINY_SPEC.format(out="/tmp/orchestrate-property/out"))
    assert isinstance(data, dict)
    return data


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        child = data.get(part)
        if not isinstance(child, dict):
            child = data[part] = {}
        data = child
    data[path[-1]] = value


def _bash_accepts(script: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".sh") as handle:
        handle.write(script)
        handle.flush()
        result = subprocess.run(["bash", "-n", handle.name], capture_output=True, text=True, check=False)
    assert result.returncode == 0, (result.stderr, script)
    lines = script.splitlines()
    body = next(i for i, line in enumerate(lines[1:], 1) if line.strip() and not line.startswith("#"))
    assert not [line for line in lines[body:] if line.startswith("#SBATCH")], "sbatch would ignore #SBATCH lines"


def _plan_once(text: str | bytes, capsys: pytest.CaptureFixture[str]) -> None:
    """Plan a spec file: a plan whose sbatch script bash accepts, or a one-line error; anything else fails."""
    with tempfile.TemporaryDirectory(prefix="orch-prop-") as folder:
        path = Path(folder) / "sweep.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        code = main(["plan", str(path), "--skip-data-check"])
        out = capsys.readouterr()
        event("planned" if code == 0 else "refused")
        if code == 0:
            _bash_accepts(_script_of(path))
            return
    assert code == 2, out
    assert out.err.startswith("error: ") and out.err.count("\n") == 1, out.err
    assert "\x1b" not in out.err and len(out.err) < 800


def _script_of(path: Path) -> str:
    spec = load_spec(path)
    config = site.resolve_slurm(spec.slurm, None, spec.site)
    folder = spec.output_path / "slurm"
    return slurmcli.sbatch_header(folder, slurmcli.executor_parameters(config, f"orch-{spec.name}"), 3)


@SETTINGS
@given(mutations=st.lists(st.tuples(st.sampled_from(PATHS), VALUES), min_size=1, max_size=3))
def test_mutated_specs_plan_or_fail_in_one_line(
    mutations: list[tuple[tuple[str, ...], Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    data = _base()
    for path, value in mutations:
        _set(data, path, value)
    _plan_once(yamlio.dumps(data), capsys)


@SETTINGS
@given(raw=st.binary(max_size=60), at=st.integers(0, 400))
def test_corrupted_files_fail_in_one_line(raw: bytes, at: int, capsys: pytest.CaptureFixture[str]) -> None:
    text = TINY_SPEC.format(out="/tmp/orchestrate-property/out").encode()
    _plan_once(text[:at] + raw + text[at:], capsys)


@SETTINGS
@given(
    words=st.lists(WORDS | PLAUSIBLE | HOSTILE, min_size=5, max_size=5),
    setup=st.lists(PLAUSIBLE | HOSTILE, max_size=3),
    extra=st.dictionaries(WORDS | HOSTILE, st.one_of(WORDS, PLAUSIBLE, HOSTILE, st.integers(0, 10**6)), max_size=3),
    mem_gb=st.floats(allow_nan=True, allow_infinity=True) | st.none(),
)
def test_every_accepted_slurm_block_renders_a_script_bash_accepts(
    words: list[str], setup: list[str], extra: dict[str, Any], mem_gb: float | None
) -> None:
    """Each field is kept when the model accepts it alone; the script of all kept fields must parse."""
    fields: dict[str, Any] = dict(zip(("partition", "account", "qos", "constraint", "exclude"), words, strict=True))
    fields.update(mem_gb=mem_gb, setup=setup, additional_parameters=extra)
    kept = {}
    for key, value in fields.items():
        try:
            site.SlurmConfig.model_validate({key: value})
        except ValueError:
            continue
        kept[key] = value
    event(f"{len(kept)} fields kept")
    config = site.SlurmConfig.model_validate(kept)
    _bash_accepts(slurmcli.sbatch_header(Path("/tmp/o/slurm"), slurmcli.executor_parameters(config, "orch-x"), 2))


def test_documents_parse_by_libyaml_with_the_same_rules_and_the_friendly_messages() -> None:
    """LibYAML parses every document (a 100,000-run grid lists 16,667 seeds): the same values as the
    pure-Python parser and the same refusals (repeated key, !!binary, alias bomb); a document it
    refuses is parsed again by the pure-Python parser, whose message is the one raised."""
    text = "lr: 1e-4\nsteps: 1_000\nseed: [" + ", ".join(str(i) for i in range(100)) + "]\n"
    expected = {"lr": 1e-4, "steps": 1000, "seed": list(range(100))}
    assert yamlio.loads(text) == yaml.load(text, Loader=yamlio._Loader) == expected
    assert yaml.load(text, Loader=yamlio._CLoader) == expected
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    for bad, reason in (("a: 1\na: 2\n", "duplicate key"), ("a: !!binary aGk=\n", "!!binary"), (bomb, "expand")):
        with pytest.raises(yaml.YAMLError, match=reason):
            yaml.load(bad, Loader=yamlio._CLoader)
        with pytest.raises(yaml.YAMLError, match=reason):
            yamlio.loads(bad)
    broken = "a: [1, 2\nb: 3\n"
    with pytest.raises(yaml.YAMLError) as pure:
        yaml.load(broken, Loader=yamlio._Loader)
    with pytest.raises(yaml.YAMLError) as raised:
        yamlio.loads(broken)
    assert str(raised.value) == str(pure.value)
