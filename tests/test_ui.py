"""`harness ui` serves the spec's runs from the real store over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.tracking.mlflow_store import MlflowStore
from tests.conftest import ROOT


def rendered_dom(url: str, profile: Path) -> str:
    """The page as headless Chromium renders it (the runs table is built by JavaScript)."""
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=20000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_spec_runs(tmp_path: Path):
    pytest.importorskip("flask", reason="mlflow-skinny: no web server (GPU machine, tools/gpu)")
    from mlflow.tracking import MlflowClient

    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "name: uitest\nmodel: {num_classes: 5}\ngrid: {backbone: [resnet3d_10]}\n"
        "dataset: {name: synthetic, root: x}\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = MlflowStore(uri, "uitest").experiment_id  # one process creates the store first
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "harness", "ui", str(spec), "--port", str(port),
             "--tracking-uri", uri],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        client = MlflowClient(uri)
        run = client.create_run(experiment, run_name="resnet3d_10-eam-trial")
        client.set_terminated(run.info.run_id)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90  # mlflow takes 5–25 s to answer /health
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        request = urllib.request.Request(
            f"{base}/ajax-api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": [experiment]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        runs = json.loads(urllib.request.urlopen(request, timeout=10).read())["runs"]
        assert [r["info"]["run_name"] for r in runs] == ["resnet3d_10-eam-trial"]
        page = urllib.request.urlopen(base, timeout=10).read().decode()
        assert "<html" in page.lower()
        runs_page = f"{base}/#/experiments/{experiment}/runs"
        assert runs_page in log.read_text()
        if shutil.which("chromium"):  # .ci/run installs it (Debian package chromium)
            dom = rendered_dom(runs_page, tmp_path / "chromium")
            assert "resnet3d_10-eam-trial" in dom
    finally:
        started = _descendants(server.pid)  # the MLflow server and its workers
        server.send_signal(signal.SIGTERM)  # to `harness ui` alone, as `kill` or systemd would
        server.wait(timeout=30)
    assert started, "harness ui started no process"
    _assert_stopped_whole(started, port)


def _descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(status.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _assert_stopped_whole(processes: set[int], port: int) -> None:
    """None of `processes` is left, and the UI's port is free again."""
    deadline = time.time() + 15
    while time.time() < deadline and any(Path(f"/proc/{p}").exists() for p in processes):
        time.sleep(0.2)
    left = {p for p in processes if Path(f"/proc/{p}").exists()}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"the MLflow UI's processes {sorted(left)} outlived `harness ui`"
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))  # raises if anything still listens there


def test_ui_without_mlflows_web_server_says_what_to_install(tmp_path, monkeypatch, capsys):
    """Where only `mlflow-skinny` is installed (no Flask), `harness ui` exits 2 naming the
    package, after its check of the port and before it opens the store or starts anything."""
    from harness.cli import main, ui

    real = ui.importlib.util.find_spec

    def without_flask(name, *rest):
        return None if name == "flask" else real(name, *rest)

    monkeypatch.setattr(ui.importlib.util, "find_spec", without_flask)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["ui", "--tracking-uri", uri, "--port", str(free_port())]) == 2
    error = capsys.readouterr().err
    assert "pip install mlflow" in error and "Flask is not installed" in error
    assert "Traceback" not in error
