"""The warm process of `collect` and `status` (orchestrator/cli/warm.py, warm_server.py): a command it
serves prints, writes and exits as the same command in its own process; signals reach it; a client
that dies takes its command along; nothing of another user or a stale socket is ever used."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from polling import wait_for
from tables_fixture import finished_sweep

from orchestrator.cli import warm

CLIENT = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from orchestrator.cli import warm; "
    "code = warm.run(sys.argv[2:]); sys.exit(200 if code is None else code)"
)
"""A client with this test process's import path (so its key is this process's): exit 200 when no
warm process took the command."""
NOT_WARM = 200


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A warm process of this test's own, in a folder of its own; stopped after the test."""
    yield from _serving(tmp_path / "warm", monkeypatch)


def _serving(where: Path, monkeypatch: pytest.MonkeyPatch, first: list[str] | None = None) -> Iterator[Path]:
    """A warm process started as a `first` command in this folder starts it (it reads ahead its sweep)."""
    monkeypatch.setenv(warm.DIR_ENV, str(where))
    monkeypatch.delenv(warm.SWITCH_ENV, raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    warm.start(first or ["collect"])
    assert warm.folder() == where
    socket_file = warm.socket_path(where, warm.key())
    wait_for(lambda: warm._listening(socket_file), 60, "the warm process to listen", interval_s=0.1)
    try:
        yield where
    finally:
        warm.stop(where)


def _cli(argv: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m orchestrator.cli ARGV` as a user runs it."""
    command = [sys.executable, "-m", "orchestrator.cli", *argv]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **env}, timeout=120)


def _client(argv: list[str], cwd: Path, stdout: int = subprocess.PIPE) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", CLIENT, json.dumps(sys.path), *argv]
    return subprocess.Popen(command, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE, text=True)


def _watching(spec_path: Path, cwd: Path) -> tuple[subprocess.Popen[str], int]:
    """`status --watch` through a client whose stdout is a terminal (a pty: rich's live view draws at
    once there), once its first view has been drawn; the client and the pty's reading end."""
    reader, terminal = pty.openpty()
    client = _client(["status", str(spec_path), "--watch", "--interval", "1"], cwd, stdout=terminal)
    os.close(terminal)
    _wait_drawn(reader)
    return client, reader


def _wait_drawn(reader: int) -> None:
    """Until the live view on the pty shows the sweep's name (past the cursor codes)."""
    drawn = bytearray()

    def shown() -> bool:
        if select.select([reader], [], [], 0.2)[0]:
            drawn.extend(os.read(reader, 65536))
        return b"tiny" in drawn

    wait_for(shown, 60, "a first view", interval_s=0)


def _tables(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "tables").iterdir()) if p.is_file()}


@pytest.mark.parametrize("command", ["collect", "status"])
def test_a_warm_command_prints_writes_and_exits_as_its_own_process_does(
    command: str, server: Path, write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec, _ = finished_sweep(write_spec())
    root = spec.output_path
    cold = _cli([command, "sweep.yaml"], tmp_path, **{warm.SWITCH_ENV: "0"})
    assert cold.returncode == 0, cold.stderr
    cold_tables = _tables(root) if command == "collect" else {}
    served = _client([command, "sweep.yaml"], tmp_path)  # a relative path: the client's folder is the command's
    out, err = served.communicate(timeout=120)
    assert served.returncode == 0, err
    assert (out, err) == (cold.stdout, cold.stderr)
    if command == "collect":
        assert _tables(root) == cold_tables
        assert "tiny" in out


def test_a_warm_command_sees_the_clients_environment_and_exit_status(
    server: Path, write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.yaml"
    served = _client(["status", str(missing)], tmp_path)
    _, err = served.communicate(timeout=120)
    assert served.returncode == 2, err  # a SpecError's exit status, through the warm process
    assert err.startswith("error: ") and "nowhere.yaml" in err


def test_ctrl_c_reaches_the_warm_command(server: Path, write_spec: Callable[..., Path], tmp_path: Path) -> None:
    watching, reader = _watching(_running_sweep(write_spec()), tmp_path)
    watching.send_signal(signal.SIGINT)
    _, err = watching.communicate(timeout=60)
    os.close(reader)
    assert watching.returncode == 130, err
    assert "interrupted" in err
    wait_for(lambda: not _commands_of(server), 30, "the command's processes to end", interval_s=0.1)


def test_a_kill_reaches_the_warm_command_and_ends_the_client_by_the_same_signal(
    server: Path, write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    watching, reader = _watching(_running_sweep(write_spec()), tmp_path)
    watching.send_signal(signal.SIGTERM)
    watching.communicate(timeout=60)
    os.close(reader)
    assert watching.returncode == -signal.SIGTERM, "as a process of its own ends on SIGTERM"
    wait_for(lambda: not _commands_of(server), 30, "the command's processes to end", interval_s=0.1)


def test_a_client_killed_takes_its_command_along(server: Path, write_spec: Callable[..., Path], tmp_path: Path) -> None:
    watching, reader = _watching(_running_sweep(write_spec()), tmp_path)
    assert _commands_of(server), "the watch runs in the warm process's fork"
    watching.kill()
    watching.wait(timeout=30)
    os.close(reader)
    wait_for(lambda: not _commands_of(server), 30, "the orphaned command to end", interval_s=0.1)


def _running_sweep(spec_path: Path) -> Path:
    """A finished sweep but one run, left running by this very (live) process: `status --watch`
    refreshes until it ends."""
    from orchestrator import store
    from orchestrator.launch import pids
    from trainers import rundir

    spec, runs = finished_sweep(spec_path)
    path = store.run_path(store.sweep_root(spec), runs[0].run_id)
    alive = {"host": socket.gethostname(), "pid": os.getpid(), "boot_id": pids.boot_id()}
    rundir.update_status(path, rundir.State.RUNNING, **alive)
    return spec_path


def _commands_of(where: Path) -> list[int]:
    """The processes the warm process forked (handlers, and their commands), from /proc."""
    (lock,) = where.glob("*.lock")
    pid = int(lock.read_text().strip())
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def test_a_stale_socket_runs_the_command_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = tmp_path / "warm"
    monkeypatch.setenv(warm.DIR_ENV, str(where))
    monkeypatch.delenv(warm.SWITCH_ENV, raising=False)
    assert warm.folder() == where
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(warm.socket_path(where, warm.key())))  # a file no one listens on (a killed process's)
    dead.close()
    assert warm.run(["status", "x.yaml"]) is None


def test_only_collect_and_status_are_served_and_off_means_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert warm.served(["collect", "x"]) and warm.served(["status", "x"])
    assert not any(warm.served(argv) for argv in (["submit", "x"], ["plan", "x"], [], ["--version"]))
    monkeypatch.setenv(warm.SWITCH_ENV, "0")
    assert not warm.enabled() and warm.run(["status", "x"]) is None
    monkeypatch.setenv(warm.SWITCH_ENV, "1")
    assert warm.enabled()
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    assert not warm.enabled(), "inside a job no warm process is used or started"


def test_the_folder_must_be_the_users_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = tmp_path / "fresh"
    monkeypatch.setenv(warm.DIR_ENV, str(fresh))
    assert warm.folder() == fresh and (fresh.stat().st_mode & 0o777) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    monkeypatch.setenv(warm.DIR_ENV, str(shared))
    assert warm.folder() is None
    link = tmp_path / "link"
    link.symlink_to(fresh)
    monkeypatch.setenv(warm.DIR_ENV, str(link))
    assert warm.folder() is None
    if os.getuid() == 0:  # CI runs as root: a folder another user owns
        foreign = tmp_path / "foreign"
        foreign.mkdir(mode=0o700)
        os.chown(foreign, 65534, 65534)
        monkeypatch.setenv(warm.DIR_ENV, str(foreign))
        assert warm.folder() is None


def test_the_key_follows_the_code_and_the_import_time_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    module = package / "m.py"
    module.write_text("x = 1\n")
    roots = (package,)
    first = warm.key(roots)
    assert warm.key(roots) == first
    monkeypatch.setenv("ORCHESTRATE_SOMETHING", "1")  # read when a command runs: the same process serves
    assert warm.key(roots) == first
    os.utime(module, ns=(1, 1))
    edited = warm.key(roots)
    assert edited != first
    (package / "n.py").write_text("")
    assert warm.key(roots) != edited
    added = warm.key(roots)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert warm.key(roots) != added
    (package / "__pycache__").mkdir()  # byte code written by an import changes nothing
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert warm.key(roots) == added


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
def test_a_peer_of_another_user_gets_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    base = Path(tempfile.mkdtemp(prefix="warm-peer-"))  # not under tmp_path: its parents are 0700
    try:
        for where in _serving(base / "warm", monkeypatch):
            path = warm.socket_path(where, warm.key())
            for opened in (base, where):  # past the folder's mode and the socket's, the uid check remains
                opened.chmod(0o755)
            path.chmod(0o777)
            assert _answer_to_nobody(path) == b"", "the warm process answered another user"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _answer_to_nobody(path: Path) -> bytes:
    """What a process of uid 65534 reads back after sending a request (in a fork: setuid is for good)."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - in the forked child
        os.close(reader)
        try:
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
                peer.settimeout(20)
                peer.connect(str(path))
                body = json.dumps({"argv": ["status", "x"], "env": {}, "umask": 0}).encode()
                socket.send_fds(peer, [struct.pack("!I", len(body))], [0, 1, 2, 0])
                peer.sendall(body)
                os.write(writer, b"answer:" + peer.recv(1))
        except (ConnectionResetError, BrokenPipeError):  # closed on it, unread: nothing answered
            os.write(writer, b"answer:")
        except BaseException as exc:
            os.write(writer, f"error: {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        said = pipe.read()
    os.waitpid(child, 0)
    assert said.startswith(b"answer:"), said
    return said.removeprefix(b"answer:")


def test_the_first_command_starts_a_warm_process_and_the_next_is_forked_from_it(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a user runs them: `orchestrate status` twice; the second, a live view, runs in a fork of
    the warm process the first one started, and Ctrl-C ends it as it ends a process of its own."""
    where = tmp_path / "warm"
    monkeypatch.setenv(warm.DIR_ENV, str(where))
    monkeypatch.delenv(warm.SWITCH_ENV, raising=False)
    spec_path = _running_sweep(write_spec())
    try:
        first = _cli(["status", str(spec_path)], tmp_path)
        assert first.returncode == 0, first.stderr
        wait_for(lambda: any(warm._listening(p) for p in where.glob("*.sock")), 60, "the warm process", interval_s=0.1)
        reader, terminal = pty.openpty()
        command = [sys.executable, "-m", "orchestrator.cli", "status", str(spec_path), "--watch", "--interval", "1"]
        watching = subprocess.Popen(command, cwd=tmp_path, stdout=terminal, stderr=subprocess.PIPE, text=True)
        os.close(terminal)
        _wait_drawn(reader)
        assert len(_commands_of(where)) == 1, "the command is the warm process's fork"
        watching.send_signal(signal.SIGINT)
        _, err = watching.communicate(timeout=60)
        os.close(reader)
        assert watching.returncode == 130, err
    finally:
        warm.stop(where)


def test_a_warm_collect_after_changed_runs_tabulates_what_a_cold_one_does(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm process planned the sweep and decoded its index before the runs changed: the fork
    uses what still holds (the plan, the index file) and reads the rest, and its tables are those a
    cold collect with no index at all writes."""
    from tables_fixture import fake_run

    spec, runs = finished_sweep(write_spec())
    root = spec.output_path
    assert _cli(["collect", "sweep.yaml"], tmp_path, **{warm.SWITCH_ENV: "0"}).returncode == 0  # the index
    monkeypatch.chdir(tmp_path)
    for _ in _serving(tmp_path / "warm", monkeypatch, ["collect", "sweep.yaml"]):
        fake_run(spec, runs[0], 0.42)
        fake_run(spec, runs[-1], 0.97)
        served = _client(["collect", "sweep.yaml"], tmp_path)
        _, err = served.communicate(timeout=120)
        assert served.returncode == 0, err
        warm_tables = _tables(root)
        for index in root.glob(".collect-index*"):
            index.unlink()
        cold = _cli(["collect", "sweep.yaml"], tmp_path, **{warm.SWITCH_ENV: "0"})
        assert cold.returncode == 0, cold.stderr
        assert _tables(root) == warm_tables
        assert b"42.0" in warm_tables["runs.csv"] or b"0.42" in warm_tables["runs.csv"]
