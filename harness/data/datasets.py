"""Datasets by name, resolved against the files on disk before anything trains.

`open_dataset` reads the split lists through the dataset's format (`harness.data.formats`: one
file per format, plugins through the `harness.datasets` entry point), decides whether each entry
is a video file or a JPEG frame folder (the official lists name `.avi` files; frame layouts drop
the suffix), accepts both spellings of UCF101's `HandstandPushups`, and reports structural
problems in one message naming the path, what was expected and the `harness data` command that
helps.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from harness.data.formats import FORMATS, DatasetConfig
from harness.data.frames import rgb_frame_files
from harness.data.pool import worker_pool
from harness.data.splits import DataError, SplitLists, hara_annotation, mmaction_lists
from harness.data.torchcodec_reader import uses_torchcodec
from harness.data.video import VideoIndex, index_video
from harness.folders import nearest_existing


@dataclass(frozen=True)
class Entry:
    """One video of a split as found on disk."""

    relative: str  # as the split lists name it
    label: int
    found: str | None  # the existing path relative to the root, or None
    kind: str  # "video", "frames" or "missing"


def open_dataset(config: DatasetConfig) -> tuple[SplitLists, list[Entry], list[Entry]]:
    """The split lists and their train/test entries resolved on disk."""
    if config.name not in FORMATS:
        raise DataError(FORMATS.unknown_message(config.name))
    if not config.root.is_dir():
        raise DataError(
            f"Dataset root {str(config.root)!r} does not exist or is not a folder. Expected the "
            f"unpacked {config.name} videos (or frame folders); for a synthetic dataset run "
            f"'harness data synth --preset tiny --out DIR' and use DIR/UCF-101."
        )
    lists = read_lists(config)
    resolver = _Resolver(config.root)
    train = [resolver.entry(s.path, s.label) for s in lists.train]
    test = [resolver.entry(s.path, s.label) for s in lists.test]
    return lists, train, test


def require_any_present(config: DatasetConfig, entries: list[Entry]) -> None:
    """Stop when none of `entries` is on disk (a mistyped root): commands that leave some
    missing videos out, or list them (`data check`), still need one."""
    if any(e.found is not None for e in entries):
        return
    if not entries:
        raise DataError(f"the {config.name} split {config.split} lists name no video: nothing "
                        "to do.")  # fmt: skip
    raise DataError(
        f"none of the {len(entries)} videos the {config.name} split {config.split} lists is "
        f"under {str(config.root)!r} (e.g. {entries[0].relative}). Expected --root to be the "
        "folder that holds the class folders (UCF-101/, hmdb51/ or the frames folder `harness "
        "data prepare` wrote); fix --root, or the split lists."
    )


def require_present(config: DatasetConfig, entries: list[Entry]) -> None:
    """Stop before training when split entries are not on disk (structural, not a bad file)."""
    missing = [e.relative for e in entries if e.found is None]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f", … ({len(missing)} in all)" if len(missing) > 5 else ""
        )
        raise DataError(
            f"{len(missing)} of {len(entries)} videos named by the {config.name} split "
            f"{config.split} lists are not under {str(config.root)!r}: {shown}. Expected the "
            f"videos (or frame folders) at the paths the split files give; run 'harness data "
            f"check {config.name} --root {config.root} --split {config.split}' for the full list."
        )


def read_lists(config: DatasetConfig) -> SplitLists:
    """The split's lists: another tool's lists when given (they replace the format's own), else
    the format's, read from its split folder."""
    _require_one_source(config)
    if config.annotations is not None:
        return hara_annotation(config.annotations)
    if config.train_list is not None or config.test_list is not None:
        if config.train_list is None or config.test_list is None:
            raise DataError("mmaction2 lists need both --train-list and --test-list.")
        return mmaction_lists(config.train_list, config.test_list)
    dataset = FORMATS.get(config.name)
    if dataset.splits and config.split not in dataset.splits:
        *first, last = map(str, dataset.splits)
        listed = f"{', '.join(first)} and {last}" if first else last
        raise DataError(f"Split {config.split} does not exist: {config.name} has splits {listed}.")
    if not dataset.splits and config.split != 1:
        raise DataError(
            f"Split {config.split} does not exist: a {config.name} dataset has one split (its "
            "lists), numbered 1. Drop --split (dataset.splits: [1])."
        )
    if dataset.split_folder is not None and config.split_dir is None:
        config = replace(config, split_dir=_default_split_dir(config, dataset.split_folder))
    return dataset.read_lists(config)


def _require_one_source(config: DatasetConfig) -> None:
    """One source of split lists: another tool's lists replace the format's own, so giving two
    would leave one unread without a word; a split file is read by formats without a split
    folder only (`folder`, or a plugin's)."""
    sources = {
        "--annotations": config.annotations,
        "--train-list/--test-list": config.train_list or config.test_list,
        "--split-file": config.split_file,
    }
    given = [flag for flag, value in sources.items() if value is not None]
    if len(given) > 1:
        raise DataError(
            f"{' and '.join(given)} are both given, but only one source of split lists is read "
            "(dataset.annotations, train_list/test_list, split_file). Keep the one that "
            "describes this dataset's split."
        )
    folder = FORMATS.get(config.name).split_folder
    if config.split_file is not None and folder is not None:
        raise DataError(
            f"--split-file {config.split_file}: a {config.name} dataset reads its split folder "
            f"({folder}, --split-dir), not a split file, which would be left unread. Drop "
            "--split-file (dataset.split_file), or read the videos as the `folder` format "
            "('<class>/<video> train|test' lines)."
        )


def _default_split_dir(config: DatasetConfig, folder: str) -> Path:
    for candidate in (config.root / folder, config.root.parent / folder):
        if candidate.is_dir():
            return candidate
    raise DataError(
        f"No split folder {folder!r} in {str(config.root)!r} or its parent. Give it with "
        f"--split-dir (the official {config.name} split files, unpacked)."
    )


class _Resolver:
    """Finds split entries on disk: video files, or frame folders named without the suffix."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._listings: dict[Path, dict[str, str]] = {}

    def entry(self, relative: str, label: int) -> Entry:
        for candidate in self._candidates(relative):
            path = self.root / candidate
            if path.is_file():
                return Entry(relative, label, candidate, "video")
            if path.is_dir():
                return Entry(relative, label, candidate, "frames")
        return Entry(relative, label, None, "missing")

    def _candidates(self, relative: str) -> Iterable[str]:
        folder, _, name = relative.partition("/")
        stem = name.rsplit(".", 1)[0]
        yield relative
        yield f"{folder}/{stem}"
        # Case-insensitive fallback: UCF101's folder HandstandPushups holds v_HandStandPushups_*.
        real_folder = self._listing(self.root).get(folder.lower())
        if real_folder:
            listing = self._listing(self.root / real_folder)
            for wanted in (name, stem):
                if wanted.lower() in listing:
                    yield f"{real_folder}/{listing[wanted.lower()]}"

    def _listing(self, folder: Path) -> dict[str, str]:
        if folder not in self._listings:
            try:
                self._listings[folder] = {p.name.lower(): p.name for p in folder.iterdir()}
            except OSError:
                self._listings[folder] = {}
        return self._listings[folder]


def source_stamp(path: Path) -> list[int]:
    """`[size, mtime in ns]` of a video file or frame folder: what says it changed since it was
    indexed or cached."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def cache_dir() -> Path:
    """`$HARNESS_CACHE` (empty or unset: `~/.cache/harness`), where generated datasets, frame
    indexes and clip caches go; `DataError` when it names something that is not a folder."""
    folder = Path(os.environ.get("HARNESS_CACHE") or Path.home() / ".cache" / "harness")
    blocking = nearest_existing(folder)
    if not blocking.is_dir():
        raise DataError(
            f"HARNESS_CACHE={os.environ.get('HARNESS_CACHE')}: {blocking} is a file, where the "
            "harness keeps its generated datasets, frame indexes and clip caches in a folder. "
            "Point HARNESS_CACHE at a folder (it is created if missing), or unset it for "
            "~/.cache/harness."
        )
    return folder


class FrameIndex:
    """Decodable frame counts per entry, measured once and cached by path, size and mtime.

    An entry of which no frame decodes (or a frame folder without frames) cannot give a clip:
    training leaves it out and evaluation cannot score it. So that this never happens silently,
    each `lookup` records those entries in `unreadable` (`{relative path: reason}`, in list
    order), and `unreadable_message` turns them into one paragraph for the log.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
        self.path = cache_dir() / "index" / f"{key}.json"
        self._entries: dict[str, dict] = {}
        self.unreadable: dict[str, str] = {}  # of the latest lookup: relative path -> reason
        if self.path.is_file():
            try:
                self._entries = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
                self._entries = {}  # a damaged cache is rebuilt
            if not isinstance(self._entries, dict):
                self._entries = {}

    def lookup(self, entries: list[Entry], workers: int | None = None) -> dict[str, VideoIndex]:
        """Index every found entry, decoding only what the cache does not know."""
        results: dict[str, VideoIndex] = {}
        stale = []
        for entry in entries:
            if entry.found is None or entry.found in results:
                continue
            cached = self._cached(entry.found)
            if cached is not None:
                results[entry.found] = cached
            else:
                stale.append(entry)
        for entry, index in zip(stale, self._measure(stale, workers), strict=True):
            results[entry.found] = index
            self._entries[entry.found] = {"stamp": self._stamp(entry.found), "index": asdict(index)}
        if stale:
            self._save()
        self.unreadable = {
            e.relative: _unreadable_reason(e, results[e.found])
            for e in entries
            if e.found is not None and results[e.found].frames == 0
        }
        return results

    def _cached(self, found: str) -> VideoIndex | None:
        """The cached index of `found` if the file has not changed since; a damaged cache
        entry counts as absent (it is measured again)."""
        cached = self._entries.get(found)
        try:
            if "pts_addressable" not in cached["index"] and uses_torchcodec():
                return None  # indexed before pts order was recorded: measured again, once
            if cached["stamp"] == self._stamp(found):
                return VideoIndex(**cached["index"])
        except (KeyError, TypeError):
            pass
        return None

    def _measure(self, entries: list[Entry], workers: int | None) -> list[VideoIndex]:
        jobs = [(str(self.root / e.found), e.kind) for e in entries]
        workers = workers or os.cpu_count() or 1
        if len(jobs) < 64 or workers == 1:
            return [_index_one(job) for job in jobs]
        with worker_pool(workers) as pool:
            return list(pool.map(_index_one, jobs, chunksize=64))

    def _stamp(self, relative: str) -> list[int]:
        return source_stamp(self.root / relative)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(self._entries))
        temporary.replace(self.path)  # atomic: parallel writers never leave half a file


def _unreadable_reason(entry: Entry, index: VideoIndex) -> str:
    if entry.kind == "frames":
        return "the frame folder holds no image_00001.jpg / img_00001.jpg frames"
    return f"no frame decodes ({index.error})" if index.error else "no frame decodes"


def listed_reasons(reasons: dict[str, str], shown: int = 5) -> str:
    """`path (reason); path (reason); … (N in all)`: the first `shown` of `reasons`."""
    listed = "; ".join(f"{path} ({reason})" for path, reason in list(reasons.items())[:shown])
    return listed + (f"; … ({len(reasons)} in all)" if len(reasons) > shown else "")


def unreadable_message(unreadable: dict[str, str], total: int, *, shown: int = 5) -> str:
    """One paragraph naming the videos `FrameIndex.lookup` found unreadable ('' when none)."""
    if not unreadable:
        return ""
    return (
        f"{len(unreadable)} of {total} videos cannot be read and are left out of training (and "
        f"unscored in evaluation): {listed_reasons(unreadable, shown)}. Re-encode or replace "
        "them, or remove their lines from the split lists; 'harness data check' lists them all."
    )


def _index_one(job: tuple[str, str]) -> VideoIndex:
    path, kind = job
    if kind == "frames":
        count = len(rgb_frame_files(Path(path)))
        return VideoIndex(count, 0, 0)
    return index_video(path)
