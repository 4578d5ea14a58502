"""A third-party package registers an attention module and a backbone through entry points.

The package is written and installed here (into a private folder put on PYTHONPATH, so the test
leaves the environment as it found it); `harness list` and `harness profile` then use its names
exactly like built-ins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "harness-demo-plugin"
version = "0.1.0"

[project.entry-points."harness.attention"]
demo_gate = "demo_plugin:DemoGate"

[project.entry-points."harness.backbones"]
demo_net = "demo_plugin:demo_net_entry"

[tool.setuptools]
py-modules = ["demo_plugin"]
"""

MODULE = '''
"""A learnable per-channel gate and a two-stage 3D network, as a plugin author writes them."""
import torch
from torch import nn

from registry.backbones.base import BackboneEntry, HeadAttention, head_points, no_attention
from registry.placement import InsertionPoint


class DemoGate(nn.Module):
    """Demo gate: x · σ(w) with one learnable weight per channel."""

    supported_dims = (2, 3)

    def __init__(self, channels: int, *, bias: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), bias))

    def forward(self, x):
        return x * torch.sigmoid(self.weight).view(1, -1, *([1] * (x.dim() - 2)))


class DemoNet(nn.Module):
    def __init__(self, *, num_classes, attention_at=no_attention, width: int = 32):
        super().__init__()
        self.stem = nn.Conv3d(3, width, 3, padding=1)
        self.stage_attention = nn.ModuleDict()
        module = attention_at("s1.out")
        if module is not None:
            self.stage_attention["s1"] = module
        self.fc = nn.Linear(width, num_classes)
        self.head_attention = HeadAttention(attention_at)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        if "s1" in self.stage_attention:
            x = self.stage_attention["s1"](x)
        return self.head_attention(x.mean(dim=(2, 3, 4)), self.fc)


def demo_net_entry():
    def build(*, num_classes, attention_at=no_attention, width: int = 32):
        return DemoNet(num_classes=num_classes, attention_at=attention_at, width=width)

    def points(*, num_classes=1, width: int = 32):
        return (InsertionPoint("s1.out", "stage_output", "s1", width),) + head_points(
            width, num_classes
        )

    return BackboneEntry(
        name="demo_net", build=build, points=points, dims=3, input_shape=(3, 8, 32, 32),
        classifier="fc", description="A demo plugin backbone", first_conv="stem",
    )
'''

SPEC = """
name: plugin_demo
model: {num_classes: 5, frames: 8, size: 32}
grid:
  backbone: [resnet3d_10, demo_net]
  attention: [demo_gate, se]
  placement: [stage_output]
exclude:
  - {backbone: resnet3d_10, attention: se}
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugin")
    package = root / "package"
    package.mkdir()
    (package / "pyproject.toml").write_text(PYPROJECT)
    (package / "demo_plugin.py").write_text(textwrap.dedent(MODULE))
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(package),
        ],
        check=True,
        capture_output=True,
    )
    return site


def harness(plugin_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), os.getcwd()])}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env
    )


def test_plugin_names_are_listed_like_builtins(plugin_path):
    done = harness(plugin_path, "list", "--json")
    assert done.returncode == 0, done.stderr
    catalogue = json.loads(done.stdout)
    assert catalogue["attention"]["demo_gate"]["options"] == {
        "bias": {"type": "float", "default": "0.0"}
    }
    assert catalogue["attention"]["demo_gate"]["dims"] == [2, 3]
    assert catalogue["backbones"]["demo_net"]["stages"] == ["s1"]


def test_plugin_module_and_backbone_profile_from_a_spec(plugin_path, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    done = harness(plugin_path, "profile", str(spec), "--json")
    assert done.returncode == 0, done.stderr
    rows = {(r["backbone"], r["attention"]): r for r in json.loads(done.stdout)}
    assert set(rows) == {
        ("resnet3d_10", "demo_gate"),
        ("demo_net", "demo_gate"),
        ("demo_net", "se"),
    }
    gate = rows[("resnet3d_10", "demo_gate")]
    assert gate["params"] == 14_425_587 - 51 * 513 + 5 * 513 + (64 + 128 + 256 + 512)
    assert gate["insertion_points"] == ["res2.out", "res3.out", "res4.out", "res5.out"]
    stem, fc, se = 3 * 27 * 32 + 32, 32 * 5 + 5, 2 * 32 * (32 // 16)
    assert rows[("demo_net", "se")]["params"] == stem + fc + se
    assert rows[("demo_net", "demo_gate")]["params"] == stem + fc + 32


def test_plugin_options_are_validated(plugin_path, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("[stage_output]", "[stage_output]\n  bias: [high]"))
    done = harness(plugin_path, "profile", str(spec))
    assert done.returncode == 2
    assert "option bias = 'high' has the wrong type: expected float" in done.stderr
