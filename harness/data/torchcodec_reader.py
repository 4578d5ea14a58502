"""torchcodec as the decoder of the frames PyAV would give, where it is installed and loads.

torchcodec (Meta's FFmpeg binding for PyTorch) decodes and converts to RGB in C++, without PyAV's
per-frame Python objects: on a 2-core CPU it reads 16-frame training clips of the synthetic AVIs
2.7x as fast as PyAV, and whole videos 4x (`harness bench data` prints both on any machine where
it loads). Its frames are PyAV's pixel for pixel (`tests/test_torchcodec.py` checks every frame
of the fixtures and the synthetic videos), but it addresses frames by presentation timestamp
while the harness addresses them in decode order (`harness.data.video`). So it reads only a video
whose index shows the two orders to be one: every frame decoded with a timestamp above the last
one's, no decode error, no rotation to apply. Any other video, and any torchcodec error, goes to
PyAV.

`HARNESS_DECODER` chooses: `auto` (default: torchcodec where it loads, else PyAV), `pyav`, or
`torchcodec` (an error, exit 2, where it cannot load). torchcodec needs FFmpeg's shared libraries
(major versions 4 to 8) where the dynamic loader finds them; it is optional
(`pip install torchcodec`, the release made for the installed torch).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from harness.data.splits import DataError

DECODER_ENV = "HARNESS_DECODER"
DECODERS = ("auto", "pyav", "torchcodec")
FAILURES = (RuntimeError, ValueError, IndexError, OSError)  # what torchcodec raises on a video


def requested_decoder() -> str:
    """`HARNESS_DECODER`, checked: one of `DECODERS` (unset: auto)."""
    value = os.environ.get(DECODER_ENV, "auto").strip().lower() or "auto"
    if value not in DECODERS:
        raise DataError(
            f"environment variable {DECODER_ENV}={os.environ[DECODER_ENV]!r} is not a decoder; "
            f"expected one of {', '.join(DECODERS)} (auto: torchcodec where it loads, else "
            f"PyAV). Unset it or set one of these."
        )
    return value


@contextlib.contextmanager
def forced_decoder(name: str) -> Iterator[None]:
    """`HARNESS_DECODER=name` in this process and the loader workers it starts, then as before."""
    before = os.environ.get(DECODER_ENV)
    os.environ[DECODER_ENV] = name
    try:
        yield
    finally:
        if before is None:
            del os.environ[DECODER_ENV]
        else:
            os.environ[DECODER_ENV] = before


def uses_torchcodec() -> bool:
    """Whether this process decodes with torchcodec (`HARNESS_DECODER` and whether it loads)."""
    requested = requested_decoder()
    if requested == "pyav":
        return False
    problem = torchcodec_problem()
    if problem and requested == "torchcodec":
        raise DataError(
            f"{DECODER_ENV}=torchcodec, but torchcodec cannot be used here: {problem} Install "
            "the torchcodec release made for this torch (`pip install torchcodec`) and FFmpeg's "
            f"shared libraries (major 4 to 8), or set {DECODER_ENV}=auto to decode with PyAV."
        )
    return not problem


@functools.cache
def torchcodec_problem() -> str:
    """Why torchcodec cannot decode in this process ('' when it can): not installed, or its
    libraries do not load (no FFmpeg, or a build for another torch)."""
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except ImportError:
        return "it is not installed."
    except RuntimeError:  # its loader tried each FFmpeg major; its message lists every failure
        import torch

        return (
            "it is installed but its libraries do not load: the dynamic loader found no FFmpeg "
            "shared libraries of major 4 to 8 (libavutil.so.56 to .60), or this torchcodec "
            f"was built for another torch than {torch.__version__} (`python -c 'import "
            "torchcodec'` shows every attempt)."
        )
    return ""


def torchcodec_version() -> str:
    """`torchcodec X (libavcodec Y)`, the decoder and the FFmpeg it loaded."""
    import torchcodec
    from torchcodec._core import get_ffmpeg_library_versions

    codec = get_ffmpeg_library_versions().get("libavcodec", "?")
    return f"torchcodec {torchcodec.__version__} (libavcodec {_dotted(codec)})"


def _dotted(version) -> str:
    """libavcodec's version as FFmpeg prints it (torchcodec gives `[major, minor, micro]`)."""
    return ".".join(map(str, version)) if isinstance(version, list | tuple) else str(version)


def torchcodec_frames(path: str | Path, indices: Sequence[int]) -> np.ndarray | None:
    """RGB frames at `indices` (presentation order), `(len(indices), H, W, 3)` uint8, or `None`
    when torchcodec cannot deliver them all (the caller then decodes with PyAV)."""
    from torchcodec.decoders import VideoDecoder

    wanted = sorted(set(indices))
    try:
        decoder = VideoDecoder(
            str(path), dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="exact"
        )
        batch = decoder.get_frames_at(wanted).data.numpy()
    except FAILURES:
        return None
    if len(batch) != len(wanted):
        return None
    position = {frame: row for row, frame in enumerate(wanted)}
    return np.ascontiguousarray(batch[[position[i] for i in indices]])
