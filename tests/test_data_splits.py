"""The official split files, read as distributed, against a tree of real tiny videos."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.splits import hmdb51_split, ucf101_split
from tests.conftest import FIXTURES_REASON, SHARED
from tests.data_helpers import write_video

SPLITS = SHARED / "fixtures" / "splits"
pytestmark = pytest.mark.skipif(not SPLITS.is_dir(), reason=FIXTURES_REASON)

UCF_COUNTS = {1: (9537, 3783), 2: (9586, 3734), 3: (9624, 3696)}


def _tree(root: Path, relatives: set[str], video: Path, rename=lambda r: r) -> None:
    """Hard links of one real video at every path the split files name."""
    for relative in relatives:
        target = root / rename(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(video, target)


def _linked_dataset(base: Path, reader, split_dir: Path, folder: str, rename=lambda r: r) -> Path:
    """Every video that splits 1–3 name, as a hard link of one real 16-frame video."""
    video = base / "one.avi"
    write_video(video, frames=16)
    relatives = set()
    for split in (1, 2, 3):
        lists = reader(split_dir, split)
        relatives |= {s.path for s in lists.train + lists.test}
    _tree(base / folder, relatives, video, rename)
    return base / folder


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory) -> Path:
    # The folder HandstandPushups holds v_HandStandPushups_*; write some with the other spelling
    # to check that either is accepted.
    respell = lambda r: r.replace("v_HandStandPushups_g0", "v_HandstandPushups_g0")  # noqa: E731
    base = tmp_path_factory.mktemp("ucf")
    return _linked_dataset(base, ucf101_split, SPLITS / "ucf101", "UCF-101", respell)


@pytest.fixture(scope="module")
def hmdb_root(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("hmdb")
    return _linked_dataset(base, hmdb51_split, SPLITS / "hmdb51", "hmdb51")


def _check(capsys, *args: str) -> dict:
    assert main(["data", "check", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
@pytest.mark.parametrize("split", [1, 2, 3])
def test_ucf101_counts_and_health(ucf_root, capsys, split):
    report = _check(
        capsys,
        "ucf101",
        "--root",
        str(ucf_root),
        "--split-dir",
        str(SPLITS / "ucf101"),
        "--split",
        str(split),
    )
    assert (report["train"], report["test"]) == UCF_COUNTS[split]
    assert report["classes"] == 101 and report["split"] == split
    statuses = {v["status"] for v in report["videos"].values()}
    assert statuses == {"ok"}, statuses
    assert len(report["videos"]) == sum(UCF_COUNTS[split])
    assert all(v["frames"] == 16 for v in report["videos"].values())


@pytest.mark.slow
@pytest.mark.parametrize("split", [1, 2, 3])
def test_hmdb51_counts_and_health(hmdb_root, capsys, split):
    report = _check(
        capsys,
        "hmdb51",
        "--root",
        str(hmdb_root),
        "--split-dir",
        str(SPLITS / "hmdb51"),
        "--split",
        str(split),
    )
    assert (report["train"], report["test"], report["classes"]) == (3570, 1530, 51)
    assert {v["status"] for v in report["videos"].values()} == {"ok"}


def test_ucf101_labels_come_from_classind_not_sorting():
    lists = ucf101_split(SPLITS / "ucf101", 1)
    # classInd is case-insensitive alphabetical; Python's sorted() swaps these two pairs
    assert lists.classes.index("Hammering") == 34 and lists.classes.index("HammerThrow") == 35
    assert lists.classes.index("JumpingJack") < lists.classes.index("JumpRope")
    assert sorted(lists.classes) != lists.classes
    by_path = {s.path: s.label for s in lists.train}
    assert by_path["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"] == 0
    assert lists.test[0].label == 0  # test lists carry no label: it comes from the folder
    assert {s.label for s in lists.test} == set(range(101))
    train, test = {s.path for s in lists.train}, {s.path for s in lists.test}
    assert not train & test and len(train | test) == 13320


def test_hmdb51_tags_and_sorted_classes():
    lists = hmdb51_split(SPLITS / "hmdb51", 2)
    assert lists.classes == sorted(lists.classes) and lists.classes[0] == "brush_hair"
    per_class = [sum(1 for s in lists.train if s.label == c) for c in range(51)]
    assert set(per_class) == {70}
    assert lists.train[0].path.startswith("brush_hair/") and lists.train[0].path.endswith(".avi")
