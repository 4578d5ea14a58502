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
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from harness.cli import main
from harness.data.bench import format_bench
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
video.torchcodec_frames = lambda path, *args: calls.append(path) or torchcodec_frames(path, *args)
rng, report = random.Random(0), {}
for path in sys.argv[1:]:
    index = index_video(path)
    everything = list(range(index.frames))
    clip = [rng.randrange(index.frames) for _ in range(12)]  # unsorted, with repeats
    with forced_decoder("pyav"):
        pyav_all, pyav_clip = read_frames(path, everything, index), read_frames(path, clip, index)
    forced = len(calls)
    direct = torchcodec_frames(path, everything, index.frames)
    read_all, read_clip = read_frames(path, everything, index), read_frames(path, clip, index)
    alone = all(np.array_equal(read_frames(path, [i], index)[0], pyav_all[i]) for i in everything)
    report[path] = {
        "in_pts_order": index.in_pts_order(),
        "routed": forced == 0 and calls[:2] == [path, path],
        "torchcodec_read": direct is not None,
        "torchcodec_equal": direct is not None and np.array_equal(direct, pyav_all),
        "read_equal": np.array_equal(read_all, pyav_all) and np.array_equal(read_clip, pyav_clip),
        "each_frame_alone_equal": alone,
    }
    calls.clear()
print(json.dumps(report))
"""


def _b_frame_avi(path: Path) -> Path:
    """MPEG-4 Part 2 with B-frames in an AVI, the layout of XviD's UCF101 and HMDB51 files: the
    AVI demuxer guesses each packet's pts from the decode order, so sorting packets by pts (as
    torchcodec numbers frames) puts some frames one place early or late."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.max_b_frames, stream.codec_context.gop_size = 2, 12
        for i in range(30):
            container.mux(stream.encode(_numbered_frame(i, i)))
        container.mux(stream.encode())
    return path


def _numbered_frame(i: int, pts: int) -> av.VideoFrame:
    image = np.full((48, 64, 3), (i * 8) % 256, np.uint8)
    image[:, 2 * i % 60 : 2 * i % 60 + 4] = 255  # a bar that moves: every frame differs
    frame = av.VideoFrame.from_ndarray(image, format="rgb24")
    frame.pts = pts
    return frame


def _not_coded_packet_mp4(path: Path) -> Path:
    """An MPEG-4 Part 2 MP4 with one "not coded" VOP packet (a frame the encoder skipped), which
    decodes to no frame: torchcodec counts it as a frame, the harness's index does not."""
    encoder = av.CodecContext.create("mpeg4", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 48, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, 25), 25
    encoder.gop_size, encoder.max_b_frames = 50, 0
    packets = []
    for i in range(20):
        frame = _numbered_frame(i, i if i < 6 else i + 2)  # pts 6 and 7 left free
        frame.time_base = encoder.time_base
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.extradata, stream.time_base = encoder.extradata, encoder.time_base
        for packet in packets:
            if packet.pts == 8:
                container.mux(_not_coded_vop(stream, pts=6, time_base=encoder.time_base))
            packet.stream = stream
            container.mux(packet)
    return path


def _not_coded_vop(stream, pts: int, time_base: Fraction) -> av.Packet:
    """A P-VOP header with `vop_coded` 0 (ISO 14496-2 §6.2.5): start code, coding type 01,
    modulo time base 0, marker, a 5-bit time increment (25 ticks a second), marker, coded 0."""
    bits = "01" + "0" + "1" + format(pts % 25, "05b") + "1" + "0"
    bits += "0" + "1" * ((8 - (len(bits) + 1) % 8) % 8)  # MPEG-4 stuffing to the byte
    payload = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    packet = av.Packet(b"\x00\x00\x01\xb6" + payload)
    packet.pts = packet.dts = pts
    packet.time_base, packet.stream = time_base, stream  # the encoder's: the muxer rescales
    return packet


@needs_torchcodec
def test_torchcodec_gives_pyavs_frames_pixel_for_pixel(tiny, tmp_path):
    """Every frame of synthetic AVIs, of the real fixtures and of two crafted awkward files,
    whole, as unsorted clips with repeats and one by one: `read_frames` gives PyAV's frames for
    every video, torchcodec reading those whose index allows it. The crafted ones are what
    torchcodec numbers otherwise: B-frames in an AVI (left to PyAV by the index) and a packet
    that decodes to no frame (left to PyAV by torchcodec's frame count)."""
    synthetic = sorted(str(p) for p in (tiny / "UCF-101").rglob("*.avi"))[::18]
    fixtures = sorted(str(p) for p in VIDEOS.iterdir()) if VIDEOS.is_dir() else []
    crafted = [str(_b_frame_avi(tmp_path / "b_frames.avi")),
               str(_not_coded_packet_mp4(tmp_path / "not_coded.mp4"))]  # fmt: skip
    env = _pyav_ffmpeg_env(tmp_path / "ffmpeg")
    report = json.loads(_run_child(COMPARE, env, *synthetic, *fixtures, *crafted).stdout)
    for path, row in report.items():
        assert row["read_equal"] and row["each_frame_alone_equal"], (path, row)
    assert len(synthetic) >= 10
    for path in synthetic:
        assert report[path] == dict.fromkeys(report[path], True), (path, report[path])
    named = {Path(path).name: row for path, row in report.items()}
    for clean in ("short_32frames.mp4", "variable_fps.mp4") if fixtures else ():
        assert named[clean] == dict.fromkeys(named[clean], True), named[clean]
    for awkward in ("corrupted_h264.mp4", "rotated_90.mov") if fixtures else ():
        assert not (named[awkward]["in_pts_order"] or named[awkward]["routed"]), named[awkward]
    assert not (named["b_frames.avi"]["in_pts_order"] or named["b_frames.avi"]["routed"])
    assert named["not_coded.mp4"]["in_pts_order"] and not named["not_coded.mp4"]["torchcodec_read"]


BENCH = """
import sys
from harness.cli import main
from harness.data.bench import format_bench
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
    printed = format_bench(results)  # what the command prints without --json
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
    assert index.pts_addressable is True and index.in_pts_order()
    for unsafe in ({"rotation": 90}, {"decode_errors": 1}, {"pts_addressable": False},
                   {"pts_addressable": None}, {"error": "EOFError"}):  # fmt: skip
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
    assert index.pts_addressable is ordered
    expected = name in ("short_32frames.mp4", "variable_fps.mp4")  # rotation, a decode error
    assert index.in_pts_order() is expected, index


OLD_INDEX = """
import json, sys
from pathlib import Path
from harness.data.datasets import FrameIndex
from harness.data.datasets import Entry

root, found = Path(sys.argv[1]), sys.argv[2]
entries = [Entry(found, 0, found, "video")]
first = FrameIndex(root).lookup(entries)[found]
index_file = FrameIndex(root).path
stored = json.loads(index_file.read_text())
del stored[found]["index"]["pts_addressable"]  # as a harness before it wrote the entry
index_file.write_text(json.dumps(stored))
again = FrameIndex(root).lookup(entries)[found]
print(json.dumps([first.pts_addressable, again.pts_addressable]))
"""


@pytest.mark.parametrize("torchcodec", [False, True], ids=["pyav", "torchcodec"])
def test_an_index_entry_from_before_pts_order_is_measured_again_for_torchcodec(
    tiny, tmp_path, torchcodec
):
    """An index entry written before the field existed is measured again (once) where
    torchcodec decodes, to learn whether it may read the video; with PyAV it is kept as it is
    (a dataset's worth of decoding for nothing), and PyAV reads the video."""
    if torchcodec and importlib.util.find_spec("torchcodec") is None:
        pytest.skip("torchcodec is not installed")
    root = tiny / "UCF-101"
    found = str(next(root.rglob("*.avi")).relative_to(root))
    env = _pyav_ffmpeg_env(tmp_path / "ffmpeg") if torchcodec else dict(os.environ)
    env |= {"HARNESS_CACHE": str(tmp_path / "cache"), DECODER_ENV: "auto" if torchcodec else "pyav"}
    first, again = json.loads(_run_child(OLD_INDEX, env, str(root), found).stdout)
    assert first is True and again is (True if torchcodec else None)
