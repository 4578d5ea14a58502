"""Figures that need the trained weights: EAM Fig. 7 (temporal attention weights of EAM-T over the
frames of test videos) and EAM Fig. 8 (Grad-CAM of a baseline and attention models on the same
clips). Both load the `checkpoint/last.pt` artifact a run logs with `train.save_checkpoint`, and
read the chosen test videos from the spec's dataset.

Grad-CAM (Selvaraju et al. 2017, eqs. 1–2) on the last feature map `A` before global pooling:
`α_k = mean_{t,h,w} ∂y^c/∂A^k`, `L = ReLU(Σ_k α_k A^k)`, upsampled to the clip and shown on its
middle frame, with `P` the softmax score of the ground-truth class `c` as in the paper's figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from harness.config import Spec  # noqa: E402
from harness.data.clips import FrameReader  # noqa: E402
from harness.data.datasets import Entry, FrameIndex, open_dataset  # noqa: E402
from harness.data.transforms import SpatialTransform, loop_pad, to_tensor  # noqa: E402
from harness.report.figures.charts import save_figure  # noqa: E402
from harness.report.rows import ReportRow  # noqa: E402
from harness.tracking.schema import WEIGHTS_ARTIFACT  # noqa: E402
from harness.train.inputs import dataset_config  # noqa: E402
from registry.attention.eam import EAMTemporal  # noqa: E402

SHOWN_FRAMES = 8  # thumbnails per video in Fig. 7


@dataclass
class Clip:
    """One chosen test video: its centre clip as shown (uint8) and as the model sees it."""

    name: str
    label: int
    class_name: str
    frames: np.ndarray  # (T, H, W, 3) uint8, centre-cropped
    tensor: torch.Tensor  # (3, T, H, W) normalised


def trained_model(row: ReportRow) -> nn.Module | None:
    """The first of the row's runs that saved its weights, loaded, in eval mode (or None)."""
    for run in row.runs:
        path = run.artifact_path(WEIGHTS_ARTIFACT)
        if path is None:
            continue
        model = row.trial_of(run).resolve().build()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
        return model.eval()
    return None


def chosen_clips(spec: Spec, row: ReportRow, count: int) -> list[Clip]:
    """The first test video of each of the first `count` classes of the row's first split."""
    trial = row.trials[0]
    config = dataset_config(spec, trial.split)
    lists, _, test = open_dataset(config)
    picked: dict[int, Entry] = {}
    for entry in test:
        if len(picked) < count and entry.label not in picked:
            picked[entry.label] = entry
    reader = FrameReader(config.root, FrameIndex(config.root).lookup(list(picked.values())))
    crop = SpatialTransform(trial.size, train=False)
    clips = []
    for label, entry in picked.items():
        total = reader.frame_count(entry)
        start = max(total - trial.frames, 0) // 2
        window = loop_pad(list(range(start, min(start + trial.frames, total))), trial.frames)
        frames = crop(reader.read(entry, window), np.random.default_rng(0))
        tensor = to_tensor(frames, spec.dataset.normalisation)
        clips.append(Clip(entry.relative, label, lists.classes[label], frames, tensor))
    return clips


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
    """EAM Fig. 7: frames of each chosen clip above EAM-T's weights per stage."""
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


def grad_cam(model: nn.Module, clip: torch.Tensor, target: int) -> tuple[np.ndarray, float]:
    """Grad-CAM of class `target` over the clip, `(T, H, W)` in [0, 1], and its softmax score."""
    captured: list[torch.Tensor] = []
    layer, hook = _feature_layer(model)
    handle = hook(layer, captured)
    try:
        logits = model(clip[None].requires_grad_(False))
    finally:
        handle.remove()
    features = captured[0]  # (1, K, T', H', W') or (1, K, H', W')
    (gradient,) = torch.autograd.grad(logits[0, target], features)
    alpha = gradient.mean(dim=tuple(range(2, gradient.dim())), keepdim=True)  # (1, K, 1, …)
    cam = F.relu((alpha * features).sum(dim=1, keepdim=True))  # (1, 1, T', H', W')
    size = clip.shape[1:] if clip.dim() == cam.dim() - 1 else clip.shape[-2:]
    mode = "trilinear" if cam.dim() == 5 else "bilinear"
    cam = F.interpolate(cam, size=tuple(size), mode=mode, align_corners=False)[0, 0]
    cam = cam / cam.max().clamp_min(1e-8)
    score = float(logits.detach().softmax(dim=1)[0, target])
    return cam.detach().numpy(), score


def _feature_layer(model: nn.Module):
    """The feature map before global pooling: the input of `avgpool`, else `features`' output."""
    if isinstance(getattr(model, "avgpool", None), nn.Module):

        def pre(layer, captured):
            return layer.register_forward_pre_hook(lambda m, inputs: captured.append(inputs[0]))

        return model.avgpool, pre
    if isinstance(getattr(model, "features", None), nn.Module):

        def post(layer, captured):
            return layer.register_forward_hook(lambda m, i, output: captured.append(output))

        return model.features, post
    raise ValueError("no 'avgpool' or 'features' module to take Grad-CAM from")


def grad_cam_chart(
    models: list[tuple[str, nn.Module]], clips: list[Clip], title: str, out: Path
) -> Path | None:
    """EAM Fig. 8: one row per clip, one column per model, Grad-CAM on the middle frame."""
    if not models or not clips:
        return None
    fig, axes = plt.subplots(len(clips), len(models), squeeze=False,
                             figsize=(2.6 * len(models), 3.3 * len(clips)))  # fmt: skip
    for row, clip in enumerate(clips):
        middle = len(clip.frames) // 2
        for column, (label, model) in enumerate(models):
            cam, score = grad_cam(model, clip.tensor, clip.label)
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


def _stage(module_name: str) -> str:
    """`stage_attention.res2.temporal` → `res2`."""
    parts = [p for p in module_name.split(".") if p not in ("stage_attention", "temporal")]
    return ".".join(parts) or module_name
