"""`harness bench train` on a GPU: the run settings beat plain fp32 (the CPU checks are in
`test_training_path.py`, beside the proof that the benchmark steps like a trial)."""

import json

import pytest

from harness.cli import main
from harness.data.cache import build_cache
from harness.data.datasets import DatasetConfig
from harness.data.synthetic import materialise
from tests.conftest import requires_gpu


@requires_gpu()
@pytest.mark.gpu
def test_bench_train_on_gpu_beats_plain_fp32(capsys):
    args = ["bench", "train", "resnet3d_50", "--batch", "16", "--steps", "10", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["speedup"] > 1.5


@requires_gpu()
@pytest.mark.gpu
def test_bench_train_fed_from_the_clip_cache_waits_under_5_percent_for_data(tmp_path, capsys):
    """Issue 18's GPU target: the real loader from a clip cache (slices in threads, augmentation
    on the GPU) keeps a 3D ResNet-50's training step waiting for data under 5 % of its time."""
    root, split_dir = materialise("small")
    config = DatasetConfig("synthetic", root, split_dir=split_dir)
    build_cache(config, tmp_path / "cache", short_side=128)
    capsys.readouterr()  # the dataset's and the cache's notes: not the command's output
    args = ["bench", "train", "resnet3d_50", "--batch", "32", "--steps", "20", "--cache",
            str(tmp_path / "cache"), "--json"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data_wait"] < 0.05, result["loops"]
