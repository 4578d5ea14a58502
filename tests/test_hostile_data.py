"""Hostile data: every user mistake in a data tree or a split file ends as one `DataError`
paragraph naming the file (and line), and no path read from a list leaves the dataset root.

Most cases need no video at all: the lists are parsed before anything on disk is opened. The
few that do use one tiny real AVI (4 frames, 32×24).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.datasets import FrameIndex, open_dataset, unreadable_message
from harness.data.formats import DatasetConfig
from harness.data.prepare import prepare_frames
from harness.data.splits import DataError, Sample
from tests.data_helpers import write_video

UCF_TRAIN = "Jump/v_Jump_g01_c01.avi 1\r\nWave/v_Wave_g01_c01.avi 2\r\n"
UCF_TEST = "Jump/v_Jump_g02_c01.avi\r\n"


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _ucf101(tmp: Path, **files: str | bytes | None) -> DatasetConfig:
    """A UCF101 split folder (`classInd`, `trainlist01`, `testlist01`, each replaced by a
    keyword; None makes it a folder) beside an empty root."""
    contents = {"classInd": "1 Jump\r\n2 Wave\r\n", "trainlist01": UCF_TRAIN,
                "testlist01": UCF_TEST, **files}  # fmt: skip
    for name, content in contents.items():
        path = tmp / "ucfTrainTestlist" / f"{name}.txt"
        if content is None:
            path.mkdir(parents=True)
        else:
            _write(path, content)
    (tmp / "UCF-101").mkdir()
    return DatasetConfig("ucf101", tmp / "UCF-101", split_dir=tmp / "ucfTrainTestlist")


def _hmdb51(tmp: Path, lines: str | bytes) -> DatasetConfig:
    splits = tmp / "testTrainMulti_7030_splits"
    _write(splits / "jump_test_split1.txt", "jump_0.avi 1 \njump_1.avi 2 \n")
    _write(splits / "wave_test_split1.txt", lines)
    (tmp / "hmdb51").mkdir()
    return DatasetConfig("hmdb51", tmp / "hmdb51", split_dir=splits)


def _hmdb51_missing_a_class(tmp: Path) -> DatasetConfig:
    """Split 2 lists a class that split 1 has no file for (one file lost in unpacking)."""
    config = _hmdb51(tmp, "wave_0.avi 1 \n")
    _write(config.split_dir / "climb_test_split2.txt", "climb_0.avi 1 \n")
    return config


def _folder(tmp: Path, lines: str | bytes) -> DatasetConfig:
    (tmp / "mine").mkdir()
    return DatasetConfig("folder", tmp / "mine", split_file=_write(tmp / "split.txt", lines))


def _mmaction(tmp: Path, train: str, test: str = "Wave/b.avi 1\n") -> DatasetConfig:
    (tmp / "videos").mkdir()
    return DatasetConfig(
        "ucf101", tmp / "videos", train_list=_write(tmp / "train.txt", train),
        test_list=_write(tmp / "val.txt", test),
    )  # fmt: skip


def _hara(tmp: Path, content: object) -> DatasetConfig:
    text = content if isinstance(content, str) else json.dumps(content, indent=1)
    (tmp / "frames").mkdir()
    return DatasetConfig("ucf101", tmp / "frames", annotations=_write(tmp / "ucf101_01.json", text))


def _hara_latin1(tmp: Path) -> DatasetConfig:
    config = _hara(tmp, {})
    _write(config.annotations, b'{"labels": ["Caf\xe9"]}')
    return config


def _hara_db(**entries: object) -> dict:
    training = {"subset": "training", "annotations": {"label": "Jump"}}
    return {"labels": ["Jump", "Wave"], "database": {"v_Jump_g01_c01": training, **entries}}


# (case id) -> builder returning the config and the file the message must name, and the other
# fragments it must hold (line number, value, what was expected).
Case = Callable[[Path], tuple[DatasetConfig, str, list[str]]]

ESCAPES: dict[str, Case] = {
    "folder-dotdot": lambda t: (
        _folder(t, "Jump/a.avi train\n../../outside/v.avi train\n"),
        "split.txt",
        ["line 2", "'../../outside/v.avi'", "'..'"],
    ),
    "folder-absolute": lambda t: (
        _folder(t, "/etc/passwd train\n"),
        "split.txt",
        ["line 1", "'/etc/passwd'", "absolute"],
    ),
    "folder-backslash": lambda t: (
        _folder(t, "Jump\\..\\..\\v.avi test\n"),
        "split.txt",
        ["line 1", "'..'"],
    ),
    "ucf101-trainlist-dotdot": lambda t: (
        _ucf101(t, trainlist01="Jump/../../../outside/v.avi 1\r\n"),
        "trainlist01.txt",
        ["line 1", "'Jump/../../../outside/v.avi'"],
    ),
    "ucf101-testlist-absolute": lambda t: (
        _ucf101(t, testlist01="Jump/a.avi\r\n/tmp/Jump/v.avi\r\n"),
        "testlist01.txt",
        ["line 2", "'/tmp/Jump/v.avi'", "absolute"],
    ),
    "hmdb51-dotdot": lambda t: (
        _hmdb51(t, "wave_0.avi 1 \n\n../../../outside.avi 2 \n"),
        "wave_test_split1.txt",
        ["line 3", "'wave/../../../outside.avi'"],
    ),
    "mmaction-dotdot": lambda t: (
        _mmaction(t, "Jump/a.avi 0\n../outside/v.avi 1\n"),
        "train.txt",
        ["line 2", "'../outside/v.avi'"],
    ),
    "mmaction-absolute": lambda t: (
        _mmaction(t, "Jump/a.avi 0\n", "/abs/Wave/b 16 1\n"),
        "val.txt",
        ["line 1", "absolute"],
    ),
    "hara-dotdot": lambda t: (
        _hara(
            t,
            _hara_db(
                **{"../../outside": {"subset": "validation", "annotations": {"label": "Wave"}}}
            ),
        ),  # fmt: skip
        "ucf101_01.json",
        ["'../../outside'", "'Wave/../../outside'"],
    ),
}

MALFORMED: dict[str, Case] = {
    "folder-one-column": lambda t: (_folder(t, "Jump/a.avi\n"), "split.txt", ["line 1", "column"]),
    "folder-bad-subset": lambda t: (
        _folder(t, "Jump/a.avi train\nWave/b.avi val\n"),
        "split.txt",
        ["line 2", "'val'"],
    ),
    "folder-no-class": lambda t: (
        _folder(t, "a.avi train\n"),
        "split.txt",
        ["line 1", "no class folder"],
    ),
    "folder-empty": lambda t: (_folder(t, "\n  \n"), "split.txt", ["is empty"]),
    "folder-latin1": lambda t: (
        _folder(t, "Jump/a.avi train\nJump/caf\xe9.avi test\n".encode("latin-1")),
        "split.txt",
        ["line 2", "0xe9", "UTF-8"],
    ),
    "folder-split-file-is-a-folder": lambda t: (
        DatasetConfig("folder", t, split_file=t),
        str(t),
        ["is a folder"],
    ),
    "ucf101-classind-not-integer": lambda t: (
        _ucf101(t, classInd="1 Jump\r\ntwo Wave\r\n"),
        "classInd.txt",
        ["line 2", "'two'"],
    ),
    "ucf101-classind-columns": lambda t: (
        _ucf101(t, classInd="1 Jump High\r\n"),
        "classInd.txt",
        ["line 1", "3 columns"],
    ),
    "ucf101-classind-duplicate": lambda t: (
        _ucf101(t, classInd="1 Jump\r\n2 jump\r\n"),
        "classInd.txt",
        ["line 2", "twice"],
    ),
    "ucf101-label-not-integer": lambda t: (
        _ucf101(t, trainlist01="Jump/v.avi one\r\n"),
        "trainlist01.txt",
        ["line 1", "'one'"],
    ),
    "ucf101-unknown-class": lambda t: (
        _ucf101(t, trainlist01=UCF_TRAIN + "Swim/v_Swim_g01_c01.avi 3\r\n"),
        "trainlist01.txt",
        ["line 3", "'Swim'", "classInd.txt"],
    ),
    "ucf101-label-not-its-class": lambda t: (
        _ucf101(t, trainlist01="Jump/v_Jump_g01_c01.avi 99\r\n"),
        "trainlist01.txt",
        ["line 1", "the label 99 is not 1", "Jump"],
    ),
    "hmdb51-a-class-file-missing": lambda t: (
        _hmdb51_missing_a_class(t),
        "testTrainMulti_7030_splits",
        ["no climb_test_split1.txt"],
    ),
    "ucf101-columns": lambda t: (
        _ucf101(t, testlist01="Jump/a b.avi 1\r\n"),
        "testlist01.txt",
        ["line 1", "3 columns"],
    ),
    "ucf101-empty-testlist": lambda t: (
        _ucf101(t, testlist01=""),
        "testlist01.txt",
        ["is empty"],
    ),
    "ucf101-latin1": lambda t: (
        _ucf101(t, trainlist01=b"Jump/a.avi 1\r\nJump/\xe9t\xe9.avi 1\r\n"),
        "trainlist01.txt",
        ["line 2", "not UTF-8"],
    ),
    "ucf101-classind-is-a-folder": lambda t: (
        _ucf101(t, classInd=None),
        "classInd.txt",
        ["is a folder"],
    ),
    "ucf101-split-dir-is-a-file": lambda t: (
        DatasetConfig("ucf101", t, split_dir=_write(t / "splits.zip", "PK")),
        "splits.zip",
        ["is a file; expected a folder"],
    ),
    "hmdb51-bad-tag": lambda t: (
        _hmdb51(t, "wave_0.avi 1 \nwave_1.avi train \n"),
        "wave_test_split1.txt",
        ["line 2", "'train'", "0, 1 or 2"],
    ),
    "hmdb51-columns": lambda t: (
        _hmdb51(t, "wave_0.avi\n"),
        "wave_test_split1.txt",
        ["line 1", "1 column instead of 2"],
    ),
    "hmdb51-latin1": lambda t: (
        _hmdb51(t, "wave_\xe0.avi 1 \n".encode("latin-1")),
        "wave_test_split1.txt",
        ["line 1"],
    ),
    "mmaction-label-not-integer": lambda t: (
        _mmaction(t, "Jump/a.avi 0\nWave/b.avi one\n"),
        "train.txt",
        ["line 2", "'one'"],
    ),
    "mmaction-frames-not-integer": lambda t: (
        _mmaction(t, "Jump/a x 0\n"),
        "train.txt",
        ["line 1", "frame count"],
    ),
    "mmaction-columns": lambda t: (
        _mmaction(t, "Jump/a.avi 16 0 extra\n"),
        "train.txt",
        ["line 1", "4 columns"],
    ),
    "mmaction-label-gap": lambda t: (
        _mmaction(t, "Jump/a.avi 0\n", "Wave/b.avi 2\n"),
        "train.txt",
        ["label 1"],
    ),
    "hara-invalid-json": lambda t: (
        _hara(t, '{"labels": ["Jump"],\n "database": {,}}'),
        "ucf101_01.json",
        ["line 2", "not valid JSON"],
    ),
    "hara-not-an-object": lambda t: (
        _hara(t, ["Jump"]),
        "ucf101_01.json",
        ["top level is a JSON array"],
    ),
    "hara-missing-database": lambda t: (
        _hara(t, {"labels": ["Jump"]}),
        "ucf101_01.json",
        ["['database'] is missing"],
    ),
    "hara-entry-not-an-object": lambda t: (
        _hara(t, _hara_db(v_x=3)),
        "ucf101_01.json",
        ["['database']['v_x'] is a JSON number"],
    ),
    "hara-unknown-label": lambda t: (
        _hara(t, _hara_db(v_x={"subset": "training", "annotations": {"label": "Swim"}})),
        "ucf101_01.json",
        ["'Swim'", "['labels']"],
    ),
    "hara-no-annotations": lambda t: (
        _hara(t, _hara_db(v_x={"subset": "validation"})),
        "ucf101_01.json",
        ["['database']['v_x']['annotations'] is missing"],
    ),
    "hara-latin1": lambda t: (_hara_latin1(t), "ucf101_01.json", ["line 1", "not UTF-8"]),
    "hara-is-a-folder": lambda t: (
        DatasetConfig("ucf101", t, annotations=t),
        str(t),
        ["is a folder"],
    ),
}


def _assert_one_paragraph(message: str, file: str, fragments: list[str]) -> None:
    assert "\n" not in message.strip(), message
    assert file in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


@pytest.mark.parametrize("case", ESCAPES, ids=str)
def test_a_list_line_leaving_the_root_is_refused_naming_file_line_and_value(case, tmp_path):
    config, file, fragments = ESCAPES[case](tmp_path)
    with pytest.raises(DataError) as error:
        open_dataset(config)
    _assert_one_paragraph(str(error.value), file, fragments)
    assert "outside the dataset root" in str(error.value) or "leaves" in str(error.value)


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_a_malformed_list_is_one_data_error_naming_the_file(case, tmp_path):
    config, file, fragments = MALFORMED[case](tmp_path)
    with pytest.raises(DataError) as error:
        open_dataset(config)
    _assert_one_paragraph(str(error.value), file, fragments)
    assert "Expected" in str(error.value) or "expected" in str(error.value)


@pytest.mark.parametrize("path", ["../x.avi", "/x.avi", "C:/x.avi", "", ".", "a/../../b"])
def test_a_plugin_format_cannot_build_a_sample_outside_the_root(path):
    """Formats outside the package build `Sample`s too: the check lives there as well."""
    with pytest.raises(DataError, match="outside the dataset root"):
        Sample(path, 0)


@pytest.mark.parametrize(
    "command, case",
    [("check", "folder-latin1"), ("check", "ucf101-unknown-class"), ("check", "hara-invalid-json"),
     ("prepare", "mmaction-dotdot"), ("flow", "hmdb51-dotdot")],
)  # fmt: skip
def test_the_cli_prints_one_paragraph_and_exits_2(command, case, tmp_path, capsys):
    config, file, fragments = {**ESCAPES, **MALFORMED}[case](tmp_path)
    options = {"--split-dir": config.split_dir, "--split-file": config.split_file,
               "--annotations": config.annotations, "--train-list": config.train_list,
               "--test-list": config.test_list}  # fmt: skip
    args = ["data", command, config.name, "--root", str(config.root), "--workers", "1"]
    args += [part for key, value in options.items() if value for part in (key, str(value))]
    args += ["--out", str(tmp_path / "out")] if command != "check" else []
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err and not captured.out
    _assert_one_paragraph(captured.err, file, fragments)
    assert not (tmp_path / "out").exists()


def test_prepare_reads_and_writes_nothing_outside_root_and_out(tmp_path, capsys):
    """The line that used to reach a real video beside the root, and write its frames beside
    `--out`, now stops before anything is read or written."""
    write_video(tmp_path / "outside" / "v.avi", frames=4)
    root, out = tmp_path / "data" / "root", tmp_path / "data" / "out"
    root.mkdir(parents=True)
    split = _write(tmp_path / "split.txt", "../../outside/v.avi train\n")
    args = ["data", "prepare", "folder", "--root", str(root), "--split-file", str(split)]
    assert main([*args, "--out", str(out), "--workers", "1"]) == 2
    assert "split.txt, line 1" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        ["outside", "v.avi", "data", "root", "split.txt"]
    )


def test_unreadable_videos_are_recorded_by_the_index_and_named_by_prepare(tmp_path):
    root = tmp_path / "mine"
    write_video(root / "Jump" / "good.avi", frames=4)
    _write(root / "Wave" / "empty.avi", b"")
    _write(root / "Wave" / "garbage.avi", b"RIFF not a video at all")
    (root / "Wave" / "no_frames").mkdir()
    split = _write(
        tmp_path / "split.txt",
        "Jump/good.avi train\nWave/empty.avi train\nWave/garbage.avi test\nWave/no_frames test\n",
    )
    config = DatasetConfig("folder", root, split_file=split)
    _, train, test = open_dataset(config)
    index = FrameIndex(root)
    indexes = index.lookup(train + test, workers=1)
    assert indexes["Jump/good.avi"].frames == 4
    assert list(index.unreadable) == ["Wave/empty.avi", "Wave/garbage.avi", "Wave/no_frames"]
    assert "no frame decodes" in index.unreadable["Wave/empty.avi"]
    assert "frame folder" in index.unreadable["Wave/no_frames"]
    message = unreadable_message(index.unreadable, len(train + test))
    assert message.startswith("3 of 4 videos cannot be read") and "Wave/garbage.avi" in message
    assert "\n" not in message and unreadable_message({}, 4) == ""
    cached = FrameIndex(root)
    cached.lookup(train + test, workers=1)  # from the cache this time: recorded all the same
    assert cached.unreadable == index.unreadable
    cached.lookup(train, workers=1)  # each lookup says what it found
    assert list(cached.unreadable) == ["Wave/empty.avi"]
    counts = prepare_frames(config, tmp_path / "out", short_side=16, workers=1)
    assert counts["written"] == 1
    assert counts["failed_videos"] == ["Wave/empty.avi", "Wave/garbage.avi"]


@pytest.mark.parametrize(
    "content", [b"\xff\xfe{", b"[]", b'{"Jump/good.avi": 3}', b'{"Jump/good.avi": {"stamp": 1}}']
)
def test_a_damaged_index_cache_is_measured_again(content, tmp_path):
    config = _folder(tmp_path, "Jump/good.avi train\nJump/good.avi test\n")
    root = config.root
    write_video(root / "Jump" / "good.avi", frames=4)
    _, train, _ = open_dataset(config)
    index = FrameIndex(root)
    index.path.parent.mkdir(parents=True, exist_ok=True)
    index.path.write_bytes(content)
    assert FrameIndex(root).lookup(train, workers=1)["Jump/good.avi"].frames == 4


# Two sources of split lists, or a split number a format does not have: refused, since one
# would be left unread without a word (a probe found each accepted silently).
UNREAD = {
    "annotations and mmaction lists": (
        {"annotations": "a.json", "train_list": "tr.txt", "test_list": "te.txt"},
        "--annotations and --train-list/--test-list are both given",
    ),
    "a split file for ucf101": ({"split_file": "s.txt"}, "a ucf101 dataset reads its split"),
    "split 3 of a folder dataset": (
        {"name": "folder", "split": 3, "split_file": "s.txt"},
        "a folder dataset has one split",
    ),
}


@pytest.mark.parametrize("case", UNREAD, ids=str)
def test_a_source_of_lists_left_unread_is_refused(case, tmp_path):
    fields, message = UNREAD[case]
    fields = {k: tmp_path / v if isinstance(v, str) and "." in v else v for k, v in fields.items()}
    config = DatasetConfig(**{"name": "ucf101", "root": tmp_path, **fields})
    with pytest.raises(DataError, match=re.escape(message)):
        open_dataset(config)


@pytest.mark.parametrize("command", ["prepare", "flow", "cache"])
def test_an_out_inside_the_dataset_root_is_refused(command, tmp_path, capsys):
    root = tmp_path / "UCF-101"
    root.mkdir()
    for out in (root, root / "frames"):
        assert main(["data", command, "synthetic", "--root", str(root), "--out", str(out)]) == 2
        assert f"--out {out} is inside the dataset root" in capsys.readouterr().err
    assert list(root.iterdir()) == []  # nothing written among the videos
