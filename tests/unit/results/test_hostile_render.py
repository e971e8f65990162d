"""Hostile input, round 2 (issue 22), the rendering half: templates run sandboxed and come only from
the spec file's folder, file arguments are what the feature needs, nothing a renderer receives is
taken as its markup, and names with bidi, zero-width or control characters are refused at plan."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest
from tables_fixture import HOSTILE_SPEC as SPEC
from tables_fixture import fake_run

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.results import collect
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import SweepSpec, load_spec


def sweep(
    folder: Path, row: str = "+ Aug", dataset: str = "Digits", template: str | None = None, classes: bool = False
) -> SweepSpec:
    """A spec file in `folder` with its four runs finished (seed dots, curves, per-class files)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.yaml"
    extra = f", template: {template}" if template else ""
    quoted = {"row": json.dumps(row), "dataset": json.dumps(dataset)}  # JSON strings are YAML strings
    path.write_text(SPEC.format(out=folder / "results", template=extra, **quoted))
    spec = load_spec(path)
    store.write_snapshot(spec, spec.output_path)
    names = ["0", "$\\textbf{5}$ bill", "a_b^c", "x$"] if classes else None
    for run in plan(spec):
        fake_run(spec, run, 0.9 + 0.01 * run.seed, epochs=3 if classes else 0, classes=names)
    return spec


def one_error(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# ----------------------------------------------------------------- templates: sandboxed, from the spec's folder

PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch MARK') }}",
    "{{ joiner.__init__.__globals__['os'].system('touch MARK') }}",
    "{% for t in tables %}{{ t.rows.append(1) }}{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ 2 ** 10000000 }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_template_payloads_fail_with_one_line_and_run_nothing(
    payload: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "evil.md.j2").write_text(payload.replace("MARK", str(tmp_path / "pwned")))
    spec = sweep(tmp_path, template="templates/evil.md.j2")
    assert main(["plan", str(spec.source), "--skip-data-check"]) == 0  # valid Jinja: refused when it runs
    capsys.readouterr()
    err = one_error(["collect", str(spec.source), "--no-report"], capsys)
    assert "tables.table.template: template" in err and ("refused by the sandbox" in err or "failed" in err), err
    assert not (tmp_path / "pwned").exists()
    assert not (spec.output_path / "tables" / "table.evil.md").exists()


def test_collect_folder_takes_no_template_from_its_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Whoever can write a results folder cannot make the next `collect FOLDER` run a template,
    even one pointed at by an edited `source:` line of its sweep.yaml."""
    attacker = tmp_path / "attacker"
    (attacker / "templates").mkdir(parents=True)
    (attacker / "templates" / "t.md.j2").write_text("{{ cycler.__init__.__globals__.os.popen('touch PWNED') }}")
    (attacker / "evil.yaml").write_text("")
    spec = sweep(tmp_path / "user")
    snapshot = spec.output_path / store.SWEEP_FILE
    text = snapshot.read_text().replace("template: null", "template: templates/t.md.j2")
    text = text.replace(f"source: {spec.source}", f"source: {attacker / 'evil.yaml'}")
    assert "templates/t.md.j2" in text and str(attacker) in text
    snapshot.write_text(text)
    # The attacker can write the manifest too: its hash of sweep.yaml (unkeyed) is no barrier.
    manifest_path = spec.output_path / store.MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[store.SNAPSHOT_HASH] = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    assert main(["collect", str(spec.output_path), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "custom template templates/t.md.j2 not rendered: collect the spec file to render it" in out
    assert not list(spec.output_path.rglob("*PWNED*")) and not (Path.cwd() / "PWNED").exists()
    assert not (spec.output_path / "tables" / "table.md.md").exists()


def _link(path: Path, target: Path) -> str:
    """A template-named symlink to a non-template file in the same folder."""
    target.write_text("x")
    path.symlink_to(target)
    return path.name


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: "/etc/passwd", "is outside"),
        (lambda d: "/proc/self/environ", "is outside"),
        (lambda d: "../outside.md.j2", "is outside"),
        (lambda d: (d / "notes.txt").write_text("secret") and "notes.txt", "not a template file"),
        (lambda d: (d / "t.md.j2").symlink_to("/etc/passwd") or "t.md.j2", "is outside"),
        (lambda d: _link(d / "p.md.j2", d / "notes.md"), "not a template file"),
        (lambda d: _fifo(d / "fifo.md.j2").name, "not a regular file"),
        (lambda d: (d / "big.md.j2").write_text("x" * 300_000) and "big.md.j2", "larger than 256 KiB"),
        (lambda d: (d / "dir.j2").mkdir() or "dir.j2", "not a regular file"),
        (lambda d: "missing.md.j2", "does not exist"),
    ],
)
def test_template_files_are_refused_at_plan_with_one_line(
    make: object, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_dir = tmp_path / "spec"
    spec_dir.mkdir()
    (tmp_path / "outside.md.j2").write_text("{{ tables }}")
    name = make(spec_dir)  # type: ignore[operator]
    path = spec_dir / "sweep.yaml"
    path.write_text(SPEC.format(out=tmp_path / "results", row="+ Aug", dataset="D", template=f", template: {name}"))
    err = one_error(["plan", str(path), "--skip-data-check"], capsys)
    assert "tables.table.template: template" in err and message in err, err
    assert "root:" not in err and "secret" not in err  # nothing of the file is quoted


def test_an_include_of_a_non_template_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "inc.md.j2").write_text("{% include 'secret.txt' %}")
    (tmp_path / "templates" / "secret.txt").write_text("TOKEN=hunter2")
    spec = sweep(tmp_path, template="templates/inc.md.j2")
    err = one_error(["collect", str(spec.source), "--no-report"], capsys)
    assert "not a template file" in err and "hunter2" not in err
    assert "hunter2" not in "".join(p.read_text() for p in (spec.output_path / "tables").glob("*"))


def test_a_good_template_and_its_include_render_from_the_spec_file(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "rows.html.j2").write_text(
        "{% include 'head.jinja' %}"
        "{% for t in tables %}{% for r in t.rows %}<b>{{ r.label }}</b>{% endfor %}{% endfor %}"
    )
    (tmp_path / "templates" / "head.jinja").write_text("<h1>{{ sweep }}</h1>")
    spec = sweep(tmp_path, row="+ <i>Aug<i> & co", template="templates/rows.html.j2")
    written = collect.write_tables(spec, spec.output_path)
    text = (spec.output_path / "tables" / "table.rows.html").read_text()
    assert text == "<h1>hostile_render</h1><b>Baseline</b><b>+ &lt;i&gt;Aug&lt;i&gt; &amp; co</b>"
    assert spec.output_path / "tables" / "table.rows.html" in written.files


# ----------------------------------------------------------------- renderers: text is text


def test_mathtext_labels_and_class_names_render_through_collect_with_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Accepted at plan, crashed the report after training: `$\\alpha^$` in a row label and
    `$\\textbf{5}$` in a class name are drawn as written (mathtext off)."""
    spec = sweep(tmp_path, row="+ Aug $\\alpha^$ [b] [blink]x", dataset="D_1 `x` | #2 [/]", classes=True)
    assert main(["collect", str(spec.source)]) == 0
    out = capsys.readouterr().out
    report = (spec.output_path / "report" / "index.html").read_text()
    assert "+ Aug \\$\\\\alpha^\\$ \\[b] \\[blink]x" in out  # the Markdown table, printed as is
    assert "+ Aug $\\alpha^$ [b] [blink]x" in report and "D_1 `x` | #2 [/]" in report
    assert len(list((spec.output_path / "report" / "img").glob("*.png"))) >= 4
    md = (spec.output_path / "tables" / "table.md").read_text()
    assert "| + Aug \\$\\\\alpha^\\$ \\[b] \\[blink]x |" in md and "D_1 \\`x\\` \\| \\#2 \\[/]" in md
    tex = (spec.output_path / "tables" / "table.tex").read_text()
    assert "+ Aug \\$\\textbackslash{}alpha\\textasciicircum{}\\$ {[}b{]} {[}blink{]}x" in tex


def test_plan_prints_rich_markup_in_labels_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`[/]` in a dataset label crashed plan (rich closed a tag that was never opened)."""
    path = tmp_path / "sweep.yaml"
    text = SPEC.format(out=tmp_path / "results", row="'+ [red]Aug [blink]'", dataset="'[/] [blink]data'", template="")
    path.write_text(text)
    assert main(["plan", str(path), "--skip-data-check"]) == 0
    out = capsys.readouterr().out
    assert "[/] [blink]data" in out and "+ [red]Aug [blink] x2" in out


def test_status_prints_run_folder_text_without_terminal_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trainers import rundir
    from trainers.rundir import State

    spec = sweep(tmp_path)
    run = plan(spec)[0]
    folder = store.run_path(store.sweep_root(spec), run.run_id)
    hostile = "boom [/scratch/data] \x1b]8;;http://evil\x07link\x1b]8;;\x07 \x1b[2J\x1b[31mred\x9b1m \u202eevil"
    rundir.update_status(folder, State.FAILED, error=hostile)
    assert main(["status", str(spec.source), "--all"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x9b" not in out and "\x07" not in out and "\u202e" not in out
    assert "boom [/scratch/data]" in out and "link" in out and "red" in out and "\\u202eevil" in out


@pytest.mark.parametrize(
    ("where", "char", "name"),
    [
        ("ablations", "\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("modifiers", "\u2066", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("dataset", "\u200b", "U+200B ZERO WIDTH SPACE"),
        ("dataset", "\ufeff", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
        ("title", "\u2060", "U+2060 WORD JOINER"),
    ],
)
def test_bidi_and_zero_width_characters_are_refused_at_plan_with_the_code_point(
    where: str, char: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row, dataset, template = "+ Aug", "Digits", ""
    if where == "ablations":
        row = f'"+ {char}x"'
    elif where == "dataset":
        dataset = f'"Dig{char}its"'
    elif where == "title":
        template = f', title: "T{char}"'
    text = SPEC.format(out=tmp_path / "results", row=row, dataset=dataset, template=template)
    if where == "modifiers":
        text = text.replace("  aug: {", f'  "a{char}ug": {{').replace(": [aug]", f': ["a{char}ug"]')
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    err = one_error(["plan", str(path), "--skip-data-check"], capsys)
    assert name in err and char not in err, err


def test_table_names_are_matched_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sweep.yaml"
    text = SPEC.format(out=tmp_path / "results", row="+ Aug", dataset="D", template="")
    path.write_text(text.replace("name: table,", "name: 'sub/dir/x y;$(id)',"))
    err = one_error(["plan", str(path), "--skip-data-check"], capsys)
    assert "tables.0.name" in err and "without '/'" in err


@pytest.mark.parametrize("value", ["!!binary G1szMW0=", "!!set {a, b}", "!!omap [{a: 1}]", "!!pairs [{a: 1}]"])
def test_non_text_yaml_tags_are_refused(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`!!binary` became text in pydantic without the control-character and length checks."""
    path = tmp_path / "sweep.yaml"
    text = SPEC.format(out=tmp_path / "results", row="+ Aug", dataset="D", template=f", title: {value}")
    path.write_text(text)
    err = one_error(["plan", str(path), "--skip-data-check"], capsys)
    assert "invalid YAML: explicit !!" in err and "not accepted here" in err and "line 15" in err


# ----------------------------------------------------------------- no other file's content in a message

SECRETS = [
    "root:$6$SECRETHASH0:19000:0:99999:7:::\n",
    "aws_secret_access_key = SECRETKEY1\n",
    "1 SECRETKEY2\n2 SECRETKEY3 more\n",
    "TOKEN,SECRETKEY4\nSECRETKEY5,7\n",
    "index,class\nx,SECRETKEY6\n",
    "image,superclass_index,subclass_index\nSECRETKEY7.jpg,SECRET8,9\n",
]
FILE_KEYS = [
    ("cub200", "images_list"),
    ("cub200", "labels"),
    ("cub200", "split"),
    ("cub200", "classes"),
    ("foodx251", "classes"),
    ("foodx251", "train_csv"),
    ("hierarchical_csv", "csv"),
    ("hierarchical_csv", "super_classes"),
    ("hierarchical_csv", "sub_classes"),
]


@pytest.mark.parametrize(("layout", "key"), FILE_KEYS)
def test_dataset_checks_quote_no_line_of_the_files_layout_names(layout: str, key: str, tmp_path: Path) -> None:
    """`layout` and `root` may name any file; the dataset check names file, line and reason only."""
    import dataset_fixtures as fx

    from trainers.config import DatasetConfig
    from trainers.datasets.check import check_dataset

    root = fx.MAKERS[layout](tmp_path / "data")
    for number, secret in enumerate(SECRETS):
        path = tmp_path / f"secret{number}"
        path.write_text(secret)
        with pytest.raises((ValueError, FileNotFoundError)) as caught:
            check_dataset(DatasetConfig(name=layout, root=str(root), layout={key: str(path)}))
        message = str(caught.value)
        assert "SECRET" not in message and "root:" not in message, message
        assert str(path) in message or "are missing" in message, message


def test_multilabel_ids_from_a_foreign_file_are_not_quoted(tmp_path: Path) -> None:
    import dataset_fixtures as fx

    from trainers.config import DatasetConfig
    from trainers.datasets.check import check_dataset

    root = fx.make_multilabel(tmp_path / "data")
    (root / "annotations" / "dog.txt").write_text("aws_secret_access_key = SECRETKEY1\n")
    with pytest.raises(FileNotFoundError) as caught:
        check_dataset(DatasetConfig(name="multilabel", root=str(root)))
    assert "SECRET" not in str(caught.value) and "(the first: entry 1 of 1)" in str(caught.value)


@pytest.mark.parametrize(
    ("site", "field"),
    [
        ('slurm: {partition: "hunter2 SECRET!"}\n', "slurm.partition: name <value> contains"),
        (
            "throughput:\n" + "  - {backbone: SECRETTOKEN, image_size_px: 224, images_per_s: 5, device: x}\n" * 2,
            "throughput: entries 0 and 1 both declare <value> at 224 px",
        ),
        ("checkpoints: {a: [SECRETTOKEN]}\n", "checkpoints.a: Input should be a valid string"),
    ],
)
def test_site_file_errors_name_the_field_not_the_value(
    site: str, field: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "site.yaml").write_text(site)
    path = tmp_path / "sweep.yaml"
    text = SPEC.format(out=tmp_path / "results", row="+ Aug", dataset="D", template="")
    path.write_text(text + "site: site.yaml\n")
    err = one_error(["plan", str(path), "--skip-data-check"], capsys)
    assert field in err and "SECRET" not in err, err


def test_local_launcher_lines_print_run_names_and_errors_as_written(tmp_path: Path) -> None:
    """A row label `[blink]` styled every later line; an error text `[/scratch]` crashed submit."""
    from rich.console import Console
    from rich.progress import Progress

    from orchestrator.launch.local import _Reporter
    from orchestrator.store import run_states
    from trainers import rundir
    from trainers.rundir import State

    spec = sweep(tmp_path, dataset="[blink]D [red]x")
    records = run_states.inspect(plan(spec), store.sweep_root(spec))
    failed = records[-1]
    rundir.update_status(failed.path, State.FAILED, error="no data under [/scratch/data] \x1b[2J")
    console = Console(file=io.StringIO(), width=10_000, color_system=None, emoji=False)
    progress = Progress(console=console)
    reporter = _Reporter(progress, progress.add_task("runs", total=len(records), detail=""))
    reporter.running(records)
    reporter.finished(records[0], None)
    reporter.finished(failed, "boom")
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert f"failed {failed.run.name}: no data under [/scratch/data] " in out and "\x1b" not in out
    assert "[blink]D [red]x" in failed.run.name and f"done {records[0].run.name}" in out


def test_hostile_labels_compile_with_pdflatex(tmp_path: Path) -> None:
    """A row label at the start of a tabular line: `[2pt]` was read as the argument of the `\\\\`
    before it; `|`, `--`, `''` and `<` printed as other glyphs."""
    import shutil

    from test_tables import _compile

    if shutil.which("pdflatex") is None:
        pytest.fail("pdflatex not found: `make report-tools` installs texlive-latex-base + texlive-latex-recommended")
    row = "[2pt] $\\alpha^$ | -- '' <x> {y} ~^\\ %&#_"
    spec = sweep(tmp_path / "spec", row=row, dataset="D_1 `x` !` | [/] ~^\\ %&#")
    written = collect.write_tables(spec, spec.output_path)
    [tex] = [p for p in written.files if p.suffix == ".tex"]
    text = tex.read_text()
    assert "\\\\\n{[}2pt{]} \\$\\textbackslash{}alpha\\textasciicircum{}\\$ \\textbar{} -{}- '{}' \\textless{}x" in text
    folder = tmp_path / "latex"
    folder.mkdir()
    shutil.copy(tex, folder / tex.name)
    done = _compile([folder / tex.name], folder)
    log = (folder / "doc.log").read_text(errors="replace") if (folder / "doc.log").exists() else done.stdout
    assert done.returncode == 0, log[-3000:]
    assert "Undefined control sequence" not in log and "Missing $ inserted" not in log


def test_plan_detect_prints_dataset_labels_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text(SPEC.format(out=tmp_path / "results", row="+ Aug", dataset="'[/] [blink]data'", template=""))
    assert main(["plan", str(path), "--detect", "1.0", "--skip-data-check"]) == 0
    out = capsys.readouterr().out
    assert "[/] [blink]data" in out.split("seeds to detect", 1)[1]


def test_profile_and_datasets_list_print_brackets_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sweep.yaml"
    labels = {"row": "'+ [blink]Aug'", "dataset": "'[/] [bold]data'"}
    path.write_text(SPEC.format(out=tmp_path / "results", template="", **labels))
    assert main(["profile", str(path)]) == 0
    out = capsys.readouterr().out
    assert "[/] [bold]data" in out and "+ [blink]Aug" in out
    assert main(["datasets", "list"]) == 0
    assert "parts: [dataset, ...] (labels offset in order)" in capsys.readouterr().out
