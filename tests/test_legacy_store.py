"""An MLflow store written by older code is still skipped and reported by the current code.

`tests/fixtures/legacy_store/` was written by commit f2a0024 (see its README.md): two
quickstart smoke trials, and the two streams of AARM Table 6's `none` model with their fused
two-stream run. On a copy of it, `harness run --dry-run` must list every one of those trials as
finished, `harness report` must show them as done with the logged numbers (tags, params, metrics
and artifacts read back), and the store must hold the same runs afterwards. Only the command line
is used, so the test holds however the package is laid out.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_store"
WRITTEN_IN = "/tmp/legacy-store-work"  # the folder the store was written in (absolute in the db)
COMMIT = "f2a0024166f55ce3d225be819b86c48b14362473"

QUICKSTART = {
    "resnet3d_10-none-stage_output-f16-s32-c5-split1-seed0": "3D ResNet-10",
    "resnet3d_10-se-stage_output-f16-s32-c5-split1-seed0": "+ SE",
}
RGB = "resnet2d_50-none-block-f16-s32-c5-in_channels=3-split1-seed0"
FLOW = "resnet2d_50-none-block-f16-s32-c5-in_channels=20-split1-seed0"
FUSED = "resnet2d_50-none-block-f16-s32-c5-two_stream-split1-seed0"
TABLE6 = {RGB: "Res50 (RGB)", FLOW: "Res50 (OF)", FUSED: "Res50"}
EXPECTED_RUNS = {("quickstart_smoke", key, "FINISHED") for key in QUICKSTART}
EXPECTED_RUNS |= {("aarm_table6_smoke", key, "FINISHED") for key in TABLE6}

COMMANDS = {  # each starts Python, torch and MLflow: seconds of CPU before it works
    "quickstart dry-run": ["run", "experiments/quickstart.yaml", "--smoke", "--dry-run",
                           "--trial", "*-none-*", "--trial", "*-se-*"],
    "table6 dry-run": ["run", "experiments/aarm_table6.yaml", "--smoke", "--dry-run",
                       "--trial", RGB, "--trial", FLOW],
    "quickstart report": ["report", "experiments/quickstart.yaml", "--smoke", "--no-count",
                          "--out", "{out}/quickstart"],
    "table6 report": ["report", "experiments/aarm_table6.yaml", "--smoke", "--no-count",
                      "--out", "{out}/table6"],
}  # fmt: skip


class Legacy:
    """A copy of the fixture store, and what the harness printed about it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.store = folder / "store"
        self.out = folder / "reports"
        self.db = self.store / "mlflow.db"
        self.uri = f"sqlite:///{self.db}"
        self.outputs: dict[str, tuple[int, str]] = {}  # command: exit code, output
        self.before: set[tuple] = set()  # the runs before any command
        self.metric_rows: list[tuple] = []

    def sql(self, query: str, *args) -> list[tuple]:
        with closing(sqlite3.connect(self.db)) as db:
            return db.execute(query, args).fetchall()

    def runs(self) -> set[tuple]:
        """(experiment, trial key, status, run id, start, end) of every run in the store."""
        return set(
            self.sql(
                "SELECT e.name, t.value, r.status, r.run_uuid, r.start_time, r.end_time "
                "FROM runs r JOIN experiments e USING (experiment_id) "
                "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'trial_key' "
                "WHERE r.lifecycle_stage = 'active'"
            )
        )

    def metric(self, key: str, name: str) -> float:
        (value,) = self.sql(
            "SELECT m.value FROM latest_metrics m "
            "JOIN tags t ON t.run_uuid = m.run_uuid AND t.key = 'trial_key' "
            "WHERE t.value = ? AND m.key = ? AND m.is_nan = 0",
            key, name,
        )  # fmt: skip
        return value[0]

    def artifact(self, key: str, name: str) -> Path:
        ((uri,),) = self.sql(
            "SELECT r.artifact_uri FROM runs r "
            "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'trial_key' WHERE t.value = ?",
            key,
        )
        return Path(uri) / name


@pytest.fixture(scope="module")
def legacy(tmp_path_factory) -> Legacy:
    """Copy the store, point its artifact paths at the copy, snapshot its runs, then run the
    dry-runs and reports on it."""
    legacy = Legacy(tmp_path_factory.mktemp("legacy"))
    shutil.copytree(FIXTURE, legacy.store)
    with closing(sqlite3.connect(legacy.db)) as db:
        for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri")):
            paths = [row[0] for row in db.execute(f"SELECT {column} FROM {table}")]
            assert paths and all(p.startswith(WRITTEN_IN + "/mlruns/") for p in paths), paths
            db.execute(
                f"UPDATE {table} SET {column} = replace({column}, ?, ?)",
                (WRITTEN_IN, str(legacy.store)),
            )
        db.commit()
    legacy.before = legacy.runs()
    legacy.metric_rows = legacy.sql("SELECT count(*) FROM metrics")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HARNESS_CACHE": str(legacy.folder / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    # The first command alone: it generates the synthetic dataset the dry-runs check (first use)
    # and would migrate the store's schema for a newer MLflow; the others then run side by side.
    first, *rest = COMMANDS
    for names in ([first], rest):
        processes = {}
        for name in names:
            args = [a.replace("{out}", str(legacy.out)) for a in COMMANDS[name]]
            command = [sys.executable, "-m", "harness", *args, "--tracking-uri", legacy.uri]
            log = legacy.folder / f"{name.replace(' ', '-')}.log"
            with log.open("w") as output:
                process = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
                )
            processes[name] = process, log
        for name, (process, log) in processes.items():
            legacy.outputs[name] = (process.wait(timeout=300), log.read_text())
    return legacy


def test_the_fixture_is_the_old_codes_store(legacy):
    assert {run[:3] for run in legacy.before} == EXPECTED_RUNS
    commits = legacy.sql("SELECT DISTINCT value FROM tags WHERE key = 'git_commit'")
    assert commits == [(COMMIT,)]


@pytest.mark.parametrize(
    ("command", "keys"), [("quickstart dry-run", list(QUICKSTART)), ("table6 dry-run", [RGB, FLOW])]
)
def test_dry_run_skips_every_logged_trial(legacy, command, keys):
    code, output = legacy.outputs[command]
    assert code == 0, output
    for key in keys:
        assert f"skip  {key} (finished)" in output, output
    assert "todo " not in output, output


def test_report_reads_the_quickstart_runs(legacy):
    code, output = legacy.outputs["quickstart report"]
    assert code == 0, output
    assert "2 done" in output, output
    report = legacy.out / "quickstart"
    rows = table_rows(report / "table.md")
    for key, label in QUICKSTART.items():
        assert_row_is_the_run(legacy, rows[label], key)
    exact = csv_rows(report / "table.csv", "trial")
    for key in QUICKSTART:
        row = exact[key.removesuffix("-split1-seed0")]
        assert float(row["gflops_paper_conv_ours"]) == pytest.approx(
            legacy.metric(key, "gflops_paper"), rel=1e-9
        )
        assert float(row["param_m_ours"]) == pytest.approx(
            legacy.metric(key, "params") / 1e6, rel=1e-9
        )
    # the paired test reads both runs' per-video scores: the artifacts are found and read
    (pair,) = csv_rows(report / "per_video_tests.csv", "model").values()
    assert pair["model"] == "3D ResNet-10 + SE" and pair["baseline"] == "3D ResNet-10"
    baseline, model = (per_video(legacy, key) for key in QUICKSTART)
    assert set(model) == set(baseline) and int(pair["videos"]) == len(model) == 10
    assert float(pair["accuracy"]) == pytest.approx(100 * sum(model.values()) / len(model))
    assert float(pair["baseline_accuracy"]) == pytest.approx(
        100 * sum(baseline.values()) / len(baseline)
    )
    assert int(pair["only_model_right"]) == sum(model[v] and not baseline[v] for v in model)
    assert int(pair["only_baseline_right"]) == sum(baseline[v] and not model[v] for v in model)
    readme = (report / "README.md").read_text()
    assert COMMIT[:12] in readme and "cpu: x86_64" in readme


def test_report_reads_the_two_stream_runs(legacy):
    code, output = legacy.outputs["table6 report"]
    assert code == 0, output
    assert "3 done" in output, output
    rows = table_rows(legacy.out / "table6" / "table.md")
    for key, label in TABLE6.items():
        assert_row_is_the_run(legacy, rows[label], key)
    params = [legacy.metric(key, "params") for key in (RGB, FLOW, FUSED)]
    assert params[2] == params[0] + params[1]  # the fused model is both networks
    assert rows["Res50+SE"]["State"] == "pending"


def test_nothing_ran_again(legacy):
    assert all(code == 0 for code, _ in legacy.outputs.values())
    assert legacy.runs() == legacy.before
    assert legacy.sql("SELECT count(*) FROM metrics") == legacy.metric_rows
    trial_runs = "SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ?"
    assert legacy.sql(trial_runs, "trial_key") == [(len(EXPECTED_RUNS),)]
    # the only runs added: one report run per spec reported, beside the trials, never a trial
    assert legacy.sql(trial_runs, "harness_report") == [(2,)]
    assert legacy.sql("SELECT count(*) FROM runs") == [(len(EXPECTED_RUNS) + 2,)]


def assert_row_is_the_run(legacy: Legacy, row: dict[str, str], key: str) -> None:
    """A table.md row shows run `key`'s logged size, cost and video top-1, as printed."""
    assert row["State"] == "done", row
    accuracy = next(v for k, v in row.items() if "split 1 ours" in k)
    assert accuracy == f"{100 * legacy.metric(key, 'video_top1'):.1f} (n=1)", row  # one seed
    assert row["Param. (M) ours"] == f"{legacy.metric(key, 'params') / 1e6:.2f}", row
    assert row["GFLOPs [paper conv.] ours"] == f"{legacy.metric(key, 'gflops_paper'):.3f}", row


def per_video(legacy: Legacy, key: str) -> dict[str, bool]:
    """Whether each test video's top score is its label, from run `key`'s artifact."""
    videos = json.loads(legacy.artifact(key, "per_video_scores.json").read_text())["videos"]
    return {
        name: max(range(len(v["scores"])), key=v["scores"].__getitem__) == v["label"]
        for name, v in videos.items()
    }


def table_rows(path: Path) -> dict[str, dict[str, str]]:
    """The first Markdown table of `path`, rows keyed by their first cell."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    header, *body = ([cell.strip() for cell in line.strip("|").split("|")] for line in lines)
    rows = [dict(zip(header, cells, strict=True)) for cells in body if set(cells[0]) != {"-"}]
    return {row[header[0]]: row for row in rows}


def csv_rows(path: Path, key: str) -> dict[str, dict[str, str]]:
    with path.open(newline="") as file:
        return {row[key]: row for row in csv.DictReader(file)}
