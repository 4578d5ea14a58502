"""Mistakes about the tracking store and the UI end as one paragraph and exit code 2, never a
traceback or a wait: a server nobody runs, a corrupt or unwritable SQLite file, an unknown
scheme, a database server that is down, a UI port that is taken or is no port. And processes
started together on a fresh SQLite store all open it, leaving it whole."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import main
from harness.tracking import open_store
from harness.tracking.mlflow_store import FIRST_CONTACT
from tests.conftest import ROOT

SPEC = "name: hostile\nmodel: {num_classes: 5}\ngrid: {backbone: [resnet3d_10]}\n"
SPEC += "dataset: {name: synthetic, root: x}\n"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def unreachable_server(folder: Path) -> tuple[str, str]:
    port = closed_port()
    return f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}"


def random_bytes(folder: Path) -> tuple[str, str]:
    (folder / "mlflow.db").write_bytes(os.urandom(8192))
    return f"sqlite:///{folder}/mlflow.db", f"{folder}/mlflow.db"


def text_file(folder: Path) -> tuple[str, str]:
    (folder / "mlflow.db").write_text("name,accuracy\nresnet,0.5\n")
    return "sqlite:///mlflow.db", f"{folder}/mlflow.db"  # relative: named absolute


def unknown_scheme(folder: Path) -> tuple[str, str]:
    return "foo://bar", "foo://bar"


def under_a_file(folder: Path) -> tuple[str, str]:
    (folder / "afile").write_text("not a folder")  # root writes anywhere, but not under a file
    return f"sqlite:///{folder}/afile/mlflow.db", f"{folder}/afile"


def in_proc(folder: Path) -> tuple[str, str]:
    return "sqlite:////proc/x/mlflow.db", "/proc/x"


def a_folder(folder: Path) -> tuple[str, str]:
    (folder / "store").mkdir()
    return f"sqlite:///{folder}/store", f"{folder}/store"


def file_store(folder: Path) -> tuple[str, str]:
    return f"{folder}/mlruns", f"{folder}/mlruns names a folder"  # MLflow 3 refuses it


def sqlite_as_a_path(folder: Path) -> tuple[str, str]:
    sqlite3.connect(folder / "runs.db").execute("create table t (x)").connection.close()
    return f"{folder}/runs.db", f"Give it as sqlite:///{folder}/runs.db"


def in_memory(folder: Path) -> tuple[str, str]:
    return "sqlite://", "in-memory SQLite database"  # every run would vanish with the process


def database_down(folder: Path) -> tuple[str, str]:
    pytest.importorskip("psycopg2")
    return f"postgresql+psycopg2://me:secret@127.0.0.1:{closed_port()}/runs", "me:***@127.0.0.1"


STORES: dict[str, Callable[[Path], tuple[str, str]]] = {
    "server not running": unreachable_server,
    "random bytes for mlflow.db": random_bytes,
    "a text file for mlflow.db": text_file,
    "unknown scheme": unknown_scheme,
    "folder under a file": under_a_file,
    "folder in /proc": in_proc,
    "a folder for the file": a_folder,
    "old file store": file_store,
    "an SQLite file given as a path": sqlite_as_a_path,
    "in-memory database": in_memory,
    "database server down": database_down,
}


def one_paragraph(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", ["run", "ui"])
@pytest.mark.parametrize("case", list(STORES))
def test_an_unusable_store_is_one_paragraph(tmp_path, capsys, monkeypatch, case, command):
    monkeypatch.chdir(tmp_path)
    uri, named = STORES[case](tmp_path)
    (tmp_path / "spec.yaml").write_text(SPEC)
    args = ["run", "spec.yaml", "--dry-run"]
    if command == "ui":
        args = ["ui", "spec.yaml", "--port", str(closed_port())]
    settings = {name: os.environ.get(name) for name in FIRST_CONTACT}
    started = time.monotonic()
    assert main([*args, "--tracking-uri", uri]) == 2
    assert time.monotonic() - started < 15  # MLflow alone retries for minutes
    err = one_paragraph(capsys)
    assert named in err and "secret" not in err, err
    assert {name: os.environ.get(name) for name in FIRST_CONTACT} == settings  # bounded, then not


@pytest.mark.parametrize("case", ["server not running", "random bytes for mlflow.db"])
def test_ui_without_a_spec_checks_the_store(tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    uri, named = STORES[case](tmp_path)
    assert main(["ui", "--tracking-uri", uri, "--port", str(closed_port())]) == 2
    assert named in one_paragraph(capsys)


def test_a_dry_run_and_the_ui_create_no_store_at_a_mistyped_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(SPEC)
    typo = ["--tracking-uri", "sqlite:///mlfow.db"]
    main(["run", "spec.yaml", "--dry-run", *typo])  # exit 2: the dataset root x is not there
    printed = capsys.readouterr()
    assert f"no store at {tmp_path / 'mlfow.db'} yet" in printed.err
    assert "todo  resnet3d_10-" in printed.out and "(not started)" in printed.out
    assert main(["ui", "spec.yaml", "--port", str(closed_port()), *typo]) == 2
    assert "Run `harness run SPEC` first" in one_paragraph(capsys)
    assert not (tmp_path / "mlfow.db").exists()


@pytest.mark.parametrize("port", ["0", "70000", "abc", "-1", ""])
def test_ui_refuses_what_is_no_port(tmp_path, capsys, monkeypatch, port):
    monkeypatch.chdir(tmp_path)
    assert main(["ui", "--port", port]) == 2
    err = one_paragraph(capsys)
    assert f"--port {port!r}" in err and "1 to 65535" in err, err
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store is touched


def test_ui_refuses_a_port_in_use(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as other:  # another program serving on the port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
    err = one_paragraph(capsys)
    assert f"127.0.0.1:{port} is already in use" in err, err


# Each process loads MLflow once, then opens a fresh store per round at the same moment: it says
# it is ready, waits for the go, opens. Without the lock every round broke at least one process
# (alembic: "Online migration expected to match one row", "duplicate column name: step").
RACER = """
import sys, time
from pathlib import Path
from harness.tracking import open_store
import harness.tracking.mlflow_store  # MLflow's import (seconds) before the go

folder, rounds, me = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for round in range(rounds):
    (folder / f"ready-{round}-{me}").touch()
    while not (folder / f"go-{round}").exists():
        time.sleep(0.001)
    open_store(f"sqlite:///{folder}/round{round}/mlflow.db", "race")
"""


@pytest.mark.slow
def test_processes_started_together_create_one_sound_store(tmp_path):
    processes, rounds = 3, 2  # a fresh store's schema migration takes 1-5 s of one core
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path), str(rounds), str(me)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for me in range(processes)
    ]
    try:
        for round in range(rounds):
            ready = [tmp_path / f"ready-{round}-{me}" for me in range(processes)]
            deadline = time.monotonic() + 60
            while not all(p.exists() for p in ready) and time.monotonic() < deadline:
                if any(r.poll() not in (None, 0) for r in racers):
                    break  # one died: its output says why, below
                time.sleep(0.005)
            (tmp_path / f"go-{round}").touch()
        outputs = [racer.communicate(timeout=60)[0] for racer in racers]
    finally:
        for racer in racers:
            racer.kill()
    assert [r.returncode for r in racers] == [0] * processes, "\n".join(outputs)
    for round in range(rounds):
        assert_sound(tmp_path / f"round{round}" / "mlflow.db")


def assert_sound(db: Path) -> None:
    """The store has one experiment `race`, and a run logs to it and is found again."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{db}"
    names = [e.name for e in MlflowClient(uri).search_experiments()]
    assert names.count("race") == 1, names
    store = open_store(uri, "race")
    with store.open_run("trial") as log:
        log.log_metrics({"video_top1": 0.5})
    run = store.latest_run("trial")
    assert run is not None and run.finished and run.metrics == {"video_top1": 0.5}
