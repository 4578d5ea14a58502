"""Hostile inputs, as a careless or adversarial user would give them: every mistake ends as one
paragraph naming the key or file, exit code 2, no traceback, and the store as it was; resume
files, interrupted runs, stale results and concurrent sweeps keep what was logged and never
duplicate it. (Tracking-store and data-tree cases: test_hostile_tracking.py, test_hostile_data.py.)
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from harness.cli import main
from harness.config import SpecError, load_spec
from harness.config.spec import _blamed_on_override
from harness.tracking.mlflow_store import MlflowStore
from harness.train import engine
from tests.conftest import ROOT

QUICKSTART = ROOT / "experiments" / "quickstart.yaml"
TINY = {  # one quickstart trial at its smallest: a second or two on a CPU
    "name": "hostile",
    "model": {"num_classes": 5, "frames": 4, "size": 16},
    "grid": {"backbone": ["resnet3d_10"], "attention": ["none"], "placement": ["stage_output"]},
    "dataset": {
        "name": "synthetic",
        "root": "synthetic:tiny",
        "normalisation": "kinetics",
        "crop": "random",
        "workers": 0,
        "subset": 2,
    },  # fmt: skip
    "train": {"epochs": 1, "batch_size": 4, "optimizer": "adamw", "lr": 0.001},
    "eval": {"clips": "even", "count": 1, "batch_size": 8},
}
KEY = "resnet3d_10-none-stage_output-f4-s16-c5-split1-seed0"


def write_spec(folder: Path, changes: dict | None = None, text: str | None = None) -> Path:
    spec = yaml.safe_load(yaml.safe_dump(TINY))
    for dotted, value in (changes or {}).items():
        *parents, last = dotted.split(".")
        target = spec
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    path = folder / "spec.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(spec, sort_keys=False))
    return path


def runs(folder: Path, experiment: str = "hostile") -> list:
    db = folder / "mlflow.db"
    if not db.exists():
        return []
    store = MlflowStore(f"sqlite:///{db}", experiment, create=False)
    return store.client.search_runs([store.experiment_id])


def one_paragraph_error(capsys, *expected: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    return err


# Spec values a user can get wrong: each is refused when the spec loads (so --dry-run
# catches it), naming the key, before any store, checkpoint or run exists.
BAD_VALUES = {
    "negative grad_clip (gradient ascent)": ({"train.grad_clip": -1}, "train.grad_clip"),
    "zero grad_clip": ({"train.grad_clip": 0}, "train.grad_clip"),
    "zero epochs (an untrained model)": ({"train.epochs": 0}, "train.epochs"),
    "zero eval clips (nothing scored)": ({"eval.count": 0}, "eval.count"),
    "zero batch": ({"train.batch_size": 0}, "train.batch_size"),
    "fractional batch": ({"train.batch_size": 2.5}, "train.batch_size"),
    "NaN learning rate": ({"train.lr": float("nan")}, "train.lr"),
    "infinite learning rate": ({"train.lr": float("inf")}, "train.lr"),
    "negative learning rate": ({"train.lr": -0.1}, "train.lr"),
    "zero learning rate": ({"train.lr": 0}, "train.lr"),
    "negative workers": ({"dataset.workers": -1}, "dataset.workers"),
    "boolean workers": ({"dataset.workers": True}, "dataset.workers"),
    "momentum of 1": ({"train.momentum": 1.0}, "train.momentum"),
    "negative weight decay": ({"train.weight_decay": -1e-4}, "train.weight_decay"),
    "zero gamma": ({"train.gamma": 0}, "train.gamma"),
    "gamma above 1": ({"train.gamma": 2}, "train.gamma"),
    "negative warm-up": ({"train.warmup_epochs": -1}, "train.warmup_epochs"),
    "milestone 0": ({"train.milestones": [0]}, "train.milestones"),
    "no seeds": ({"train.seeds": []}, "train.seeds"),
    "negative seed": ({"train.seeds": [-1]}, "train.seeds"),
    "no splits": ({"dataset.splits": []}, "dataset.splits"),
    "split 0": ({"dataset.splits": [0]}, "dataset.splits"),
    "split 4 of a three-split dataset": ({"dataset.splits": [1, 4]}, "has splits 1, 2, 3, not 4"),
    "zero segments": ({"dataset.segments": 0}, "dataset.segments"),
    "zero subset": ({"dataset.subset": 0}, "dataset.subset"),
    "zero eval batch": ({"eval.batch_size": 0}, "eval.batch_size"),
    "one fusion weight": ({"eval.fusion_weights": [1.0]}, "eval.fusion_weights"),
    "zero fusion weights": ({"eval.fusion_weights": [0, 0]}, "eval.fusion_weights"),
    "negative fusion weight": ({"eval.fusion_weights": [1, -1]}, "eval.fusion_weights"),
    "zero sync interval": ({"train.sync_every": 0}, "train.sync_every"),
    "huge frames": ({"model.frames": 100_000}, "frames"),
    "huge size": ({"model.size": 1_000_000}, "size"),
    "zero size": ({"model.size": 0}, "size"),
    "zero classes": ({"model.num_classes": 0}, "num_classes"),
    "empty name": ({"name": ""}, "key 'name'"),
    "name '..' (escapes folders)": ({"name": ".."}, "key 'name'"),
    "absolute name": ({"name": "/elsewhere/x"}, "key 'name'"),
    "name with a separator": ({"name": "a/b"}, "key 'name'"),
    "name with a space": ({"name": "my spec"}, "key 'name'"),
    "misspelt per_trial match key": (
        {"per_trial": [{"match": {"atention": "none"}, "train": {"lr": 0.01}}]},
        "per_trial[0].match.atention",
    ),
    "misspelt reference match key": (
        {"reference": [{"match": {"backbon": "resnet3d_10"}, "values": {"gflops": 1.0}}]},
        "reference[0].match.backbon",
    ),
    "empty grid axis": ({"grid.attention": []}, "grid.attention"),
    "unknown train key": ({"train.epoch": 3}, "epoch"),
    "an include row that drops the backbone": ({"include": [{"backbone": None}]}, "no backbone"),
    "an include row naming no attention module": (
        {"include": [{"attention": "eem"}]}, "include[0].attention"),
    "train as a word": ({"train": "abc"}, "key 'train'"),
    "train as a list": ({"train": ["lr"]}, "key 'train'"),
    "a list for a preset": ({"train.preset": ["hara_scratch"]}, "train.preset"),
    "a per_trial preset not known": (
        {"per_trial": [{"match": {}, "train": {"preset": "nope"}}]}, "per_trial[0].train.preset"),
    "seeds in per_trial (they make the trials)": (
        {"per_trial": [{"match": {}, "train": {"seeds": [1]}}]}, "per_trial[0].train.seeds"),
    "a seed beyond 32 bits": ({"train.seeds": [2**32]}, "train.seeds"),
    "frames scaled to a 100000-pixel side": ({"dataset.short_side": 100_000}, "short_side"),
    "milestones out of order": ({"train.milestones": [3, 2]}, "increasing order"),
    "a contrast naming no registered module": (
        {"report.contrasts": [["eam", "eka"]]}, "module 'eka'. Did you mean 'eca'"),
    "a contrast of one module": ({"report.contrasts": [["eam"]]}, "report.contrasts"),
    "a contrast of a module with itself": (
        {"report.contrasts": [["eam", "eam"]]}, "two different attention names"),
    "a zero smallest effect": ({"report.min_effect": 0}, "report.min_effect"),
    "a fractional milestone": ({"train.milestones": [1.5]}, "a list holding float 1.5"),
    "an empty pretrained path": ({"train.pretrained": ""}, "train.pretrained' is an empty"),
    "an empty tracking URI": ({"tracking": {"uri": ""}}, "tracking.uri' is an empty"),
    "an exclude value the grid lacks": ({"exclude": [{"attention": "eam"}]}, "exclude[0]"),
    "an exclude rule that removes every trial": ({"exclude": [{}]}, "removes every trial"),
    "a reference row for an attention not registered": (
        {"reference": [{"match": {"attention": "foo"}, "values": {"gflops": 1.0}}]},
        "reference[0].match.attention"),
    "a match on a stream that does not exist": (
        {"per_trial": [{"match": {"stream": "sideways"}, "train": {"lr": 0.01}}]},
        "per_trial[0].match.stream"),
    "a reference value that is no number": (
        {"reference": [{"match": {}, "values": {"gflops": "high"}}]}, "reference[0].values.gflops"),
    "a reference value under an unknown key": (
        {"reference": [{"match": {}, "values": {"foo": 1.0}}]}, "reference[0].values.foo"),
    "a stage placed twice": (
        {"grid.placement": [{"where": "stage_output", "stages": ["res2", "res2"]}]}, "twice"),
    "a seed given twice (one trial, not two runs)": (
        {"train.seeds": [0, 0]}, "key 'train.seeds' = [0, 0] lists 0 twice"),
    "a split given twice": ({"dataset.splits": [1, 1]}, "dataset.splits' = [1, 1] lists 1"),
    "an accuracy of 150 %": (
        {"reference": [{"match": {}, "values": {"synthetic": 150}}]}, "values.synthetic': 150"),
    "a negative parameter count": (
        {"reference": [{"match": {}, "values": {"params_m": -5}}]}, "values.params_m': -5"),
    "a NaN GFLOPs": (
        {"reference": [{"match": {}, "values": {"gflops": float("nan")}}]}, "values.gflops': nan"),
    "VGG16 on crops its pooling cannot take": (
        {"grid.backbone": ["vgg16"], "grid.placement": ["none"]},
        "vgg16 takes crops of at least 32×32 pixels"),
    "split lists beside a synthetic root (left unread)": (
        {"dataset.split_dir": "/nope"}, "key 'dataset.split_dir': the root synthetic:tiny"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_a_bad_value_is_refused_at_load_naming_its_key(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    changes, key = BAD_VALUES[case]
    spec = write_spec(tmp_path, changes)
    assert main(["run", str(spec), "--dry-run"]) == 2
    one_paragraph_error(capsys, key, str(spec))
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "checkpoints").exists()


BAD_TEXTS = {
    "duplicate top-level key": (
        "name: hostile\nname: other\nmodel: {num_classes: 5}\ngrid: {backbone: [resnet3d_10]}\n",
        "'name' appears twice",
    ),
    "duplicate nested key": (
        "name: hostile\nmodel: {num_classes: 5, num_classes: 7}\ngrid: {backbone: [resnet3d_10]}\n",
        "'num_classes' appears twice",
    ),
    "not YAML": ("name: [unclosed\n", "not valid YAML"),
    "no attention written as YAML's boolean no": (
        "name: hostile\nmodel: {num_classes: 5}\n"
        "grid: {backbone: [resnet3d_10], attention: [no, se]}\n",
        "got False. YAML reads an unquoted no",
    ),
    "an option's word read as YAML's boolean off": (
        "name: hostile\nmodel: {num_classes: 5}\n"
        "grid: {backbone: [resnet2d_18], attention: [aarm], placement: [block], fusion: [off]}\n",
        'quote the word you wrote (e.g. "no")',
    ),
    "a number as an option name": (
        "name: hostile\nmodel: {num_classes: 5, options: {1: 2}}\n"
        "grid: {backbone: [resnet3d_10]}\n",
        "key 1 (line 2) is not a name",
    ),
    "a list, not a mapping": ("- name\n- model\n", "expected a mapping"),
    "an empty file": ("\n  \n", "is empty"),
}


@pytest.mark.parametrize("case", list(BAD_TEXTS))
def test_a_malformed_spec_file_is_one_paragraph(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    text, expected = BAD_TEXTS[case]
    spec = write_spec(tmp_path, text=text)
    assert main(["run", str(spec), "--dry-run"]) == 2
    one_paragraph_error(capsys, expected)


def test_a_latin1_spec_is_named_and_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_bytes("name: caf\xe9\n".encode("latin-1"))
    assert main(["run", str(spec)]) == 2
    one_paragraph_error(capsys, "not UTF-8", str(spec))


def test_a_folder_given_as_spec_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(tmp_path)]) == 2
    one_paragraph_error(capsys, "is a folder", "give one YAML file")
    os.mkfifo(tmp_path / "pipe.yaml")  # reading it would wait for a writer
    assert main(["run", str(tmp_path / "pipe.yaml")]) == 2
    one_paragraph_error(capsys, "is not a regular file")


BAD_OVERRIDES = {
    "unclosed list": ("train.lr=[1,", "not valid YAML"),
    "name escaping the checkpoints": ("name=TMP/elsewhere/x", "key 'name'"),
    "name '..'": ("name=..", "key 'name'"),
    "empty seeds": ("train.seeds=[]", "train.seeds"),
    "negative clip": ("train.grad_clip=-1", "train.grad_clip"),
    "no value": ("train.lr", "expected key.path=value"),
}


@pytest.mark.parametrize("case", list(BAD_OVERRIDES))
def test_a_bad_override_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    override, expected = BAD_OVERRIDES[case]
    override = override.replace("TMP", str(tmp_path))  # an absolute path
    assert main(["run", str(write_spec(tmp_path)), "--set", override]) == 2
    one_paragraph_error(capsys, expected)
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "elsewhere").exists()


def test_profile_of_a_huge_clip_is_refused_before_allocating(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, {"model.size": 100_000})
    assert main(["profile", str(spec)]) == 2
    one_paragraph_error(capsys, "size = 100000")


def test_report_with_a_name_escaping_reports_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    readme = (ROOT / "README.md").read_bytes()
    assert main(["report", str(QUICKSTART), "--set", "name=..", "--no-count"]) == 2
    one_paragraph_error(capsys, "key 'name'")
    assert (ROOT / "README.md").read_bytes() == readme


BAD_FLAGS = {
    "zero GPUs per trial": (["run", "SPEC", "--per-gpu", "0"], "--per-gpu 0"),
    "zero jobs": (["run", "SPEC", "--jobs", "0"], "--jobs 0"),
    "no matching trial": (["run", "SPEC", "--trial", "nothing-*"], "matches none"),
    "bench with a zero batch": (["bench", "train", "resnet3d_10", "--batch", "0"], "--batch 0"),
    "bench with zero steps": (["bench", "train", "resnet3d_10", "--steps", "0"], "--steps 0"),
    "profile on a device that is no device": (["profile", "SPEC", "--device", "tpu"], "tpu"),
    "profile on a GPU this machine lacks": (["profile", "SPEC", "--device", "cuda:64"], "cuda:64"),
    "bench training on batches of one clip": (
        ["bench", "train", "resnet3d_10", "--batch", "1", "--steps", "1", "--frames", "4",
         "--size", "32"], "at least 2 clips per batch"),
    "a dask scheduler without a port": (
        ["run", "SPEC", "--backend", "dask", "--scheduler", "notanaddress"], "'notanaddress'"),
    "a report of -3 videos": (["report", "SPEC", "--videos", "-3"], "--videos -3"),
    "synthetic data from seed -5": (
        ["data", "synth", "--preset", "tiny", "--out", "syn", "--seed", "-5"], "--seed -5"),
    "a check of clips of -5 frames": (
        ["data", "check", "synthetic", "--root", "r", "--min-frames", "-5"], "--min-frames -5"),
    "frames prepared at side 0": (
        ["data", "prepare", "synthetic", "--root", "r", "--out", "o", "--short-side", "0"],
        "--short-side 0"),
    "synthetic data written into a file": (
        ["data", "synth", "--preset", "tiny", "--out", "SPEC"], "that is a file"),
    "a report written into a file": (["report", "SPEC", "--out", "SPEC"], "that is a file"),
    "a clip cache written into a file": (
        ["data", "cache", "synthetic", "--root", "r", "--out", "SPEC"], "that is a file"),
    "flow on -1 processes": (
        ["data", "flow", "synthetic", "--root", "r", "--out", "o", "--workers", "-1"],
        "--workers -1"),
    "trials sharing a GPU one at a time": (["run", "SPEC", "--per-gpu", "2"], "--jobs is 1"),
    "a bench of prepared frames not there": (
        ["bench", "data", "synthetic", "--root", "r", "--prepared", "gone"],
        "--prepared gone: no such folder"),
    "a bench of a folder that is no clip cache": (
        ["bench", "data", "synthetic", "--root", "r", "--cache", "."], "no index.json"),
    "a value the spec refuses, given by --set": (
        ["run", "SPEC", "--set", "train.epochs=-3"], "--set 'train.epochs=-3' (applied to "),
    "a batch of a million clips (a typo)": (
        ["run", "SPEC", "--set", "train.batch_size=1000000"], "at most 65536"),
    "an evaluation batch of a million clips": (
        ["run", "SPEC", "--set", "eval.batch_size=1000000"], "at most 65536"),
    "a trial the grid cannot build, its value given by --set": (
        ["run", "SPEC", "--set", "grid.placement=[nowhere]"],
        "--set 'grid.placement=[nowhere]' (applied to "),
    "an unknown key, given by --set": (
        ["run", "SPEC", "--set", "train.epoch=3"], "--set 'train.epoch=3' (applied to "),
    "a bench crop of 5000 pixels (a typo)": (
        ["bench", "data", "synthetic", "--root", "r", "--size", "5000"], "--size 5000"),
    "a bench clip of 2000 frames": (["bench", "train", "resnet3d_10", "--frames", "2000"],
                                    "--frames 2000: expected at most 1024"),
    "a cache short side of 9000 pixels": (
        ["data", "cache", "synthetic", "--root", "r", "--short-side", "9000"], "--short-side 9000"),
    "an override with an empty name between dots": (
        ["run", "SPEC", "--set", "train..epochs=2"], "names joined by single dots"),
    "an unknown section, given by --set": (
        ["run", "SPEC", "--set", "trian.epochs=2"], "--set 'trian.epochs=2' (applied to "),
    "a bench on clips too small for the model": (
        ["bench", "train", "vgg16", "--size", "16"], "vgg16 cannot take clips of --frames 16"),
    "a C3D bench on clips it cannot take": (
        ["bench", "train", "c3d", "--frames", "4", "--size", "32"], "give --frames 16 --size 112"),
    "an empty tracking URI flag": (
        ["run", "SPEC", "--tracking-uri", ""], "--tracking-uri is empty"),
    "a server URI whose IPv6 host is unclosed": (
        ["run", "SPEC", "--dry-run", "--tracking-uri", "http://[::1"], "Invalid IPv6 URL"),
    "a password in a URI that does not parse (not echoed)": (
        ["report", "SPEC", "--tracking-uri", "postgresql://u:secret@[::1/db"], "postgresql URI"),
    "an SQLite store under a literal ~": (
        ["run", "SPEC", "--dry-run", "--tracking-uri", "sqlite:///~/x.db"], "folder called '~'"),
    "a latency on Apple's GPU": (["profile", "SPEC", "--latency", "--device", "mps"], "not on mps"),
    "a bench on the meta device": (["bench", "train", "resnet3d_10", "--device", "meta"], "meta"),
    "a bench batch of 100000 clips (killed, not told, on a CPU)": (
        ["bench", "train", "resnet3d_10", "--batch", "100000"], "--batch 100000: expected at most"),
    "a latency batch of 100000 clips": (
        ["profile", "SPEC", "--latency", "--batch", "100000"], "--batch 100000: expected at most"),
    "synthetic data into a folder holding other files": (
        ["data", "synth", "--preset", "tiny", "--out", "."], "holds other files (e.g. spec.yaml)"),
    "a misspelt attention module, given by --set": (
        ["run", "SPEC", "--set", "grid.attention=[se, eem]"],
        "--set 'grid.attention=[se, eem]' (applied to "),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_FLAGS))
def test_a_bad_flag_exits_2(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    args, expected = BAD_FLAGS[case]
    spec = str(write_spec(tmp_path))
    assert main([spec if a == "SPEC" else a for a in args]) == 2
    err = one_paragraph_error(capsys, expected)
    assert "secret" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # nothing made, no ~/


def test_yaml_merge_keys_work_and_a_key_beside_them_wins(tmp_path):
    spec = write_spec(tmp_path)
    text = spec.read_text().replace("train:", "train: &base", 1)
    spec.write_text(text + "per_trial:\n- match: {}\n  train:\n    <<: *base\n    lr: 0.01\n")
    loaded = load_spec(spec)
    (trial,) = loaded.trials
    assert loaded.train.lr == 0.001 and loaded.train_for(trial).lr == 0.01


def test_a_dry_run_and_the_ui_create_no_store_in_a_folder_that_does_not_exist(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/missing/deeper/x.db"
    assert main(["run", str(write_spec(tmp_path)), "--dry-run", "--tracking-uri", uri]) == 0
    assert "there is no store at" in capsys.readouterr().err
    assert main(["ui", "--tracking-uri", uri]) == 2
    one_paragraph_error(capsys, "missing/deeper/x.db")
    assert not (tmp_path / "missing").exists()


def test_a_dry_run_generates_no_synthetic_dataset_but_checks_its_classes(
    tmp_path, monkeypatch, capsys
):
    """A dry run of a spec on a synthetic preset not generated yet (`large`: minutes, 0.5 GB)
    writes nothing into the cache, and still names a class count the preset does not have."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    study = ROOT / "experiments" / "study_table4_r50_synthetic.yaml"
    uri = f"sqlite:///{tmp_path}/none.db"
    assert main(["run", str(study), "--dry-run", "--tracking-uri", uri]) == 0
    assert "synthetic large dataset is generated on the first run" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "datasets").exists()
    wrong = ["--set", "model.num_classes=50"]
    assert main(["run", str(study), "--dry-run", "--tracking-uri", uri, *wrong]) == 2
    one_paragraph_error(capsys, "'model.num_classes': 50", "synthetic large preset", "51 classes")


def test_a_report_of_a_store_not_made_yet_creates_none(tmp_path, monkeypatch, capsys):
    """A mistyped store name: the report shows every row pending, says so, and leaves no empty
    store behind (nor a report run logged into one)."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report"
    assert main(["report", str(write_spec(tmp_path)), "--no-count", "--out", str(out),
                 "--tracking-uri", f"sqlite:///{tmp_path}/mistyped.db"]) == 0  # fmt: skip
    printed = capsys.readouterr()
    assert "there is no store at" in printed.err and "not logged (no store)" in printed.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "spec.yaml"]
    assert "pending" in (out / "table.csv").read_text()


def test_a_cache_or_checkpoints_path_that_is_a_file_is_named_before_any_store(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    spec = str(write_spec(tmp_path))
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "afile"))
    assert main(["run", spec]) == 2
    one_paragraph_error(capsys, "HARNESS_CACHE=", "afile is a file", "unset it")
    monkeypatch.setenv("HARNESS_CACHE", "")  # empty: unset, the default folder
    (tmp_path / "checkpoints").write_text("x")
    assert main(["run", spec]) == 2
    one_paragraph_error(capsys, "checkpoints is a file", "run from another folder")
    assert not (tmp_path / "mlflow.db").exists()


def test_a_cache_or_checkpoints_folder_that_cannot_be_written_is_named_before_any_store(
    tmp_path, monkeypatch, capsys
):
    """/proc stands for a read-only place (root writes anywhere else, whatever the modes)."""
    monkeypatch.chdir(tmp_path)
    spec = str(write_spec(tmp_path))
    monkeypatch.setenv("HARNESS_CACHE", "/proc/harness-cache")
    assert main(["run", spec]) == 2
    one_paragraph_error(capsys, "HARNESS_CACHE=/proc/harness-cache: nothing can be written in "
                        "/proc", "Point HARNESS_CACHE at a folder you can write")  # fmt: skip
    assert main(["run", spec, "--dry-run"]) in (0, 2)  # a dry run writes nothing there
    assert "nothing can be written" not in capsys.readouterr().err
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir("/proc")
    assert main(["run", spec, "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]) == 2
    one_paragraph_error(capsys, "/proc/checkpoints cannot be written",
                        "Run it from a folder you can write")  # fmt: skip
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "mlflow.db").exists()


def test_missing_split_files_are_named_before_any_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "UCF-101" / "Climb").mkdir(parents=True)
    dataset = {"name": "ucf101", "root": "UCF-101", "split_dir": "lists"}
    spec = str(write_spec(tmp_path, {"dataset": dataset}))
    assert main(["run", spec]) == 2
    one_paragraph_error(capsys, spec, "lists")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "checkpoints").exists()


def test_a_spec_without_a_dataset_is_refused_before_any_store(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    profile_only = {key: TINY[key] for key in ("name", "model", "grid")}  # as table4.yaml
    spec = str(write_spec(tmp_path, text=yaml.safe_dump(profile_only)))
    assert main(["run", spec]) == 2
    one_paragraph_error(capsys, spec, "key 'dataset' is missing", "can only be profiled")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "checkpoints").exists()


def test_exponent_floats_read_as_numbers_in_specs_and_overrides(tmp_path):
    """PyYAML alone reads `1e-3` as a string, which the float keys then refuse."""
    spec = write_spec(tmp_path, {"train.lr": "LR"})
    spec.write_text(spec.read_text().replace("LR", "1e-3"))
    loaded = load_spec(spec, ["train.weight_decay=5E-4", "description=1e5x"])
    assert (loaded.train.lr, loaded.train.weight_decay) == (0.001, 0.0005)
    assert loaded.description == "1e5x"


def test_run_of_a_profile_only_spec_is_refused_naming_the_missing_section(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    spec = {k: v for k, v in TINY.items() if k not in ("dataset", "train", "eval")}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    for dry_run in (["--dry-run"], []):
        assert main(["run", "spec.yaml", *dry_run]) == 2
        one_paragraph_error(capsys, "key 'dataset' is missing")


@pytest.mark.parametrize(
    "command",
    [["bench", "data"], ["data", "prepare", "--out", "o"], ["data", "cache", "--out", "o"]],
)
def test_a_split_with_no_video_on_disk_names_the_missing(tmp_path, monkeypatch, capsys, command):
    """A mistyped --root: "0 of 0 videos written", exit 0 (prepare), a ZeroDivisionError (bench)."""
    monkeypatch.chdir(tmp_path)
    splits = tmp_path / "splits"
    splits.mkdir()
    (tmp_path / "videos").mkdir()
    (splits / "classInd.txt").write_text("1 ClassA\n")
    (splits / "trainlist01.txt").write_text("ClassA/v_ClassA_g01_c01.avi 1\n")
    (splits / "testlist01.txt").write_text("ClassA/v_ClassA_g02_c01.avi\n")
    args = [*command[:2], "ucf101", "--root", "videos", "--split-dir", "splits", *command[2:]]
    sample = ["--videos", "2", "--clips", "2"] if command[0] == "bench" else []
    assert main([*args, "--workers", "1", *sample]) == 2
    one_paragraph_error(capsys, "v_ClassA_g01_c01.avi")
    assert not (tmp_path / "o").exists()


def test_a_process_count_in_the_environment_must_be_a_number(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "abc")
    args = ["bench", "train", "resnet3d_10", "--batch", "2", "--steps", "1", "--size", "8"]
    assert main(args) == 2
    one_paragraph_error(capsys, "LOCAL_WORLD_SIZE='abc'", "unset it")


def test_an_exclude_rule_matches_a_placement_written_as_a_mapping(tmp_path):
    rule = {"where": "stage_output", "stages": ["res2"]}
    spec = write_spec(tmp_path, {"grid.placement": ["stage_output", rule], "exclude": [
        {"placement": rule}]})  # fmt: skip
    (trial,) = load_spec(spec).trials  # before: the mapping matched no row, nothing excluded
    assert trial.placement.label == "stage_output"


def test_stages_in_either_order_are_one_trial(tmp_path):
    def placement(*stages: str) -> dict:
        return {"where": "stage_output", "stages": list(stages)}

    spec = write_spec(tmp_path, {"grid.placement": [placement("res3", "res2")]})
    (trial,) = load_spec(spec).trials
    assert trial.placement.label == "stage_output[res2,res3]"  # the backbone's order
    spec = write_spec(tmp_path, {"grid.placement": [placement("res3", "res2"),
                                                    placement("res2", "res3")]})  # fmt: skip
    with pytest.raises(SpecError, match="duplicate trials"):
        load_spec(spec)


def test_a_dataset_mistake_in_a_spec_names_the_spec_and_its_key(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the data commands' wording (--split-file) told as spec keys
    spec = write_spec(tmp_path, {"dataset": {"name": "folder", "root": str(tmp_path)}})
    assert main(["run", str(spec), "--dry-run"]) == 2
    one_paragraph_error(capsys, f"{spec}: dataset folder:", "needs dataset.split_file")


# Weights and trainable layers, checked on meta-device models before anything trains (exit 2),
# not left to fail every trial.
BAD_MODEL_SETTINGS = {
    "trainable names no layer": ({"train.trainable": ["nonexistent_layer"]}, "selects no"),
    "pretrained is a text file": ({"train.pretrained": "notes.txt"}, "Cannot read checkpoint"),
    "pretrained is a folder": ({"train.pretrained": "."}, "is a folder"),
    "pretrained weights of another backbone": (
        {"train.pretrained": "other.pt"}, "does not fit this backbone"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_MODEL_SETTINGS))
def test_weights_that_do_not_fit_exit_2_before_training(tmp_path, monkeypatch, capsys, case):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not weights")
    torch.save({"conv.weight": torch.zeros(2, 2)}, "other.pt")
    changes, expected = BAD_MODEL_SETTINGS[case]
    assert main(["run", str(write_spec(tmp_path, changes)), "--no-progress"]) == 2
    one_paragraph_error(capsys, expected)
    assert not runs(tmp_path)  # no trial started


# Resume files: refused, damaged, foreign or stale ones are set aside with a warning naming
# them; the trial trains from its first epoch into a run with its full params.
def _malicious(path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch PWNED",))

    path.write_bytes(pickle.dumps(Payload()))


BAD_RESUME_FILES = {
    "a pickle that would run code": _malicious,
    "truncated": lambda path: path.write_bytes(b"PK\x03\x04 truncated"),
    "empty": lambda path: path.write_bytes(b""),
    "another model's weights": lambda path: __import__("torch").save(
        {
            "epoch": 0,
            "model": {"fc.weight": __import__("torch").zeros(2, 2)},
            "optimizer": {},
            "schedule": {},
            "torch_rng": __import__("torch").get_rng_state(),
            "owner": "x",
            "config_hash": "y",
        },
        path,
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(BAD_RESUME_FILES))
def test_an_unusable_resume_file_is_set_aside_and_the_trial_trains(
    tmp_path, monkeypatch, capsys, case
):
    monkeypatch.chdir(tmp_path)
    resume = tmp_path / "checkpoints" / "hostile" / KEY / "last.pt"
    resume.parent.mkdir(parents=True)
    BAD_RESUME_FILES[case](resume)
    assert main(["run", str(write_spec(tmp_path)), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"resume file {Path('checkpoints') / 'hostile' / KEY / 'last.pt'} not used" in err
    assert "weights_only" not in err and "Traceback" not in err
    assert not (tmp_path / "PWNED").exists()
    (run,) = runs(tmp_path)
    assert run.info.status == "FINISHED" and run.data.params["train.epochs"] == "1"
    assert list(resume.parent.parent.glob(f"{KEY}.last.pt.unusable-*"))  # kept, out of the way


def _interrupt_at_epoch(monkeypatch, epoch: int) -> None:
    original = engine.train_one_epoch

    def interrupted(stepper, loader, *, epoch, **kwargs):
        if epoch == interrupted.at:
            raise KeyboardInterrupt
        return original(stepper, loader, epoch=epoch, **kwargs)

    interrupted.at = epoch
    monkeypatch.setattr("harness.train.trial.train_one_epoch", interrupted)


def test_ctrl_c_ends_with_summary_exit_130_and_a_killed_resumable_run(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, {"train.epochs": 2})
    _interrupt_at_epoch(monkeypatch, 1)
    assert main(["run", str(spec), "--no-progress"]) == 130
    captured = capsys.readouterr()
    assert "0 finished" in captured.out and "interrupted (Ctrl-C)" in captured.err
    assert "Traceback" not in captured.err
    (run,) = runs(tmp_path)
    assert run.info.status == "KILLED"
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(spec), "--no-progress"]) == 0  # resumes epoch 1 in the same run
    (resumed,) = runs(tmp_path)
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"


def test_ctrl_c_while_the_run_is_marked_finished_keeps_the_trained_model(
    tmp_path, monkeypatch, capsys
):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, {"train.epochs": 2})
    original = MlflowClient.set_terminated

    def interrupted(self, run_id, status=None, *args, **kwargs):
        if status == "FINISHED":  # the trial trained and evaluated: Ctrl-C as it is marked done
            raise KeyboardInterrupt
        return original(self, run_id, status, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_terminated", interrupted)
    assert main(["run", str(spec), "--no-progress"]) == 130
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    trained = []
    train_epoch = engine.train_one_epoch

    def counted(stepper, loader, *, epoch, **kwargs):
        trained.append(epoch)
        return train_epoch(stepper, loader, epoch=epoch, **kwargs)

    monkeypatch.setattr("harness.train.trial.train_one_epoch", counted)
    assert main(["run", str(spec), "--no-progress"]) == 0
    assert trained == []  # its resume point was kept: only the evaluation runs again
    (run,) = runs(tmp_path)  # the same run, finished; no second run trained from epoch 0
    assert run.info.status == "FINISHED" and run.data.metrics["epochs_trained"] == 2
    assert not (tmp_path / "checkpoints" / "hostile" / KEY).exists()


def test_resuming_against_another_store_starts_a_clean_run_with_its_params(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, {"train.epochs": 2})
    _interrupt_at_epoch(monkeypatch, 1)  # killed after epoch 0's checkpoint
    assert main(["run", str(spec), "--no-progress"]) == 130
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert main(["run", str(spec), "--no-progress", "--tracking-uri", other]) == 0
    printed = capsys.readouterr()
    assert "not used" in printed.err  # the first store's resume file
    assert f"next: harness report {spec} --tracking-uri {other}   (" in printed.out  # this store
    store = MlflowStore(other, "hostile", create=False)
    (run,) = store.client.search_runs([store.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["trial_key"] == KEY
    assert run.data.params["train.epochs"] == "2"
    history = store.client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 1]  # trained from its first epoch


def test_a_finished_trial_runs_again_when_its_configuration_changes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = str(write_spec(tmp_path))
    assert main(["run", spec, "--no-progress"]) == 0
    assert main(["run", spec, "--no-progress"]) == 0  # same configuration: skipped
    assert "skip  " + KEY in capsys.readouterr().out
    assert main(["run", spec, "--no-progress", "--set", "train.lr=0.01"]) == 0
    assert "another configuration: a new run" in capsys.readouterr().out
    logged = runs(tmp_path)
    assert len(logged) == 2 and {r.info.status for r in logged} == {"FINISHED"}
    assert len({r.data.tags["config_hash"] for r in logged}) == 2
    how_not_what = ["--set", "train.lr=0.01", "--set", "train.sync_every=7"]
    assert main(["run", spec, "--no-progress", *how_not_what]) == 0
    assert "skip  " + KEY in capsys.readouterr().out  # the same result: still skipped


@pytest.mark.slow
def test_two_concurrent_runs_never_duplicate_or_break_the_store(tmp_path):
    """Two `harness run` of one spec start together on a fresh store, never leaving two runs
    or a broken store. Each round takes ~14 s on 2 cores, so CI runs 2 rounds; the issue's
    ten: `HARNESS_CONCURRENCY_ROUNDS=10 python -m pytest -k concurrent_runs`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for attempt in range(int(os.environ.get("HARNESS_CONCURRENCY_ROUNDS", "2"))):
        folder = tmp_path / f"attempt{attempt}"
        folder.mkdir()
        spec = write_spec(folder)
        command = [sys.executable, "-m", "harness", "run", str(spec), "--no-progress"]
        both = [
            subprocess.Popen(
                command,
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )  # fmt: skip
            for _ in range(2)
        ]
        outputs = [process.communicate(timeout=300)[0] for process in both]
        assert [process.returncode for process in both] == [0, 0], outputs
        logged = runs(folder)
        assert [r.info.status for r in logged] == ["FINISHED"], outputs  # exactly one run
        assert main(["run", str(spec), "--dry-run", "--tracking-uri",
                     f"sqlite:///{folder / 'mlflow.db'}"]) == 0  # fmt: skip


def test_a_full_disk_fails_the_trial_and_leaves_no_half_written_checkpoint(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)

    def full_disk(state, path):
        Path(path).write_bytes(b"\0" * 1024)  # what got written before the disk filled up
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr("harness.train.checkpoint.torch.save", full_disk)
    assert main(["run", str(write_spec(tmp_path)), "--no-progress"]) == 1
    assert "No space left on device" in capsys.readouterr().out
    assert not list((tmp_path / "checkpoints").rglob("*.tmp"))
    (run,) = runs(tmp_path)
    assert run.info.status == "FAILED"


def test_reports_count_only_runs_of_the_configuration_asked_for(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec = str(write_spec(tmp_path, {"grid.attention": ["none", "se"]}))
    assert main(["run", spec, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["report", spec, "--no-count", "--out", "stale", "--set", "train.lr=0.5"]) == 0
    assert "hostile: 0 done, 2 pending" in capsys.readouterr().out  # made with lr 0.001
    (tmp_path / "stale" / "of_a_model_no_longer_in_the_spec.png").write_bytes(b"")
    assert main(["report", spec, "--no-count", "--out", "stale"]) == 0
    assert "hostile: 2 done" in capsys.readouterr().out
    assert not (tmp_path / "stale" / "of_a_model_no_longer_in_the_spec.png").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("months of work")
    assert main(["report", spec, "--no-count", "--out", "mine"]) == 2
    one_paragraph_error(capsys, "--out mine", "not a harness report")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "months of work"
    (tmp_path / "a_file").write_text("")
    assert main(["report", spec, "--no-count", "--out", "a_file"]) == 2
    one_paragraph_error(capsys, "--out a_file")
    scores = next(tmp_path.glob("mlruns/**/per_video_scores.json"))
    scores.write_text("{not json")
    assert main(["report", spec, "--no-count", "--out", "damaged"]) == 2
    one_paragraph_error(capsys, "per_video_scores.json", "damaged or edited")


def _folder_dataset(base: Path, junk_train: int) -> Path:
    """A `folder` dataset, 2 classes × (2 train + 1 test) real AVIs, the first `junk_train`
    training videos of each class replaced by junk bytes; the spec training on it."""
    from tests.data_helpers import write_video

    lines = []
    for label, name in enumerate(("Left", "Right")):
        for i in range(3):
            relative = f"{name}/{name.lower()}_{i}.avi"
            if i < junk_train:
                (base / "mine" / name).mkdir(parents=True, exist_ok=True)
                (base / "mine" / relative).write_bytes(os.urandom(2048))
            else:
                write_video(base / "mine" / relative, frames=8, seed=label * 3 + i)
            lines.append(f"{relative} {'test' if i == 2 else 'train'}")
    (base / "split.txt").write_text("\n".join(lines) + "\n")
    dataset = {"name": "folder", "root": str(base / "mine"), "split_file": str(base / "split.txt"),
               "normalisation": "kinetics", "crop": "random", "workers": 0}  # fmt: skip
    return write_spec(base, {"model.num_classes": 2, "dataset": dataset})


def test_a_training_set_of_junk_videos_fails_the_trial_instead_of_finishing(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(_folder_dataset(tmp_path, junk_train=2)), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "trained on no sample" in captured.out
    assert "4 of 6 videos cannot be read" in captured.err  # named, not silently dropped
    (run,) = runs(tmp_path)
    assert run.info.status == "FAILED" and run.data.metrics["videos_unreadable"] == 4


def test_some_junk_training_videos_are_counted_and_named_in_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(_folder_dataset(tmp_path, junk_train=1)), "--no-progress"]) == 0
    assert "2 of 6 videos cannot be read" in capsys.readouterr().err
    (run,) = runs(tmp_path)
    assert run.info.status == "FINISHED" and run.data.metrics["videos_unreadable"] == 2


def _sigint_as_in_a_terminal() -> None:
    """The sweep starts with SIGINT delivered and handled by default, as from a shell, whatever
    the pytest worker that starts it inherited or blocked (a blocked or ignored SIGINT would pass
    on to the sweep and make Ctrl-C a no-op there)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_masks(pid: int) -> str:
    """The sweep's blocked/ignored/caught signal masks, for the failure message."""
    status = Path(f"/proc/{pid}/status")
    lines = status.read_text().splitlines() if status.exists() else []
    return " ".join(line for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


@pytest.mark.slow
def test_ctrl_c_on_a_parallel_sweep_leaves_every_cut_run_killed(tmp_path):
    """joblib terminates its workers on Ctrl-C; the runs they held must not stay RUNNING."""
    spec = write_spec(tmp_path, {"grid.attention": ["none", "se"], "train.epochs": 30})
    command = [sys.executable, "-m", "harness", "run", str(spec), "--no-progress", "--jobs", "2"]
    sweep = subprocess.Popen(command, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True,
                             preexec_fn=_sigint_as_in_a_terminal)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("checkpoints/hostile/*/last.pt"))) < 2:
        assert time.monotonic() < deadline and sweep.poll() is None, sweep.communicate()[0]
        time.sleep(0.1)
    dispositions = _signal_masks(sweep.pid)
    os.killpg(sweep.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    output = sweep.communicate(timeout=120)[0]
    assert sweep.returncode == 130, f"{dispositions}\n{output}"
    assert "Traceback" not in output and "0 finished" in output
    assert sorted(r.info.status for r in runs(tmp_path)) == ["KILLED", "KILLED"]


def test_a_trial_error_is_blamed_on_the_set_only_when_it_names_the_sets_value(tmp_path):
    """A trial the grid cannot build names every axis value; the error goes to a --set only
    when its problem names what that --set gave, not when the --set's axis merely shares the
    trial with the spec file's mistake."""
    path = tmp_path / "spec.yaml"
    trial = "trial (backbone=resnet3d_18, attention=eam, placement=stage_output)"
    spec_mistake = SpecError(f"{path}: {trial}: eam_s: option k_c=4 is not allowed.")
    assert _blamed_on_override(spec_mistake, path, ["grid.backbone=[resnet3d_18]"]) is spec_mistake
    placement = "trial (backbone=resnet3d_18, attention=eam, placement=nowhere)"
    set_mistake = SpecError(f"{path}: {placement}: Unknown placement 'nowhere'.")
    blamed = _blamed_on_override(set_mistake, path, ["grid.placement=[nowhere]"])
    assert str(blamed).startswith("--set 'grid.placement=[nowhere]' (applied to "), blamed
