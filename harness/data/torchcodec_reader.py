"""torchcodec as the decoder of the frames PyAV would give, where it is installed and loads.

torchcodec (Meta's FFmpeg binding for PyTorch) decodes and converts to RGB in C++, without PyAV's
per-frame Python objects: on a 2-core CPU it made training clips of the synthetic AVIs about
2x as fast as PyAV, and decoded whole videos about 4x (`harness bench data` prints both on any
machine where it loads). With the FFmpeg libraries PyAV uses, its frames are PyAV's pixel for pixel
(`tests/test_torchcodec.py`), but it numbers frames by timestamp while the harness numbers them
in decode order (`harness.data.video`). So it reads only a video whose index shows the two to
agree (`VideoIndex.in_pts_order`) and whose frame count it counts too; any other video, and any
torchcodec error, goes to PyAV.

`HARNESS_DECODER` chooses: `auto` (default: torchcodec where it loads with the FFmpeg libraries
PyAV decodes with, else PyAV), `pyav`, or `torchcodec` (with whatever FFmpeg it loads; an error,
exit 2, where it cannot load). torchcodec needs FFmpeg's shared libraries (major 4 to 8) where
the dynamic loader finds them; it is optional (`pip install torchcodec`, the release made for
the installed torch).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
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
            f"expected one of {', '.join(DECODERS)} (auto: torchcodec where it loads with "
            f"PyAV's FFmpeg libraries, else PyAV). Unset it or set one of these."
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
    return not problem and (requested == "torchcodec" or not other_ffmpeg())


@functools.cache
def other_ffmpeg() -> str:
    """How the FFmpeg torchcodec loaded differs from the one PyAV decodes with ('' when they
    are one: the same libraries give the same pixels; `auto` uses torchcodec only then)."""
    from torchcodec._core import get_ffmpeg_library_versions

    theirs = get_ffmpeg_library_versions()
    differing = [
        f"{name} {_dotted(theirs[name])} against PyAV's {_dotted(version)}"
        for name, version in av.library_versions.items()
        if name in theirs and tuple(theirs[name]) != tuple(version)
    ]
    return "; ".join(differing)


def pyav_version() -> str:
    """`PyAV X, libavcodec Y`: what decodes where torchcodec does not, and what a clip cache
    records as its decoder (torchcodec, where it reads, uses the same libavcodec in `auto`)."""
    return f"PyAV {av.__version__}, libavcodec {_dotted(av.library_versions['libavcodec'])}"


def decoder_in_use() -> str:
    """What decodes video files in this process, as runs and `bench data` name it."""
    pyav = pyav_version()
    if uses_torchcodec():
        return f"{torchcodec_version()} where the index allows, else {pyav}"
    if requested_decoder() == "auto" and not torchcodec_problem():
        return (f"{pyav}; torchcodec loads, but with another FFmpeg ({other_ffmpeg()}), whose "
                f"pixels may differ ({DECODER_ENV}=torchcodec uses it even so)")  # fmt: skip
    return pyav


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


def torchcodec_frames(
    path: str | Path, indices: Sequence[int], frames: int | None = None
) -> np.ndarray | None:
    """RGB frames at `indices` (presentation order), `(len(indices), H, W, 3)` uint8, or `None`
    when torchcodec cannot deliver them all, or counts other than `frames` in the video (a
    packet that decodes to no frame, which its numbering counts): the caller then uses PyAV."""
    from torchcodec.decoders import VideoDecoder

    wanted = sorted(set(indices))
    try:
        decoder = VideoDecoder(
            str(path), dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="exact"
        )
        if frames is not None and decoder.metadata.num_frames != frames:
            return None
        batch = decoder.get_frames_at(wanted).data.numpy()
    except FAILURES:
        return None
    if len(batch) != len(wanted):
        return None
    position = {frame: row for row, frame in enumerate(wanted)}
    return np.ascontiguousarray(batch[[position[i] for i in indices]])
