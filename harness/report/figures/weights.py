"""What the trained-weights figures (EAM Fig. 7 and 8) draw from: the models of the runs that
saved their weights (`train.save_checkpoint`, logged as `checkpoint/last.pt`), loaded, and the
test clips they are shown on, read from the spec's dataset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from harness.config import Spec
from harness.config.smoke import is_smoke
from harness.data.clips import FrameReader
from harness.data.datasets import Entry, FrameIndex, open_dataset
from harness.data.transforms import SpatialTransform, loop_pad, to_tensor
from harness.report.rows import ReportRow
from harness.tracking.schema import WEIGHTS_ARTIFACT
from harness.train.inputs import dataset_config
from registry.backbones import BackboneEntry


@dataclass
class Clip:
    """One chosen test video: its centre clip as shown (uint8) and as the model sees it."""

    name: str
    label: int
    class_name: str
    frames: np.ndarray  # (T, H, W, 3) uint8, centre-cropped
    tensor: torch.Tensor  # (3, T, H, W) normalised


@dataclass
class Trained:
    """One group's rows that saved their weights, with their models loaded (eval mode), their
    backbone's registry entry and the test clips every model of the group is shown on."""

    models: list[tuple[ReportRow, nn.Module]]
    backbone: BackboneEntry
    clips: list[Clip]


def load_trained(
    spec: Spec, rows: list[ReportRow], videos: int, notes: list[str]
) -> Trained | None:
    """The group's `Trained`, or None with a note in `notes` saying why Fig. 7 and 8 are not
    drawn (nothing is said for a group that has not run yet, or has no network of its own)."""
    if not any(row.has_network for row in rows):
        return None
    models = [(row, model) for row in rows if row.has_network and (model := trained_model(row))]
    if not models:
        if any(row.runs for row in rows):
            smoke = is_smoke(spec.name)  # `--smoke` turns the spec's setting off
            how = (
                "add `--set train.save_checkpoint=true`"
                if smoke
                else "set `train.save_checkpoint: true`"
            )
            notes.append(
                f"{rows[0].name}: no run saved its weights ({how}), so Fig. 7 (temporal "
                "attention) and Fig. 8 (Grad-CAM) were not drawn."
            )
        return None
    first = models[0][0]
    resolved = first.trials[0].resolve()
    shape = first.trials[0].input_shape(resolved)  # (C, T, H, W) or (C, H, W)
    if shape[0] != 3 or len(shape) != 4:
        notes.append(f"{first.name}: Fig. 7 and 8 are drawn for 3D RGB models only.")
        return None
    return Trained(models, resolved.backbone, chosen_clips(spec, first, videos))


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
