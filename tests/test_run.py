"""`harness run` end to end on the synthetic tiny dataset, with a real MLflow SQLite store:
finishing, skipping, resuming after SIGKILL with the same final metrics, and spec mistakes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.train.optim import eam_factor
from tests.conftest import ROOT

SPEC = """
name: runtest
model: {num_classes: 5, frames: 8, size: 32}
grid:
  backbone: [resnet3d_10]
  attention: [none, eam]
  placement: [stage_output]
dataset:
  {name: synthetic, root: "synthetic:tiny", normalisation: kinetics, crop: random, workers: 0,
   subset: 4}
train: {epochs: EPOCHS, batch_size: 16, optimizer: adamw, lr: 0.001, seeds: [0]}
eval: {clips: even, count: 2, batch_size: 32}
"""


def spec_file(folder: Path, epochs: int) -> Path:
    path = folder / "spec.yaml"
    path.write_text(SPEC.replace("EPOCHS", str(epochs)))
    return path


class Harness:
    """`python -m harness ARGS` in `folder`, its output going to a log file there."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.log = folder / f"harness-{time.monotonic_ns()}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "harness", *args], cwd=folder, env=env,
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def finish(self, timeout: float) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        return code, self.log.read_text()


def harness(folder: Path, *args: str) -> Harness:
    return Harness(folder, *args)


def store(folder: Path):
    """A client of the run's store in `folder`."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")


def runs_of(folder: Path, filter_string: str = "") -> list:
    client = store(folder)
    experiment = client.get_experiment_by_name("runtest")
    return client.search_runs([experiment.experiment_id], filter_string)


def final_metrics(folder: Path) -> dict[str, dict[str, float]]:
    runs = runs_of(folder)
    return {
        r.data.tags["trial_key"]: {
            "status": r.info.status,
            **{k: r.data.metrics[k] for k in ("video_top1", "clip_accuracy", "train_loss")},
        }
        for r in runs
    }


def test_eam_schedule_is_eq_12():
    lr = [1e-3 * eam_factor(e, 15, [45, 75], 0.1) for e in range(100)]  # epochs t = e + 1
    assert lr[0] == pytest.approx(1e-3 / 15) and lr[14] == pytest.approx(1e-3)
    assert lr[44] == pytest.approx(1e-3) and lr[45] == pytest.approx(1e-4)
    assert (
        lr[74] == pytest.approx(1e-4)
        and lr[75] == pytest.approx(1e-5)
        and lr[99] == pytest.approx(1e-5)
    )


@pytest.mark.slow
def test_run_finishes_logs_and_skips_on_rerun(tmp_path):
    spec = spec_file(tmp_path, epochs=1)
    code, output = harness(
        tmp_path, "run", str(spec), "--no-progress", "--set", "train.save_checkpoint=true"
    ).finish(600)
    assert code == 0, output
    assert "2 finished, 0 skipped" in output
    metrics = final_metrics(tmp_path)
    assert set(metrics) == {
        "resnet3d_10-none-stage_output-f8-s32-c5-split1-seed0",
        "resnet3d_10-eam-stage_output-f8-s32-c5-split1-seed0",
    }
    assert all(m["status"] == "FINISHED" for m in metrics.values())
    run = logged_run(tmp_path, "resnet3d_10-eam-stage_output-f8-s32-c5-split1-seed0")
    assert run.data.params["insertion_points"] == "res2.out,res3.out,res4.out,res5.out"
    assert run.data.tags["version.mlflow"] == "3.17.2" and run.data.tags["spec_hash"]
    assert run.data.metrics["params"] > 0 and run.data.metrics["gflops_paper"] > 0
    assert 0 < run.data.metrics["latency_ms"] < 60_000  # one clip, eval mode, on this CPU
    artifacts = {a.path for a in artifacts_of(tmp_path, run)}
    assert {"spec.yaml", "per_class.csv", "confusion.csv", "per_video_scores.json"} <= artifacts
    assert "checkpoint" in artifacts  # train.save_checkpoint: the trained weights
    code, output = harness(tmp_path, "run", str(spec), "--no-progress").finish(120)
    assert code == 0 and "0 finished, 2 skipped" in output
    code, output = harness(
        tmp_path, "run", str(spec), "--dry-run", "--set", "train.seeds=[0, 1]"
    ).finish(120)
    assert code == 0 and output.count("skip ") == 2 and output.count("todo ") == 2


@pytest.mark.slow
def test_sigkill_mid_trial_then_resume_gives_the_same_metrics(tmp_path):
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    reference.mkdir()
    interrupted.mkdir()
    only_eam = ("--trial", "*-eam-*", "--no-progress")
    code, output = harness(reference, "run", str(spec_file(reference, 2)), *only_eam).finish(900)
    assert code == 0, output
    process = harness(interrupted, "run", str(spec_file(interrupted, 2)), *only_eam).process
    # kill once the trial has checkpointed its first epoch
    checkpoint = (
        interrupted
        / "checkpoints/runtest/resnet3d_10-eam-stage_output-f8-s32-c5-split1-seed0/last.pt"
    )
    deadline = time.time() + 600
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), "the trial never checkpointed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    states = {k: v["status"] for k, v in final_metrics_or_partial(interrupted).items()}
    assert list(states.values()) == ["RUNNING"]
    code, output = harness(interrupted, "run", str(spec_file(interrupted, 2)), *only_eam).finish(
        900
    )
    assert code == 0, output
    assert "1 finished, 0 skipped" in output and "resuming a running run" in output
    first, second = final_metrics(reference), final_metrics(interrupted)
    assert first == second  # same seed on CPU: identical final metrics, one run per trial
    assert not list((interrupted / "checkpoints").rglob("last.pt"))  # finished: resume point gone


def logged_run(folder: Path, key: str):
    (run,) = runs_of(folder, f"tags.trial_key = '{key}'")
    return run


def artifacts_of(folder: Path, run):
    return store(folder).list_artifacts(run.info.run_id)


def final_metrics_or_partial(folder: Path) -> dict[str, dict]:
    return {r.data.tags["trial_key"]: {"status": r.info.status} for r in runs_of(folder)}


BAD = {
    "unknown dataset": (
        "dataset: {name: kinetics, root: x}",
        "key 'dataset.name': Unknown dataset 'kinetics'. Accepted values: folder, hmdb51",
    ),
    "dataset key typo": ("dataset: {name: synthetic, roots: x}", "unknown key 'roots' in dataset"),
    "train key typo": (
        "dataset: {name: synthetic, root: x}\ntrain: {epoch: 3}",
        "unknown key 'epoch' in train",
    ),
    "unknown schedule": (
        "dataset: {name: synthetic, root: x}\ntrain: {schedule: step}",
        "one of constant|eam|cosine|plateau",
    ),
    "wrong type": (
        "dataset: {name: synthetic, root: x}\ntrain: {lr: fast}",
        "train.lr' = 'fast' has the wrong type",
    ),
    "missing dataset path": (
        "dataset: {name: synthetic, root: /nonexistent/UCF-101}",
        "does not exist or is not a folder",
    ),
    "unknown synthetic preset": (
        "dataset: {name: synthetic, root: 'synthetic:huge'}",
        "unknown synthetic preset 'huge'",
    ),
    "train without dataset": ("train: {epochs: 1}", "needs a 'dataset' section"),
    "missing pretrained checkpoint": (
        "dataset: {name: synthetic, root: x}\ntrain: {pretrained: weights/r50.pth}",
        "checkpoint 'weights/r50.pth' does not exist",
    ),
    "bad override": (None, "expected key.path=value"),
    "C3D at a size its fc6 cannot take": (
        "include: [{backbone: c3d, frames: 8, size: 32}]\ndataset: {name: synthetic, root: x}",
        "c3d takes 3×16×112×112 clips only, not 3×8×32×32",
    ),
    "class count not the dataset's": (
        "dataset: {name: synthetic, root: 'synthetic:tiny'}",
        "key 'model.num_classes': 7 does not match dataset synthetic split 1, which has 5",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_run_spec_mistakes_exit_2_with_one_paragraph(tmp_path, capsys, case, monkeypatch):
    monkeypatch.chdir(tmp_path)
    body, expected = BAD[case]
    classes = 7 if "class count" in case else 5
    text = f"name: bad\nmodel: {{num_classes: {classes}}}\ngrid: {{backbone: [resnet3d_10]}}\n" + (
        body or "dataset: {name: synthetic, root: x}"
    )
    (tmp_path / "bad.yaml").write_text(text)
    args = ["run", "bad.yaml"] + (["--set", "train.epochs"] if body is None else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_a_failing_trial_does_not_stop_the_others(tmp_path):
    # the EAM trial's learning rate sends its loss to NaN: it fails, the baseline still finishes
    text = SPEC.replace("EPOCHS", "2") + (
        "per_trial:\n  - match: {attention: eam}\n    train: {optimizer: sgd, lr: 1.0e+30}\n"
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    code, output = harness(tmp_path, "run", str(spec), "--no-progress").finish(600)
    assert code == 1, output
    assert "1 finished, 0 skipped (already finished), 1 failed" in output
    assert "failed resnet3d_10-eam-stage_output-f8-s32-c5-split1-seed0: NonFiniteLoss" in output
    states = {k: v["status"] for k, v in final_metrics_or_partial(tmp_path).items()}
    assert states == {
        "resnet3d_10-eam-stage_output-f8-s32-c5-split1-seed0": "FAILED",
        "resnet3d_10-none-stage_output-f8-s32-c5-split1-seed0": "FINISHED",
    }


def test_a_copy_outside_git_names_its_commit_from_the_environment(monkeypatch):
    """A working tree sent without .git (the GPU machine's copy) tags its runs with the commit
    HARNESS_GIT_COMMIT names; a checkout asks git, whatever that variable says."""
    from harness.tracking import provenance

    monkeypatch.setenv("HARNESS_GIT_COMMIT", "0123abcd")
    assert provenance.git_commit() not in ("0123abcd", "unknown")  # this checkout's own
    monkeypatch.setenv("PATH", "")  # no git to ask, as outside a checkout
    assert provenance.git_commit() == "0123abcd"
    monkeypatch.delenv("HARNESS_GIT_COMMIT")
    assert provenance.git_commit() == "unknown"
