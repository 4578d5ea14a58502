"""What a spec gives that changes nothing (`harness.config.advice`): train settings the run does
not read and match blocks matching no trial are warned about on `harness run`, naming the key;
the specs of both papers and the defaults give no warning."""

from __future__ import annotations

import pytest
import yaml

from harness.cli import main
from harness.config import load_spec
from harness.config.advice import inert_settings, spec_warnings
from harness.config.sections import TrainSection
from tests.conftest import ROOT

INERT = {  # settings: the key a warning must name
    "momentum with adamw": ({"optimizer": "adamw", "momentum": 0.5}, "train.momentum"),
    "dampening with adamw": ({"optimizer": "adamw", "dampening": 0.9}, "train.dampening"),
    "warm-up with cosine": ({"schedule": "cosine", "warmup_epochs": 5}, "train.warmup_epochs"),
    "milestones with constant": ({"milestones": [30]}, "train.milestones"),
    "gamma with cosine": ({"schedule": "cosine", "gamma": 0.5}, "train.gamma"),
    "patience with eam": ({"schedule": "eam", "plateau_patience": 5}, "train.plateau_patience"),
    "warm-up as long as training": (
        {"schedule": "eam", "epochs": 15, "warmup_epochs": 15}, "train.warmup_epochs = 15"),
    "a milestone at the last epoch": (
        {"schedule": "eam", "epochs": 45, "milestones": [30, 45]}, "train.milestones [45]"),
}  # fmt: skip
USED = {
    "EAM's eq. 12": {"schedule": "eam", "epochs": 100, "warmup_epochs": 15, "milestones": [45, 75]},
    "Hara's plateau": {"schedule": "plateau", "gamma": 0.1, "plateau_patience": 10},
    "SGD's dampening": {"optimizer": "sgd", "dampening": 0.9, "momentum": 0.8},
    "the defaults": {},
}


@pytest.mark.parametrize("case", list(INERT))
def test_a_setting_with_no_effect_is_named(case):
    settings, named = INERT[case]
    lines = inert_settings(TrainSection(**settings))
    assert len(lines) == 1 and named in lines[0], lines


@pytest.mark.parametrize("case", list(USED))
def test_settings_the_run_reads_give_no_warning(case):
    assert inert_settings(TrainSection(**USED[case])) == []


def test_no_spec_of_the_papers_warns():
    warned = {
        path.name: spec_warnings(load_spec(path))
        for path in sorted((ROOT / "experiments").glob("*.yaml"))
    }
    assert not any(warned.values()), warned


def test_run_prints_the_warning_and_still_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())
    spec["per_trial"] = [{"match": {"attention": "se"}, "train": {"dampening": 0.9}}]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", "spec.yaml", "--dry-run"]) in (0, 2)  # 2: the tiny data not made yet
    err = capsys.readouterr().err
    assert "warning: spec.yaml: train.dampening = 0.9 has no effect" in err, err
    assert "(3 of 9 trials)" in err, err
    assert main(["run", "spec.yaml", "--dry-run", "--smoke"]) in (0, 2)
    assert "warning:" not in capsys.readouterr().err  # --smoke shrinks settings on purpose


def test_a_match_block_matching_no_trial_is_named(tmp_path):
    spec = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())
    spec["reference"] = [
        {"match": {"attention": "eam"}, "values": {"gflops": 1.0}},
        {"match": {"attention": "eca"}, "values": {"gflops": 1.0}},  # not in the grid
        {"cited": "TSN", "values": {"ucf101": 0.9}},  # matches nothing by design
    ]
    spec["per_trial"] = [{"match": {"frames": 61}, "train": {"lr": 0.01}}]
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    lines = spec_warnings(load_spec(tmp_path / "spec.yaml"))
    assert [line.split(": ", 1)[1].split(" (")[0] for line in lines] == [
        "reference[1] matches no trial",
        "per_trial[0] matches no trial",
    ], lines
