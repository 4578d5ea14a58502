"""Every registered backbone × attention × placement builds, runs forward and backward.

Parametrized over the registries themselves, so a newly registered backbone, module or placement
is tested the moment it exists.
"""

from __future__ import annotations

import pytest
import torch

from registry import ATTENTION, BACKBONES, build_model, resolve_model
from tests.conftest import prepare_gradient_check

PLACEMENTS = ("stage_output", "block")


FIXED_INPUT = {"c3d"}  # C3D's fc6 needs the 16×112×112 clip it was designed for


def _tiny_input(backbone: str) -> torch.Tensor:
    entry = BACKBONES.get(backbone)
    if backbone in FIXED_INPUT:
        return torch.randn(1, *entry.input_shape)
    channels = entry.input_shape[0]
    if entry.dims == 3:
        return torch.randn(2, channels, 8, 32, 32)
    return torch.randn(2, channels, 32, 32)


def _combinations():
    for backbone in BACKBONES:
        entry = BACKBONES.get(backbone)
        yield pytest.param(backbone, "none", "none", id=f"{backbone}-none")
        for attention in ATTENTION:
            if attention == "none" or entry.dims not in ATTENTION.get(attention).classes:
                continue
            for placement in PLACEMENTS:
                if any(p.where == placement for p in entry.points()):
                    yield pytest.param(
                        backbone, attention, placement, id=f"{backbone}-{attention}-{placement}"
                    )


@pytest.mark.parametrize("backbone, attention, placement", list(_combinations()))
def test_builds_runs_and_trains(backbone, attention, placement):
    model = build_model(backbone, attention=attention, placement=placement, num_classes=5)
    resolved = resolve_model(backbone, attention=attention, placement=placement, num_classes=5)
    prepare_gradient_check(model)
    clip = _tiny_input(backbone)
    logits = model(clip)
    assert logits.shape == (clip.shape[0], 5)
    logits.logsumexp(dim=1).mean().backward()
    attention_params = {
        name: p
        for name, p in model.named_parameters()
        if {"attention", "stage_attention", "head_attention"} & set(name.split("."))
    }
    if attention == "none":
        assert not resolved.points and not attention_params
        return
    modules = [m for m in model.modules() if type(m) in ATTENTION.get(attention).classes.values()]
    assert len(modules) == len(resolved.points) > 0
    if resolved.head is not None:
        modules.append(model.head_attention)
    own_params = sum(p.numel() for m in modules for p in m.parameters())  # nothing else is new
    assert sum(p.numel() for p in attention_params.values()) == own_params
    # Every parameter is connected to the loss. A zero gradient can be legitimate here: a small
    # reduction MLP (64 channels → 4 hidden units) may have every ReLU unit dead on a tiny input.
    # test_attention_equations checks each module's parameters for non-zero gradients at 256
    # channels; here the attention parameters together must learn.
    for name, param in attention_params.items():
        assert param.grad is not None, f"{name} received no gradient"
        assert torch.isfinite(param.grad).all(), name
    assert sum(p.grad.abs().sum() for p in attention_params.values()) > 0


@pytest.mark.parametrize("frames", [16, 64])
def test_any_clip_length_works(frames):
    model = build_model("resnet3d_10", attention="eam", placement="stage_output", num_classes=3)
    assert model.eval()(torch.randn(1, 3, frames, 48, 48)).shape == (1, 3)


def test_stage_output_points_follow_the_placement_rule():
    resolved = resolve_model(
        "resnet3d_50",
        attention="se",
        placement={"where": "stage_output", "stages": ["res3", "res5"]},
        num_classes=51,
    )
    assert [(p.name, p.channels) for p in resolved.points] == [
        ("res3.out", 512),
        ("res5.out", 2048),
    ]
    model = resolved.build()
    assert sorted(model.stage_attention) == ["res3", "res5"]
