"""EAM Fig. 8: Grad-CAM of every trained model of a backbone on the same test clips, with `P` the
softmax score of the ground-truth class, as in the paper's figure.

Grad-CAM (Selvaraju et al. 2017, eqs. 1–2) on the last spatial feature map `A` before pooling,
the output of the module the backbone's registry entry names (`gradcam_layer`):
`α_k = mean_{t,h,w} ∂y^c/∂A^k`, `L = ReLU(Σ_k α_k A^k)`, upsampled to the input.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.report.figures.common import FigureFamily, FigureGroup, save_figure
from harness.report.figures.weights import Clip


class GradCam(NamedTuple):
    cam: np.ndarray  # (T, H, W) or (H, W), in [0, 1]
    score: float  # softmax score of the target class


def draw(group: FigureGroup) -> list[Path]:
    trained = group.trained
    if trained is None:
        return []
    layer = trained.backbone.gradcam_layer
    if not layer:
        group.notes.append(
            f"{trained.models[0][0].name}: backbone {trained.backbone.name!r} names no Grad-CAM "
            "layer (`gradcam_layer` on its registry entry), so Fig. 8 (Grad-CAM) was not drawn."
        )
        return []
    cams = [
        [grad_cam(model, clip.tensor, clip.label, layer) for _, model in trained.models]
        for clip in trained.clips
    ]
    path = grad_cam_chart(
        [row.name for row, _ in trained.models], trained.clips, cams,
        f"Grad-CAM on the middle frame; P = softmax score of the true class; {group.data}",
        group.out / f"gradcam_{group.subject}.png",
    )  # fmt: skip
    return [path] if path is not None else []


FAMILY = FigureFamily("gradcam", "Grad-CAM (EAM Fig. 8)", "group", draw)


def grad_cam(model: nn.Module, clip: torch.Tensor, target: int, layer: str) -> GradCam:
    """Grad-CAM of class `target` for one input of `model`, read at the module named `layer`.

    `clip` is one sample without its batch dimension, as the model takes it: `(C, T, H, W)` for
    a 3D model, `(C, H, W)` for a 2D one. The module must run once per forward and output the
    spatial map, `(1, K, T', H', W')` or `(1, K, H', W')`. The map returned has the clip's
    `(T, H, W)` or `(H, W)`, divided by its maximum: in [0, 1], all zeros where no location
    has a positive weighted sum. The model's mode (eval for a trained model) is left as it is.
    """
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"Grad-CAM layer {layer!r} is not a module of {type(model).__name__}.")
    captured: list[torch.Tensor] = []
    handle = modules[layer].register_forward_hook(lambda m, i, output: captured.append(output))
    try:
        with torch.enable_grad():  # the input needs no gradient; it only keeps the graph built
            logits = model(clip[None].detach().requires_grad_(True))  # (1, classes)
            if len(captured) != 1:
                raise ValueError(f"Grad-CAM layer {layer!r} ran {len(captured)} times in one "
                                 "forward; it must name a module that runs once.")  # fmt: skip
            features = captured[0]  # (1, K, T', H', W') or (1, K, H', W')
            (gradient,) = torch.autograd.grad(logits[0, target], features)
    finally:
        handle.remove()
    alpha = gradient.mean(dim=tuple(range(2, gradient.dim())), keepdim=True)  # (1, K, 1, …)
    cam = F.relu((alpha * features).sum(dim=1, keepdim=True)).detach()  # (1, 1, T', H', W')
    spatial = tuple(clip.shape[-(cam.dim() - 2) :])  # the clip's (T, H, W) or (H, W)
    mode = "trilinear" if cam.dim() == 5 else "bilinear"
    cam = F.interpolate(cam, size=spatial, mode=mode, align_corners=False)[0, 0]
    cam = cam / cam.max().clamp_min(1e-8)
    score = float(logits.detach().softmax(dim=1)[0, target])
    return GradCam(cam.numpy(), score)


def grad_cam_chart(
    labels: list[str], clips: list[Clip], cams: list[list[GradCam]], title: str, out: Path
) -> Path | None:
    """One row per clip, one column per model (`cams[clip][model]`), each map on the clip's
    middle frame, titled with the model's label and its score `P`."""
    if not labels or not clips:
        return None
    fig, axes = plt.subplots(len(clips), len(labels), squeeze=False,
                             figsize=(2.6 * len(labels), 3.3 * len(clips)))  # fmt: skip
    for row, (clip, found) in enumerate(zip(clips, cams, strict=True)):
        middle = len(clip.frames) // 2
        for column, (label, (cam, score)) in enumerate(zip(labels, found, strict=True)):
            ax = axes[row][column]
            ax.imshow(clip.frames[middle])
            ax.imshow(cam[middle] if cam.ndim == 3 else cam, cmap="jet", alpha=0.45,
                      vmin=0, vmax=1)  # fmt: skip
            ax.set_axis_off()
            ax.set_title(f"{label}\nP = {score:.2f}", fontsize=9)
        axes[row][0].text(-0.08, 0.5, clip.class_name, transform=axes[row][0].transAxes,
                          rotation=90, va="center", ha="right", fontsize=9)  # fmt: skip
    fig.suptitle(title)
    return save_figure(fig, out)
