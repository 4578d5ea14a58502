"""EAM Fig. 7: EAM-T's temporal weights `w_t` (eq. 11) over the frames of chosen test videos, one
figure per trained model that has EAM-T modules."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from harness.report.figures.common import FigureFamily, FigureGroup, save_figure, slug
from harness.report.figures.weights import Clip
from registry.attention.eam import EAMTemporal

SHOWN_FRAMES = 8  # thumbnails per video


def draw(group: FigureGroup) -> list[Path]:
    trained = group.trained
    if trained is None:
        return []
    drawn = [
        temporal_chart(
            model,
            trained.clips,
            f"EAM-T temporal weights: {row.name} on {group.data}",
            group.out / f"temporal_{slug(row.key)}.png",
        )  # fmt: skip
        for row, model in trained.models
    ]
    return [path for path in drawn if path is not None]


FAMILY = FigureFamily("temporal", "Temporal attention weights (EAM Fig. 7)", "group", draw)


def temporal_weights(model: nn.Module, clip: torch.Tensor) -> dict[str, np.ndarray]:
    """EAM-T's frame weights `w_t` (eq. 11) at every EAM-T module, by module name."""
    found: dict[str, np.ndarray] = {}
    hooks = [
        module.register_forward_hook(
            lambda m, inputs, _out, name=name: found.__setitem__(
                name, m.frame_weights(inputs[0])[0].detach().numpy()
            )
        )
        for name, module in model.named_modules()
        if isinstance(module, EAMTemporal)
    ]
    try:
        with torch.no_grad():
            model(clip[None])
    finally:
        for hook in hooks:
            hook.remove()
    return found


def temporal_chart(model: nn.Module, clips: list[Clip], title: str, out: Path) -> Path | None:
    """Frames of each chosen clip above EAM-T's weights per stage; None without EAM-T."""
    weights = [temporal_weights(model, clip.tensor) for clip in clips]
    if not clips or not weights[0]:
        return None
    fig, axes = plt.subplots(2 * len(clips), 1, figsize=(12, 3.6 * len(clips)),
                             gridspec_kw={"height_ratios": [1.2, 1] * len(clips)})  # fmt: skip
    for index, (clip, found) in enumerate(zip(clips, weights, strict=True)):
        strip, plot = axes[2 * index], axes[2 * index + 1]
        total = len(clip.frames)
        shown = np.linspace(0, total - 1, min(SHOWN_FRAMES, total)).round().astype(int)
        strip.imshow(np.concatenate([clip.frames[i] for i in shown], axis=1))
        strip.set_axis_off()
        strip.set_title(f"{clip.class_name}: {clip.name} (frames {', '.join(map(str, shown))})",
                        fontsize=9)  # fmt: skip
        for name, values in found.items():  # each weight covers total/len(values) input frames
            edges = np.linspace(0, total, len(values) + 1)
            plot.stairs(values, edges, label=_stage(name), linewidth=2, baseline=None)
        plot.set(xlim=(0, total), ylim=(0, 1.05), xlabel="input frame",
                 ylabel="temporal weight $w_t$")  # fmt: skip
        plot.legend(title="stage", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle(title)
    return save_figure(fig, out)


def _stage(module_name: str) -> str:
    """`stage_attention.res2.temporal` → `res2`."""
    parts = [p for p in module_name.split(".") if p not in ("stage_attention", "temporal")]
    return ".".join(parts) or module_name
