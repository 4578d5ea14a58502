"""Parallel trials: joblib processes (`--jobs`) and a Dask cluster (`--backend dask`), logging to
one SQLite store; a worker killed mid-trial loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.tracking import TRIAL_KEY_TAG
from harness.tracking.mlflow_store import MlflowStore
from tests.conftest import ROOT

QUICKSTART = str(ROOT / "experiments" / "quickstart.yaml")
FOUR = ["--set", "grid.attention=[none, se, eca, eam]"]  # four quickstart trials
TWO = ["--set", "grid.attention=[none, eam]"]  # one a worker, the killed one's and the other's


def runs_by_key(folder: Path) -> Counter:
    tracker = MlflowStore(f"sqlite:///{folder}/mlflow.db", "quickstart_smoke", create=False)
    runs = tracker.client.search_runs([tracker.experiment_id], max_results=1000)
    assert all(run.info.status == "FINISHED" for run in runs), [r.info.status for r in runs]
    return Counter(run.data.tags[TRIAL_KEY_TAG] for run in runs)


@pytest.mark.slow
def test_jobs_2_runs_a_4_trial_sweep_each_trial_logged_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # with loader worker processes inside the joblib workers (the quickstart's own setting)
    loaders = ["--set", "dataset.workers=1"]
    assert (
        main(["run", QUICKSTART, "--smoke", "--no-progress", "--jobs", "2", *FOUR, *loaders]) == 0
    )
    logged = runs_by_key(tmp_path)
    assert len(logged) == 4 and set(logged.values()) == {1}
    assert (
        main(["run", QUICKSTART, "--smoke", "--no-progress", "--jobs", "2", *FOUR, *loaders]) == 0
    )
    assert runs_by_key(tmp_path) == logged  # all skipped the second time


@pytest.mark.slow
def test_dask_cluster_survives_a_killed_worker_without_losing_or_duplicating(tmp_path):
    distributed = pytest.importorskip("distributed")
    MlflowStore(f"sqlite:///{tmp_path}/mlflow.db", "quickstart_smoke")  # the store, before fan-out
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:  # fmt: skip
        command = [sys.executable, "-m", "harness", "run", QUICKSTART, "--smoke", "--no-progress",
                   "--backend", "dask", "--scheduler", cluster.scheduler_address,
                   "--set", "train.epochs=2", *TWO]  # fmt: skip
        sweep = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)  # fmt: skip
        victim = _kill_a_worker_mid_trial(client, tmp_path)
        output, _ = sweep.communicate(timeout=600)
    assert victim is not None, "no trial was caught mid-way"
    assert sweep.returncode == 0, output
    logged = runs_by_key(tmp_path)
    assert len(logged) == 2 and set(logged.values()) == {1}, logged


def _kill_a_worker_mid_trial(client, folder: Path, timeout: float = 300) -> str | None:
    """SIGKILL the worker running a trial once that trial has checkpointed an epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for checkpoint in (folder / "checkpoints").glob("*/*/last.pt"):
            trial = checkpoint.parent.name
            for worker, tasks in client.processing().items():
                if any(trial in str(task) for task in tasks):
                    pid = client.run(os.getpid, workers=[worker])[worker]
                    os.kill(pid, signal.SIGKILL)
                    return trial
        time.sleep(0.2)
    return None


def test_parallel_option_mistakes_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", QUICKSTART, "--backend", "dask"]) == 2
    assert "--backend dask needs --scheduler" in capsys.readouterr().err
    assert main(["run", QUICKSTART, "--jobs", "0"]) == 2


def _aarm_always_highlighting(folder: Path) -> Path:
    """The quickstart's AARM trial with χ = 1: every training step takes STAM's highlight map,
    leaving STAM's convolutions without a gradient (DDP then has unused parameters)."""
    spec = yaml.safe_load(Path(QUICKSTART).read_text())
    spec["name"] = "ddp_aarm"
    spec["grid"] |= {"attention": ["aarm"], "chi": [1.0]}
    spec["model"] |= {"frames": 8, "size": 32}
    spec["dataset"] |= {"subset": 2, "workers": 0}
    spec["train"] |= {"epochs": 2, "batch_size": 4, "save_checkpoint": False, "seeds": [0]}
    path = folder / "ddp_aarm.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_torchrun_two_ranks_train_aarm_chi_1_into_one_run_with_sharded_evaluation(tmp_path):
    spec = _aarm_always_highlighting(tmp_path)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", "29517", "-m", "harness", "run", str(spec),
               "--no-progress"]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("ddp_aarm: 1 finished") == 1  # one summary, from rank 0
    tracker = MlflowStore(f"sqlite:///{tmp_path}/mlflow.db", "ddp_aarm", create=False)
    (run,) = tracker.client.search_runs([tracker.experiment_id])  # one run, from rank 0
    assert run.info.status == "FINISHED"
    assert run.data.metrics["ddp_world_size"] == 2
    assert run.data.tags["ddp_params_identical"] == "true"
    first, second = run.data.tags["ddp_param_checksums"].split(",")
    assert first == second
    assert run.data.params["train.batch_size"] == "4"  # global: 2 per rank
    assert run.data.params["train.batch_per_rank"] == "2"
    shares = [int(n) for n in run.data.tags["ddp_eval_clips"].split(",")]
    assert len(shares) == 2 and min(shares) > 0  # both ranks scored clips
    assert sum(shares) == 10 * 3  # 2 test videos × 5 classes, 3 clips each: all scored once
    assert run.data.metrics["videos_scored"] == 10
    history = tracker.client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 1]  # logged once per epoch, not per rank


def test_ddp_ranks_share_out_each_epoch_without_overlap():
    from harness.data.clips import EpochShuffle

    ranks = [EpochShuffle(10, seed=3, rank=r, world=3) for r in range(3)]
    for sampler in ranks:
        sampler.set_epoch(2)
    shares = [list(sampler) for sampler in ranks]
    assert {len(share) for share in shares} == {4}  # 10 padded to 12
    seen = [i - 20 for share in shares for i in share]
    assert set(seen) == set(range(10))  # every sample of the epoch, offset by epoch · n
    single = EpochShuffle(10, seed=3)
    single.set_epoch(2)
    assert sorted(list(single)) == [i + 20 for i in range(10)]


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL server (Debian's packages), run as the `postgres` user."""
    binaries = _postgres_bin()
    if binaries is None or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs Debian's postgresql package and root to run it as 'postgres'")
    pytest.importorskip("psycopg2")
    folder = Path(tempfile.mkdtemp(prefix="harness-pg-", dir="/tmp"))
    shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", _free_port()

    def as_postgres(*args: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                       capture_output=True, timeout=120)  # fmt: skip

    as_postgres(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "mlflow")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                str(folder / "log"), "-w", "start")  # fmt: skip
    try:
        as_postgres(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                    "mlflow", "mlflow")  # fmt: skip
        yield f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_parallel_trials_log_to_an_mlflow_server_on_postgresql(tmp_path, monkeypatch, postgres):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres,
         "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{uri}/health", timeout=120)
        monkeypatch.chdir(tmp_path)
        two = ["--trial", "*-none-*", "--trial", "*-se-*"]
        args = ["run", QUICKSTART, "--smoke", "--no-progress", "--jobs", "2", "--tracking-uri", uri]
        assert main([*args, *two]) == 0
        tracker = MlflowStore(uri, "quickstart_smoke", create=False)
        runs = tracker.client.search_runs([tracker.experiment_id])
        assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
        assert len({r.data.tags[TRIAL_KEY_TAG] for r in runs}) == 2
        assert not (tmp_path / "mlflow.db").exists()  # nothing went to a local SQLite file
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def test_torchrun_ranks_leave_quietly_when_rank_0_refuses_the_spec(tmp_path):
    """Rank 0's preflight refuses the spec (weights missing): rank 0 says why, once, and the
    other rank leaves without a word (exit 2, or torchrun's SIGTERM when rank 0 ended first),
    rather than with gloo's traceback from the store barrier that rank 0 never reached."""
    spec = yaml.safe_load(Path(QUICKSTART).read_text())
    spec["train"] |= {"pretrained": str(tmp_path / "missing-r10.pth"), "seeds": [0]}
    path = tmp_path / "refused.yaml"
    path.write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", "29519", "-m", "harness", "run", str(path),
               "--no-progress"]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode != 0 and output.count("missing-r10.pth' does not exist") == 1, output
    assert "[rank1]" not in output and "Connection reset" not in output, output
    exits = re.findall(r"^\s*exitcode\s*: (-?\d+)", output, re.M)  # torchrun's summary
    assert exits[-1] == "2" and set(exits) <= {"2", "-15"}, output  # rank 0 first; rank 1 left
    # with exit 2, or torchrun stopped it (SIGTERM) when rank 0 ended first
    assert not (tmp_path / "mlflow.db").exists()  # said before any store was made
