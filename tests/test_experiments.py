"""The paper specs in experiments/: each loads, smoke-runs on synthetic data and reports; every
table row of both papers is covered; a dry run says what a machine lacks."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from harness.cli import main
from harness.config import matches, two_stream_pairs
from harness.config.spec import load_spec
from tests.conftest import ROOT

SPECS = sorted((ROOT / "experiments").glob("*.yaml"))
PAPER_SPECS = [p for p in SPECS if p.name != "quickstart.yaml"]
ONE_OTHER_BACKBONE = ("aarm_table1", "aarm_table5")  # their last trial: C3D; 3D ResNet-18


def representative(spec_path: Path) -> list[str]:
    """A small subset of a spec's grid for CI: its first trial and its last, and for two-stream
    specs the flow partner of the first RGB model, so that fusion runs too. The whole grid is
    smoke-run by hand (`harness run SPEC --smoke`); its timings are in the closing note."""
    spec = load_spec(spec_path, smoke=True)
    keys = [spec.trials[0].key, spec.trials[-1].key]
    pairs = two_stream_pairs(spec)
    if pairs:  # a two-stream model; C3D and the 3D ResNet from scratch once each in CI
        keys = [pairs[0].rgb.key, pairs[0].flow.key]
        keys += [spec.trials[-1].key] if spec_path.stem in ONE_OTHER_BACKBONE else []
    return list(dict.fromkeys(keys))


def _trained(spec_path: Path) -> set[tuple[str, str]]:
    """What CI's smoke run of a spec trains: its representative trials with their settings."""
    spec, keys = load_spec(spec_path, smoke=True), representative(spec_path)
    return {(t.key, repr(spec.train_for(t))) for t in spec.trials if t.key in keys}


def _sibling(spec_path: Path) -> Path | None:
    """The spec of the same table on the other dataset column (`aarm_table2_hmdb51` →
    `aarm_table2`, `table5_ucf101` → `table5`) when CI's smoke run of the sibling trains all that
    the twin's would, with the same data and evaluation: then training the sibling in CI covers
    both, and the twin is checked without training (see below)."""
    stem = spec_path.stem.removesuffix("_hmdb51").removesuffix("_ucf101")
    sibling = spec_path.with_name(f"{stem}.yaml")
    if sibling == spec_path or not sibling.is_file():
        return None
    twin, other = load_spec(spec_path, smoke=True), load_spec(sibling, smoke=True)
    covered = _trained(spec_path) <= _trained(sibling)
    return sibling if covered and (twin.dataset, twin.eval) == (other.dataset, other.eval) else None


SIBLINGS = {p: _sibling(p) for p in SPECS}  # each spec loaded once at collection
TRAINED = [p for p in SPECS if SIBLINGS[p] is None]
TWINS = [p for p in SPECS if SIBLINGS[p] is not None]


def test_twins_are_only_the_dataset_columns_of_one_table():
    assert {p.stem for p in TWINS} >= {"aarm_table2_hmdb51", "aarm_table7_hmdb51", "table5_ucf101"}
    assert all(p.stem.endswith(("_hmdb51", "_ucf101")) for p in TWINS)


@pytest.mark.parametrize("spec_path", TWINS, ids=[p.stem for p in TWINS])
def test_a_twin_spec_checks_and_reports_without_training(spec_path, tmp_path, monkeypatch, capsys):
    """What its CI smoke run would train, its sibling's trains: here its dry run
    (preflight on the smoke data) and its report (every row pending) must still work."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(spec_path), "--smoke", "--dry-run", "--no-progress"]) == 0
    assert main(["report", str(spec_path), "--smoke", "--no-count"]) == 0
    spec = load_spec(spec_path, smoke=True)
    table = pd.read_csv(tmp_path / "reports" / spec.name / "table.csv")
    assert set(table.state) <= {"pending", "cited"} and (table.state == "pending").any()


@pytest.mark.slow
@pytest.mark.parametrize("spec_path", TRAINED, ids=[p.stem for p in TRAINED])
def test_every_spec_smoke_runs_and_builds_its_report(spec_path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    keys = representative(spec_path)
    trials = [arg for key in keys for arg in ("--trial", key)]
    # the specs that also train C3D (16×112² clips) or the 3D ResNet-18: one video per class
    # (their HMDB51 twins' trials then run here on 5 videos instead of 10: the same code path)
    fewer = ["--set", "dataset.subset=1"] if spec_path.stem in ONE_OTHER_BACKBONE else []
    assert main(["run", str(spec_path), "--smoke", "--no-progress", *trials, *fewer]) == 0
    printed = capsys.readouterr()
    assert f"{len(keys)} finished" in printed.out
    spec = load_spec(spec_path, smoke=True)
    if load_spec(spec_path).train and load_spec(spec_path).train.pretrained:
        assert "replaced by random initialisation" in printed.err
    assert main(["report", str(spec_path), "--smoke", "--no-count", *fewer]) == 0
    out = tmp_path / "reports" / spec.name
    table = pd.read_csv(out / "table.csv")
    done = table[table.state == "done"]
    expected = len(keys) + (1 if two_stream_pairs(spec) else 0)  # + the two-stream row
    assert len(done) == expected, table[["model", "state"]]
    readme = (out / "README.md").read_text()
    assert "synthetic (tiny) split 1 ours" in readme  # our accuracy, named after the real data
    assert not re.search(r"(HMDB-51|UCF-101)[^|]* ours", readme)
    pairs = two_stream_pairs(spec)
    if pairs and pairs[0].rgb.key in keys:
        fused = next(p for p in pairs if p.rgb.key == keys[0]).key.rsplit("-split", 1)[0]
        assert table.set_index("trial").loc[fused, "state"] == "done"  # the two-stream row


@pytest.mark.parametrize("spec_path", PAPER_SPECS, ids=[p.stem for p in PAPER_SPECS])
def test_every_reference_entry_matches_a_row_of_its_spec(spec_path):
    spec = load_spec(spec_path)
    rows = [t.fields() for t in spec.trials] + [p.fields() for p in two_stream_pairs(spec)]
    for reference in spec.references:
        if not reference.cited:
            assert any(matches(row, reference.match) for row in rows), reference.match


def test_paper_hyper_parameters_are_in_the_specs():
    table4 = load_spec(ROOT / "experiments" / "table4.yaml")
    resnet, resnext = table4.trials[0], table4.trials[5]
    assert resnet.backbone == "resnet3d_50" and resnext.backbone == "resnext3d_101"
    train = table4.train_for(resnet)
    settings = (train.optimizer, train.momentum, train.weight_decay, train.lr)
    assert settings == ("sgd", 0.9, 1e-5, 1e-3)
    assert (train.schedule, train.warmup_epochs, train.milestones, train.epochs) == (
        "eam",
        15,
        [45, 75],
        100,
    )
    assert train.trainable == ["layer4", "fc", "attention"]
    assert table4.dataset.normalisation == "activitynet"
    assert table4.train_for(resnext).lr == 2e-3
    assert table4.train_for(resnext).pretrained == "weights/resnext-101-kinetics.pth"
    assert table4.train_for(table4.trials[-1]).pretrained == "weights/resnext-101-64f-kinetics.pth"
    aarm = load_spec(ROOT / "experiments" / "aarm_table6.yaml")
    flow = next(t for t in aarm.trials if t.stream == "flow")
    assert (aarm.train.batch_size, aarm.train.lr, aarm.train.momentum) == (50, 1e-3, 0.9)
    assert aarm.trials[0].size == 224
    assert (aarm.train_for(aarm.trials[0]).epochs, aarm.train_for(flow).epochs) == (200, 250)


def test_table4_dry_run_lists_15_trials_and_says_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # not ready: exit 2, as for any missing dataset or checkpoint, so a script can test for it
    assert main(["run", str(ROOT / "experiments" / "table4.yaml"), "--dry-run"]) == 2
    out = capsys.readouterr().out
    assert out.count("todo  ") == 15
    tail = out[out.index("Not ready to run") :]
    assert "data/hmdb51/videos" in tail and "testTrainMulti_7030_splits" in tail
    assert "harness data check hmdb51 --root data/hmdb51/videos" in tail
    assert "harness data prepare hmdb51" in tail
    for weights in ("resnet-50-kinetics.pth", "resnext-101-kinetics.pth",
                    "resnext-101-64f-kinetics.pth"):  # fmt: skip
        assert f"weights/{weights}' not found, needed by 5 trial(s)" in tail
    assert out.rstrip().endswith("never downloads.")


def test_coverage_maps_every_row_of_both_papers(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "coverage.md"
    store = f"sqlite:///{tmp_path}/m.db"
    assert main(["coverage", "--out", str(out), "--tracking-uri", store]) == 0
    # it only reads: a store not made yet (a mistyped name, say) is said, and left unmade
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coverage.md"]
    assert f"no store at {tmp_path}/m.db yet, so no row shows as smoke-tested" in (
        " ".join(capsys.readouterr().err.split())
    )
    text = out.read_text()
    assert f"Store read: `{store}` (no store there yet)." in text
    assert "UNMAPPED" not in text.split("Unmapped: 0.")[1]
    catalogued = 0
    for catalogue in (ROOT / "experiments" / "papers").glob("*.yaml"):
        for table in yaml.safe_load(catalogue.read_text())["tables"]:
            for row in table["rows"]:
                assert f"| {row} " in text, row
                catalogued += len(table["specs"])
    # Both papers' tables: EAM 1–5 and AARM 1–7.
    tables = set(re.findall(r"\| (EAM|AARM) \(\w+ et al\.\) +\| (\d) ", text))
    assert len(tables) == 12
    assert text.count("\n| ") - 1 >= catalogued  # one line per row and spec (more if repeated)


def test_smoke_keeps_the_grid_and_shrinks_the_rest():
    real = load_spec(ROOT / "experiments" / "aarm_table5.yaml")
    smoke = load_spec(ROOT / "experiments" / "aarm_table5.yaml", smoke=True)
    assert len(smoke.trials) == len(real.trials)
    assert [t.backbone for t in smoke.trials] == [t.backbone for t in real.trials]
    assert smoke.name == "aarm_table5_ucf101_smoke"
    assert smoke.dataset.root == "synthetic:tiny" and smoke.dataset.subset == 2
    assert all(smoke.train_for(t).pretrained is None for t in smoke.trials)
    assert all(smoke.train_for(t).epochs == 1 for t in smoke.trials)
    c3d = load_spec(ROOT / "experiments" / "aarm_table1.yaml", smoke=True)
    assert {t.size for t in c3d.trials if t.backbone == "c3d"} == {112}  # C3D's fixed input
    # include rows take the smoke crop too: AARM Table 5's 3D ResNet-18 rows are 112² in the paper
    assert {t.size for t in real.trials if t.backbone == "resnet3d_18"} == {112}
    assert {t.size for t in smoke.trials if t.backbone == "resnet3d_18"} == {32}


def test_a_set_train_key_holds_for_every_trial_over_per_trial_settings_and_presets(capsys):
    """AARM Table 1 trains its flow stream 250 epochs (`per_trial`) and C3D by Hara's preset
    (200): `--set train.epochs=2` trains all of them two, and says which values it replaced."""
    path = ROOT / "experiments" / "aarm_table1.yaml"
    epochs = {t.stream + "-" + t.backbone: load_spec(path).train_for(t).epochs
              for t in load_spec(path).trials}  # fmt: skip
    assert epochs == {"rgb-resnet2d_50": 200, "flow-resnet2d_50": 250, "rgb-c3d": 200}
    capsys.readouterr()
    spec = load_spec(path, ["train.epochs=2", "train.lr=0.5"])
    assert {(spec.train_for(t).epochs, spec.train_for(t).lr) for t in spec.trials} == {(2, 0.5)}
    assert spec.train_for(spec.trials[-1]).dampening == 0.9  # C3D: the rest of its preset stays
    notes = capsys.readouterr().err
    assert "per_trial[2]'s epochs = 250" in notes and "per_trial[1]'s epochs = 200" in notes
    assert "per_trial[1]'s lr = 0.1" in notes
