"""Grad-CAM (EAM Fig. 8) on every registered backbone, C3D included: the map is read at the layer
the backbone's registry entry names (`gradcam_layer`), so a new backbone is tested the moment it
is registered. A backbone that names no layer gets a note in the report instead of a figure."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from harness.report.figures import FigureGroup
from harness.report.figures import gradcam as figure
from harness.report.figures.weights import Clip, Trained
from harness.report.rows import ReportRow
from registry import BACKBONES, build_model

CLASSES = 3
# Small, yet large enough that the last feature map is 2×2 (1×1 at 32 pixels: a constant map).
SIDE = 64


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: faster than two on a loaded 2-core machine for models this small."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_input(name: str) -> torch.Tensor:
    """One sample: the backbone's fixed input where it has one, else a few small frames (2D
    models take one frame)."""
    entry = BACKBONES.get(name)
    if entry.fixed_input is not None:
        return torch.randn(entry.fixed_input)
    if entry.dims == 3:
        return torch.randn(3, 4, SIDE, SIDE)
    return torch.randn(entry.input_shape[0], SIDE, SIDE)


def clip_of(tensor: torch.Tensor, name: str = "v_test.avi") -> Clip:
    """A 3D input as a report clip: its frames as shown (uint8) and the tensor itself."""
    frames = tensor[:3].permute(1, 2, 3, 0)  # (T, H, W, 3)
    frames = (frames - frames.min()) / (frames.max() - frames.min()) * 255
    return Clip(name, 0, "SomeClass", frames.to(torch.uint8).numpy(), tensor)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_grad_cam_maps_every_backbone_at_its_registered_layer(name, tmp_path):
    entry = BACKBONES.get(name)
    if not entry.gradcam_layer:
        pytest.skip(f"{name} names no Grad-CAM layer: reports note it (test below)")
    model = build_model(name, num_classes=CLASSES).eval()
    clip = small_input(name)
    spatial = tuple(clip.shape[1:])  # (T, H, W) or (H, W)
    found = None
    for target in range(CLASSES):  # a class may have no positive evidence: an all-zero map
        result = figure.grad_cam(model, clip, target, entry.gradcam_layer)
        assert result.cam.shape == spatial
        assert np.isfinite(result.cam).all()
        assert result.cam.min() >= 0 and result.cam.max() <= 1 + 1e-6
        assert 0 <= result.score <= 1
        if np.ptp(result.cam) > 1e-3:
            found = result
            break
    assert found is not None, f"{name}: every class's Grad-CAM map is constant"
    assert found.cam.max() == pytest.approx(1.0)  # divided by its maximum
    if entry.dims == 3:  # Fig. 8 is drawn for 3D models
        out = tmp_path / "gradcam.png"
        assert figure.grad_cam_chart([entry.display_name], [clip_of(clip)], [[found]], name, out)
        assert np.asarray(Image.open(out).convert("L"), dtype=float).std() > 10


def test_a_backbone_without_a_gradcam_layer_gets_a_note_not_a_figure(tmp_path):
    model = build_model("resnet3d_10", num_classes=CLASSES).eval()
    row = ReportRow("3D ResNet-10", "resnet3d_10-none", {}, [], name="3D ResNet-10")
    clips = [clip_of(torch.randn(3, 4, SIDE, SIDE))]
    entry = BACKBONES.get("resnet3d_10")
    drawn = FigureGroup(None, [row], "synthetic (tiny)", tmp_path)
    drawn.trained = Trained([(row, model)], entry, clips)  # as if loaded from a run
    assert [p.name for p in figure.draw(drawn)] == ["gradcam_3d_resnet_10.png"]
    assert not drawn.notes
    plain = FigureGroup(None, [row], "synthetic (tiny)", tmp_path / "plain")
    plain.trained = Trained([(row, model)], replace(entry, gradcam_layer=""), clips)
    assert figure.draw(plain) == []
    assert len(plain.notes) == 1 and "names no Grad-CAM layer" in plain.notes[0]
    assert not (tmp_path / "plain").exists()


def test_a_wrong_gradcam_layer_is_named_in_the_error():
    model = build_model("resnet3d_10", num_classes=CLASSES).eval()
    with pytest.raises(ValueError, match="'avgpool_typo' is not a module"):
        figure.grad_cam(model, torch.randn(3, 4, SIDE, SIDE), 0, "avgpool_typo")
