"""ImageNet weights in torchvision's layout load strictly into the 2D backbones; a 20-channel
optical-flow stream initialises its first convolution from them (TSN cross-modality).

Each backbone's ImageNet file is written once for the module, from keys and shapes taken on the
meta device and values drawn directly (no network is initialised only to be overwritten)."""

from __future__ import annotations

import functools
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


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """`imagenet_file(backbone)`: the path of an ImageNet file in torchvision's layout (a bare
    state dict of the 1000-class network, random values) and its tensors, written once."""
    folder = tmp_path_factory.mktemp("imagenet")

    @functools.cache
    def write(backbone: str) -> tuple[Path, dict[str, torch.Tensor]]:
        with torch.device("meta"):  # keys and shapes; the values are drawn below
            layout = build_model(backbone, num_classes=1000).state_dict()
        state = {
            key: torch.randn(value.shape)
            if value.is_floating_point()
            else torch.zeros(value.shape, dtype=value.dtype)
            for key, value in layout.items()
        }
        path = folder / f"{backbone}.pth"
        torch.save(state, path)  # torchvision saves a bare state dict
        return path, state

    yield write
    write.cache_clear()


@pytest.mark.parametrize("backbone", ["resnet2d_50", "vgg16"])
def test_imagenet_weights_load_strictly_with_a_new_head(imagenet_file, backbone):
    path, state = imagenet_file(backbone)
    for key, shape in TORCHVISION_KEYS[backbone].items():
        assert tuple(state[key].shape) == shape, key
    model = build_model(backbone, num_classes=101, pretrained=path)
    loaded = model.state_dict()
    assert loaded[HEAD[backbone] + "weight"].shape[0] == 101
    for key, value in state.items():
        if not key.startswith(HEAD[backbone]):
            assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("backbone", ["resnet2d_50", "vgg16"])
def test_flow_stream_first_conv_is_the_rgb_mean_repeated(imagenet_file, backbone):
    path, state = imagenet_file(backbone)
    flow = build_model(backbone, num_classes=101, in_channels=20, pretrained=path).state_dict()
    key = FIRST_CONV[backbone]
    rgb = state[key]
    adapted = flow[key]
    assert adapted.shape == (rgb.shape[0], 20, *rgb.shape[2:])
    mean = rgb.mean(dim=1)
    for channel in range(20):
        torch.testing.assert_close(adapted[:, channel], mean)
    for name, value in state.items():  # everything else unchanged
        if name != key and not name.startswith(HEAD[backbone]):
            assert torch.equal(flow[name], value), name


def test_a_resnet_file_does_not_load_into_vgg(imagenet_file):
    path, _ = imagenet_file("resnet2d_50")
    # refused before any value is copied, so the model is built on the meta device
    with pytest.raises(CheckpointError, match="Missing keys") as caught, torch.device("meta"):
        build_model("vgg16", num_classes=101, pretrained=path)
    assert "features.0.weight" in str(caught.value) and "layer1.0.conv1.weight" in str(caught.value)
