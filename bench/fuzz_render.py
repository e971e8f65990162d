"""Fuzz the rendering half of hostile input (issue 22): labels, class names, run-folder texts and
table templates written as an attacker would, through every renderer and through the CLI.

Three stages, one fixed seed (the counts are the same on every run of the same code):

  renderers   random labels full of metacharacters (Markdown, LaTeX, HTML, rich, mathtext, terminal
              escapes) straight through markdown_escape, latex_escape, the HTML and CSV renderers,
              textsafe.rich / textsafe.terminal, and every 20th through a matplotlib figure
  end to end  a spec per case whose ablation row, dataset label and class names are hostile:
              `orchestrate plan`, then (if accepted) finished fake runs with a hostile error text
              and `orchestrate collect` with the report, then `orchestrate status`
  templates   server-side template injection payloads as a spec's custom template: `collect SPEC`
              must refuse with one line and run nothing (a marker file counts code executions)

Printed per stage: cases, refused at plan (one line, as designed), tracebacks (an exception out of
the CLI or a renderer), code executions, unescaped outputs (a metacharacter a renderer would act
on, an ESC/CSI/OSC byte on the terminal). Run:

    .venv/bin/python bench/fuzz_render.py [--cases 2000] [--e2e 24] [--seed 22]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "support"))  # the fake run folders are the tests' own fixture
from tables_fixture import HOSTILE_SPEC as SPEC  # noqa: E402
from tables_fixture import fake_run  # noqa: E402

from orchestrator import store, textsafe  # noqa: E402
from orchestrator.cli.main import main  # noqa: E402
from orchestrator.results import figures, render  # noqa: E402
from orchestrator.results.model import Cell, Row, Table  # noqa: E402
from orchestrator.sweep.plan import plan  # noqa: E402
from orchestrator.sweep.spec import load_spec  # noqa: E402
from trainers import rundir  # noqa: E402
from trainers.rundir import State  # noqa: E402

PIECES = [
    "$\\alpha^$",
    "$\\textbf{5}$",
    "$x_",
    "^",
    "_",
    "\\",
    "\\input{/etc/passwd}",
    "%",
    "&",
    "#",
    "~",
    "{",
    "}",
    "[/]",
    "[blink]",
    "[link=file:///etc/passwd]x[/link]",
    "[bold red]",
    "\\[",
    "|",
    "`",
    "*",
    "**b**",
    "_e_",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "&amp;",
    "&#124;",
    "[a](javascript:x)",
    "# h",
    "~~s~~",
    "--",
    "''",
    "!`",
    "\x1b[2J",
    "\x1b]8;;http://evil\x07l\x1b]8;;\x07",
    "\x9b31m",
    "\x07",
    "\u202e",
    "\u2066",
    "\u200b",
    "\ufeff",
    "\n",
    "\r",
    "\t",
    "\x00",
    "é",
    "中文",
    "🙂",
    " ",
    "+ Aug",
    "x",
]
PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('touch MARK').read() }}",
    "{{ joiner.__init__.__globals__['os'].system('touch MARK') }}",
    "{{ namespace.__init__.__globals__.os.popen('touch MARK') }}",
    "{{ lipsum.__globals__['os'].popen('touch MARK') }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('touch MARK') }}",
    "{{ tables.__class__.__init__.__globals__['sys'].modules['os'].system('touch MARK') }}",
    "{{ (tables|attr('__class__')).__mro__ }}",
    "{{ tables|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{% for t in tables %}{{ t.rows.append(1) }}{{ t.__dict__ }}{% endfor %}",
    "{{ sweep.format.__globals__ }}",
    "{{ 'x' * 100000000 }}",
    "{{ 9 ** 99999999 }}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{% include '/etc/passwd' %}",
    "{% include '../../../../etc/passwd' %}",
    "{% extends 'secret.txt' %}",
    "{% import 'secret.txt' as s %}",
    "{{ config }}{{ request }}{{ self.__init__ }}",
    "{{ ''.format.__self__.__class__ }}",
]


# Pieces plan accepts in a row label (no control, bidi or zero-width character, no / ; ` $( ..).
ACCEPTED = [p for p in PIECES if textsafe.first_unsafe(p) is None and not set(p) & set("/;`") and ".." not in p]


def label(rng: random.Random, accepted: bool = False) -> str:
    """A random label of 1-6 pieces (`accepted`: only pieces a row label may hold)."""
    pool = ACCEPTED if accepted else PIECES
    return "".join(rng.choice(pool) for _ in range(rng.randint(1, 6))).replace("$(", "$ (")


def table_with(text: str) -> Table:
    cell = Cell(mean=0.5, std=0.1, n=2, n_expected=2)
    rows = [Row(text, [cell], group=text, first_in_group=True)]
    return Table(title=text, row_header=text, columns=[text], rows=rows, notes=[text], warnings=[text])


def unescaped(text: str) -> list[str]:
    """Which renderers left a metacharacter of `text` live (empty: all escaped)."""
    from markupsafe import escape

    bad = []
    md = render.markdown_escape(text)
    plain = "".join(" " if c in "\r\n\t" else c for c in text if not textsafe.has_control(c) or c in "\r\n\t")
    if render.markdown_unescape(md) != plain or set(_drop_escapes(md)) & set("`*|#~$["):
        bad.append("markdown")
    tex = render.latex_escape(text)
    if any(c in tex for c in "\n\r\x1b") or "\\input" in tex or set(_drop_latex(tex)) & set("&%$#_{}~^[]|<>\\"):
        bad.append("latex")
    html = render.render([table_with(text)], "html", {"sweep": "s"})
    if "<script>" in html or "<img src=x" in html or str(escape(text)) not in html:
        bad.append("html")
    if textsafe.first_unsafe(textsafe.terminal(text)) is not None:
        bad.append("terminal")
    if _rich_out(f"[bold]{textsafe.rich(text)}[/]") != textsafe.terminal(text):
        bad.append("rich")
    return bad


def _drop_escapes(text: str) -> str:
    """Markdown without its backslash escapes (each escaped character becomes a NUL placeholder)."""
    out, index = [], 0
    while index < len(text):
        step = 2 if text[index] == "\\" and index + 1 < len(text) else 1
        out.append("\x00" if step == 2 else text[index])
        index += step
    return "".join(out)


_TEX_TOKENS = sorted({v for k, v in render._LATEX_SPECIAL.items() if v != k} | {"{}"}, key=len, reverse=True)


def _drop_latex(text: str) -> str:
    """LaTeX without the escape sequences latex_escape writes: what is left must be plain text."""
    for token in _TEX_TOKENS:
        text = text.replace(token, "\x00")
    return text


def _rich_out(markup: str) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=100_000, color_system=None, highlight=False, emoji=False)
    console.print(markup, end="")
    return str(console.file.getvalue())  # type: ignore[attr-defined]


def stage_renderers(rng: random.Random, cases: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for index in range(cases):
        text = label(rng)
        counts["cases"] += 1
        try:
            if unescaped(text):
                counts["unescaped outputs"] += 1
            render.to_csv([table_with(text)])
            if index % 20 == 0:
                figure = figures.ablation_figure([(text, [0.1, 0.2]), ("b", [0.3])], text)
                with figures.plain_text():
                    figure.savefig(io.BytesIO(), format="png")
        except Exception:  # the count the fuzzer exists for
            counts["tracebacks"] += 1
            traceback.print_exc(limit=3)
    return counts


def _yaml_string(text: str) -> str:
    """`text` as a YAML double-quoted scalar (every non-printable character escaped)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif not char.isprintable() or ord(char) > 0xFFFF:
            out.append(f"\\U{ord(char):08x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _cli(argv: list[str]) -> tuple[int | None, str]:
    """Run the CLI in-process: (exit code, stdout + stderr); None when an exception escaped it."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except Exception:
            traceback.print_exc(limit=4)
            code = None
    return code, out.getvalue() + err.getvalue()


def stage_end_to_end(rng: random.Random, cases: int, folder: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for index in range(cases):
        case = folder / f"e2e{index}"
        case.mkdir()
        accepted = index % 3 != 0  # two in three cases get past plan, to reach collect and the report
        row, dataset = "+ " + label(rng, accepted), label(rng, accepted)
        classes = [label(rng) for _ in range(3)]  # from the dataset's files: anything
        path = case / "sweep.yaml"
        quoted = {"row": _yaml_string(row), "dataset": _yaml_string(dataset)}
        path.write_text(SPEC.format(out=case / "out", template="", **quoted))
        counts["cases"] += 1
        code, output = _cli(["plan", str(path), "--skip-data-check"])
        _count(counts, code, output, refused_ok=True)
        if code != 0:
            continue
        spec = load_spec(path)
        store.write_snapshot(spec, spec.output_path)
        for run in plan(spec):
            fake_run(spec, run, 0.9, epochs=2, classes=list(dict.fromkeys(classes)))
        failed = store.run_path(store.sweep_root(spec), plan(spec)[-1].run_id)
        rundir.update_status(failed, State.FAILED, error=label(rng) + "\x1b]0;pwned\x07[/scratch]")
        for argv in (["collect", str(path)], ["status", str(path), "--all"]):
            code, output = _cli(argv)
            _count(counts, code, output, refused_ok=False)
        html = [spec.output_path / "tables" / "table.html", spec.output_path / "report" / "index.html"]
        if any("<script>alert" in p.read_text() or "<img src=x" in p.read_text() for p in html if p.is_file()):
            counts["unescaped outputs"] += 1
        counts["collected"] += 1
    return counts


def _count(counts: Counter[str], code: int | None, output: str, refused_ok: bool) -> None:
    if code is None:
        counts["tracebacks"] += 1
    elif code == 2 and refused_ok:
        counts["refused at plan"] += 1
        if output.count("\n") != 1:
            counts["tracebacks"] += 1  # a refusal is one line
    elif code not in (0,):
        counts["other failures"] += 1
    if any(c in output for c in "\x1b\x9b\x9d\x07\u202e\u2066\u200b"):
        counts["unescaped outputs"] += 1


def stage_templates(folder: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for index, payload in enumerate(PAYLOADS):
        case = folder / f"tpl{index}"
        (case / "templates").mkdir(parents=True)
        marker = case / "PWNED"
        (case / "templates" / "t.md.j2").write_text(payload.replace("MARK", str(marker)))
        (case / "templates" / "secret.txt").write_text("TOKEN=hunter2\n")
        path = case / "sweep.yaml"
        template = ", template: templates/t.md.j2"
        path.write_text(SPEC.format(out=case / "out", row='"+ Aug"', dataset="D", template=template))
        counts["cases"] += 1
        code, output = _cli(["plan", str(path), "--skip-data-check"])
        if code == 2:
            counts["refused at plan"] += 1
        elif code == 0:
            spec = load_spec(path)
            for run in plan(spec):
                fake_run(spec, run, 0.9)
            code, output = _cli(["collect", str(path), "--no-report"])
            if code == 2 and output.count("\n") >= 1 and "template" in output:
                counts["refused at collect"] += 1
            elif code is None:
                counts["tracebacks"] += 1
            else:
                counts["rendered"] += 1
        if marker.exists():
            counts["code executions"] += 1
        written = "".join(p.read_text(errors="replace") for p in (case / "out").rglob("*.md*") if p.is_file())
        if "hunter2" in output or "hunter2" in written or "root:x" in written:
            counts["file contents leaked"] += 1
    return counts


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=2000, help="renderer cases")
    parser.add_argument("--e2e", type=int, default=24, help="end-to-end cases (plan, collect --report, status)")
    parser.add_argument("--seed", type=int, default=22)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    warnings.filterwarnings("ignore", message="Glyph|constrained_layout")  # exotic labels in DejaVu Sans
    keys = [
        "cases",
        "refused at plan",
        "collected",
        "refused at collect",
        "rendered",
        "tracebacks",
        "code executions",
        "unescaped outputs",
        "file contents leaked",
        "other failures",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        stages: list[tuple[str, Callable[[], Counter[str]]]] = [
            ("renderers", lambda: stage_renderers(rng, args.cases)),
            ("end to end", lambda: stage_end_to_end(rng, args.e2e, Path(tmp))),
            ("templates", lambda: stage_templates(Path(tmp))),
        ]
        for name, run in stages:
            counts = run()
            always = {"cases", "tracebacks", "code executions", "unescaped outputs", "file contents leaked"}
            shown = ", ".join(f"{key} {counts[key]}" for key in keys if key in counts or key in always)
            print(f"{name:11s} {shown}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main_())
