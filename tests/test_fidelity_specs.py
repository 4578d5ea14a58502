"""Issue 17's spec and cost items: Hara's from-scratch recipe as a preset, SGD's dampening in
the EAM specs, AARM Table 7's rows, Table 6's parameter column at 101 classes, and the cost
ledger of the inserted attention modules (per insertion point, summed, per video)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from harness.cli import main
from harness.config import load_spec
from harness.train.optim import make_optimizer, make_schedule
from registry import ConfigError
from tests.conftest import ROOT

EXPERIMENTS = ROOT / "experiments"
EAM_SPECS = ["table1.yaml", "table2.yaml", "table3.yaml", "table4.yaml", "table5.yaml",
             "table5_ucf101.yaml"]  # fmt: skip
SCRATCH = [("aarm_table1.yaml", "c3d"), ("aarm_table5.yaml", "resnet3d_18"),
           ("aarm_table5_hmdb51.yaml", "resnet3d_18")]  # fmt: skip


def _trial(spec, backbone: str, **fields):
    return next(
        t for t in spec.trials
        if t.backbone == backbone and all(getattr(t, k) == v for k, v in fields.items())
    )  # fmt: skip


@pytest.mark.parametrize(("name", "backbone"), SCRATCH)
def test_rows_trained_from_scratch_use_haras_recipe(name: str, backbone: str):
    spec = load_spec(EXPERIMENTS / name)
    train = spec.train_for(_trial(spec, backbone))
    recipe = (train.preset, train.pretrained, train.optimizer, train.lr, train.momentum,
              train.dampening, train.weight_decay, train.schedule, train.plateau_patience,
              train.batch_size, train.normalisation)  # fmt: skip
    assert recipe == ("hara_scratch", None, "sgd", 0.1, 0.9, 0.9, 1e-3, "plateau", 10, 128,
                      "activitynet"), recipe  # fmt: skip
    assert spec.dataset.normalisation == "imagenet"  # the fine-tuned 2D rows keep ImageNet's
    two_d = next(t for t in spec.trials if t.backbone.startswith(("resnet2d", "vgg")))
    assert spec.train_for(two_d).lr == 0.001 and spec.train_for(two_d).normalisation is None


def test_a_preset_fills_in_only_what_is_not_given_beside_it(tmp_path: Path):
    raw = yaml.safe_load((EXPERIMENTS / "aarm_table5.yaml").read_text())
    raw["per_trial"].append({"match": {"backbone": "resnet3d_18"},
                             "train": {"preset": "hara_scratch", "batch_size": 64}})  # fmt: skip
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    train = spec.train_for(_trial(spec, "resnet3d_18"))
    assert (train.batch_size, train.lr) == (64, 0.1)
    smoke = load_spec(path, smoke=True)  # --smoke still shrinks what a preset brings
    shrunk = smoke.train_for(_trial(smoke, "resnet3d_18"))
    assert (shrunk.epochs, shrunk.batch_size, shrunk.lr) == (1, 4, 0.1)
    raw["per_trial"][-1]["train"]["preset"] = "hara_scrach"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"preset' = 'hara_scrach' is not a training preset"):
        load_spec(path)


def test_the_from_scratch_rows_train_on_the_recipes_normalisation():
    from harness.train.inputs import trial_data

    spec = load_spec(EXPERIMENTS / "aarm_table5.yaml", smoke=True)
    data = trial_data(spec, _trial(spec, "resnet3d_18"))
    assert data.train_set.protocol.normalisation == "activitynet"  # the dataset says imagenet
    assert spec.dataset.normalisation == "imagenet"


def test_the_optimiser_and_schedule_take_dampening_and_patience():
    spec = load_spec(EXPERIMENTS / "aarm_table5.yaml")
    train = spec.train_for(_trial(spec, "resnet3d_18"))
    model = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(model, train)
    assert optimizer.param_groups[0]["dampening"] == 0.9
    assert make_schedule(optimizer, train).patience == 10


@pytest.mark.parametrize("name", EAM_SPECS)
def test_eam_specs_use_the_dampening_of_haras_code(name: str):
    spec = load_spec(EXPERIMENTS / name)
    assert {spec.train_for(t).dampening for t in spec.trials} == {0.9}


def test_keys_added_later_leave_the_config_hash_of_earlier_runs_unchanged(tmp_path: Path):
    raw = yaml.safe_load((EXPERIMENTS / "quickstart.yaml").read_text())
    hashes = []
    for extra in ({}, {"dampening": 0.0, "plateau_patience": 2, "normalisation": None},
                  {"dampening": 0.9}):  # fmt: skip
        path = tmp_path / f"spec{len(hashes)}.yaml"
        path.write_text(yaml.safe_dump({**raw, "train": {**raw["train"], **extra}}))
        spec = load_spec(path)
        hashes.append(spec.config_hash(spec.trials[0]))
    assert hashes[0] == hashes[1] != hashes[2]


def test_table7_c3d_starts_from_sports1m_weights_and_lists_tsn_aarmnet():
    spec = load_spec(EXPERIMENTS / "aarm_table7.yaml")
    train = spec.train_for(_trial(spec, "c3d"))
    assert (train.pretrained, train.normalisation) == ("weights/c3d.pickle", "activitynet")
    for name, column, value in [("aarm_table7.yaml", "ucf101_split1", 96.1),
                                ("aarm_table7_hmdb51.yaml", "hmdb51_split1", 70.4)]:  # fmt: skip
        cited = {r.label: r.values for r in load_spec(EXPERIMENTS / name).cited}
        assert cited["TSN+ AARMNet (Ours)"] == {column: value}
    papers = yaml.safe_load((EXPERIMENTS / "papers" / "aarm.yaml").read_text())
    table7 = next(t for t in papers["tables"] if t["table"] == 7)
    assert "TSN+ AARMNet (Ours)" in table7["rows"] and "AARMNet (Ours)" in table7["rows"]


def test_table6_parameters_are_compared_at_101_classes_only():
    hmdb = load_spec(EXPERIMENTS / "aarm_table6_hmdb51.yaml")
    assert not any("params_m" in hmdb.reference_for(t) for t in hmdb.trials)
    ucf = load_spec(EXPERIMENTS / "aarm_table6.yaml")
    counted = [t for t in ucf.trials if "params_m" in ucf.reference_for(t)]
    assert counted and {t.num_classes for t in counted} == {101}


@pytest.mark.parametrize("attention", ["se", "eam", "aarm"])
def test_the_ledger_is_what_the_modules_add_to_the_network(attention: str):
    from harness.analysis.complexity import measure_complexity

    spec = load_spec(EXPERIMENTS / "quickstart.yaml", ["grid.attention=[none, se, eam, aarm]"])
    plain, with_module = (_trial(spec, "resnet3d_10", attention=a) for a in ("none", attention))
    costs = [measure_complexity(t.resolve().build(), t.input_shape(t.resolve()))
             for t in (plain, with_module)]  # fmt: skip
    base, ledger = costs
    assert not base.modules and ledger.modules
    params = sum(p.numel() for p in with_module.resolve().build().parameters())
    plain_params = sum(p.numel() for p in plain.resolve().build().parameters())
    assert ledger.module_sum("params") == params - plain_params
    for convention, attribute in (("paper", "flops_paper"), ("fvcore", "flops_fvcore")):
        added = ledger.totals[convention].flops - base.totals[convention].flops
        assert ledger.module_sum(attribute) == added, convention


def test_profile_json_and_table_carry_the_ledger(capsys):
    assert main(["profile", str(EXPERIMENTS / "quickstart.yaml"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    eam = next(r for r in rows if r["attention"] == "eam")
    assert [m["module"] for m in eam["modules"]] == [
        f"stage_attention.res{i}" for i in (2, 3, 4, 5)
    ]
    assert eam["attention_params"] == sum(m["params"] for m in eam["modules"]) == 4 * 6
    assert eam["attention_gflops_paper"] == pytest.approx(
        sum(m["gflops_paper"] for m in eam["modules"])
    )
    assert eam["views_per_video"] == 3  # eval: 3 evenly spaced clips
    assert eam["gflops_per_video_paper"] == pytest.approx(3 * eam["gflops_paper"])
    assert main(["profile", str(EXPERIMENTS / "quickstart.yaml")]) == 0
    text = capsys.readouterr().out
    for header in ("GFLOPs/clip [paper]", "GFLOPs/clip [fvcore]", "attn. GFLOPs [paper]",
                   "GFLOPs/video [paper]", "attention modules per insertion point"):  # fmt: skip
        assert header in text
    # each ledger line names its input: one model at two clip lengths is two sets of lines
    ledger = text.split("attention modules per insertion point:")[1].split("\n\n")[0]
    shape = "×".join(map(str, eam["input_shape"][1:]))
    assert re.search(rf"eam @ stage_output +{shape} +stage_attention.res2 ", ledger)
