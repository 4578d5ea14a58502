"""JPEG frame folders as other tools write them, and TSN-style optical flow.

- 3D-ResNets-PyTorch: `<root>/<Class>/<video_id>/image_00001.jpg` (1-based).
- mmaction2 / TSN: `img_00001.jpg`, flow `flow_x_00001.jpg` / `flow_y_00001.jpg` (values mapped
  to 0–255 around 128).
- `harness data prepare` writes `image_%05d.jpg`, so every loader reads its output too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

RGB_PATTERN = re.compile(r"^(image|img)_(\d{5})\.jpg$")
FLOW_PREFIXES = ("flow_x", "flow_y")


def rgb_frame_files(folder: Path) -> list[Path]:
    """The RGB frame files of a folder in frame order (either naming)."""
    files = [
        (int(m.group(2)), folder / name)
        for name in _names(folder)
        if (m := RGB_PATTERN.match(name))
    ]
    return [path for _, path in sorted(files)]


def count_flow_frames(folder: Path) -> int:
    return sum(1 for name in _names(folder) if name.startswith("flow_x_") and name.endswith(".jpg"))


def read_rgb_frames(files: Sequence[Path], indices: Sequence[int]) -> np.ndarray:
    """`(len(indices), H, W, 3)` uint8 from 0-based frame indices."""
    return np.stack([_load(files[i], "RGB") for i in indices])


def read_flow_stack(folder: Path, start: int, length: int) -> np.ndarray:
    """`(2·length, H, W)` uint8: x, y, x, y … from 0-based frame `start` (TSN's stacking)."""
    planes = []
    for i in range(start, start + length):
        for prefix in FLOW_PREFIXES:
            planes.append(_load(folder / f"{prefix}_{i + 1:05d}.jpg", "L"))
    return np.stack(planes)


def _load(path: Path, mode: str) -> np.ndarray:
    with Image.open(path) as image:
        image.draft(mode, image.size)  # no scaling; skips colour conversion work where possible
        return np.asarray(image.convert(mode))


def _names(folder: Path) -> list[str]:
    try:
        return [entry.name for entry in Path(folder).iterdir()]
    except OSError:
        return []
