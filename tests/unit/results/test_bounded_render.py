"""A user's table template renders within a time, memory and output limit (bounded_render): nested
loops of 10**10 steps, a 10 GB `center` or `format` and a 100 MB output are one-line refusals,
found in seconds (the limits are lowered here where waiting would take long), and what renders
within them is the same text as before."""

from __future__ import annotations

import errno
import gc
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_hostile_render import one_error, sweep

import orchestrator
from orchestrator.results import bounded_render, render
from orchestrator.sweep.templates import TemplateFileError, TemplateLoader

REPO = Path(orchestrator.__file__).resolve().parents[1]


def refusal(root: Path, text: str, name: str = "t.md.j2") -> str:
    """The one-line refusal of template `text` (failing the test when it renders)."""
    (root / name).write_text(text)
    with pytest.raises(render.TemplateRefused) as caught:
        render.render_file(root, name, [])
    message = str(caught.value)
    assert message.startswith(f"template {root / name}") and "\n" not in message, message
    return message


def in_python(script: str, *args: str, timeout: float = 8) -> list[str]:
    """The output lines of `script` run by a fresh interpreter (killed after `timeout` s, which fails)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()


# ----------------------------------------------------------------- time

LOOPS = """
import os, sys
from pathlib import Path
from orchestrator.results import bounded_render, render
bounded_render.MAX_RENDER_SECONDS = 0.5
try:
    render.render_file(Path(sys.argv[1]), "t.md.j2", [])
    print("rendered")
except render.TemplateRefused as exc:
    print(exc)
try:
    os.waitpid(-1, os.WNOHANG)
    print("a child process is left")
except ChildProcessError:
    print("no child process left")
"""


@pytest.mark.parametrize(
    "text",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "{% for a in 'x' * 1000000 %}{% for b in 'x' * 1000000 %}{% endfor %}{% endfor %}",  # no range
    ],
)
def test_nested_big_loops_are_refused_at_the_deadline(text: str, tmp_path: Path) -> None:
    """10**10 steps ran for hours, whether or not they print; the child is killed and reaped."""
    (tmp_path / "t.md.j2").write_text(text)
    lines = in_python(LOOPS, str(tmp_path))
    assert lines == [f"template {tmp_path / 't.md.j2'} refused: rendering took over 0.5 s", "no child process left"]


@pytest.mark.parametrize(
    ("sig", "says"), [(signal.SIGXCPU, "rendering took over 30 s"), (signal.SIGKILL, "(signal 9)")]
)
def test_a_rendering_process_that_dies_is_named(
    sig: int, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its CPU limit (SIGXCPU), or the kernel's OOM killer, ends it without an answer."""
    monkeypatch.setattr(bounded_render, "_limit_resources", lambda: os.kill(os.getpid(), sig))
    message = refusal(tmp_path, "{{ 1 }}")
    assert says in message and "refused" in message, message


# ----------------------------------------------------------------- memory

MEMORY = """
import resource, sys
from pathlib import Path
from orchestrator.results import render
# A safety net for the machine running this test: 1.5 GiB over what this interpreter has mapped.
mapped = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + 3 * 2**29, resource.getrlimit(resource.RLIMIT_AS)[1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for name in sys.argv[2:]:
    try:
        render.render_file(Path(sys.argv[1]), name, [])
        print("rendered")
    except render.TemplateRefused as exc:
        print(exc)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="the address-space limit needs Linux")
def test_a_huge_center_or_format_is_refused_without_taking_the_memory(tmp_path: Path) -> None:
    """10 GB and 2 GB strings, at the default limit: the allocation fails in the rendering process
    (its address space is bounded) and this process's peak memory does not grow."""
    texts = {
        "center.md.j2": "{{ 'x'|center(10**10) }}",
        "format.md.j2": "{{ '%2000000000d'|format(1) }}",
        "str_format.md.j2": "{{ '{:>2000000000}'.format(1) }}",
    }
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    *lines, grown_kib = in_python(MEMORY, str(tmp_path), *texts)
    assert lines == [f"template {tmp_path / name} refused: rendering needed over 1 GiB of memory" for name in texts]
    assert int(grown_kib) < 50 * 1024


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="the address-space limit needs Linux")
@pytest.mark.parametrize(
    "text",
    [
        "{{ 'x'|center(200000000) }}",
        "{{ '%200000000d'|format(1) }}",
        "{{ '{:>200000000}'.format(1) }}",
        "{{ 'x'.ljust(200000000) }}",
        "{{ range(200)|join('x' * 1000000) }}",
        "{{ ('x' * 1000)|replace('x', 'y' * 200000) }}",
        "{% set ns = namespace(s='x') %}{% for i in range(28) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    ],
)
def test_every_way_to_build_a_big_string_meets_the_memory_limit(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200-256 MB each, against a limit lowered to 64 MiB: filters, str methods, `~` in a loop."""
    monkeypatch.setattr(bounded_render, "MAX_RENDER_MEMORY", 64 * 1024**2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert refusal(tmp_path, text).endswith(" refused: rendering needed over 64 MiB of memory")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB: not in this process


# ----------------------------------------------------------------- output


def test_a_big_output_is_refused(tmp_path: Path) -> None:
    """100,000,000 characters, at the default limit of 64,000,000."""
    text = "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"
    assert refusal(tmp_path, text).endswith(" refused: output over 64,000,000 characters")


@pytest.mark.parametrize("limit", [1000, 200_000])  # within one batch of the stream, and over several
def test_the_output_limit_is_exact(limit: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One piece and many small ones, at the limit and one character over it."""
    monkeypatch.setattr(bounded_render, "MAX_OUTPUT_CHARS", limit)

    def one(n: int) -> str:
        return "{{ 'x' * " + str(n) + " }}"

    def many(n: int) -> str:
        return "{% for i in range(" + str(n // 2) + ") %}xx{% endfor %}" + "x" * (n % 2)

    for text in (one, many):
        (tmp_path / "ok.md.j2").write_text(text(limit))
        assert render.render_file(tmp_path, "ok.md.j2", []) == "x" * limit
        assert refusal(tmp_path, text(limit + 1)).endswith(f" refused: output over {limit:,} characters")


def test_collect_names_a_template_over_a_limit_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bounded_render, "MAX_OUTPUT_CHARS", 100)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "big.md.j2").write_text("{{ 'x' * 101 }}")
    spec = sweep(tmp_path, template="templates/big.md.j2")
    err = one_error(["collect", str(spec.source), "--no-report"], capsys)
    assert "tables.table.template: template" in err and "big.md.j2 refused: output over 100 characters" in err, err
    assert not (spec.output_path / "tables" / "table.big.md").exists()


# ----------------------------------------------------------------- within the limits: as before


def test_what_renders_within_the_limits_is_the_same_text(tmp_path: Path) -> None:
    """HTML autoescape, non-ASCII text over several batches, a lone surrogate, an include."""
    (tmp_path / "rows.html.j2").write_text(
        "{% include 'head.jinja' %}{{ note }}{% for i in range(70000) %}é{% endfor %}{{ '<i>'|safe }}\n"
    )
    (tmp_path / "head.jinja").write_text("<h1>{{ tables|length }}</h1>")
    context = {"note": "a\udc80 <b>\U0001f600"}
    expected = render.environment(TemplateLoader(tmp_path, tmp_path)).get_template("rows.html.j2")
    text = render.render_file(tmp_path, "rows.html.j2", [], context)
    assert text == expected.render(tables=[], **context)
    assert text.startswith("<h1>0</h1>a\udc80 &lt;b&gt;\U0001f600éé") and text.endswith("é<i>\n")


def test_failures_keep_their_one_line_messages(tmp_path: Path) -> None:
    assert refusal(tmp_path, "{{ 1 / 0 }}").endswith(" failed (ZeroDivisionError): division by zero")
    assert "refused by the sandbox: access to attribute '__class__'" in refusal(tmp_path, "{{ ''.__class__ }}")
    assert refusal(tmp_path, "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").endswith(": nested too deeply")
    long = refusal(tmp_path, "{{ tables['x' * 5000] }}")  # the message quotes the name: cut short
    assert len(long) == bounded_render.MAX_MESSAGE_CHARS and long.endswith("…") and "failed (UndefinedError)" in long
    (tmp_path / "secret.txt").write_text("TOKEN")
    (tmp_path / "inc.md.j2").write_text("{% include 'secret.txt' %}")
    with pytest.raises(TemplateFileError, match="not a template file"):
        render.render_file(tmp_path, "inc.md.j2", [])


def test_no_process_to_fork_is_a_refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: a process limit reached does not render the template unbounded."""

    def no_fork() -> int:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    monkeypatch.setattr(os, "fork", no_fork)
    assert refusal(tmp_path, "{{ 1 }}").endswith(f" refused: no process to render it in ({os.strerror(errno.EAGAIN)})")
    assert gc.isenabled()
