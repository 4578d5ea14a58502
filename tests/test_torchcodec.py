"""torchcodec as the decoder where it loads (`harness.data.torchcodec_reader`): frame for frame
PyAV's frames, the videos it must leave to PyAV, the choice (`HARNESS_DECODER`), and
`harness bench data` measuring the two against each other.

torchcodec finds FFmpeg's shared libraries through the dynamic loader, which reads its path when
a process starts; CI installs torchcodec but no system FFmpeg. So the tests that decode with it
run a child process whose `LD_LIBRARY_PATH` names links, under the names torchcodec loads, to the
FFmpeg 8 libraries PyAV's wheel bundles (what `tools/gpu/proof.sh` does on the GPU machine).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest

from harness.cli import main
from harness.data.datasets import FrameIndex
from harness.data.splits import DataError
from harness.data.synthetic import write_synthetic
from harness.data.torchcodec_reader import (
    DECODER_ENV,
    requested_decoder,
    torchcodec_problem,
    uses_torchcodec,
)
from harness.data.video import VideoIndex, index_video
from tests.conftest import FIXTURES_REASON, SHARED

VIDEOS = SHARED / "fixtures" / "videos"
FFMPEG = ("avutil", "avcodec", "avformat", "avdevice", "avfilter", "swscale", "swresample")
needs_torchcodec = pytest.mark.skipif(
    importlib.util.find_spec("torchcodec") is None,
    reason="torchcodec is not installed (`pip install -e '.[dev]' -c .ci/constraints.txt`)",
)
needs_fixtures = pytest.mark.skipif(not VIDEOS.is_dir(), reason=FIXTURES_REASON)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    write_synthetic(out, "tiny", seed=0)
    return out


def _pyav_ffmpeg_env(folder: Path) -> dict[str, str]:
    """The environment of a child process in which torchcodec loads PyAV's FFmpeg."""
    bundled = Path(av.__file__).resolve().parent.parent / "av.libs"
    folder.mkdir(exist_ok=True)
    for library in bundled.iterdir():
        match = re.match(r"lib(\w+)-[0-9a-f]+\.so\.(\d+)", library.name)
        if match and match.group(1) in FFMPEG:
            (folder / f"lib{match.group(1)}.so.{match.group(2)}").symlink_to(library)
    paths = [str(folder), str(bundled), os.environ.get("LD_LIBRARY_PATH", "")]
    return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(filter(None, paths))}


def _run_child(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    if "cannot be used here" in done.stderr:  # torchcodec found no FFmpeg 8 even so
        pytest.fail(f"torchcodec did not load with PyAV's FFmpeg:\n{done.stderr[-2000:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    return done


COMPARE = """
import json, random, sys
import numpy as np
import harness.data.video as video
from harness.data.torchcodec_reader import forced_decoder, torchcodec_frames, uses_torchcodec
from harness.data.video import index_video, read_frames

assert uses_torchcodec(), "torchcodec does not load in the child"
calls = []  # which videos read_frames handed to torchcodec (the real function still decodes)
video.torchcodec_frames = lambda path, wanted: calls.append(path) or torchcodec_frames(path, wanted)
rng, report = random.Random(0), {}
for path in sys.argv[1:]:
    index = index_video(path)
    everything = list(range(index.frames))
    clip = [rng.randrange(index.frames) for _ in range(12)]  # unsorted, with repeats
    with forced_decoder("pyav"):
        pyav_all, pyav_clip = read_frames(path, everything, index), read_frames(path, clip, index)
    forced = len(calls)
    direct = torchcodec_frames(path, everything)
    read_all, read_clip = read_frames(path, everything, index), read_frames(path, clip, index)
    report[path] = {
        "in_pts_order": index.in_pts_order(),
        "routed": forced == 0 and calls == [path, path],
        "torchcodec_read": direct is not None,
        "torchcodec_equal": direct is not None and np.array_equal(direct, pyav_all),
        "read_equal": np.array_equal(read_all, pyav_all) and np.array_equal(read_clip, pyav_clip),
    }
    calls.clear()
print(json.dumps(report))
"""


@needs_torchcodec
def test_torchcodec_gives_pyavs_frames_pixel_for_pixel(tiny, tmp_path):
    """Every frame of synthetic AVIs and of the real fixtures, whole and as unsorted clips with
    repeats: torchcodec's are PyAV's, and `read_frames` (torchcodec where the index allows it,
    PyAV otherwise) gives PyAV's for every video, the awkward ones included."""
    synthetic = sorted(str(p) for p in (tiny / "UCF-101").rglob("*.avi"))[::18]
    fixtures = sorted(str(p) for p in VIDEOS.iterdir()) if VIDEOS.is_dir() else []
    env = _pyav_ffmpeg_env(tmp_path / "ffmpeg")
    report = json.loads(_run_child(COMPARE, env, *synthetic, *fixtures).stdout)
    assert len(synthetic) >= 10 and all(row["read_equal"] for row in report.values()), report
    for path in synthetic:
        assert report[path] == dict.fromkeys(report[path], True), (path, report[path])
    named = {Path(path).name: row for path, row in report.items()}
    for clean in ("short_32frames.mp4", "variable_fps.mp4") if fixtures else ():
        assert named[clean] == dict.fromkeys(named[clean], True), named[clean]
    for awkward in ("corrupted_h264.mp4", "rotated_90.mov") if fixtures else ():
        assert not (named[awkward]["in_pts_order"] or named[awkward]["routed"]), named[awkward]


BENCH = """
import sys
from harness.cli import main
sys.exit(main(["bench", "data", "synthetic", *sys.argv[1:]]))
"""


@needs_torchcodec
def test_bench_data_measures_torchcodec_against_pyav(tiny, tmp_path):
    env = _pyav_ffmpeg_env(tmp_path / "ffmpeg")
    located = ["--root", str(tiny / "UCF-101"), "--split-dir", str(tiny / "ucfTrainTestlist")]
    sizes = ["--videos", "4", "--clips", "8", "--frames", "8", "--size", "32", "--workers", "1"]
    results = json.loads(_run_child(BENCH, env, *located, *sizes, "--json").stdout)
    assert "torchcodec" in results["decoder"], results["decoder"]
    videos, pyav = results["videos"], results["videos_pyav"]
    assert videos["raw_decode_fps"] > 0 and pyav["raw_decode_fps"] > 0
    assert pyav["speedup_vs_videos_1"] == pyav["clips_per_s_1"] / videos["clips_per_s_1"]
    printed = _run_child(BENCH, env, *located, *sizes).stdout
    assert re.search(r"torchcodec / PyAV: raw decode [\d.]+x, training clips [\d.]+x", printed)
    assert "raw decode (1 process, PyAV)" in printed, printed


def test_without_torchcodec_the_harness_decodes_with_pyav(tiny, monkeypatch, capsys):
    """Where torchcodec does not load (here: CI's test process finds no FFmpeg of its own),
    `auto` decodes with PyAV; asking for torchcodec says why it cannot, exit 2."""
    if not torchcodec_problem():
        pytest.skip("torchcodec loads in this process: nothing to fall back from")
    assert requested_decoder() == "auto" and not uses_torchcodec()
    monkeypatch.setenv(DECODER_ENV, "torchcodec")
    with pytest.raises(DataError, match="torchcodec cannot be used here: it"):
        uses_torchcodec()
    located = ["--root", str(tiny / "UCF-101"), "--split-dir", str(tiny / "ucfTrainTestlist")]
    assert main(["data", "check", "synthetic", *located]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{DECODER_ENV}=auto to decode with PyAV" in error, error


def test_an_unknown_decoder_is_refused_before_any_work(tiny, monkeypatch, capsys):
    monkeypatch.setenv(DECODER_ENV, "ffmpeg")
    located = ["--root", str(tiny / "UCF-101"), "--split-dir", str(tiny / "ucfTrainTestlist")]
    assert main(["data", "check", "synthetic", *located]) == 2
    error = capsys.readouterr().err
    assert f"{DECODER_ENV}='ffmpeg' is not a decoder; expected one of auto, pyav, torchcodec" in (
        error
    ), error
    monkeypatch.setenv(DECODER_ENV, "PyAV")  # a value's case does not matter
    assert requested_decoder() == "pyav" and not uses_torchcodec()


def test_the_index_records_whether_decode_order_is_pts_order(tiny):
    video = next((tiny / "UCF-101").rglob("*.avi"))
    index = index_video(video)
    assert index.ordered_pts is True and index.in_pts_order()
    for unsafe in ({"rotation": 90}, {"decode_errors": 1}, {"ordered_pts": False},
                   {"ordered_pts": None}, {"error": "EOFError"}):  # fmt: skip
        changed = VideoIndex(**{**index.__dict__, **unsafe})
        assert not changed.in_pts_order(), unsafe


@needs_fixtures
@pytest.mark.parametrize(
    ("name", "ordered"),
    [("short_32frames.mp4", True), ("variable_fps.mp4", True), ("rotated_90.mov", True),
     ("corrupted_h264.mp4", True)],
)  # fmt: skip
def test_real_videos_pts_order_and_what_keeps_them_from_torchcodec(name, ordered):
    index = index_video(VIDEOS / name)
    assert index.ordered_pts is ordered
    expected = name in ("short_32frames.mp4", "variable_fps.mp4")  # rotation, a decode error
    assert index.in_pts_order() is expected, index


def test_an_index_cached_before_pts_order_was_recorded_is_measured_again(tiny):
    root = tiny / "UCF-101"
    cache = FrameIndex(root)
    entry_name = str(next(root.rglob("*.avi")).relative_to(root))
    entries = [e for e in _entries(tiny) if e.found == entry_name]
    first = cache.lookup(entries)[entry_name]
    assert first.ordered_pts is True
    stored = json.loads(cache.path.read_text())
    del stored[entry_name]["index"]["ordered_pts"]  # as an older harness wrote it
    cache.path.write_text(json.dumps(stored))
    again = FrameIndex(root).lookup(entries)[entry_name]
    assert again.ordered_pts is True
    assert "ordered_pts" in json.loads(cache.path.read_text())[entry_name]["index"]


def _entries(tiny: Path):
    from harness.data.datasets import DatasetConfig, open_dataset

    config = DatasetConfig("synthetic", tiny / "UCF-101", split=1,
                           split_dir=tiny / "ucfTrainTestlist")  # fmt: skip
    _, train, test = open_dataset(config)
    return train + test
