"""Does torchcodec decode what PyAV decodes, frame for frame, and how fast (one thread each)?

    python tools/gpu/torchcodec_probe.py VIDEO_OR_FOLDER... [--limit 40]

For every video (folders are searched for videos), all frames through `harness.data.video`
(PyAV, decode order) and through torchcodec's `VideoDecoder` (exact seek mode, one FFmpeg
thread, NHWC): equal or not, and the largest pixel difference. Then the frames/s of each over
the same videos, whole files and 16-frame clips at random offsets.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from harness.data.video import VIDEO_SUFFIXES, VideoIndex, index_video, read_frames


def _videos(paths: list[str], limit: int) -> list[Path]:
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        found += [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES][:limit]
    return found


def _torchcodec_frames(path: Path, indices: list[int]) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=1)
    return decoder.get_frames_at(indices).data.numpy()


def _compare(videos: list[Path]) -> None:
    for path in videos:
        index = index_video(path)
        indices = list(range(index.frames))
        try:
            ours = read_frames(path, indices, index)
            theirs = _torchcodec_frames(path, indices)
        except Exception as error:  # noqa: BLE001 -- a probe reports every failure and goes on
            print(f"{path.name}: {type(error).__name__}: {str(error)[:200]}")
            continue
        same_shape = ours.shape == theirs.shape
        diff = int(np.abs(ours.astype(int) - theirs.astype(int)).max()) if same_shape else -1
        print(
            f"{path.name}: {index.frames} frames, pyav {ours.shape} torchcodec {theirs.shape}"
            f" equal={same_shape and diff == 0} max|diff|={diff}"
        )


def _rate(decode, videos: dict[Path, VideoIndex], clips: bool) -> float:
    """Frames/s of `decode(path, indices, index)`, the PyAV index built beforehand."""
    rng = random.Random(0)
    frames, started = 0, time.perf_counter()
    for path, index in videos.items():
        start = rng.randrange(max(index.frames - 16, 1)) if clips else 0
        stop = min(start + 16, index.frames) if clips else index.frames
        frames += len(decode(path, list(range(start, stop)), index))
    return frames / (time.perf_counter() - started)


def _torchcodec(path: Path, indices: list[int], index: VideoIndex) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    decoder = VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=1)
    return decoder.get_frames_at(indices).data.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--limit", type=int, default=40, help="videos per folder")
    args = parser.parse_args()
    import torchcodec

    print(f"torchcodec {torchcodec.__version__}")
    videos = _videos(args.paths, args.limit)
    _compare(videos)
    indexes = {path: index_video(path) for path in videos}
    timed = {p: i for p, i in indexes.items() if i.frames >= 16 and not i.decode_errors}
    for name, decode in (("pyav", read_frames), ("torchcodec", _torchcodec)):
        whole = _rate(decode, timed, clips=False)
        clip = _rate(decode, timed, clips=True)
        print(
            f"{name}: {len(timed)} videos, whole files {whole:7.1f} frames/s, 16-frame clips "
            f"{clip:7.1f} frames/s"
        )


if __name__ == "__main__":
    main()
