"""`harness bench train`: both loops measured on the same model in one run."""

import json

import pytest

from harness.cli import main
from tests.conftest import requires_gpu


def test_bench_train_reports_both_loops_and_their_ratio(capsys):
    args = ["bench", "train", "resnet3d_10", "--attention", "eam", "--placement", "stage_output",
            "--batch", "2", "--frames", "8", "--size", "32", "--steps", "2", "--json"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    optimised, reference = result["loops"]
    assert (optimised["name"], reference["name"]) == ("optimised", "reference")
    assert result["input"] == [2, 3, 8, 32, 32]
    for loop in result["loops"]:
        assert loop["clips_per_s"] > 0 and loop["forward_ms"] > 0 and loop["backward_ms"] > 0
        achieved = loop["clips_per_s"] * result["train_gflops_per_clip"] / 1e3  # TFLOP/s
        assert loop["mfu"] == pytest.approx(achieved / result["matmul_tflops"])
        assert loop["peak_memory_mb"] > 0
    assert result["speedup"] == pytest.approx(optimised["clips_per_s"] / reference["clips_per_s"])
    assert result["matmul_tflops"] > 0 and result["train_gflops_per_clip"] > 0


@requires_gpu()
@pytest.mark.gpu
def test_bench_train_on_gpu_beats_plain_fp32(capsys):
    args = ["bench", "train", "resnet3d_50", "--batch", "16", "--steps", "10", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["speedup"] > 1.5
