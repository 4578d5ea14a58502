"""Released 3D-ResNets-PyTorch checkpoints load strictly, with a replaced classifier.

The files are built here in both release layouts, with the real key names and shapes: a 2018
file (`module.` prefix, no `num_batches_tracked`, 400 classes) and a 2020 file (no prefix,
700 classes). Their keys and shapes come from the backbone built on the meta device and their
values are drawn directly, so no network is initialised only to be overwritten; a file that must
be refused before any value is read holds keys and shapes only, and its target model is built on
the meta device too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from registry import CheckpointError, build_model

# Keys and shapes as they appear in the released files (spot checks of the real layouts).
REAL_KEYS = {
    "resnet3d_50": {
        "conv1.weight": (64, 3, 7, 7, 7),
        "bn1.running_var": (64,),
        "layer1.0.conv1.weight": (64, 64, 1, 1, 1),
        "layer1.0.conv2.weight": (64, 64, 3, 3, 3),
        "layer1.0.conv3.weight": (256, 64, 1, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1, 1),
        "layer1.0.downsample.1.running_mean": (256,),
        "layer3.5.bn2.weight": (256,),
        "layer4.2.bn3.running_var": (2048,),
    },
    "resnext3d_101": {
        "conv1.weight": (64, 3, 7, 7, 7),
        "layer1.0.conv1.weight": (128, 64, 1, 1, 1),
        "layer1.0.conv2.weight": (128, 4, 3, 3, 3),
        "layer1.0.conv3.weight": (256, 128, 1, 1, 1),
        "layer3.22.conv2.weight": (512, 16, 3, 3, 3),
        "layer4.0.conv2.weight": (1024, 32, 3, 3, 3),
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1, 1),
    },
    "resnet3d_18": {  # shortcut A: no downsample parameters at all
        "layer1.1.conv2.weight": (64, 64, 3, 3, 3),
        "layer2.0.conv1.weight": (128, 64, 3, 3, 3),
        "layer4.1.bn2.running_var": (512,),
    },
}
OPTIONS = {"resnet3d_18": {"shortcut": "A"}}
ARCH = {"resnet3d_50": "resnet-50", "resnext3d_101": "resnext-101", "resnet3d_18": "resnet-18"}


def layout(backbone: str, classes: int) -> dict[str, torch.Tensor]:
    """The backbone's state dict built on the meta device: its keys and shapes, no values."""
    with torch.device("meta"):
        model = build_model(backbone, num_classes=classes, **OPTIONS.get(backbone, {}))
    return model.state_dict()


def release_state(backbone: str, layout_name: str) -> dict[str, torch.Tensor]:
    """Random weights for the release's class count (`num_batches_tracked` 0)."""
    classes = 400 if layout_name == "2018" else 700
    return {
        key: torch.empty(value.shape).uniform_(-1, 1)
        if value.is_floating_point()
        else torch.zeros(value.shape, dtype=value.dtype)
        for key, value in layout(backbone, classes).items()
    }


def keys_and_shapes(backbone: str, classes: int) -> dict[str, torch.Tensor]:
    """The state dict's keys and shapes, each tensor a broadcast zero (bytes on disk): enough for
    a file that is refused before any value is read."""
    return {
        key: torch.zeros((), dtype=value.dtype).expand(value.shape)
        for key, value in layout(backbone, classes).items()
    }


def refusal(path: Path, backbone: str, **options) -> str:
    """The error that loading `path` into `backbone` raises. Every refusal comes before a value
    is copied, so the model is built on the meta device."""
    with pytest.raises(CheckpointError) as caught, torch.device("meta"):
        build_model(backbone, num_classes=51, pretrained=path, **options)
    return str(caught.value)


def write_release(
    path: Path, backbone: str, layout: str, state: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """A checkpoint in a 3D-ResNets-PyTorch release layout, with random weights unless `state`."""
    state = release_state(backbone, layout) if state is None else state
    optimizer = {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]}
    if layout == "2018":
        saved = {
            f"module.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")
        }
        torch.save(
            {"epoch": 200, "arch": ARCH[backbone], "state_dict": saved, "optimizer": optimizer},
            path,
        )
    else:
        saved = dict(state)
        torch.save(
            {
                "epoch": 200,
                "arch": ARCH[backbone],
                "state_dict": saved,
                "optimizer": optimizer,
                "scheduler": {"milestones": [50, 100]},
            },
            path,
        )
    return saved


@pytest.mark.parametrize("backbone", ["resnet3d_18", "resnet3d_50", "resnext3d_101"])
@pytest.mark.parametrize("layout", ["2018", "2020"])
def test_release_layouts_load_with_a_new_head(tmp_path, backbone, layout):
    path = tmp_path / f"{backbone}-{layout}.pth"
    saved = write_release(path, backbone, layout)
    for key, shape in REAL_KEYS[backbone].items():
        stored = saved[f"module.{key}" if layout == "2018" else key]
        assert tuple(stored.shape) == shape, key
    head_classes = 400 if layout == "2018" else 700
    assert saved[("module." if layout == "2018" else "") + "fc.weight"].shape[0] == head_classes

    model = build_model(backbone, num_classes=51, pretrained=path, **OPTIONS.get(backbone, {}))
    loaded = model.state_dict()
    assert loaded["fc.weight"].shape[0] == 51
    compared = set()
    for key, value in saved.items():
        key = key.removeprefix("module.")
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
            compared.add(key)
    tracked = layout == "2020"  # the 2018 release has no num_batches_tracked entries
    backbone_keys = {
        k for k in loaded if not k.startswith("fc.") and (tracked or "num_batches" not in k)
    }
    assert compared == backbone_keys


def test_attention_modules_keep_their_initialisation(tmp_path):
    path = tmp_path / "r50.pth"
    saved = write_release(path, "resnet3d_50", "2018")
    torch.manual_seed(1)
    fresh = build_model("resnet3d_50", attention="se", placement="block", num_classes=51)
    torch.manual_seed(1)
    model = build_model(
        "resnet3d_50", attention="se", placement="block", num_classes=51, pretrained=path
    )
    initial = fresh.state_dict()
    for key, value in model.state_dict().items():
        if ".attention." in key:
            assert torch.equal(value, initial[key]), key
        elif not key.startswith("fc.") and "num_batches" not in key:
            assert torch.equal(value, saved[f"module.{key}"]), key


def test_wrong_architecture_lists_every_bad_key(tmp_path):
    path = tmp_path / "resnet-18-A.pth"
    write_release(path, "resnet3d_18", "2020", keys_and_shapes("resnet3d_18", 700))
    message = refusal(path, "resnet3d_18", shortcut="B")  # a shortcut-A file, a shortcut-B model
    assert "Missing keys (15)" in message and "layer2.0.downsample.0.weight" in message
    assert "Unexpected keys (0)" in message
    path34 = tmp_path / "resnet-34.pth"
    torch.save({"state_dict": keys_and_shapes("resnet3d_34", 400)}, path34)
    message = refusal(path34, "resnet3d_50")
    assert "Unexpected keys" in message and "Shape mismatches" in message
    assert "layer1.0.conv1.weight: file (64, 64, 3, 3, 3) vs model (64, 64, 1, 1, 1)" in message
    assert "\n" not in message


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": _RunsCode(marker)}, path)
    assert "Refused to load" in refusal(path, "resnet3d_18")
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [(None, "does not exist"), (b"not a checkpoint", "Cannot read checkpoint")],
)
def test_missing_or_malformed_files(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    assert message in refusal(path, "resnet3d_18")


def test_a_file_without_tensors_is_named(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    assert "holds no state dict" in refusal(path, "resnet3d_18")
