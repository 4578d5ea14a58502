"""ImageNet weights in torchvision's layout load strictly into the 2D backbones; a 20-channel
optical-flow stream initialises its first convolution from them (TSN cross-modality)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from registry import CheckpointError, build_model

# Spot checks of the keys and shapes of torchvision's resnet50 / vgg16 ImageNet state dicts.
TORCHVISION_KEYS = {
    "resnet2d_50": {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.num_batches_tracked": (),
        "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.conv2.weight": (64, 64, 3, 3),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer2.0.conv2.weight": (128, 128, 3, 3),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "fc.weight": (1000, 2048),
    },
    "vgg16": {
        "features.0.weight": (64, 3, 3, 3),
        "features.0.bias": (64,),
        "features.28.weight": (512, 512, 3, 3),
        "classifier.0.weight": (4096, 25088),
        "classifier.3.weight": (4096, 4096),
        "classifier.6.weight": (1000, 4096),
    },
}
HEAD = {"resnet2d_50": "fc.", "vgg16": "classifier.6."}
FIRST_CONV = {"resnet2d_50": "conv1.weight", "vgg16": "features.0.weight"}


def imagenet_file(tmp_path: Path, backbone: str) -> dict[str, torch.Tensor]:
    source = build_model(backbone, num_classes=1000)
    state = source.state_dict()
    with torch.no_grad():
        for value in state.values():
            if value.is_floating_point():
                value.normal_()
    torch.save(state, tmp_path / f"{backbone}.pth")  # torchvision saves a bare state dict
    return state


@pytest.mark.parametrize("backbone", ["resnet2d_50", "vgg16"])
def test_imagenet_weights_load_strictly_with_a_new_head(tmp_path, backbone):
    state = imagenet_file(tmp_path, backbone)
    for key, shape in TORCHVISION_KEYS[backbone].items():
        assert tuple(state[key].shape) == shape, key
    model = build_model(backbone, num_classes=101, pretrained=tmp_path / f"{backbone}.pth")
    loaded = model.state_dict()
    assert loaded[HEAD[backbone] + "weight"].shape[0] == 101
    for key, value in state.items():
        if not key.startswith(HEAD[backbone]):
            torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("backbone", ["resnet2d_50", "vgg16"])
def test_flow_stream_first_conv_is_the_rgb_mean_repeated(tmp_path, backbone):
    state = imagenet_file(tmp_path, backbone)
    flow = build_model(
        backbone, num_classes=101, in_channels=20, pretrained=tmp_path / f"{backbone}.pth"
    )
    key = FIRST_CONV[backbone]
    rgb = state[key]
    adapted = flow.state_dict()[key]
    assert adapted.shape == (rgb.shape[0], 20, *rgb.shape[2:])
    mean = rgb.mean(dim=1)
    for channel in range(20):
        torch.testing.assert_close(adapted[:, channel], mean)
    for name, value in state.items():  # everything else unchanged
        if name != key and not name.startswith(HEAD[backbone]):
            torch.testing.assert_close(flow.state_dict()[name], value, rtol=0, atol=0)


def test_a_resnet_file_does_not_load_into_vgg(tmp_path):
    imagenet_file(tmp_path, "resnet2d_50")
    with pytest.raises(CheckpointError, match="Missing keys") as caught:
        build_model("vgg16", num_classes=101, pretrained=tmp_path / "resnet2d_50.pth")
    assert "features.0.weight" in str(caught.value) and "layer1.0.conv1.weight" in str(caught.value)
