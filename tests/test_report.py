"""`harness report`: tables, significance and charts rebuilt from what MLflow holds.

Most tests log runs straight into a real SQLite MLflow store (metrics and the artifacts the runner
writes) so that the numbers in the report are known; one test trains a small quickstart and builds
the report from it, as a user would.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from harness.cli import main
from harness.config import load_spec, result_keys
from harness.report import build_report
from harness.report.rows import report_rows
from harness.tracking import TRIAL_KEY_TAG
from harness.tracking.mlflow_store import MlflowStore
from tests.conftest import ROOT
from tests.test_hostile_inputs import one_paragraph_error

CLASSES = ["brush_hair", "climb", "drink"]


def log_run(tracker: MlflowStore, trial, *, top1: float, status: str = "FINISHED",
            correct: list[int] | None = None, params: float = 1e6) -> str:  # fmt: skip
    """A run as the runner logs it: tags, final metrics, per-class/confusion/per-video artifacts.

    Artifacts are written into the run's local artifact folder, which is what `log_text` does for
    a local store, only without a round trip per file (the 1000-run test needs that speed).
    """
    from mlflow.entities import Metric

    client = tracker.client
    run = client.create_run(tracker.experiment_id, tags={TRIAL_KEY_TAG: trial.key,
                                                         "device": "cpu: test"})  # fmt: skip
    now = int(time.time() * 1000)
    metrics = {"video_top1": top1, "params": params, "gflops_paper": 1.5, "gflops_fvcore": 1.4}
    history = [Metric("train_loss", 2.0 - e, now, e) for e in range(3)]
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()]
                     + history)  # fmt: skip
    folder = Path(run.info.artifact_uri.removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    correct = correct if correct is not None else [1, 0, 1, 1, 0, 1]
    videos = {
        f"v{i}.avi": {"label": i % 3, "scores": np.eye(3)[(i % 3) if ok else (i + 1) % 3].tolist()}
        for i, ok in enumerate(correct)
    }
    (folder / "per_video_scores.json").write_text(json.dumps({"videos": videos, "unscored": []}))
    accuracy = [np.mean([ok for i, ok in enumerate(correct) if i % 3 == c]) for c in range(3)]
    (folder / "per_class.csv").write_text(
        "class,accuracy\n" + "".join(f"{c},{a}\n" for c, a in zip(CLASSES, accuracy, strict=True))
    )
    (folder / "confusion.csv").write_text(
        "true \\ predicted," + ",".join(CLASSES) + "\n"
        + "".join(f"{c},{','.join(map(str, row))}\n" for c, row in zip(CLASSES, np.eye(3, dtype=int).tolist(), strict=True))  # noqa: E501
    )  # fmt: skip
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def write_spec(folder: Path, text: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


SEEDED_SPEC = """
name: seeded
description: Three seeds on two splits
model: {num_classes: 3, frames: 8, size: 32}
grid:
  backbone: [resnet3d_10]
  attention: [none, eam]
  placement: [stage_output]
dataset: {name: hmdb51, root: /data/hmdb51, splits: [1, 2]}
train: {seeds: [0, 1, 2]}
reference:
  - {match: {attention: none}, values: {params_m: 1.0, hmdb51_split1: 50.0, hmdb51: 48.0}}
  - {match: {attention: eam}, label: EAM-ResNet-10, values: {hmdb51_split1: 60.0}}
  - {cited: "TSN (RGB+Flow) [10]", values: {hmdb51: 69.4, ucf101: 94.2}}
"""


def test_report_aggregates_seeds_and_splits_against_the_paper(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path, SEEDED_SPEC))
    tracker = MlflowStore(f"sqlite:///{tmp_path}/mlflow.db", spec.name)
    top1 = {(0, 1): [0.50, 0.52, 0.54], (0, 2): [0.40, 0.42, 0.44],
            (1, 1): [0.60, 0.62, 0.64], (1, 2): [0.50, 0.52, 0.54]}  # fmt: skip
    for trial in spec.trials:
        row = 0 if trial.attention == "none" else 1
        correct = [1, 0, 1, 1, 0, 1] if row == 0 else [1, 1, 1, 1, 0, 1]  # 4/6 and 5/6
        log_run(tracker, trial, top1=top1[row, trial.split][trial.seed], correct=correct)
    report = build_report(spec, tracker, tmp_path / "out", count=False)
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    assert list(table.model) == ["3D ResNet-10", "EAM-ResNet-10", "TSN (RGB+Flow) [10]"]
    assert list(table.state) == ["done", "done", "cited"]
    baseline, eam, cited = (table.iloc[i] for i in range(3))
    assert baseline.hmdb_51_split_1_ours == pytest.approx(52.0)
    assert baseline.hmdb_51_split_1_ours_std == pytest.approx(2.0)  # sample std of 50, 52, 54
    assert baseline.hmdb_51_split_1_ours_n == 3
    assert baseline.hmdb_51_split_1_delta == pytest.approx(2.0)  # 52 − 50
    assert baseline.hmdb_51_mean_ours == pytest.approx(47.0)  # mean of split means 52 and 42
    assert baseline.hmdb_51_mean_delta == pytest.approx(-1.0)  # 47 − 48
    assert baseline.param_m_ours == pytest.approx(1.0) and baseline.param_m_delta == 0
    assert eam.hmdb_51_split_1_delta == pytest.approx(2.0)  # 62 − 60
    assert cited.hmdb_51_mean_paper == pytest.approx(69.4) and np.isnan(cited.hmdb_51_mean_ours)
    assert cited.ucf_101_paper == pytest.approx(94.2)
    markdown = (tmp_path / "out" / "table.md").read_text()
    assert "52.0 ± 2.0 (n=3)" in markdown and "+2.0" in markdown
    # the mean over splits: the sd of the split means 52 and 42, its n counting splits, not runs
    assert "47.0 ± 7.1 (n=2 splits)" in markdown and "(n splits)" in markdown
    # 6 paired comparisons (2 splits × 3 seeds), each over the 6 shared videos.
    per_video = pd.read_csv(tmp_path / "out" / "per_video_tests.csv")
    assert len(per_video) == 6 and set(per_video.videos) == {6}
    assert report.count("done") == 2 and report.count("cited") == 1
    # Over runs: the 6 run pairs all differ by +1/6, so every sign pattern but the two uniform
    # ones gives a smaller |mean|: the exact sign-flip p is 2/2^6, alone in its Holm family.
    (over_runs,) = pd.read_csv(tmp_path / "out" / "comparisons.csv").to_dict("records")
    assert over_runs["runs"] == 6 and over_runs["difference"] == pytest.approx(100 / 6)
    assert over_runs["sign_flip_p"] == pytest.approx(2 / 64) == over_runs["holm_p"]
    assert over_runs["family"] == 1 and over_runs["difference_shown"]
    assert over_runs["verdict"].startswith("better than the baseline")
    # the t interval over runs: every run's Δ is the same +1/6, so it has no width
    assert over_runs["ci95_low"] == pytest.approx(100 / 6) == over_runs["ci95_high"]


def test_the_report_is_logged_to_mlflow_as_one_report_run_beside_the_trials(tmp_path):
    spec = load_spec(write_spec(tmp_path, SEEDED_SPEC), ["train.seeds=[0, 1]"])
    tracker = MlflowStore(f"sqlite:///{tmp_path}/mlflow.db", spec.name)
    for trial in spec.trials:
        log_run(tracker, trial, top1=0.5)
    first = build_report(spec, tracker, tmp_path / "out", count=False)
    second = build_report(spec, tracker, tmp_path / "out", count=False)
    client = tracker.client
    shown = client.search_runs([tracker.experiment_id], "tags.harness_report = '1'")
    assert [run.info.run_id for run in shown] == [second.summary_run] != [first.summary_run]
    assert client.get_run(first.summary_run).info.lifecycle_stage == "deleted"
    logged = {a.path for a in client.list_artifacts(second.summary_run, "report")}
    assert {"report/README.md", "report/comparisons.md", "report/table.md"} <= logged
    # the trials' runs are still what the report reads: the report run is none of them
    assert len(tracker.latest_runs(result_keys(spec))) == len(spec.trials)
    assert build_report(spec, tracker, tmp_path / "out", count=False).count("done") == 2


def test_one_seed_per_row_makes_no_claim_of_a_difference(tmp_path):
    spec = load_spec(write_spec(tmp_path, SEEDED_SPEC), ["train.seeds=[0]"])
    tracker = MlflowStore(f"sqlite:///{tmp_path}/mlflow.db", spec.name)
    for trial in spec.trials:  # the attention model right on every video, the baseline on none
        log_run(tracker, trial, top1=0.5, correct=[trial.attention != "none"] * 30)
    build_report(spec, tracker, tmp_path / "out", count=False)
    (over_runs,) = pd.read_csv(tmp_path / "out" / "comparisons.csv").to_dict("records")
    assert over_runs["runs"] == 2  # one seed on each of 2 splits: still training variance
    text = (tmp_path / "out" / "comparisons.md").read_text()
    assert text.startswith("**Design: with 2 runs a comparison")  # read before the verdicts
    header, _, first = [line for line in text.splitlines() if line.startswith("|")][:3]
    named, values = ([c.strip() for c in line.split("|")[1:-1]] for line in (header, first))
    cells = dict(zip(named, values, strict=True))
    assert cells["runs"] == "2" and not any("ASO" in name for name in named)  # csv only
    assert {"aso_model_better", "aso_baseline_better"} <= set(over_runs)
    one_split = load_spec(write_spec(tmp_path, SEEDED_SPEC), ["train.seeds=[0]",
                                                             "dataset.splits=[1]"])  # fmt: skip
    build_report(one_split, tracker, tmp_path / "one", count=False)
    (single,) = pd.read_csv(tmp_path / "one" / "comparisons.csv").to_dict("records")
    assert single["runs"] == 1 and not single["difference_shown"]
    assert single["verdict"].startswith("unknown: 1 run each")
    readme = (tmp_path / "one" / "README.md").read_text()
    assert "training variance is unknown" in readme
    per_video = pd.read_csv(tmp_path / "one" / "per_video_tests.csv")
    assert per_video.mcnemar_p.iloc[0] < 1e-8  # 30 of 30 discordant: the old claim's evidence
    assert "significan" not in readme.lower(), "one run per row: no significance wording at all"
    assert not re.search(r"\b(better|worse) than the baseline", readme)
    assert not any(p.name.startswith("ranked_") for p in (tmp_path / "one").rglob("*.png"))


def test_rows_without_a_finished_run_are_pending_and_a_rerun_supersedes_a_failure(tmp_path):
    spec = load_spec(write_spec(tmp_path, SEEDED_SPEC), ["train.seeds=[0]"])
    tracker = MlflowStore(f"sqlite:///{tmp_path}/mlflow.db", spec.name)
    baseline_1, baseline_2, eam_1, eam_2 = spec.trials
    log_run(tracker, baseline_1, top1=0.5, status="FAILED")
    log_run(tracker, baseline_1, top1=0.6)  # the later run counts
    log_run(tracker, eam_1, top1=0.7, status="RUNNING")  # left behind by a killed process
    rows = report_rows(spec, tracker.latest_runs(result_keys(spec)))
    assert [row.state for row in rows] == ["1/2 runs", "pending", "cited"]
    assert rows[1].unfinished == ["running", "not started"]


@pytest.mark.slow
def test_table4_with_3_of_15_trials_finished_shows_12_pending_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec_path = ROOT / "experiments" / "table4.yaml"
    dataset = ["dataset={name: hmdb51, root: /data/hmdb51, splits: [1]}"]
    spec = load_spec(spec_path, dataset)
    assert len(spec.trials) == 15
    tracker = MlflowStore("sqlite:///mlflow.db", spec.name)
    for trial, top1 in zip(spec.trials[:3], (0.600, 0.625, 0.650), strict=False):
        log_run(tracker, trial, top1=top1, params=46.3e6)
    out = tmp_path / "reports" / "t4"
    assert main(["report", str(spec_path), "--set", dataset[0], "--out", str(out)]) == 0
    markdown = (out / "table.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "Model" not in line]
    assert len(rows) == 15
    assert sum("| pending " in line for line in rows) == 12
    assert sum(line.count("pending") == 2 for line in rows) == 12  # state and accuracy cells
    first = rows[0]
    assert "ResNet-50 [17]" in first and "62.5" in first and "60.0" in first and "-2.5" in first
    # Pending rows still show Param. and GFLOPs, counted by fvcore (ResNeXt-101 64f: 38.466 G).
    table = pd.read_csv(out / "table.csv")
    assert table.gflops_paper_conv_ours.iloc[10] == pytest.approx(38.466, abs=0.002)
    assert table.param_m_ours.iloc[3] == pytest.approx(47.00, abs=0.01)
    assert "HMDB-51 split 1" in markdown
    # Another split's runs are not these: refused, then rebuilt all pending when asked to.
    other = ["--set", dataset[0], "--set", "dataset.splits=[2]", "--out", str(out), "--no-count"]
    assert main(["report", str(spec_path), *other]) == 2
    assert main(["report", str(spec_path), *other, "--replace"]) == 0
    assert set(pd.read_csv(out / "table.csv").state) == {"pending"}


LABELS_SPEC = """
name: labels
model: {num_classes: 3, frames: 16, size: 112}
grid:
  backbone: [resnet3d_50, resnext3d_101, c3d, vgg16, resnet2d_18]
  attention: [none, se, nonlocal, eam_t]
  placement: [stage_output]
exclude:  # no 2D Non-local or EAM-T
  - {backbone: vgg16, attention: nonlocal}
  - {backbone: vgg16, attention: eam_t}
  - {backbone: resnet2d_18, attention: nonlocal}
  - {backbone: resnet2d_18, attention: eam_t}
"""


def test_rows_are_named_by_the_registry_entries_display_names(tmp_path):
    spec = load_spec(write_spec(tmp_path, LABELS_SPEC))
    rows = report_rows(spec, {})
    assert [row.label for row in rows] == [
        "3D ResNet-50", "+ SE", "+ Non-local", "+ EAM-T",
        "3D ResNeXt-101", "+ SE", "+ Non-local", "+ EAM-T",
        "C3D", "+ SE", "+ Non-local", "+ EAM-T",
        "VGG16", "+ SE", "ResNet-18", "+ SE",
    ]  # fmt: skip
    assert rows[3].name == "3D ResNet-50 + EAM-T" and rows[-1].name == "ResNet-18 + SE"


@pytest.mark.slow
def test_report_over_1000_runs_compares_200_run_pairs_per_row(tmp_path):
    spec = load_spec(
        write_spec(tmp_path, SEEDED_SPEC),
        ["grid.attention=[none, se, eca, cbam, eam]", f"train.seeds={list(range(100))}"],
    )
    assert len(spec.trials) == 1000
    tracker = MlflowStore(f"sqlite:///{tmp_path}/mlflow.db", spec.name)
    rng = np.random.default_rng(0)
    for trial in spec.trials:
        log_run(tracker, trial, top1=float(rng.uniform(0.4, 0.7)),
                correct=rng.integers(0, 2, size=60).tolist())  # fmt: skip
    started = time.perf_counter()
    report = build_report(spec, tracker, tmp_path / "out", count=False)
    seconds = time.perf_counter() - started
    assert report.count("done") == 5
    assert len(pd.read_csv(tmp_path / "out" / "per_video_tests.csv")) == 4 * 200
    over_runs = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert list(over_runs.runs) == [200] * 4 and list(over_runs.family) == [4] * 4
    assert (tmp_path / "out" / "table.tex").is_file()
    assert any(p.name.startswith("per_class") for p in report.files)
    assert "800 run pairs: see [per_video_tests.md]" in (tmp_path / "out" / "README.md").read_text()
    # Not a speed test (the README quotes a quiet machine's time): a ceiling that only an
    # accidental quadratic step would break, on a shared CI machine.
    print(f"report over 1000 runs: {seconds:.2f} s")
    assert seconds < 60, f"report over 1000 runs took {seconds:.1f} s"


MADE_WITH = ["--set", "train.epochs=1", "--set", "eval.count=1", "--set", "train.seeds=[0]",
             "--set", "model.frames=8", "--set", "model.size=32"]  # fmt: skip
QUICK = [*MADE_WITH, "--set", "grid.attention=[none, eam]", "--set", "train.save_checkpoint=true",
         "--no-progress"]  # fmt: skip


@pytest.mark.slow
def test_quickstart_report_writes_tables_latex_and_readable_charts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = ROOT / "experiments" / "quickstart.yaml"
    assert main(["run", str(spec), *QUICK]) == 0
    # The report reads the full grid with the settings the runs were made with: the rows not
    # run are pending (a run made with other settings would be pending too).
    assert main(["report", str(spec), "--no-count", *MADE_WITH]) == 0
    out = tmp_path / "reports" / "quickstart"
    readme = (out / "README.md").read_text()
    assert "synthetic (tiny)" in readme
    made_with = " ".join(MADE_WITH).replace("train.seeds=[0]", "'train.seeds=[0]'")
    assert f"Built by `harness report {spec} {made_with}` from" in readme  # how to rebuild it
    assert not re.search(r"HMDB|UCF", readme), "synthetic results must not be labelled HMDB/UCF"
    table = pd.read_csv(out / "table.csv")
    assert list(table.state) == ["done", "pending", "done"]
    assert table.synthetic_tiny_split_1_ours.notna().sum() == 2
    assert (out / "per_video_tests.md").is_file()
    assert "unknown: 1 run each" in (out / "comparisons.md").read_text()
    assert "significan" not in readme.lower()  # one seed: no claim, whatever the per-video test
    pictures = {p.name.split("_")[0] for p in (out / "figures").glob("*.png")}
    assert pictures == {"seeds", "per", "curves", "confusion", "temporal", "gradcam"}
    for png in (out / "figures").glob("*.png"):
        assert f"]({png.relative_to(out)})" in readme
        image = np.asarray(Image.open(png).convert("L"), dtype=float)
        assert min(image.shape) > 300 and image.std() > 10, f"{png.name} looks empty"
    check_latex(out / "table.tex")
    # Rebuilt without the settings the runs were made with, both rows would turn pending.
    before = (out / "table.csv").read_text()
    assert main(["report", str(spec), "--no-count"]) == 2
    one_paragraph_error(capsys, "shows 2 finished run(s)", "holds 0 run(s)", "--replace")
    assert (out / "table.csv").read_text() == before
    # elsewhere too: it would replace the report run logged to MLflow
    assert main(["report", str(spec), "--no-count", "--out", "elsewhere"]) == 2
    one_paragraph_error(capsys, "the report run logged to sqlite:///mlflow.db shows 2")


def check_latex(path: Path) -> None:
    """Parse the document; compile it too when pdflatex or tectonic is installed."""
    text = path.read_text()
    assert text.startswith("\\documentclass") and text.rstrip().endswith("\\end{document}")
    environments = re.findall(r"\\(begin|end)\{(\w+)\}", text)
    stack = []
    for kind, name in environments:
        if kind == "begin":
            stack.append(name)
        else:
            assert stack.pop() == name
    assert not stack
    body = text[text.index("\\midrule") : text.index("\\bottomrule")]
    widths = {line.count("&") for line in body.splitlines()[1:] if line.strip()}
    assert len(widths) == 1  # every row has the header's number of cells
    assert not re.search(r"(?<!\\)[_#%]", body), "unescaped special character in a cell"
    compiler = shutil.which("pdflatex") or shutil.which("tectonic")
    if compiler is None:
        return
    args = ["-interaction=nonstopmode", "-halt-on-error"] if "pdflatex" in compiler else []
    done = subprocess.run([compiler, *args, path.name], cwd=path.parent, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    assert path.with_suffix(".pdf").stat().st_size > 1000


def test_report_command_mistakes_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 2
    assert "give one spec file or --all" in capsys.readouterr().err
    assert main(["report", "--all"]) == 2
    assert "no experiments/*.yaml" in capsys.readouterr().err
    assert main(["report", "missing.yaml"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_all_rebuilds_every_spec_in_experiments(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "experiments").mkdir()
    write_spec(tmp_path / "experiments", SEEDED_SPEC)
    profile_only = """
name: small
model: {num_classes: 3, frames: 8, size: 32}
grid: {backbone: [resnet3d_10], attention: [none, se], placement: [stage_output]}
"""
    (tmp_path / "experiments" / "small.yaml").write_text(profile_only)
    assert main(["report", "--all"]) == 0
    printed = capsys.readouterr()
    assert "seeded: 0 done, 2 pending" in printed.out and "small: 0 done, 2 pending" in printed.out
    assert printed.err.count("there is no store at") == 1  # said once for both specs
    assert not (tmp_path / "mlflow.db").exists()  # and none made for a report of no runs
    small = pd.read_csv(tmp_path / "reports" / "small" / "table.csv")
    assert small.param_m_ours.iloc[1] > small.param_m_ours.iloc[0] > 14  # counted: SE adds some
    assert "none (a profile-only spec" in (tmp_path / "reports" / "small" / "README.md").read_text()


def test_verdicts_say_when_no_test_is_possible_rather_than_no_difference():
    from harness.analysis.replication import RunComparison
    from harness.report.comparisons import verdict

    def result(runs: int, mean: float) -> RunComparison:
        nan = float("nan")
        return RunComparison(runs, (), (), (), mean, 0.01, nan, nan, 2 / 2**runs, 2 / 2**runs,
                             nan, nan)  # fmt: skip

    # 6 runs: p can reach 2/64 = 0.031 < 0.05 alone, but not Holm's 0.05/2 in a family of two
    base = "the baseline"
    assert verdict(result(6, 0.02), 0.03125, 1, base).startswith("better than the baseline")
    assert verdict(result(6, -0.02), 0.03125, 1, "+ ECA").startswith("worse than + ECA")
    # Holm's last step needs only p < 0.05, so 6 runs are not "no test possible" in a family of 2
    assert verdict(result(6, 0.02), 0.0625, 2, base) == (
        "no difference shown (6 runs give p ≥ 0.0312; Holm over 2 needs p < 0.025 to 0.05)"
    )
    assert verdict(result(5, 0.02), 0.0625, 1, base) == "no test possible: 5 runs give p ≥ 0.0625"
    assert verdict(result(8, 0.02), 0.2, 2, base) == "no difference shown"
    assert verdict(result(1, 0.02), float("nan"), 0, base).startswith("unknown: 1 run each")


def test_planned_contrasts_join_the_holm_family_and_the_design_says_what_3_runs_can_show(
    tmp_path,
):
    """EAM against SE as the spec plans it (`report.contrasts`), beside each module against the
    baseline; the baseline lacks seed 2, so those comparisons pair 2 runs and say 1 unpaired."""
    text = SEEDED_SPEC.replace("attention: [none, eam]", "attention: [none, se, eam]")
    text = text.replace("splits: [1, 2]", "splits: [1]")
    text += "report: {contrasts: [[eam, se]], min_effect: 25}\n"
    spec = load_spec(write_spec(tmp_path, text))
    tracker = MlflowStore(f"sqlite:///{tmp_path}/mlflow.db", spec.name)
    right = {"none": [1, 0, 1, 1, 0, 1], "se": [1, 1, 0, 1, 0, 1], "eam": [1, 1, 1, 1, 0, 1]}
    for trial in spec.trials:
        if not (trial.attention == "none" and trial.seed == 2):
            log_run(tracker, trial, top1=0.5, correct=right[trial.attention])
    build_report(spec, tracker, tmp_path / "out", count=False)
    records = pd.read_csv(tmp_path / "out" / "comparisons.csv").to_dict("records")
    assert [
        (r["model"].split()[-1], r["kind"], r["runs"], r["unpaired_runs"]) for r in records
    ] == [("SE", "baseline", 2, 1), ("EAM", "baseline", 2, 1), ("EAM", "contrast", 3, 0)]
    contrast = records[2]
    assert contrast["baseline"].endswith("+ SE") and contrast["family"] == 3
    assert contrast["difference"] == pytest.approx(100 / 6)  # one more video right, every run
    assert contrast["power_effect"] == pytest.approx(25.0)  # the spec's planned effect
    assert contrast["verdict"] == "no test possible: 3 runs give p ≥ 0.25"
    markdown = (tmp_path / "out" / "comparisons.md").read_text()
    assert "| 2 (+1 unpaired) |" in markdown
    # 3 runs, a family of 3: Holm's first step needs p < 0.0167, so 7 runs are the fewest
    assert "these runs cannot show a difference of any size" in markdown
    assert "7 runs a row (`train.seeds` with 7 seeds)" in markdown
    assert "intersection–union" in markdown


def test_a_planned_comparison_without_a_run_pair_says_why_and_stays_out_of_the_family(tmp_path):
    text = SEEDED_SPEC.replace("attention: [none, eam]", "attention: [none, se, eam]")
    text = text.replace("splits: [1, 2]", "splits: [1]") + "report: {contrasts: [[eam, se]]}\n"
    spec = load_spec(write_spec(tmp_path, text))
    tracker = MlflowStore(f"sqlite:///{tmp_path}/mlflow.db", spec.name)
    for trial in spec.trials:  # SE not run yet
        if trial.attention != "se":
            log_run(tracker, trial, top1=0.5, correct=[trial.attention == "eam"] * 6)
    build_report(spec, tracker, tmp_path / "out", count=False)
    baseline, contrast = pd.read_csv(tmp_path / "out" / "comparisons.csv").to_dict("records")
    assert (baseline["kind"], baseline["runs"], baseline["family"]) == ("baseline", 3, 1)
    assert (contrast["kind"], contrast["runs"]) == ("contrast", 0)
    assert contrast["verdict"] == "not compared: 3D ResNet-10 + SE has no finished run"
    markdown = (tmp_path / "out" / "comparisons.md").read_text()
    assert "1 comparison had no run pair (the verdict says why)" in markdown
    assert "Holm–Bonferroni over the family of the 1 comparison of" in markdown


def test_power_advice_is_for_the_effect_named_with_min_effect(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, SEEDED_SPEC)
    spec = load_spec(path, ["train.seeds=[0, 1, 2]", "dataset.splits=[1]"])
    tracker = MlflowStore(f"sqlite:///{tmp_path}/mlflow.db", spec.name)
    model_right = {0: [1, 1, 1, 1, 0, 1], 1: [1, 0, 1, 1, 0, 1], 2: [0, 0, 1, 1, 0, 1]}
    for trial in spec.trials:  # Δ per run: +1/6, 0, −1/6: no difference, a spread of 1/6
        correct = [1, 0, 1, 1, 0, 1] if trial.attention == "none" else model_right[trial.seed]
        log_run(tracker, trial, top1=0.5, correct=correct)
    given = ["--set", "train.seeds=[0, 1, 2]", "--set", "dataset.splits=[1]", "--no-count"]
    assert main(["report", str(path), *given, "--min-effect", "25", "--out", "r"]) == 0
    (record,) = pd.read_csv(tmp_path / "r" / "comparisons.csv").to_dict("records")
    assert record["power_effect"] == pytest.approx(25.0) and not record["difference_shown"]
    # Δ/sd = 1.5 over run pairs: the exact sign-flip test needs 7 pairs for 80 % power
    assert record["runs_for_power"] == 7
    assert "7 for Δ = 25.0 pp" in (tmp_path / "r" / "comparisons.md").read_text()
    assert "over 3 runs: no test possible" in capsys.readouterr().out
    assert main(["report", str(path), *given, "--out", "r0", "--replace"]) == 0
    (plain,) = pd.read_csv(tmp_path / "r0" / "comparisons.csv", dtype=str).to_dict("records")
    # no effect planned: no advice (from the observed Δ it would be post hoc power)
    assert plain["power_effect"] != plain["power_effect"]  # empty (NaN), not a number
    assert plain["runs_for_power"] != plain["runs_for_power"]
    text = (tmp_path / "r0" / "comparisons.md").read_text()
    assert "for Δ =" not in text and "none given, since no smallest effect" in text
    (counted,) = pd.read_csv(tmp_path / "r" / "comparisons.csv", dtype=str).to_dict("records")
    assert counted["runs_for_power"] == "7"  # a count, not 7.0
    assert main(["report", str(path), *given, "--min-effect", "0", "--out", "r"]) == 2
    assert "--min-effect 0.0: expected a difference in percentage points" in capsys.readouterr().err


def _trained_row(label: str, top1: list[float], classes: int = 51):
    """A report row with one finished run per accuracy in `top1` (fractions)."""
    from harness.config.trial import Trial
    from harness.report.rows import ReportRow
    from harness.tracking.base import RunRecord
    from registry import parse_placement

    trials = [Trial("resnet3d_50", label, parse_placement("stage_output"), classes, 16, 112,
                    split=1, seed=seed) for seed in range(len(top1))]  # fmt: skip
    runs = [RunRecord(t.key, f"run{t.seed}", "FINISHED", {"video_top1": value}, {}, "", None)
            for t, value in zip(trials, top1, strict=True)]  # fmt: skip
    return ReportRow(label, trials[0].key, {}, trials, runs, name=label)


def test_rows_under_twice_chance_are_said_to_have_barely_learned():
    """The H100 study's 3 epochs: 51 classes, every row 2.9 to 3.5 % (chance 2.0 %)."""
    from harness.report.table import chance_note

    near_chance = [
        _trained_row("none", [0.020, 0.042, 0.027]),
        _trained_row("se", [0.039, 0.046, 0.022]),
    ]
    note = chance_note(near_chance)
    assert note.startswith("Chance: 1/51 = 2.0 %") and "barely learned" in note
    assert "the highest is 3.6 %" in note  # se's mean
    learned = [*near_chance, _trained_row("eam", [0.05, 0.04, 0.03])]
    assert chance_note(learned) == "Chance: 1/51 = 2.0 % (a uniform guess among the classes)."
    two_classes = [_trained_row("none", [0.93], classes=2), _trained_row("se", [0.95], classes=2)]
    assert "barely" not in chance_note(two_classes)  # twice 50 % cannot be reached: 75 % is
    assert "No row's mean reaches halfway to 100 % (the highest is 60.0 %)" in chance_note(
        [_trained_row("none", [0.6], classes=2)]
    )
    many = chance_note([_trained_row("none", [0.0039], classes=400)])
    assert "= 0.25 %" in many and "the highest is 0.39 %" in many
    assert chance_note([_trained_row("none", [0.2]), _trained_row("se", [0.3], classes=5)]) is None
    assert chance_note([]) is None
