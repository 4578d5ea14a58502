"""`harness bench train` on a GPU: the run settings beat plain fp32 (the CPU checks are in
`test_training_path.py`, beside the proof that the benchmark steps like a trial)."""

import json

import pytest

from harness.cli import main
from tests.conftest import requires_gpu


@requires_gpu()
@pytest.mark.gpu
def test_bench_train_on_gpu_beats_plain_fp32(capsys):
    args = ["bench", "train", "resnet3d_50", "--batch", "16", "--steps", "10", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["speedup"] > 1.5
