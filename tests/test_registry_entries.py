"""What registry entries say about themselves is true: display names, fixed inputs, Grad-CAM layers.

Parametrized over the registries, so a newly registered backbone or attention module is checked
the moment it exists.
"""

from __future__ import annotations

import pytest
import torch

from registry import ATTENTION, BACKBONES, ConfigError
from registry.attention.base import add_attention_class
from registry.backbones.base import BackboneEntry, no_attention


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on tiny inputs more only add synchronisation, and on a busy 2-core
    machine they make a ResNet-152 forward 25 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_input(entry: BackboneEntry) -> torch.Tensor:
    """One sample: `fixed_input` where the backbone needs it, else a small clip or frame."""
    if entry.fixed_input is not None:
        return torch.randn(1, *entry.fixed_input)
    channels = entry.input_shape[0]
    spatial = (4, 32, 32) if entry.dims == 3 else (32, 32)
    return torch.randn(1, channels, *spatial)


def test_backbone_display_names_are_set_and_unique():
    names = {name: BACKBONES.get(name).display_name for name in BACKBONES}
    assert all(names.values()), names
    assert len(set(names.values())) == len(names), names


def test_attention_display_names_are_set_and_unique():
    names = {name: ATTENTION.get(name).display_name for name in ATTENTION if name != "none"}
    assert all(names.values()), names
    assert len(set(names.values())) == len(names), names
    assert ATTENTION.get("none").display_name == ""


def test_builtin_display_names_are_the_papers():
    backbones = {name: BACKBONES.get(name).display_name for name in BACKBONES}
    assert backbones["resnet3d_50"] == "3D ResNet-50"
    assert backbones["resnext3d_101"] == "3D ResNeXt-101"
    assert backbones["resnet2d_18"] == "ResNet-18"
    assert backbones["vgg16"] == "VGG16"
    assert backbones["c3d"] == "C3D"
    assert ATTENTION.get("nonlocal").display_name == "Non-local"
    assert ATTENTION.get("eam_t").display_name == "EAM-T"


@pytest.mark.parametrize("name", list(BACKBONES))
def test_builtin_backbones_name_a_gradcam_layer(name):
    assert BACKBONES.get(name).gradcam_layer, f"{name} offers no Grad-CAM layer"


@pytest.mark.parametrize("name", [n for n in BACKBONES if BACKBONES.get(n).gradcam_layer])
def test_gradcam_layer_is_the_spatial_map_the_logits_come_from(name):
    entry = BACKBONES.get(name)
    model = entry.build(num_classes=3, attention_at=no_attention).eval()
    layer = dict(model.named_modules())[entry.gradcam_layer]
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        logits = model(_tiny_input(entry))
    finally:
        handle.remove()
    assert len(captured) == 1, f"{entry.gradcam_layer} ran {len(captured)} times in one forward"
    features = captured[0]  # (1, K, T', H', W') or (1, K, H', W')
    assert features.dim() == entry.dims + 2
    assert min(features.shape[2:]) >= 1
    (gradient,) = torch.autograd.grad(logits.sum(), features)
    assert gradient.abs().sum() > 0


@pytest.mark.parametrize("name", [n for n in BACKBONES if BACKBONES.get(n).fixed_input])
def test_fixed_input_is_the_only_size_that_works(name):
    entry = BACKBONES.get(name)
    model = entry.build(num_classes=3, attention_at=no_attention).eval()
    channels, *rest, height, width = entry.fixed_input
    with torch.no_grad():
        assert model(torch.randn(1, *entry.fixed_input)).shape == (1, 3)
        with pytest.raises(RuntimeError):
            model(torch.randn(1, channels, *rest, height // 2, width // 2))


@pytest.mark.parametrize("name", [n for n in BACKBONES if not BACKBONES.get(n).fixed_input])
def test_min_side_is_the_smallest_crop_that_works(name):
    entry = BACKBONES.get(name)
    with torch.device("meta"):  # shapes only: no memory, no time
        model = entry.build(num_classes=3, attention_at=no_attention).eval()
        frames = (1,) if entry.dims == 3 else ()  # any clip length works for every 3D backbone

        def forward(side: int) -> tuple:
            return tuple(model(torch.empty(1, entry.input_shape[0], *frames, side, side)).shape)

        with torch.no_grad():
            assert forward(entry.min_side) == (1, 3)
            if entry.min_side > 1:
                with pytest.raises(RuntimeError):
                    forward(entry.min_side - 1)


def test_plugin_entry_without_the_new_fields_gets_defaults():
    entry = BackboneEntry(
        name="plugin_net",
        build=lambda **kwargs: torch.nn.Identity(),
        points=lambda **kwargs: (),
        dims=3,
        input_shape=(3, 8, 32, 32),
        classifier="fc",
        description="a plugin that predates display_name, fixed_input, gradcam_layer, min_side",
    )
    assert entry.display_name == "plugin_net"
    assert entry.fixed_input is None
    assert entry.gradcam_layer == "" and entry.min_side == 1


def test_attention_plugin_class_gets_its_display_name_or_its_registry_name(monkeypatch):
    monkeypatch.setattr(ATTENTION, "_entries", dict(ATTENTION._entries))  # restored afterwards

    class Named(torch.nn.Identity):
        display_name = "Named gate"

    class Unnamed(torch.nn.Identity):
        pass

    add_attention_class("test_named", Named, (3,))
    add_attention_class("test_unnamed", Unnamed, (3,))
    assert ATTENTION.get("test_named").display_name == "Named gate"
    assert ATTENTION.get("test_unnamed").display_name == "test_unnamed"
    with pytest.raises(ConfigError, match="display_name"):
        add_attention_class("test_named", Unnamed, (2,))  # a 2D class printing another name
