"""Dataset formats: every registered format describes itself and reads a tiny tree of real
videos, and a format written as one file outside the package, registered through the
`harness.datasets` entry point, trains and logs a real trial end to end.

The plugin is "installed" as a single module next to a minimal `.dist-info` folder holding its
`entry_points.txt`, in a private folder put on PYTHONPATH: no pip, and the environment is left
as it was found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from harness.config.spec import SpecError, load_spec
from harness.data.check import check_dataset
from harness.data.datasets import open_dataset
from harness.data.formats import FORMATS, PLUGINS, DatasetConfig
from harness.data.splits import DataError
from harness.data.synthetic import write_split_lists
from tests.conftest import ROOT
from tests.data_helpers import write_video

CLASSES = ["Jump", "Wave"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """One real 12-frame AVI; the trees hard-link it at every path their lists name."""
    path = tmp_path_factory.mktemp("video") / "one.avi"
    write_video(path, frames=12, size=(32, 24))
    return path


def _link(video: Path, root: Path, relatives: list[str]) -> None:
    for relative in relatives:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        os.link(video, root / relative)


def _ucf101_tree(base: Path, video: Path, name: str = "ucf101") -> tuple[DatasetConfig, int, int]:
    """UCF101's layout with its split folder beside the videos (found without --split-dir)."""
    write_split_lists(base / "ucfTrainTestlist", CLASSES, clips_per_group=1)
    relatives = [
        f"{c}/v_{c}_g{g:02d}_c01.avi" for c in CLASSES for g in range(1, 26)
    ]  # 25 groups per class; split 1 tests groups 1-7
    _link(video, base / "UCF-101", relatives)
    return DatasetConfig(name, base / "UCF-101", split=1), 2 * 18, 2 * 7


def _hmdb51_tree(base: Path, video: Path) -> tuple[DatasetConfig, int, int]:
    """One split file per class: tag 1 train, 2 test, 0 unused, with HMDB's trailing space."""
    splits = base / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for name in CLASSES:
        lines = [f"{name}_{i}.avi {tag} " for i, tag in enumerate((1, 1, 2, 0))]
        (splits / f"{name}_test_split1.txt").write_text("\n".join(lines) + "\n")
        _link(video, base / "hmdb51", [f"{name}/{name}_{i}.avi" for i in range(4)])
    return DatasetConfig("hmdb51", base / "hmdb51", split=1), 2 * 2, 2 * 1


def _folder_tree(base: Path, video: Path) -> tuple[DatasetConfig, int, int]:
    relatives = [f"{c}/{c.lower()}_{i}.mp4" for c in CLASSES for i in range(3)]
    _link(video, base / "mine", relatives)
    lines = [f"{r} {'test' if r.endswith('_2.mp4') else 'train'}" for r in relatives]
    (base / "split.txt").write_text("\n".join(lines) + "\n")
    return DatasetConfig("folder", base / "mine", split_file=base / "split.txt"), 2 * 2, 2 * 1


# A tiny tree per built-in format: `(config, train videos, test videos)`, classes CLASSES.
TREES: dict[str, Callable[[Path, Path], tuple[DatasetConfig, int, int]]] = {
    "ucf101": _ucf101_tree,
    "synthetic": lambda base, video: _ucf101_tree(base, video, "synthetic"),
    "hmdb51": _hmdb51_tree,
    "folder": _folder_tree,
}


@pytest.mark.parametrize("name", FORMATS.names())
def test_each_format_describes_itself_and_reads_a_tiny_tree(name, tmp_path, video):
    found = FORMATS.get(name)
    assert found.name == name and name in FORMATS
    assert found.description.strip() and "\n" not in found.description
    if name in PLUGINS:
        pytest.skip(f"{name} is an installed plugin; its own package tests it")
    assert name in TREES, f"add a tiny tree for the new format {name!r} to TREES"
    config, train_count, test_count = TREES[name](tmp_path, video)
    lists, train, test = open_dataset(config)
    assert sorted(lists.classes, key=str.lower) == sorted(CLASSES, key=str.lower)
    assert (len(train), len(test)) == (train_count, test_count)
    assert {e.kind for e in train + test} == {"video"}
    report = check_dataset(config, min_frames=12, workers=1)
    assert {v["status"] for v in report["videos"].values()} == {"ok"}
    if found.splits:
        with pytest.raises(DataError, match="does not exist"):
            open_dataset(replace(config, split=max(found.splits) + 1))


def test_an_unknown_dataset_name_is_a_spec_error_naming_key_value_and_names(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "name: bad\nmodel: {num_classes: 2}\ngrid: {backbone: [resnet3d_10]}\n"
        "dataset: {name: ucf102, root: x}\n"
    )
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    message = str(error.value)
    assert "key 'dataset.name'" in message and "'ucf102'" in message
    assert "Did you mean 'ucf101'?" in message
    assert f"Accepted values: {', '.join(FORMATS.names())}." in message


# --- a plugin format, one file --------------------------------------------------------------------

TOY_FORMAT = '''
"""A toy dataset format in one file: videos anywhere under the root, and `labels.txt` in the
root with one `<video> <class> train|test` line per video; classes sorted by name."""

from harness.data.formats import DatasetFormat
from harness.data.splits import DataError, Sample, SplitLists


def read_lists(config):
    path = config.root / "labels.txt"
    if not path.is_file():
        raise DataError(f"{str(path)!r} does not exist: write '<video> <class> train|test' lines.")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    classes = sorted({label for _, label, _ in rows})
    subsets = {"train": [], "test": []}
    for video, label, subset in rows:
        subsets[subset].append(Sample(video, classes.index(label)))
    return SplitLists(classes, subsets["train"], subsets["test"])


FORMAT = DatasetFormat(
    name="toy",
    description="videos anywhere under the root, and labels.txt of '<video> <class> "
    "train|test' lines",
    read_lists=read_lists,
)
'''

SPEC = """
name: toy_run
model: {num_classes: 2, frames: 8, size: 32}
grid: {backbone: [resnet3d_10], attention: [none]}
dataset: {name: toy, root: ROOT, normalisation: kinetics, crop: random, workers: 0}
train: {epochs: 1, batch_size: 2, optimizer: adamw, lr: 0.001, seeds: [0]}
eval: {clips: even, count: 1, batch_size: 2}
"""


def _install(folder: Path, module: str, source: str, entry_points: str) -> Path:
    """`module.py` and a minimal `.dist-info` declaring its entry points, in `folder`."""
    folder.mkdir()
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    info = folder / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return folder


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> tuple[Path, Path]:
    """(plugin folder, dataset root): 2 classes × 2 real videos of 12 frames at 32×32, flat."""
    base = tmp_path_factory.mktemp("toy")
    plugin = _install(base / "plugin", "toy_format", TOY_FORMAT, "[harness.datasets]\n"
                      "toy = toy_format:FORMAT\n")  # fmt: skip
    root = base / "videos"
    lines = []
    for i, (name, subset) in enumerate(
        [(c, s) for c in ("jump", "wave") for s in ("train", "test")]
    ):
        write_video(root / f"{name}_{subset}.avi", frames=12, size=(32, 32), seed=i)
        lines.append(f"{name}_{subset}.avi {name} {subset}")
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    return plugin, root


def _harness(cwd: Path, plugin: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugin), str(ROOT)]),
        "HARNESS_CACHE": str(cwd / "cache"),
    }
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_a_one_file_plugin_format_is_checked_and_trains_end_to_end(toy, tmp_path):
    from mlflow.tracking import MlflowClient

    plugin, root = toy
    done = _harness(
        tmp_path, plugin, "data", "check", "toy", "--root", str(root), "--min-frames", "8", "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["classes"], report["train"], report["test"]) == (2, 2, 2)
    assert {v["status"] for v in report["videos"].values()} == {"ok"}

    spec = tmp_path / "toy.yaml"
    spec.write_text(SPEC.replace("ROOT", json.dumps(str(root))))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    done = _harness(tmp_path, plugin, "run", str(spec), "--no-progress", "--tracking-uri", uri)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "1 finished" in output and "warning" not in output
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("toy_run")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["dataset"] == "toy"


def test_a_broken_plugin_format_is_reported_and_skipped(tmp_path):
    broken = _install(tmp_path / "plugin", "broken_format", "raise RuntimeError('oops')\n",
                      "[harness.datasets]\nbroken = broken_format:FORMAT\n")  # fmt: skip
    code = "from harness.data.formats import FORMATS; print(' '.join(FORMATS))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(broken), str(ROOT)])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["folder", "hmdb51", "synthetic", "ucf101"]
    assert "plugin 'broken' (broken_format:FORMAT) was not registered: RuntimeError: oops" in (
        done.stderr
    )
