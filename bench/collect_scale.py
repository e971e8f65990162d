"""`collect`, `status` and `plan` as a user waits for them, on N copies of a run the real trainer wrote.

1. Plans the demo study (sweeps/demo.yaml: 2 backbones x 3 ablation rows) with its seed axis
   widened to N/6 seeds (the real `plan`: the run ids are those `orchestrate plan` prints), one
   epoch on 64 digits.
2. Trains its first run with the real trainer (orchestrator.launch.job.TrainJob in a subprocess:
   status.json, config.yaml, metrics.json, history.csv, split.json, the per-class and confusion
   tables, checkpoints/best and checkpoints/last).
3. Copies that folder to every other planned run: each copy gets its own config.yaml (written
   as `submit` writes it), a status.json with its own times and a metrics.json naming its own
   run id with values of its own (top-1 and every other score, loss, time, speed and memory
   figure: a run's own values defeat caches by value as a real sweep's do); every other file
   is the trained run's bytes (files over 64 KiB, the checkpoints' weights and
   optimizer state, are hard links: 10,000 copies of 6 MB would not fit the disk; no command
   timed here opens them).
4. Times each command as a whole process (`orchestrate ...`: interpreter start and imports
   included) with its peak resident memory (os.wait4's rusage of that very child: the
   RUSAGE_CHILDREN maximum would also hold the trainer's), the median of `--repeats` runs with
   the load average: each in a process of its own (ORCHESTRATE_WARM=0), and `status` again and the
   second `collect` also as a user's later commands run, forked from the warm process that the
   first one started (orchestrator/cli/warm.py); then the same work in this process (library calls), and the reference:
   `json.load` of every status.json and metrics.json (the floor any collect pays). The start-up
   floor: a process that only imports what `collect` imports (part of every whole-command figure);
   the library floor: one that imports only the libraries it is built on (pandas, scipy.special,
   jinja2, pydantic, yaml, orjson), no code of ours.

Goals (issues 23 and 28): at 10,000 runs `collect --no-report` cold <= 5 s, `status` <= 2 s, a
second `collect` after 10 changed runs <= 1 s, `collect` with the report <= 30 s; at 100,000 runs
`collect` cold <= 30 s, `status` <= 10 s, `plan` <= 5 s, each under 2 GB.

    .venv/bin/python bench/collect_scale.py                  # 1,002 runs, a quick look
    .venv/bin/python bench/collect_scale.py --runs 10000     # the goals' size (10,002 runs)
    .venv/bin/python bench/collect_scale.py --runs 100000 --repeats 1
    .venv/bin/python bench/collect_scale.py --runs 10000 --seeds 10   # 1,000 cells of 10 seeds
    .venv/bin/python bench/collect_scale.py --runs 10000 --backbones 12 --datasets 10   # 12 tables x 10 columns
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator import store
from orchestrator.cli import warm
from orchestrator.store import verdicts as result_verdicts
from orchestrator.sweep import yamlio
from orchestrator.sweep.plan import RunSpec, plan
from orchestrator.sweep.spec import SweepSpec, load_spec
from trainers import rundir

REPO = Path(__file__).resolve().parents[1]
DEMO_GRID = (2, 1)
"""The demo's backbones and datasets (with its 3 ablation rows: 6 runs per seed)."""
BACKBONES = (
    "test_resnet",
    "test_byobnet",
    "test_convnext",
    "test_efficientnet",
    "test_vit",
    "test_nfnet",
    "test_coatnet",
    "test_maxvit",
    "test_vit2",
    "test_convnext2",
    "test_efficientnet_gn",
    "test_vit3",
)
"""timm's test models for `--backbones` (the demo's two first)."""
LINK_OVER_BYTES = 64 * 1024
BUILD_FORMAT = "own-values"
"""What `--keep` folders must have been built with to be reused (older builds copied every value)."""
TRAIN = """
import sys
from orchestrator.launch.job import TrainJob
from orchestrator.sweep.plan import plan
from orchestrator.sweep.spec import load_spec
run = plan(load_spec(sys.argv[1], max_runs=None))[0]
TrainJob(sys.argv[2], run.config.model_dump(mode="json"), run.metadata())()
"""


@dataclass(frozen=True)
class Goal:
    """One timed command: its label, argv after `orchestrate`, goal in seconds (None: none) and how
    to prepare each repeat (drop the index for a cold collect, change 10 runs for a second one)."""

    label: str
    argv: list[str]
    goal_s: float | None
    prepare: Callable[[], None]
    warm: bool = False
    """Served by the warm process (cli/warm.py), as a user's commands after the first are; else each
    command in a process of its own (ORCHESTRATE_WARM=0)."""


def write_spec(folder: Path, runs: int, seeds: int | None = None, grid: tuple[int, int] = DEMO_GRID) -> Path:
    """The demo study with N/6 seeds (N / (cells x 3) with `grid`), one tiny epoch, its output under
    `folder/out`; with `seeds`, that many seeds and the ablation ladder widened instead (a row per
    head dropout), so that the runs make many small cells (the shape of a large real grid) rather
    than six large ones. `grid`: (backbones, datasets), timm's test models and labelled copies of the
    digits set (a table per backbone, a column per dataset), the seeds or the ladder sized to reach N."""
    raw = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    raw["name"] = "collect_scale"
    raw["output_dir"] = str(folder / "out")
    dataset = {"name": "digits", "max_samples": 64}
    if grid != DEMO_GRID:
        raw["grid"]["backbone"] = list(BACKBONES[: grid[0]])
        raw["grid"]["dataset"] = [{**dataset, "label": f"digits-{k}"} for k in range(grid[1])]
    cells = len(raw["grid"]["backbone"]) * len(raw["grid"]["dataset"])
    if seeds is None:
        raw["grid"]["seed"] = list(range(-(-runs // (cells * len(raw["ablations"])))))
    else:
        raw["grid"]["seed"] = list(range(seeds))
        extra = -(-runs // (cells * seeds)) - len(raw["ablations"])
        for row in range(extra):
            dropout = round(0.9 * (row + 1) / (extra + 1), 6)  # distinct, below 1
            raw["modifiers"][f"drop{row}"] = {"model.head_dropout": dropout}
            raw["ablations"][f"+ Dropout {dropout}"] = [f"drop{row}"]
    raw["defaults"]["epochs"] = 1
    raw["defaults"]["torch_threads"] = 1
    raw["defaults"]["data"]["dataset"] = dataset
    path = folder / "collect_scale.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def train_first(spec_path: Path, folder: Path) -> float:
    """The first planned run trained by the real trainer, in a subprocess (torch stays out of here)."""
    started = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-c", TRAIN, str(spec_path), str(folder)], env=env, capture_output=True, text=True
    )
    if done.returncode != 0 or not (folder / rundir.METRICS).is_file():
        sys.exit(f"training the template run failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return time.perf_counter() - started


def template_files(folder: Path) -> list[tuple[str, bytes | None]]:
    """(relative path, bytes) of every file of the trained run; None for files hard-linked instead."""
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = str(path.relative_to(folder))
        out.append((rel, None if path.stat().st_size > LINK_OVER_BYTES else path.read_bytes()))
    return out


def copy_runs(runs: list[RunSpec], root: Path, first: Path) -> None:
    """Every planned run but the first: a copy of the trained folder with its own config, status and
    metrics (the values a real run has of its own: times, scores, losses, speed, memory)."""
    files = template_files(first)
    metrics = json.loads((first / rundir.METRICS).read_bytes())
    status = json.loads((first / rundir.STATUS).read_bytes())
    links: dict[str, Path] = {rel: first / rel for rel, data in files if data is None}
    configs = ConfigTexts()
    for index, run in enumerate(runs[1:], start=1):
        path = store.run_path(root, run.run_id)
        for sub in {os.path.dirname(rel) for rel, _ in files}:
            (path / sub).mkdir(parents=True, exist_ok=True)
        for rel, data in files:
            if data is None:
                links[rel] = _link(links[rel], path / rel)
            elif rel not in (rundir.CONFIG, rundir.METRICS, rundir.STATUS):
                (path / rel).write_bytes(data)
        rundir.write_text(path / rundir.CONFIG, configs.text(run, index < 40))
        _write_metrics(path, metrics, run, index)
        _write_status(path, status, index)


class ConfigTexts:
    """config.yaml as `submit` writes it (store.write_config): dumped once per run that differs from
    the previous by more than its seed, then the seed's lines replaced (a dump per run was most of
    the copying time at 100,000 runs); the first runs are compared with a full dump."""

    def __init__(self) -> None:
        self.last: tuple[RunSpec, str] | None = None

    def text(self, run: RunSpec, check: bool) -> str:
        full = lambda: yamlio.dumps({**run.metadata(), "trainer": run.config.model_dump(mode="json")})  # noqa: E731
        last = self.last
        if last is None or last[0].config.model_copy(update={"seed": run.seed}) != run.config:
            self.last = (run, full())
            return self.last[1]
        old, text = last
        line = lambda key, value: yamlio.dumps({key: value})  # noqa: E731  (quoted as the dump quotes it)
        for before, after in (
            (line("run_id", old.run_id), line("run_id", run.run_id)),
            (line("name", old.name), line("name", run.name)),
            (f"\nseed: {old.seed}\n", f"\nseed: {run.seed}\n"),
            (f"\n  seed: {old.seed}\n", f"\n  seed: {run.seed}\n"),
        ):
            assert text.count(before) == 1, before
            text = text.replace(before, after)
        if check:
            assert text == full(), f"config.yaml of {run.name} differs from store.write_config's"
        return text


def _link(source: Path, target: Path) -> Path:
    """Hard-link `target` to `source`; a fresh copy when `source` has too many links (ext4: 65,000)."""
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno != errno.EMLINK:
            raise
        shutil.copyfile(source, target)
        return target  # the next copies link to this one
    return source


OWN_VALUES = ("test", "val", "best", "timing")
"""The metrics.json sections whose floats differ from run to run in a real sweep (scores, losses, the
best value, wall time, speed, memory); the others (complexity, provenance, preprocessing) are the
same for every run of a cell. A copy with the trained run's values there would flatter every cache
by value (runs.csv formats a repeated float once)."""


def _write_metrics(path: Path, metrics: dict[str, Any], run: RunSpec, index: int) -> None:
    """The trained run's metrics.json, owned by `run`: top-1 moved by a seed and a run term (paired
    rows), every other float of OWN_VALUES moved by a small amount of its own."""
    draw = random.Random(index)
    own = {key: _moved(metrics[key], draw) for key in OWN_VALUES if isinstance(metrics.get(key), dict)}
    noise = 0.002 * ((run.seed * 7919) % 13 - 6) + 0.001 * ((index * 104729) % 11 - 5)
    own["test"]["top1"] = min(1.0, max(0.0, metrics["test"]["top1"] + noise))
    (path / rundir.METRICS).write_text(json.dumps({**metrics, **own, "run_id": run.run_id}, indent=2))


def _moved(section: dict[str, Any], draw: random.Random) -> dict[str, Any]:
    """A section's floats moved by up to 1% of their value (a share stays within 0..1)."""
    out = {}
    for key, value in section.items():
        if type(value) is float:
            moved = value * (1 + draw.uniform(-0.01, 0.01))
            value = min(1.0, moved) if value <= 1.0 else moved
        out[key] = value
    return out


def _write_status(path: Path, status: dict[str, Any], index: int) -> None:
    """The trained run's status.json, started and finished at times of its own (a run every 3.7 s)."""
    shift = index * 3.7 + random.Random(-index).uniform(0.0, 1.0)
    text = json.dumps(_shifted(status, shift), indent=2)
    (path / rundir.STATUS).write_text(text)


def _shifted(value: Any, shift: float) -> Any:
    """Every time stamp in a status document (`*_at`, `at`) moved by `shift` seconds."""
    if isinstance(value, list):
        return [_shifted(item, shift) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        k: v + shift if (k == "at" or k.endswith("_at")) and type(v) is float else _shifted(v, shift)
        for k, v in value.items()
    }


def change_runs(runs: list[RunSpec], root: Path, count: int = 10) -> Callable[[], None]:
    """A preparation that rewrites `count` runs' metrics.json (a new top-1 each time it is called)."""
    calls = [0]

    def prepare() -> None:
        calls[0] += 1
        for run in runs[1 : count + 1]:
            path = store.run_path(root, run.run_id)
            metrics = json.loads((path / rundir.METRICS).read_bytes())
            metrics["test"]["top1"] = 0.5 + 0.01 * calls[0]
            rundir.write_json(path / rundir.METRICS, metrics)

    return prepare


def command_env(folder: Path) -> dict[str, str]:
    """The commands' environment: byte code cached (as an installed tool has it; pip compiles at
    install) under `folder` rather than beside the sources, and compiled before anything is timed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(folder / "pycache")
    env[warm.DIR_ENV] = str(folder / "warm")  # the bench's warm processes, stopped at its end
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "orchestrator", "trainers"], cwd=REPO, env=env, check=True
    )
    return env


STARTUP = (
    "import gc, orchestrator.cli.process, orchestrator.cli.main, orchestrator.results.collect,"
    " orchestrator.results.tables, pandas, scipy.special; gc.freeze()"
)
"""What a second `collect` imports before its first read, as its process exits (collector frozen)."""
LIBRARIES = "import gc, pandas, scipy.special, jinja2, pydantic, yaml, orjson; gc.freeze()"
"""The libraries alone that a `collect` with changed runs is built on (tables, t-tests, templates,
spec models, YAML, the index), no code of ours: what no change to orchestrate can remove."""


FLOOR_REPEATS = 9
"""Runs of each floor (half a second each): the median of 3 moved by 0.1 s with a neighbour's load."""


def startup_floors(env: dict[str, str]) -> tuple[float, float]:
    """Median wall seconds of a process that only imports what `collect` does (STARTUP: the part of
    every whole-command figure no change to collect's own work can remove) and of one that imports
    only the libraries (LIBRARIES), interleaved so both see the same load. One run of each first,
    untimed: it compiles the byte code into a fresh PYTHONPYCACHEPREFIX."""
    heads = [[sys.executable, "-c", statement] for statement in (STARTUP, LIBRARIES)]
    for head in heads:
        command([], env, head=head)
    walls: list[list[float]] = [[], []]
    for _ in range(FLOOR_REPEATS):
        for k, head in enumerate(heads):
            walls[k].append(command([], env, head=head)[0])
    return statistics.median(walls[0]), statistics.median(walls[1])


def command(argv: list[str], env: dict[str, str], head: list[str] | None = None) -> tuple[float, float, float, str]:
    """`orchestrate ARGV` as a user runs it: wall seconds, CPU seconds, peak RSS in MB, output tail."""
    if head is None:
        script = Path(sys.executable).with_name("orchestrate")
        head = [str(script)] if script.is_file() else [sys.executable, "-m", "orchestrator.cli"]
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        child = subprocess.Popen([*head, *argv], stdout=out, stderr=subprocess.STDOUT, env=env)
        _, code, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(code)
        out.seek(0)
        tail = out.read()[-1500:].decode(errors="replace")
    if child.returncode != 0:
        sys.exit(f"{' '.join([Path(head[0]).name, *head[1:], *argv[:2]])} exited {child.returncode}:\n{tail}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, tail


def measure(goal: Goal, repeats: int, env: dict[str, str]) -> dict[str, float]:
    """Median wall, CPU and the largest peak RSS of `repeats` runs of one command, with the load average."""
    walls, cpus, peaks, loads = [], [], [], []
    env = {**env, warm.SWITCH_ENV: "1" if goal.warm else "0"}
    if goal.warm:
        serving(goal, env)
    for _ in range(repeats):
        goal.prepare()
        loads.append(os.getloadavg()[0])
        wall, cpu, peak, _ = command(goal.argv, env)
        walls.append(wall)
        cpus.append(cpu)
        peaks.append(peak)
    return {
        "wall": statistics.median(walls),
        "cpu": statistics.median(cpus),
        "rss": max(peaks),
        "load": statistics.median(loads),
    }


def serving(goal: Goal, env: dict[str, str]) -> None:
    """A warm process for `env`, listening: the command run once (it starts one after its own work,
    as a user's first command does), then its socket awaited (it imports for about a second)."""
    command(goal.argv, env)
    folder = Path(env[warm.DIR_ENV])
    deadline = time.monotonic() + 120
    while not any(warm._listening(path) for path in folder.glob("*.sock")):
        if time.monotonic() > deadline:
            sys.exit(f"no warm process listens in {folder} after 120 s")
        time.sleep(0.1)  # polling another process's start-up, not synchronisation of ours


def print_command(goal: Goal, got: dict[str, float], reference_s: float, limit_mb: float) -> None:
    verdict = (
        "" if goal.goal_s is None else f"goal <= {goal.goal_s:g} s [{'ok' if got['wall'] <= goal.goal_s else 'OVER'}]"
    )
    memory = "ok" if got["rss"] <= limit_mb else "OVER"
    # Served warm, the client's CPU and memory are not the command's (that is the warm process's fork).
    used = "  (CPU and memory: the warm process's fork, not measured)" if goal.warm else ""
    cost = "" if goal.warm else f"{got['cpu']:7.2f} s CPU {got['rss']:6.0f} MB [{memory}]"
    print(
        f"{goal.label:<46} {got['wall']:7.2f} s wall {cost:<32}"
        f"  {verdict:<18} {got['wall'] / reference_s:5.1f}x json.load  (load {got['load']:.1f}){used}"
    )


def json_reference(runs: list[RunSpec], root: Path) -> float:
    """The floor: json.load of every run's status.json and metrics.json."""
    started = time.perf_counter()
    for run in runs:
        path = store.run_path(root, run.run_id)
        for name in (rundir.STATUS, rundir.METRICS):
            with (path / name).open(encoding="utf-8") as handle:
                json.load(handle)
    return time.perf_counter() - started


def goals(spec_path: Path, root: Path, runs: list[RunSpec], big: bool, with_report: bool) -> list[Goal]:
    """The commands timed, with the goals of the run count's size."""
    index = root / ".collect-index.json"
    remembered = root / result_verdicts.FILE

    def cold() -> None:
        index.unlink(missing_ok=True)

    def first_status() -> None:
        remembered.unlink(missing_ok=True)

    def nothing() -> None:
        pass

    cap = ["--max-runs", str(len(runs))]
    out = [
        Goal("orchestrate plan SPEC", ["plan", str(spec_path), *cap], 5.0 if big else None, nothing),
        Goal(
            "orchestrate collect DIR --no-report (cold)",
            ["collect", str(root), "--no-report", *cap],
            30.0 if big else 5.0,
            cold,
        ),
        Goal("orchestrate status SPEC (first)", ["status", str(spec_path), *cap], 10.0 if big else 2.0, first_status),
        # The first status after the folders appear checks every completed run's metrics.json; later
        # ones answer from store.verdicts (what a user watching a sweep gets).
        Goal("orchestrate status SPEC, again", ["status", str(spec_path), *cap], 10.0 if big else 2.0, nothing),
        Goal(
            "orchestrate collect DIR --no-report, 10 changed",
            ["collect", str(root), "--no-report", *cap],
            None if big else 1.0,
            change_runs(runs, root),
        ),
        Goal("status SPEC, again, warm process", ["status", str(spec_path), *cap], 10.0 if big else 2.0, nothing, True),
        Goal(
            "collect DIR --no-report, 10 changed, warm process",
            ["collect", str(root), "--no-report", *cap],
            None if big else 1.0,
            change_runs(runs, root),
            True,
        ),
    ]
    if with_report:
        out.append(Goal("orchestrate collect DIR (report, cold)", ["collect", str(root), *cap], 30.0, cold))
    return out


def in_process(
    spec_path: Path, root: Path, runs: list[RunSpec], reference_s: float, repeats: int = 1, big: bool = False
) -> None:
    """The same work as library calls in this process (no interpreter start, imports already paid);
    the second collect `repeats` times, 10 runs changed before each (issue 23's goal: <= 1 s, for
    10,000 runs: none when `big`)."""
    from orchestrator.launch import status
    from orchestrator.results import collect

    def load() -> SweepSpec:
        return load_spec(spec_path, max_runs=None)

    index = root / collect.INDEX_FILE
    index.unlink(missing_ok=True)
    timed("in-process: load + plan", lambda: plan(load()), reference_s)
    timed("in-process: collect --no-report (cold)", lambda: collect.write_tables(load(), root), reference_s)
    timed("in-process: status", lambda: status.sweep_status(plan(load()), root), reference_s)
    walls = []
    for _ in range(repeats):
        change_runs(runs, root)()
        walls.append(timed("in-process: collect, 10 changed", lambda: collect.write_tables(load(), root), reference_s))
    median = statistics.median(walls)
    verdict = "" if big else f"  goal <= 1 s [{'ok' if median <= 1.0 else 'OVER'}]"
    print(
        f"{'in-process: collect, 10 changed (median)':<46} {median:7.2f} s wall (of {repeats}: "
        f"{min(walls):.2f}-{max(walls):.2f} s){verdict}"
    )


def timed(label: str, action: Callable[[], object], reference_s: float) -> float:
    """Run `action`, print its wall and CPU seconds; its wall seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    action()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"{label:<46} {elapsed:7.2f} s wall {cpu:7.2f} s CPU"
        f"  {elapsed / reference_s:5.1f}x json.load  (load {os.getloadavg()[0]:.1f})"
    )
    return elapsed


def build(
    folder: Path, count: int, seeds: int | None, grid: tuple[int, int] = DEMO_GRID
) -> tuple[Path, Path, list[RunSpec]]:
    """The spec, its output folder and its planned runs: the first trained, the others copied."""
    spec_path = folder / "collect_scale.yaml"
    built = folder / "built"
    marker = [str(count), BUILD_FORMAT, f"seeds={seeds or 'wide'}"]
    marker += [f"grid={grid[0]}x{grid[1]}"] if grid != DEMO_GRID else []
    if spec_path.is_file() and built.is_file() and built.read_text().split() == marker:  # --keep
        spec = load_spec(spec_path, max_runs=None)
        print(f"reusing the {count:,} run folders built in {folder}")
        return spec_path, spec.output_path, plan(spec)
    spec_path = write_spec(folder, count, seeds, grid)
    spec = load_spec(spec_path, max_runs=None)
    runs = plan(spec)
    root = spec.output_path
    if root.is_relative_to(folder.resolve()) and root.exists():  # --keep: folders built another way
        shutil.rmtree(root)
    store.write_snapshot(spec, root)
    first = store.run_path(root, runs[0].run_id)
    print(f"trained {runs[0].run_id} ({runs[0].name}) with the real trainer in {train_first(spec_path, first):.0f} s")
    started = time.perf_counter()
    copy_runs(runs, root, first)
    built.write_text(" ".join(marker) + "\n")  # --keep reuses these folders from now on
    print(
        f"{len(runs):,} run folders ({len(template_files(first))} files each) in {time.perf_counter() - started:.0f} s"
    )
    return spec_path, root, runs


def _positive(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: at least 1")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs",
        type=_positive,
        default=1000,
        help="planned runs, rounded up to a whole seed of every cell (default 1000)",
    )
    parser.add_argument("--repeats", type=_positive, default=3, help="runs of each command; the median is printed")
    parser.add_argument(
        "--seeds",
        type=_positive,
        help="seeds per cell, the ablation ladder widened to reach --runs (many small cells; default: 6 cells)",
    )
    parser.add_argument(
        "--backbones",
        type=int,
        default=DEMO_GRID[0],
        choices=range(1, len(BACKBONES) + 1),
        metavar=f"1..{len(BACKBONES)}",
        help="backbones (a table each; default: the demo's 2)",
    )
    parser.add_argument(
        "--datasets", type=_positive, default=DEMO_GRID[1], help="datasets (a column each; default: the demo's digits)"
    )
    parser.add_argument(
        "--report", action="store_true", help="also time `collect` with the report (default below 20,000 runs)"
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="build the folders here and keep them, or reuse those built there (default: a temporary folder)",
    )
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="collect_scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    big = args.runs > 20_000
    try:
        spec_path, root, runs = build(folder, args.runs, args.seeds, (args.backbones, args.datasets))
        reference_s = json_reference(runs, root)
        print(f"{'reference: json.load of status + metrics':<46} {reference_s:7.2f} s")
        limit_mb = 2048.0
        env = command_env(folder)
        floor_s, libraries_s = startup_floors(env)
        floor = f"{'start-up floor: interpreter + collect imports':<46} {floor_s:7.2f} s wall"
        print(f"{floor} (in every figure below but the warm ones)")
        print(
            f"{'library floor: pandas, scipy.special, jinja2, ...':<46} {libraries_s:7.2f} s wall (no orchestrate code;"
            f" leaves {1 - libraries_s:.2f} s of the 1 s goal)"
        )
        for goal in goals(spec_path, root, runs, big, args.report or not big):
            print_command(goal, measure(goal, args.repeats, env), reference_s, limit_mb)
        in_process(spec_path, root, runs, reference_s, max(args.repeats, 5), big)
    finally:
        warm.stop(folder / "warm")
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
