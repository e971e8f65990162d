"""Hostile run folders for the fuzzers (issue 22): a real small results folder, a catalogue of the
corruptions an attacker or a broken disk makes, and one case = corrupt, then `collect`, `status`
and `plan` through the CLI, counting tracebacks, hangs, writes outside the folder and numbers
out of range in what collect wrote.

Used by tests/unit/results/test_fuzz_results.py (hypothesis picks the corruptions) and bench/fuzz_results.py
(a fixed seed picks them, and the counts are printed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from deadline import Hung, deadline
from tables_fixture import FOUR_RUNS_SPEC, fake_run, finished_sweep, write_csv

from orchestrator import store
from orchestrator.cli.main import main
from orchestrator.results import collect
from orchestrator.sweep.plan import smoke_plan
from trainers import rundir

HANG_S = 60
"""A command that takes longer on these 4 runs is counted as a hang (a report alone takes 8 s at load 12)."""


def build(case: Path) -> tuple[Path, Path]:
    """A finished 4-run sweep (plus one smoke run with a history) under `case`: (spec file, root)."""
    case.mkdir(parents=True, exist_ok=True)
    spec_path = case / "sweep.yaml"
    spec_path.write_text(FOUR_RUNS_SPEC.format(name="fuzz", out=case / "out"))
    spec, runs = finished_sweep(spec_path, epochs=2, classes=["a", "b"])
    smoke = smoke_plan(runs)[0]
    folder = fake_run(spec, smoke, 0.5, epochs=1, root=spec.output_path / "smoke")
    write_csv(folder / rundir.HISTORY, [{"epoch": 1, "train_images_per_s": 100.0}])
    collect.write_tables(spec, spec.output_path)
    return spec_path, spec.output_path


def _json(path: Path, text: str) -> None:
    path.write_text(text)


def _replace(path: Path, make: Callable[[Path], None]) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        path.rename(path.with_name(path.name + ".moved"))
    make(path)


FILE_CORRUPTIONS: dict[str, Callable[[Path, Path], None]] = {
    "truncate": lambda p, o: _truncate(p),
    "garbage": lambda p, o: _replace(p, lambda q: q.write_bytes(bytes(range(256)) * 4)),
    "fifo": lambda p, o: _replace(p, os.mkfifo),
    "dev_zero": lambda p, o: _replace(p, lambda q: q.symlink_to("/dev/zero")),
    "symlink_out": lambda p, o: _replace(p, lambda q: q.symlink_to(o / "secret.txt")),
    "folder": lambda p, o: _replace(p, lambda q: q.mkdir()),
    "sparse_1g": lambda p, o: _replace(p, _sparse),
    "dup_key": lambda p, o: _replace(p, lambda q: _json(q, '{"test": {"top1": 0.1, "top1": 0.99}, "state": 1}')),
    "huge_int": lambda p, o: _replace(p, lambda q: _json(q, '{"test": {"top1": ' + "9" * 40 + '}, "pid": 1}')),
    "deep_json": lambda p, o: _replace(p, lambda q: _json(q, "[" * 50_000 + "]" * 50_000)),
    "strings": lambda p, o: _replace(
        p, lambda q: _json(q, '{"test": {"top1": "1e3"}, "complexity": {"gflops": true}, "timing": {"wall_s": "x"}}')
    ),
    "bad_types": lambda p, o: _replace(
        p, lambda q: _json(q, '{"state": {"a": 1}, "pid": 1e999, "provenance": {"num_processes": "4"}}')
    ),
    "alias_bomb": lambda p, o: _replace(p, lambda q: q.write_text(_alias_bomb())),
    "deep_yaml": lambda p, o: _replace(p, lambda q: q.write_text("run_id: " + "[" * 5000 + "]" * 5000 + "\n")),
    "long_csv": lambda p, o: _replace(p, lambda q: q.write_text("epoch,train_images_per_s\n1," + "9" * 300_000 + "\n")),
    "nul_bytes": lambda p, o: _replace(p, lambda q: q.write_bytes(b"\x00" * 1000)),
}
FILES = (rundir.METRICS, rundir.STATUS, rundir.CONFIG, rundir.HISTORY, rundir.SPLIT, "confusion_matrix.csv")


def _truncate(path: Path) -> None:
    if path.is_file() and not path.is_symlink():  # never through a symlink made by an earlier corruption
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


def _sparse(path: Path) -> None:
    with path.open("wb") as handle:
        handle.truncate(1 << 30)  # 1 GiB of holes


def _img_symlink(root: Path, outside: Path) -> None:
    (root / "report").mkdir(exist_ok=True)
    _replace(root / "report" / "img", lambda q: q.symlink_to(outside))


def _stray_bomb(root: Path, outside: Path) -> None:
    (root / "runs" / "stray2").mkdir(exist_ok=True)
    (root / "runs" / "stray2" / rundir.CONFIG).write_text(_alias_bomb())


def _alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def _edit_index(root: Path, outside: Path) -> None:
    path = root / collect.INDEX_FILE
    with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
        data = json.loads(path.read_text())
        column = data["columns"].index("test.top1")
        data["values"][column] = [4.0258] * len(data["names"])
        path.write_text(json.dumps(data))


def _same_size_rewrite(root: Path, outside: Path) -> None:
    for path in sorted((root / "runs").glob(f"*/{rundir.METRICS}"))[:1]:
        if path.is_symlink() or not path.is_file():
            continue
        before = os.stat(path)
        text = path.read_text()
        path.write_text(text.replace('"top1": 0.9', '"top1": 0.1', 1))
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


FOLDER_CORRUPTIONS: dict[str, Callable[[Path, Path], None]] = {
    "tables_symlink": lambda r, o: _replace(r / "tables", lambda q: q.symlink_to(o)),
    "report_img_symlink": _img_symlink,
    "foreign_table": lambda r, o: (r / "tables").is_dir() and (r / "tables" / "table.md").write_text("theirs\n"),
    "submission_folder": lambda r, o: (r / "submissions" / "zzzz.yaml").mkdir(),
    "submission_fifo": lambda r, o: os.mkfifo(r / "submissions" / "zzzzz.yaml"),
    "manifest_corrupt": lambda r, o: (r / store.MANIFEST_FILE).write_text('{"runs": {"x": '),
    "manifest_fifo": lambda r, o: _replace(r / store.MANIFEST_FILE, os.mkfifo),
    "index_edited": _edit_index,
    "same_size_rewrite": _same_size_rewrite,
    "snapshot_edited": lambda r, o: (r / store.SWEEP_FILE).write_text(
        (r / store.SWEEP_FILE).read_text().replace("+ Aug", "+ Other")
    ),
    "run_is_symlink": lambda r, o: _run_symlink(r),
    "run_is_file": lambda r, o: (r / "runs" / "stray").write_text("x"),
    "profile_fifo": lambda r, o: _replace(r / "profile.csv", os.mkfifo),
    "profile_garbage": lambda r, o: (r / "profile.csv").write_bytes(b'a,"b\n' + bytes(range(256))),
    "stray_alias_bomb": _stray_bomb,
}


def _run_symlink(root: Path) -> None:
    folders = sorted((root / "runs").iterdir())
    if len(folders) >= 2:
        _replace(folders[0], lambda q: q.symlink_to(folders[1]))


def corrupt(root: Path, outside: Path, rng: random.Random, count: int) -> list[str]:
    """Apply `count` random corruptions; returns their names."""
    done = []
    runs = sorted(p for p in (root / "runs").iterdir() if p.is_dir()) + [
        p for p in (root / "smoke" / "runs").iterdir() if p.is_dir()
    ]
    for _ in range(count):
        if rng.random() < 0.6:
            name = rng.choice(sorted(FILE_CORRUPTIONS))
            target = rng.choice(runs) / rng.choice(FILES)
            with contextlib.suppress(OSError):
                FILE_CORRUPTIONS[name](target, outside)
            done.append(f"{name}:{target.name}")
        else:
            name = rng.choice(sorted(FOLDER_CORRUPTIONS))
            with contextlib.suppress(OSError):
                FOLDER_CORRUPTIONS[name](root, outside)
            done.append(name)
    return done


def outside_state(outside: Path) -> dict[str, str]:
    """Every file under `outside` with the hash of its bytes: what a case must leave unchanged."""
    return {
        str(p.relative_to(outside)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(outside.rglob("*"))
        if p.is_file()
    }


def make_outside(outside: Path) -> None:
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.txt").write_text("TOKEN=do-not-copy\n")
    (outside / "holiday.png").write_bytes(b"\x89PNG not ours")
    (outside / "table.md").write_text("someone else's table\n")


def run_cli(argv: list[str]) -> tuple[str, str]:
    """One CLI command in-process: ("ok" | "traceback" | "hang", what it printed)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with deadline(HANG_S), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(argv)
    except Hung:
        return "hang", err.getvalue()
    except SystemExit:
        pass
    except BaseException:
        return "traceback", traceback.format_exc()
    printed = out.getvalue() + err.getvalue()
    return ("traceback" if "Traceback (most recent call last)" in printed else "ok"), printed


def out_of_range(root: Path) -> int:
    """Values of a score column outside [0, 1] in tables/runs.csv (a silent wrong number)."""
    import pandas as pd

    path = root / "tables" / "runs.csv"
    if path.is_symlink() or not path.is_file():
        return 0
    frame = pd.read_csv(path)
    columns = [c for c in frame.columns if c.startswith("test.")]
    values = frame[columns].apply(pd.to_numeric, errors="coerce")
    return int(((values < 0) | (values > 1)).sum().sum())


def run_case(case: Path, rng: random.Random, count: int, report: bool = False) -> Counter[str]:
    """Build, corrupt, then collect / status / plan: counts of cases, tracebacks, hangs, writes
    outside and out-of-range numbers (plus which corruptions caused each, under `detail:`)."""
    spec_path, root = build(case / "sweep")
    outside = case / "outside"
    make_outside(outside)
    before = outside_state(outside)
    names = corrupt(root, outside, rng, count)
    counts: Counter[str] = Counter(cases=1)
    commands = [
        ["collect", str(root), *([] if report else ["--no-report"])],
        ["status", str(spec_path)],
        ["plan", str(spec_path), "--skip-data-check"],
        ["collect", str(spec_path), "--no-report"],
    ]
    for argv in commands:
        verdict, printed = run_cli(argv)
        if verdict != "ok":
            counts[f"{verdict}s"] += 1
            counts[f"detail: {verdict} in {argv[0]} after {', '.join(names)}: {printed.strip()[-300:]}"] += 1
        if "TOKEN=do-not-copy" in printed:
            counts["leaks"] += 1
    if outside_state(outside) != before:
        counts["writes outside"] += 1
        counts[f"detail: write outside after {', '.join(names)}"] += 1
    counts["out-of-range numbers"] += out_of_range(root)
    return counts
