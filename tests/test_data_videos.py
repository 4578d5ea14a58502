"""Decoding real awkward videos: decode-order counts, rotation, corrupt frames, truncation."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from harness.data.video import DecodeError, index_video, read_frames
from tests.conftest import FIXTURES_REASON, SHARED
from tests.data_helpers import write_moving_video, write_video

VIDEOS = SHARED / "fixtures" / "videos"
needs_fixtures = pytest.mark.skipif(not VIDEOS.is_dir(), reason=FIXTURES_REASON)


@needs_fixtures
def test_corrupted_h264_skips_the_bad_frame_and_keeps_the_rest():
    index = index_video(VIDEOS / "corrupted_h264.mp4")
    assert (index.header_frames, index.frames, index.decode_errors) == (50, 49, 1)
    assert index.status(16) == "ok"
    frames = read_frames(VIDEOS / "corrupted_h264.mp4", [0, 24, 48], index)
    assert frames.shape == (3, 720, 1280, 3)


@needs_fixtures
def test_rotation_metadata_is_honoured():
    index = index_video(VIDEOS / "rotated_90.mov")
    assert (index.frames, index.rotation) == (3, -90)
    assert index.status(16) == "too_short"
    frames = read_frames(VIDEOS / "rotated_90.mov", [0, 1, 2], index)
    assert frames.shape == (3, 568, 320, 3)  # coded 568x320 landscape, displayed portrait


@needs_fixtures
def test_variable_frame_rate_is_addressed_by_decode_order():
    path = VIDEOS / "variable_fps.mp4"
    index = index_video(path)
    assert index.frames == 300 and len(index.keyframes) > 1
    sequential = read_frames(path, list(range(300)))
    picked = [0, 31, 250, 251, 299]
    np.testing.assert_array_equal(read_frames(path, picked, index), sequential[picked])


@needs_fixtures
def test_short_clip():
    index = index_video(VIDEOS / "short_32frames.mp4")
    assert (index.frames, index.status(16)) == (32, "ok")
    assert read_frames(VIDEOS / "short_32frames.mp4", [31], index).shape == (1, 256, 340, 3)


def test_seek_returns_the_same_frames_as_sequential_decoding(tmp_path):
    path = tmp_path / "clip.avi"
    write_moving_video(path, frames=40)
    index = index_video(path)
    assert index.keyframes == [0, 12, 24, 36]
    sequential = read_frames(path, list(range(40)))
    for start in (0, 13, 24, 30):
        window = list(range(start, min(start + 8, 40)))
        np.testing.assert_array_equal(read_frames(path, window, index), sequential[window])


def test_frames_come_in_decode_order(tmp_path):
    path = tmp_path / "ramp.avi"
    write_video(path, frames=24)  # frame i has brightness ≈ 8·i
    means = read_frames(path, list(range(24))).reshape(24, -1).mean(axis=1)
    assert np.all(np.diff(means) > 4)


def test_truncated_copy_is_reported_truncated(tmp_path):
    path = tmp_path / "full.avi"
    write_moving_video(path, frames=40)
    cut = tmp_path / "cut.avi"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    index = index_video(cut)
    # the first half decodes without any error; only the count shows the cut
    assert index.header_frames == 40 and 0 < index.frames < 30 and not index.error
    assert index.status(16) == "truncated"
    with pytest.raises(DecodeError):
        read_frames(cut, [35], index)


def test_empty_and_garbage_files_are_unreadable(tmp_path):
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"\x00not a video" * 100)
    for path in (empty, garbage):
        index = index_video(path)
        assert index.frames == 0 and index.status() == "unreadable" and index.error


def test_header_off_by_one_is_not_truncation(tmp_path):
    path = tmp_path / "v.avi"
    shutil.copy(VIDEOS / "short_32frames.mp4", path) if VIDEOS.is_dir() else write_video(path)
    index = index_video(path)
    index.header_frames = index.frames + 1  # HMDB51's usual header error
    assert index.status() == "ok"
