"""Decoding videos with PyAV, frames addressed by decode order.

Header frame counts lie (HMDB51's AVI headers count one frame more than decodes), DivX/XviD frames
come out with non-monotonic `pts`, a truncated AVI decodes its first half without any exception,
and a seek past the cut returns wrong frames. So a video is indexed once by decoding it: the
number of frames that actually decode, and the decode-order positions and `pts` of its keyframes.
Random access then seeks to the keyframe at or before the wanted frame and counts frames from
there, checking that the seek landed where the index says.

Conversion to RGB runs single-threaded (`threads=1`, codec `thread_count=1`): inside loader
workers, threaded conversion is 3–4× slower when several processes decode at once.

Where torchcodec loads, it reads the frames of each video whose index shows decode order and
timestamp order to agree (`harness.data.torchcodec_reader`): the same pixels, faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
from av.video.frame import PictureType

from harness.data.torchcodec_reader import torchcodec_frames, uses_torchcodec

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")
STATUSES = ("ok", "unreadable", "truncated", "too_short", "missing")


@dataclass
class VideoIndex:
    """What one decoding pass learned about a video file."""

    frames: int  # frames that decode, in decode order
    header_frames: int  # what the container claims (0 when it does not say)
    rotation: int  # degrees counter-clockwise to display the frames upright
    keyframes: list[int] = field(default_factory=list)  # decode-order positions
    keyframe_pts: list[int] = field(default_factory=list)
    decode_errors: int = 0
    error: str = ""
    pts_addressable: bool | None = None  # `_PtsOrder`'s verdict (None: not recorded)

    def in_pts_order(self) -> bool:
        """Whether frame `i` in decode order is frame `i` by timestamp, for a decoder that
        addresses frames so (torchcodec): pts addressable, nothing failed, no rotation."""
        clean = not (self.decode_errors or self.error or self.rotation)
        return bool(self.pts_addressable) and clean and self.status() == "ok"

    def status(self, min_frames: int = 1) -> str:
        """ok, unreadable (nothing decodes), truncated (far fewer frames decode than the header
        says; one fewer is HMDB51's usual header error), or too_short (< `min_frames`)."""
        if self.frames == 0:
            return "unreadable"
        if self.header_frames and self.frames < self.header_frames - 1:
            return "truncated"
        if self.frames < min_frames:
            return "too_short"
        return "ok"


class DecodeError(RuntimeError):
    """A video that cannot deliver the frames asked for."""


def _open(path: str | Path) -> av.container.InputContainer:
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.thread_type = "NONE"
    stream.codec_context.thread_count = 1
    return container


def _decoded(container, stream):
    """Frames in decode order; packets that fail to decode are skipped (and counted)."""
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            yield None


def index_video(path: str | Path) -> VideoIndex:
    """Decode `path` once and record its decodable frame count, keyframes and rotation."""
    try:
        container = _open(path)
    except (av.error.FFmpegError, IndexError, OSError) as error:
        return VideoIndex(0, 0, 0, error=f"{type(error).__name__}: {error}")
    with container:
        stream = container.streams.video[0]
        index = VideoIndex(0, int(stream.frames or 0), 0)
        order = _PtsOrder(guessed="avi" in container.format.name.split(","))
        try:
            for frame in _decoded(container, stream):
                if frame is None:
                    index.decode_errors += 1
                    continue
                order.see(frame)
                if frame.key_frame:
                    index.keyframes.append(index.frames)
                    index.keyframe_pts.append(frame.pts)
                if index.frames == 0:
                    index.rotation = int(getattr(frame, "rotation", 0) or 0)
                index.frames += 1
        except av.error.FFmpegError as error:  # demuxing stopped: keep what decoded
            index.error = f"{type(error).__name__}: {error}"
    index.pts_addressable = order.addressable
    return index


class _PtsOrder:
    """Whether a decoder that numbers frames by timestamp (torchcodec) numbers them as decode
    order does: every frame's pts above the last's, and no B-frame in a container whose
    demuxer guesses pts from the decode order (AVI: there torchcodec, sorting packets by those
    guesses, returned the frame after or before the one asked for)."""

    def __init__(self, *, guessed: bool) -> None:
        self.guessed = guessed
        self.last_pts: int | None = None
        self.addressable = True

    def see(self, frame: av.VideoFrame) -> None:
        rising = frame.pts is not None and (self.last_pts is None or frame.pts > self.last_pts)
        reordered = self.guessed and frame.pict_type == PictureType.B
        self.addressable &= rising and not reordered
        self.last_pts = frame.pts


def read_frames(
    path: str | Path, indices: Sequence[int], index: VideoIndex | None = None
) -> np.ndarray:
    """RGB frames at decode-order `indices` as `(len(indices), H, W, 3)` uint8, upright.

    With an `index` in pts order and torchcodec in use, torchcodec reads them. Otherwise PyAV:
    with an `index`, decoding starts at the keyframe before the first wanted frame; without one
    (or when the seek lands elsewhere) it decodes from the start.
    """
    wanted = sorted(set(indices))
    if not wanted:
        raise ValueError("no frames requested")
    if _for_torchcodec(index, wanted):
        batch = torchcodec_frames(path, indices, index.frames)
        if batch is not None:
            return batch
    frames = _decode_from_keyframe(path, wanted, index) if index else None
    if frames is None:
        frames = _decode_range(path, wanted, start=0, start_pts=None)
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise DecodeError(f"{path}: frames {missing[:5]} did not decode")
    return np.stack([frames[i] for i in indices])


def _for_torchcodec(index: VideoIndex | None, wanted: list[int]) -> bool:
    """torchcodec reads them: in use, the video pts-addressable, every index within it."""
    inside = index is not None and 0 <= wanted[0] and wanted[-1] < index.frames
    return inside and index.in_pts_order() and uses_torchcodec()


def _decode_from_keyframe(path, wanted: list[int], index: VideoIndex) -> dict | None:
    position = np.searchsorted(index.keyframes, wanted[0], side="right") - 1
    if position <= 0:
        return None  # the first keyframe is the start: plain decoding is as fast
    return _decode_range(
        path, wanted, start=index.keyframes[position], start_pts=index.keyframe_pts[position]
    )


def _decode_range(path, wanted: list[int], *, start: int, start_pts: int | None) -> dict | None:
    needed = set(wanted)
    found: dict[int, np.ndarray] = {}
    with _open(path) as container:
        stream = container.streams.video[0]
        if start_pts is not None:
            container.seek(start_pts, stream=stream, backward=True, any_frame=False)
        position = start
        for frame in _decoded(container, stream):
            if frame is None:
                continue
            if position == start and start_pts is not None and frame.pts != start_pts:
                return None  # the seek landed on another keyframe: count from the start instead
            if position in needed:
                rotation = int(getattr(frame, "rotation", 0) or 0)
                found[position] = _upright(frame.to_ndarray(format="rgb24"), rotation)
                if len(found) == len(needed):
                    break
            position += 1
    return found


def _upright(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Apply the display rotation (degrees counter-clockwise) as players do."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k=turns)) if turns else frame
