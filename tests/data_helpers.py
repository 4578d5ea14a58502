"""Small real videos for data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.data.synthetic import encode_avi


def write_video(path: Path, frames: int = 16, size: tuple[int, int] = (32, 24), seed: int = 0):
    """A real MPEG-4 AVI whose frame i has mean brightness ≈ 8·i (frames are identifiable)."""
    rng = np.random.default_rng(seed)
    width, height = size
    clip = np.stack(
        [
            np.clip(8 * i + rng.integers(0, 4, (height, width, 3)), 0, 255).astype(np.uint8)
            for i in range(frames)
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_avi(path, clip)
    return clip


def write_moving_video(path: Path, frames: int = 40, seed: int = 0) -> np.ndarray:
    """A real AVI of a synthetic action clip (128x96): keyframes every 12 frames."""
    from harness.data.synthetic import PRESETS, render_clip

    preset = PRESETS["small"]
    clip = render_clip(
        "MoveUpSquare",
        type(preset)(preset.classes, preset.clips_per_group, frames, preset.width, preset.height),
        np.random.default_rng(seed),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_avi(path, clip)
    return clip
