"""Split files as distributed, and as other tools leave them (`shared/reference/datasets.md`).

- UCF101 `ucfTrainTestlist/`: `classInd.txt` (1-based, case-insensitive alphabetical: labels come
  from it, never from a directory listing), `trainlist0k.txt` (`<Class>/<clip>.avi <label>`),
  `testlist0k.txt` (no label: it comes from the folder). CRLF line endings.
- HMDB51 `testTrainMulti_7030_splits/<class>_test_split<k>.txt`: `<clip>.avi <tag> ` with a
  trailing space; 1 = train, 2 = test, 0 = unused. Labels are the sorted class names, 0-based.
- 3D-ResNets-PyTorch annotation JSON (`ucf101_0k.json`, `hmdb51_k.json`) over JPEG frame folders.
- mmaction2 lists: `<Class>/<clip>.avi <label>` or `<Class>/<clip> <n_frames> <label>`, 0-based.
- `folder`: `<class>/<video> train|test` lines for a user's own data; classes sorted by name.

Every parser returns the same `SplitLists`; paths are relative to the dataset root. These files
come from users, so every way they can be wrong ends as one `DataError` paragraph naming the file
(and line), what was expected and how to fix it. No path read from a list may leave the dataset
root: `Sample` refuses absolute paths and `..` (the parsers check first, to name file and line;
`Sample` itself is the backstop for plugin formats).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry import ConfigError


class DataError(ConfigError):
    """A dataset that cannot be used as given (missing root, split file, entries …)."""


_PARTS = re.compile(r"[/\\]")  # a backslash separates folders on Windows: `..\x` is refused too
_DRIVE = re.compile(r"^[A-Za-z]:")
INSIDE_ROOT = "a path relative to the dataset root, such as '<class>/<video>.avi'"


def path_problem(relative: object) -> str | None:
    """Why `relative` cannot name a video inside the dataset root, or None when it can.

    Lexical on purpose: whatever a list says, the path built from it stays under the root (a
    symbolic link the user put inside the root is theirs to follow).
    """
    if not isinstance(relative, str) or not relative.strip():
        return "is empty"
    if "\0" in relative:
        return "contains a NUL character"
    if relative.startswith(("/", "\\")) or _DRIVE.match(relative):
        return "is absolute"
    parts = _PARTS.split(relative)
    if ".." in parts:
        return "climbs out of its folder with '..'"
    if all(part in ("", ".") for part in parts):
        return "names the dataset root itself"
    return None


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the dataset root: a video file or a frame folder
    label: int

    def __post_init__(self) -> None:
        problem = path_problem(self.path)
        if problem is not None:
            raise DataError(
                f"The split lists name the video {self.path!r}, which {problem}. Expected "
                f"{INSIDE_ROOT}: no path in a list may point outside the dataset root; fix that "
                "line of the list."
            )


@dataclass(frozen=True)
class SplitLists:
    classes: list[str]
    train: list[Sample]
    test: list[Sample]


# --- reading user files --------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One non-blank line of a list file, stripped, with its 1-based number (for messages)."""

    file: Path
    number: int
    text: str

    @property
    def fields(self) -> list[str]:
        return self.text.split()

    def error(self, problem: str, expected: str, fix: str = "") -> DataError:
        """`<file>, line <n>: <problem> in '<line>'. Expected <expected>. <fix>`."""
        tail = f" {fix}" if fix else ""
        return DataError(
            f"{self.file}, line {self.number}: {problem} in {self.text!r}. Expected {expected}."
            f"{tail}"
        )

    def integer(self, value: str, what: str, expected: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise self.error(f"{what} {value!r} is not an integer", expected) from None

    def path(self, relative: str) -> str:
        """`relative`, refused (naming this file and line) when it would leave the root."""
        problem = path_problem(relative)
        if problem is not None:
            raise self.error(
                f"the video path {relative!r} {problem}",
                INSIDE_ROOT,
                "Fix or remove the line: no path in a list may point outside the dataset root.",
            )
        return relative


def read_text(path: Path, what: str, fix: str) -> str:
    """The text of a user's file as UTF-8 (a byte-order mark is dropped), or a DataError saying
    why not: missing, a folder, unreadable, or not UTF-8 (naming the line of the first bad byte)."""
    if path.is_dir():
        raise DataError(f"{what} {str(path)!r} is a folder; expected a file. {fix}")
    if not path.is_file():
        state = "is not a regular file" if path.exists() else "does not exist"
        raise DataError(f"{what} {str(path)!r} {state}. {fix}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{what} {str(path)!r} cannot be read ({error.strerror}). {fix}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line}: byte 0x{data[error.start]:02x} is not UTF-8 text. Expected a "
            f"UTF-8 {what.lower()}; convert it, e.g. 'iconv -f latin1 -t utf-8 {path.name} > "
            f"{path.stem}.utf8{path.suffix}', and give the converted file."
        ) from None


def read_lines(path: Path, what: str, expected: str, fix: str) -> list[Line]:
    """The non-blank lines of a text file (CRLF, CR or LF endings), numbered; an empty file is
    an error (an empty list would silently train or test on nothing)."""
    text = read_text(path, what, fix)
    lines = [
        Line(path, number, line.strip())
        for number, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1)
        if line.strip()
    ]
    if not lines:
        raise DataError(f"{what} {str(path)!r} is empty. Expected {expected}. {fix}")
    return lines


def _columns(fields: list[str]) -> str:
    return f"{len(fields)} column{'s' if len(fields) != 1 else ''}"


def refuse_file(path: Path, what: str, fix: str) -> None:
    """A file given where a folder is expected (a missing folder is reported by what it lacks,
    which names the file that was looked for)."""
    if path.exists() and not path.is_dir():
        raise DataError(f"{what} {str(path)!r} is a file; expected a folder. {fix}")


# --- UCF101 --------------------------------------------------------------------------------------

UCF_FIX = "Point --split-dir at the unpacked ucfTrainTestlist folder."
UCF_LINE = "'<Class>/<clip>.avi' or '<Class>/<clip>.avi <label>' (the label is optional)"


def ucf101_split(split_dir: Path, split: int) -> SplitLists:
    refuse_file(split_dir, "UCF101 split folder", UCF_FIX)
    numbered = _class_index(split_dir / "classInd.txt")
    classes = list(numbered)
    train = _ucf101_list(split_dir / f"trainlist0{split}.txt", numbered)
    test = _ucf101_list(split_dir / f"testlist0{split}.txt", numbered)
    return SplitLists(classes, train, test)


def _class_index(path: Path) -> dict[str, int]:
    """classInd.txt: `<index> <Class>` lines, as {class: its index}; the labels are the line
    order."""
    expected = "'<index> <Class>' lines such as '1 ApplyEyeMakeup'"
    numbered: dict[str, int] = {}
    for line in read_lines(path, "Class index", expected, UCF_FIX):
        if len(line.fields) != 2:
            raise line.error(f"{_columns(line.fields)} instead of 2", expected)
        number = line.integer(line.fields[0], "the index", expected)
        name = line.fields[1]
        if name.lower() in (c.lower() for c in numbered):
            raise line.error(f"the class {name!r} appears twice", "each class once", UCF_FIX)
        numbered[name] = number
    return numbered


def _ucf101_list(path: Path, numbered: dict[str, int]) -> list[Sample]:
    """trainlist/testlist lines; the label is the classInd position of the clip's folder, and a
    line's own label (trainlist) must be the index classInd.txt gives that folder."""
    by_folder = {name.lower(): (i, name) for i, name in enumerate(numbered)}
    samples = []
    for line in read_lines(path, "Split file", f"{UCF_LINE} lines", UCF_FIX):
        fields = line.fields
        if len(fields) not in (1, 2):
            raise line.error(_columns(fields), UCF_LINE)
        given = line.integer(fields[1], "the label", UCF_LINE) if len(fields) == 2 else None
        relative = line.path(fields[0])  # a path leaving the root: refused first
        folder, slash, _ = relative.partition("/")
        if not slash:
            raise line.error(f"{relative!r} has no class folder", UCF_LINE)
        if folder.lower() not in by_folder:
            raise line.error(
                f"classInd.txt does not list the class folder {folder!r}",
                "one of the classes classInd.txt lists",
                "Add the class to classInd.txt or remove the line.",
            )
        label, name = by_folder[folder.lower()]
        if given is not None and given != numbered[name]:
            raise line.error(
                f"the label {given} is not {numbered[name]}, the index classInd.txt gives {name}",
                "the label classInd.txt gives the clip's class folder",
                "Fix the label, or move the line to its class's folder.",
            )
        samples.append(Sample(relative, label))
    return samples


# --- HMDB51 --------------------------------------------------------------------------------------

HMDB_FIX = "Point --split-dir at the unpacked testTrainMulti_7030_splits folder."
HMDB_LINE = "'<clip>.avi <tag>' with tag 1 (train), 2 (test) or 0 (unused)"


def hmdb51_split(split_dir: Path, split: int) -> SplitLists:
    refuse_file(split_dir, "HMDB51 split folder", HMDB_FIX)
    files = sorted(split_dir.glob(f"*_test_split{split}.txt"))
    if not files:
        raise DataError(
            f"No HMDB51 split files '*_test_split{split}.txt' in {str(split_dir)!r}. {HMDB_FIX}"
        )
    classes = sorted(f.name.removesuffix(f"_test_split{split}.txt") for f in files)
    _require_every_class(split_dir, split, classes)
    train, test = [], []
    for label, name in enumerate(classes):
        path = split_dir / f"{name}_test_split{split}.txt"
        for line in read_lines(path, "Split file", f"{HMDB_LINE} lines", HMDB_FIX):
            if len(line.fields) != 2:
                raise line.error(f"{_columns(line.fields)} instead of 2", HMDB_LINE)
            clip, tag = line.fields
            if tag not in ("0", "1", "2"):
                raise line.error(f"the tag {tag!r} is not 0, 1 or 2", HMDB_LINE)
            if tag != "0":
                target = train if tag == "1" else test
                target.append(Sample(line.path(f"{name}/{clip}"), label))
    return SplitLists(classes, train, test)


def _require_every_class(split_dir: Path, split: int, classes: list[str]) -> None:
    """Every class another split of the folder has a file for has one for `split` too: a missing
    file would drop its class without a word (and shift every later label)."""
    others = {
        f.name.rsplit("_test_split", 1)[0]
        for f in split_dir.glob("*_test_split[123].txt")
        if not f.name.endswith(f"_test_split{split}.txt")
    }
    missing = sorted(others - set(classes))
    if missing:
        names = ", ".join(f"{name}_test_split{split}.txt" for name in missing[:5])
        raise DataError(
            f"{str(split_dir)!r} has other splits' files for {len(missing)} class(es) that "
            f"split {split} has none for: no {names}{' …' if len(missing) > 5 else ''}. "
            f"Expected one '<class>_test_split{split}.txt' per class. {HMDB_FIX}"
        )


# --- 3D-ResNets-PyTorch annotation JSON -----------------------------------------------------------

HARA_FIX = (
    'Expected a 3D-ResNets-PyTorch annotation file: {"labels": [class, …], "database": '
    '{video_id: {"subset": "training"|"validation", "annotations": {"label": class}}}}; give '
    "--annotations such a file (e.g. ucf101_01.json)."
)


def hara_annotation(path: Path) -> SplitLists:
    """3D-ResNets-PyTorch JSON: `training` → train, `validation` → test; paths `<label>/<id>`."""
    content = _json(path)
    classes = _json_get(path, content, "", "labels", list)
    database = _json_get(path, content, "", "database", dict)
    if not all(isinstance(name, str) for name in classes):
        raise DataError(f"{path}: ['labels'] holds something other than a string. {HARA_FIX}")
    label_of = {name: i for i, name in enumerate(classes)}
    train, test = [], []
    for video_id, entry in database.items():
        where = f"['database'][{video_id!r}]"
        target = {"training": train, "validation": test}.get(
            _json_get(path, entry, where, "subset", str)
        )
        if target is None:
            continue  # testing or unused entries: no label needed
        annotations = _json_get(path, entry, where, "annotations", dict)
        label = _json_get(path, annotations, f"{where}['annotations']", "label", str)
        if label not in label_of:
            raise DataError(
                f"{path}: {where}['annotations']['label'] is {label!r}, which ['labels'] does "
                "not list. Expected one of the classes in ['labels']; add it there or fix the "
                "entry."
            )
        relative = f"{label}/{video_id}"
        problem = path_problem(relative)
        if problem is not None:
            raise DataError(
                f"{path}: {where} gives the video path {relative!r}, which {problem}. Expected "
                f"{INSIDE_ROOT}; fix the video id or label so that no path leaves the dataset root."
            )
        target.append(Sample(relative, label_of[label]))
    return SplitLists(classes, train, test)


def _json(path: Path) -> object:
    text = read_text(path, "Annotation file", "Give --annotations a 3D-ResNets-PyTorch JSON file.")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}, line {error.lineno}, column {error.colno}: not valid JSON ({error.msg}). "
            f"{HARA_FIX}"
        ) from None


def _json_get(path: Path, container: object, where: str, key: str, kind: type) -> Any:
    """`container[key]`, checked to be a `kind`; else a DataError naming the file and the key
    path (`where`, '' at the top level)."""
    if not isinstance(container, dict):
        raise DataError(
            f"{path}: {where or 'the top level'} is a JSON {_json_kind(container)}, not an "
            f"object. {HARA_FIX}"
        )
    if key not in container:
        raise DataError(f"{path}: {where}[{key!r}] is missing. {HARA_FIX}")
    value = container[key]
    if not isinstance(value, kind):
        raise DataError(
            f"{path}: {where}[{key!r}] is a JSON {_json_kind(value)}, not a JSON "
            f"{_json_kind(kind())}. {HARA_FIX}"
        )
    return value


def _json_kind(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


# --- mmaction2 lists -----------------------------------------------------------------------------

MMACTION_LINE = (
    "'<Class>/<clip>.avi <label>' or '<Class>/<clip> <n_frames> <label>', 0-based labels"
)


def mmaction_lists(train_list: Path, test_list: Path) -> SplitLists:
    """mmaction2 lists with 0-based labels; class names are the folders, ordered by label."""
    names: dict[int, str] = {}
    train, test = _mmaction_list(train_list, names), _mmaction_list(test_list, names)
    absent = sorted(set(range(max(names) + 1)) - set(names))
    if absent:
        shown = ", ".join(map(str, absent[:10])) + (", …" if len(absent) > 10 else "")
        raise DataError(
            f"{train_list} and {test_list}: no line has the label {shown}, though labels run "
            f"up to {max(names)}; class names come from the videos' folders, so a label without "
            "a video has none. Expected 0-based labels without gaps; renumber them."
        )
    return SplitLists([names[i] for i in sorted(names)], train, test)


def _mmaction_list(path: Path, names: dict[int, str]) -> list[Sample]:
    fix = "Give the mmaction2 train and val list files (--train-list, --test-list)."
    samples = []
    for line in read_lines(path, "List file", f"{MMACTION_LINE} lines", fix):
        fields = line.fields
        if len(fields) not in (2, 3):
            raise line.error(f"{_columns(fields)} instead of 2 or 3", MMACTION_LINE)
        if len(fields) == 3:
            line.integer(fields[1], "the frame count", MMACTION_LINE)
        label = line.integer(fields[-1], "the label", MMACTION_LINE)
        if label < 0:
            raise line.error(f"the label {label} is negative", MMACTION_LINE)
        samples.append(Sample(line.path(fields[0]), label))
        names.setdefault(label, fields[0].split("/")[0])
    return samples


# --- a user's own folder -------------------------------------------------------------------------

FOLDER_LINE = "'<class>/<video> train' or '<class>/<video> test'"


def folder_split(split_file: Path) -> SplitLists:
    """A user's own data: lines `<class>/<video> train|test`; classes sorted by name."""
    fix = "Write one '<class>/<video> train|test' line per video."
    entries = []
    for line in read_lines(split_file, "Split file", f"{FOLDER_LINE} lines", fix):
        parts = line.text.rsplit(maxsplit=1)  # the path may hold spaces; the subset cannot
        if len(parts) != 2:
            raise line.error("only one column", FOLDER_LINE, fix)
        relative, subset = parts
        if subset not in ("train", "test"):
            raise line.error(f"the subset {subset!r} is neither train nor test", FOLDER_LINE)
        line.path(relative)  # a path leaving the root: refused first
        folder, slash, video = relative.partition("/")
        if not slash or not folder or not video:
            raise line.error(f"{relative!r} has no class folder", FOLDER_LINE)
        entries.append((relative, subset))
    classes = sorted({relative.split("/")[0] for relative, _ in entries})
    label_of = {name: i for i, name in enumerate(classes)}
    samples: dict[str, list[Sample]] = {"train": [], "test": []}
    for relative, subset in entries:
        samples[subset].append(Sample(relative, label_of[relative.split("/")[0]]))
    return SplitLists(classes, samples["train"], samples["test"])
