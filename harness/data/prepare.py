"""`harness data prepare` and `harness data flow`: faster layouts written from a dataset.

`prepare` decodes each video once into JPEG frames at short side 128 in the 3D-ResNets-PyTorch
layout (`<out>/<Class>/<video>/image_00001.jpg`), which every loader accepts with the same split
files (entries resolve to the frame folder named like the video without its suffix). Training
then reads only the 16 frames of a clip instead of decoding from the previous keyframe.

`flow` writes TSN-style optical flow (`flow_x_00001.jpg`, `flow_y_00001.jpg`, values mapped to
0–255 around 128, clipped at ±20 px): TV-L1 when OpenCV's contrib module offers it, Farneback
otherwise. Practical for small datasets such as the synthetic one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from harness.data.datasets import DatasetConfig, FrameIndex, open_dataset, require_any_present
from harness.data.pool import worker_pool
from harness.data.transforms import store_resize
from harness.data.video import read_frames

FLOW_BOUND = 20.0


def prepare_frames(
    config: DatasetConfig, out: Path, *, short_side: int = 128, workers: int | None = None
) -> dict[str, int | list[str]]:
    """Write JPEG frames of every video in the split; returns counts of written/failed videos
    and `failed_videos`, the split-list paths of those that could not be written."""
    return _for_each_video(config, out, _write_frames, short_side, workers)


def compute_flow(
    config: DatasetConfig, out: Path, *, workers: int | None = None, method: str | None = None
) -> dict[str, int | list[str]]:
    """Write TSN-style flow images of every video in the split (TV-L1 unless `method` says
    `farneback`, which is about 20× faster and is what synthetic data uses); returns counts as
    `prepare_frames` does."""
    return _for_each_video(config, out, _write_flow, method or flow_method(), workers)


def flow_method() -> str:
    return "tvl1" if hasattr(cv2, "optflow") else "farneback"


def _for_each_video(
    config: DatasetConfig,
    out: Path,
    job: Callable[[tuple], bool],
    parameter: object,
    workers: int | None,
) -> dict[str, int | list[str]]:
    """Run `job` on every video of the split, writing under `out` at the video's path (split
    lines cannot leave the root, see `Sample`, so these paths cannot leave `out`)."""
    _, train, test = open_dataset(config)
    require_any_present(config, train + test)  # a mistyped --root: else "0 of 0 written"
    entries = list({e.found: e for e in train + test if e.found is not None}.values())
    indexes = FrameIndex(config.root).lookup(entries, workers)
    videos = [e for e in entries if e.kind == "video"]
    jobs = [
        (
            str(config.root / e.found),
            str(out / Path(e.found).with_suffix("")),
            indexes[e.found].frames,
            parameter,
        )
        for e in videos
    ]
    with worker_pool(workers or os.cpu_count() or 1) as pool:
        done = list(pool.map(job, jobs, chunksize=8))
    failed = [e.relative for e, ok in zip(videos, done, strict=True) if not ok]
    return {
        "videos": len(jobs),
        "written": len(jobs) - len(failed),
        "failed": len(failed),
        "failed_videos": failed,
        "missing": len({e.relative for e in train + test if e.found is None}),
    }


def _frames_of(path: str, frames: int) -> np.ndarray | None:
    if frames == 0:
        return None
    try:
        return read_frames(path, list(range(frames)))
    except (RuntimeError, OSError, ValueError):
        return None


def _write_frames(job: tuple[str, str, int, int]) -> bool:
    path, folder, frames, short_side = job
    cv2.setNumThreads(1)
    clip = _frames_of(path, frames)
    if clip is None:
        return False
    Path(folder).mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(store_resize(clip, short_side), start=1):
        cv2.imwrite(
            f"{folder}/image_{i:05d}.jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
    return True


def _write_flow(job: tuple[str, str, int, str]) -> bool:
    path, folder, frames, method = job
    cv2.setNumThreads(1)
    clip = _frames_of(path, frames)
    if clip is None or len(clip) < 2:
        return False
    Path(folder).mkdir(parents=True, exist_ok=True)
    grey = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in clip]
    solver = cv2.optflow.DualTVL1OpticalFlow_create() if method == "tvl1" else None
    for i in range(len(grey) - 1):
        if solver is not None:
            flow = solver.calc(grey[i], grey[i + 1], None)
        else:
            flow = cv2.calcOpticalFlowFarneback(
                grey[i], grey[i + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0
            )
        for axis, prefix in enumerate(("flow_x", "flow_y")):
            plane = np.clip(flow[:, :, axis], -FLOW_BOUND, FLOW_BOUND)
            image = np.round((plane + FLOW_BOUND) * (255 / (2 * FLOW_BOUND))).astype(np.uint8)
            cv2.imwrite(f"{folder}/{prefix}_{i + 1:05d}.jpg", image)
    return True


def synthetic_flow(config: DatasetConfig) -> Path:
    """Flow images of a generated synthetic dataset, computed into the cache on first use
    (Farneback: about 20× faster than TV-L1, and the synthetic motions need no better)."""
    out = config.root.parent / "flow-farneback"
    marker = out / ".complete"
    if not marker.is_file():
        print(f"computing optical flow of the synthetic dataset into {out} (first use)")
        compute_flow(replace(config, split=1), out, method="farneback")
        marker.write_text("done\n")
    return out
