"""Split files as distributed, and as other tools leave them (`shared/reference/datasets.md`).

- UCF101 `ucfTrainTestlist/`: `classInd.txt` (1-based, case-insensitive alphabetical: labels come
  from it, never from a directory listing), `trainlist0k.txt` (`<Class>/<clip>.avi <label>`),
  `testlist0k.txt` (no label: it comes from the folder). CRLF line endings.
- HMDB51 `testTrainMulti_7030_splits/<class>_test_split<k>.txt`: `<clip>.avi <tag> ` with a
  trailing space; 1 = train, 2 = test, 0 = unused. Labels are the sorted class names, 0-based.
- 3D-ResNets-PyTorch annotation JSON (`ucf101_0k.json`, `hmdb51_k.json`) over JPEG frame folders.
- mmaction2 lists: `<Class>/<clip>.avi <label>` or `<Class>/<clip> <n_frames> <label>`, 0-based.
- `folder`: `<class>/<video> train|test` lines for a user's own data; classes sorted.

Every parser returns the same `SplitLists`; paths are relative to the dataset root.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from registry import ConfigError


class DataError(ConfigError):
    """A dataset that cannot be used as given (missing root, split file, entries …)."""


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset root: a video file or a frame folder
    label: int


@dataclass(frozen=True)
class SplitLists:
    classes: list[str]
    train: list[Sample]
    test: list[Sample]


def _lines(path: Path, fix: str) -> list[str]:
    if not path.is_file():
        raise DataError(f"Split file {str(path)!r} does not exist. {fix}")
    with path.open(newline=None, encoding="utf-8") as handle:  # CRLF or LF
        return [line.strip() for line in handle if line.strip()]


def ucf101_split(split_dir: Path, split: int) -> SplitLists:
    fix = "Point --split-dir at the unpacked ucfTrainTestlist folder."
    classes = [line.split()[1] for line in _lines(split_dir / "classInd.txt", fix)]
    label_of = {name.lower(): i for i, name in enumerate(classes)}

    def sample(line: str, where: Path) -> Sample:
        relative = line.split()[0]
        folder = relative.split("/")[0].lower()
        if folder not in label_of:
            raise DataError(
                f"{where}: class folder {folder!r} of {relative!r} is not in classInd.txt."
            )
        return Sample(relative, label_of[folder])

    train_file = split_dir / f"trainlist0{split}.txt"
    test_file = split_dir / f"testlist0{split}.txt"
    train = [sample(line, train_file) for line in _lines(train_file, fix)]
    test = [sample(line, test_file) for line in _lines(test_file, fix)]
    return SplitLists(classes, train, test)


def hmdb51_split(split_dir: Path, split: int) -> SplitLists:
    files = sorted(split_dir.glob(f"*_test_split{split}.txt"))
    if not files:
        raise DataError(
            f"No HMDB51 split files '*_test_split{split}.txt' in {str(split_dir)!r}. Point "
            "--split-dir at the unpacked testTrainMulti_7030_splits folder."
        )
    classes = sorted(f.name.removesuffix(f"_test_split{split}.txt") for f in files)
    train, test = [], []
    for label, name in enumerate(classes):
        path = split_dir / f"{name}_test_split{split}.txt"
        for line in _lines(path, ""):
            clip, tag = line.split()
            if tag == "1":
                train.append(Sample(f"{name}/{clip}", label))
            elif tag == "2":
                test.append(Sample(f"{name}/{clip}", label))
    return SplitLists(classes, train, test)


def hara_annotation(path: Path) -> SplitLists:
    """3D-ResNets-PyTorch JSON: `training` → train, `validation` → test; paths `<label>/<id>`."""
    if not path.is_file():
        raise DataError(f"Annotation file {str(path)!r} does not exist.")
    content = json.loads(path.read_text())
    classes = list(content["labels"])
    label_of = {name: i for i, name in enumerate(classes)}
    train, test = [], []
    for video_id, entry in content["database"].items():
        label = entry["annotations"]["label"]
        target = {"training": train, "validation": test}.get(entry["subset"])
        if target is not None:
            target.append(Sample(f"{label}/{video_id}", label_of[label]))
    return SplitLists(classes, train, test)


def mmaction_lists(train_list: Path, test_list: Path) -> SplitLists:
    """mmaction2 lists with 0-based labels; class names are the folders, ordered by label."""
    names: dict[int, str] = {}

    def read(path: Path) -> list[Sample]:
        samples = []
        for line in _lines(path, "Give the mmaction2 train and val list files."):
            parts = line.split()
            relative, label = parts[0], int(parts[-1])
            names.setdefault(label, relative.split("/")[0])
            samples.append(Sample(relative, label))
        return samples

    train, test = read(train_list), read(test_list)
    return SplitLists([names[i] for i in sorted(names)], train, test)


def folder_split(split_file: Path) -> SplitLists:
    """A user's own data: lines `<class>/<video> train|test`; classes sorted by name."""
    entries = []
    for line in _lines(split_file, "Write one '<class>/<video> train|test' line per video."):
        relative, subset = line.rsplit(maxsplit=1)
        if subset not in ("train", "test"):
            raise DataError(
                f"{split_file}: subset {subset!r} of {relative!r} must be train or test."
            )
        entries.append((relative, subset))
    classes = sorted({relative.split("/")[0] for relative, _ in entries})
    label_of = {name: i for i, name in enumerate(classes)}
    samples = {"train": [], "test": []}
    for relative, subset in entries:
        samples[subset].append(Sample(relative, label_of[relative.split("/")[0]]))
    return SplitLists(classes, samples["train"], samples["test"])
