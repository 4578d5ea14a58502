"""A synthetic action dataset in UCF101's on-disk format, written deterministically.

A class is a motion pattern of one target object (move up/down/sideways, rotate, grow, shrink,
blink, change colour …, times three shapes for up to 51 classes). Every class is invariant under
horizontal flips (left/right directions are drawn at random per clip), because the training
protocol flips clips: a "move right" class would become "move left". The target stays still except
during a window of frames, and only in one region of the frame, among distractor objects that
wander the whole clip, a textured background and pixel noise: temporal attention has frames to
find and spatial attention a region.

Layout, as UCF101 is distributed::

    OUT/UCF-101/<Class>/v_<Class>_gGG_cCC.avi        MPEG-4 part 2 in AVI, 25 fps
    OUT/ucfTrainTestlist/classInd.txt                 "1 Class" … (CRLF)
    OUT/ucfTrainTestlist/trainlist0k.txt              "<Class>/<clip>.avi <label>" (CRLF)
    OUT/ucfTrainTestlist/testlist0k.txt               "<Class>/<clip>.avi" (CRLF, no label)

25 groups; split k tests on groups 7k-6 … 7k, the rest train (as UCF101's splits do).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from harness.data.datasets import cache_dir
from harness.data.pool import worker_pool
from harness.data.splits import DataError

MOTIONS = (
    "MoveUp", "MoveDown", "Grow", "Shrink", "MoveSideways", "Rotate", "Blink", "RedToBlue",
    "BlueToRed", "RiseDiagonally", "SinkDiagonally", "Bounce", "Orbit", "Shake", "Pulse",
    "FadeIn", "FadeOut",
)  # fmt: skip
SHAPES = ("Square", "Disc", "Bar")
GROUPS = 25
MARKER = "synthetic.json"  # which preset and seed a folder holds (`check_synthetic_out`)


@dataclass(frozen=True)
class Preset:
    classes: int
    clips_per_group: int
    frames: int
    width: int
    height: int


PRESETS = {
    "tiny": Preset(classes=5, clips_per_group=2, frames=24, width=64, height=48),
    "small": Preset(classes=10, clips_per_group=2, frames=40, width=128, height=96),
    "large": Preset(classes=51, clips_per_group=4, frames=64, width=160, height=120),
    # UCF101-sized frames (320x240, ~5 s): what `harness bench data` should measure on
    "bench": Preset(classes=4, clips_per_group=1, frames=128, width=320, height=240),
}


def class_names(count: int) -> list[str]:
    """The first `count` classes: every motion with a square first, then discs, then bars."""
    names = [f"{motion}{shape}" for shape in SHAPES for motion in MOTIONS]
    return names[:count]


def write_synthetic(out: Path, preset: str = "tiny", seed: int = 0,
                    workers: int | None = None) -> Path:  # fmt: skip
    """Write the dataset under `out` with `workers` processes (None: every core); returns the
    video root (`out/UCF-101`). Each clip draws from its own generator, seeded by
    `(seed, label, group, clip)`, so the files do not depend on `workers`."""
    config = PRESETS[preset]
    classes = class_names(config.classes)
    video_root = out / "UCF-101"
    video_root.mkdir(parents=True, exist_ok=True)
    # marked first: a run cut short (Ctrl-C) leaves a folder the same command may fill again
    (out / MARKER).write_text(json.dumps({"preset": preset, "seed": seed}) + "\n")
    jobs = []
    for label, name in enumerate(classes):
        (video_root / name).mkdir(parents=True, exist_ok=True)
        for group in range(1, GROUPS + 1):
            for clip in range(1, config.clips_per_group + 1):
                jobs.append((video_root, preset, seed, label, name, group, clip))
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers == 1:
        for job in jobs:
            _write_clip(job)
    else:
        with worker_pool(workers) as pool:
            list(pool.map(_write_clip, jobs, chunksize=4))
    write_split_lists(out / "ucfTrainTestlist", classes, config.clips_per_group)
    return video_root


def check_synthetic_out(out: Path, preset: str, seed: int) -> None:
    """`out` may take the `preset` dataset of `seed`: it is new or empty, or holds that dataset
    already (written again, file for file). A real UCF-101 there would get synthetic class
    folders and its official split files replaced; another preset or seed, a mixture of two
    datasets; any other folder, files scattered among its own."""
    written = out / MARKER
    if written.is_file():
        found = json.loads(written.read_text())
        if found == {"preset": preset, "seed": seed}:
            return
        holds = f"the synthetic {found.get('preset')!r} preset (seed {found.get('seed')})"
    elif any((out / name).exists() for name in ("UCF-101", "ucfTrainTestlist")):
        holds = "a dataset harness data synth did not write (UCF-101/ or ucfTrainTestlist/)"
    elif out.is_dir() and any(out.iterdir()):  # a project folder, `/`: its files left alone
        first = min(entry.name for entry in out.iterdir())
        holds = f"other files (e.g. {first})"
    else:
        return
    raise DataError(f"--out {out} already holds {holds}; writing the {preset!r} preset (seed "
                    f"{seed}) there would mix or overwrite it. Give a new folder.")  # fmt: skip


def _write_clip(job: tuple[Path, str, int, int, str, int, int]) -> None:
    video_root, preset, seed, label, name, group, clip = job
    rng = np.random.default_rng([seed, label, group, clip])
    frames = render_clip(name, PRESETS[preset], rng)
    encode_avi(video_root / name / clip_name(name, group, clip), frames)


def clip_name(name: str, group: int, clip: int) -> str:
    return f"v_{name}_g{group:02d}_c{clip:02d}.avi"


def write_split_lists(folder: Path, classes: list[str], clips_per_group: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _write_crlf(folder / "classInd.txt", [f"{i + 1} {name}" for i, name in enumerate(classes)])
    for split in (1, 2, 3):
        test_groups = range(7 * split - 6, 7 * split + 1)
        train, test = [], []
        for label, name in enumerate(classes):
            for group in range(1, GROUPS + 1):
                for clip in range(1, clips_per_group + 1):
                    relative = f"{name}/{clip_name(name, group, clip)}"
                    if group in test_groups:
                        test.append(relative)
                    else:
                        train.append(f"{relative} {label + 1}")
        _write_crlf(folder / f"trainlist0{split}.txt", train)
        _write_crlf(folder / f"testlist0{split}.txt", test)


def _write_crlf(path: Path, lines: list[str]) -> None:
    path.write_bytes("".join(f"{line}\r\n" for line in lines).encode())


def render_clip(name: str, config: Preset, rng: np.random.Generator) -> np.ndarray:
    """`(T, H, W, 3)` uint8 frames of one clip of class `name`."""
    h, w, t = config.height, config.width, config.frames
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    background = _background(rng, h, w, xs, ys)
    start = int(rng.integers(t // 6, t // 3))
    length = int(rng.integers(t // 3, t // 2))
    motion = next(m for m in MOTIONS if name.startswith(m))
    shape = name.removeprefix(motion)
    size = min(h, w) / 7
    # the target's region: one of four quadrants, away from the border
    centre = np.array([w * rng.choice([0.3, 0.7]), h * rng.choice([0.3, 0.7])], np.float32)
    colour = rng.uniform(80, 255, 3)
    side = float(rng.choice([-1.0, 1.0]))  # left or right, where a motion has a direction
    distractors = [_distractor(rng, h, w, t, size) for _ in range(2)]
    frames = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        progress = np.clip((i - start) / length, 0.0, 1.0)  # 0 before, 1 after the action
        image = background.copy()
        for d_shape, track, d_colour in distractors:
            _paint(image, _mask(d_shape, xs, ys, track[i], size, 0.0), d_colour)
        state = _target_state(motion, progress, i - start, side, size, colour, background, h, w)
        if state is not None:
            offset, scale, angle, target_colour = state
            mask = _mask(shape, xs, ys, centre + offset, size * scale, angle)
            _paint(image, mask, target_colour)
        image += rng.normal(0, 6, image.shape).astype(np.float32)
        frames[i] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def _background(rng, h, w, xs, ys) -> np.ndarray:
    base = rng.uniform(20, 120, 3).astype(np.float32)
    waves = [np.sin(xs / w * rng.uniform(2, 6) + rng.uniform(0, 6)) for _ in range(3)]
    return np.stack([base[c] + 25 * waves[c] * np.cos(ys / h * 3) for c in range(3)], axis=-1)


def _distractor(rng, h, w, t, size):
    steps = rng.normal(0, 1.2, (t, 2)).cumsum(axis=0)
    start = rng.uniform([size, size], [w - size, h - size])
    track = np.clip(start + steps, [0, 0], [w, h]).astype(np.float32)
    return rng.choice(SHAPES), track, rng.uniform(60, 255, 3)


def _target_state(motion, progress, step, side, size, colour, background, h, w):
    """(offset, scale, angle, colour) of the target at this frame, or None when hidden.

    `progress` runs from 0 (before the action window) to 1 (after it); `side` is ±1.
    """
    travel = min(h, w) * 0.35
    offset, scale, angle = np.zeros(2, np.float32), 1.0, 0.0
    directions = {
        "MoveUp": (0, -1), "MoveDown": (0, 1), "MoveSideways": (side, 0),
        "RiseDiagonally": (0.7 * side, -0.7), "SinkDiagonally": (0.7 * side, 0.7),
    }  # fmt: skip
    if motion in directions:
        offset = np.array(directions[motion], np.float32) * (progress - 0.5) * travel
    elif motion == "Grow":
        scale = 0.6 + 0.9 * progress
    elif motion == "Shrink":
        scale = 1.5 - 0.9 * progress
    elif motion == "Rotate":
        angle = side * progress * np.pi
    elif motion == "Blink":
        if 0 < progress < 1 and step % 4 < 2:
            return None
    elif motion in ("RedToBlue", "BlueToRed"):
        red, blue = np.array([230, 40, 40]), np.array([40, 40, 230])
        first, last = (red, blue) if motion == "RedToBlue" else (blue, red)
        colour = first + (last - first) * progress
    elif motion in ("FadeIn", "FadeOut"):
        visible = progress if motion == "FadeIn" else 1 - progress
        colour = background.mean(axis=(0, 1)) * (1 - visible) + colour * visible
    elif motion == "Bounce":
        offset = np.array([0, -abs(np.sin(progress * 2 * np.pi)) * travel / 2], np.float32)
    elif motion == "Orbit":
        a = progress * 2 * np.pi
        offset = np.array([side * (np.cos(a) - 1), np.sin(a)], np.float32) * travel / 3
    elif motion == "Shake":
        offset = np.array([np.sin(progress * 12 * np.pi) * size / 2, 0], np.float32)
    elif motion == "Pulse":
        scale = 1.0 + 0.5 * np.sin(progress * 4 * np.pi)
    return offset, scale, angle, colour


def _mask(shape, xs, ys, centre, size, angle) -> np.ndarray:
    dx, dy = xs - centre[0], ys - centre[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    if shape == "Disc":
        return u**2 + v**2 <= size**2
    if shape == "Bar":
        return (np.abs(u) <= size * 1.4) & (np.abs(v) <= size * 0.35)
    return (np.abs(u) <= size) & (np.abs(v) <= size)


def _paint(image: np.ndarray, mask: np.ndarray, colour) -> None:
    image[mask] = colour


def encode_avi(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    """Encode `(T, H, W, 3)` frames as MPEG-4 part 2 in AVI, single-threaded (deterministic)."""
    with av.open(str(path), "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.gop_size = 12
        stream.codec_context.bit_rate = 2_000_000
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


SYNTHETIC_PREFIX = "synthetic:"  # a dataset root `synthetic:<preset>` names a generated preset


def synthetic_preset(root: str) -> str | None:
    """The preset a dataset root names (`synthetic:tiny` → `tiny`), or None for a real folder."""
    return root.removeprefix(SYNTHETIC_PREFIX) if root.startswith(SYNTHETIC_PREFIX) else None


def materialise(preset: str) -> tuple[Path, Path]:
    """The preset's videos and split lists in the cache, generated on first use (seed 0):
    `(video root, split folder)`."""
    if preset not in PRESETS:
        raise DataError(
            f"unknown synthetic preset {preset!r}; accepted: "
            f"{', '.join(SYNTHETIC_PREFIX + p for p in PRESETS)}."
        )
    out = _folder(preset)
    if not generated(preset):
        print(f"generating the synthetic {preset} dataset into {out} (first use)")
        write_synthetic(out, preset, seed=0)
    return out / "UCF-101", out / "ucfTrainTestlist"


def generated(preset: str) -> bool:
    """Whether `materialise(preset)` finds the preset in the cache (else it generates it)."""
    return (_folder(preset) / "ucfTrainTestlist" / "testlist03.txt").is_file()


def _folder(preset: str) -> Path:
    return cache_dir() / "datasets" / f"synthetic-{preset}-seed0"
