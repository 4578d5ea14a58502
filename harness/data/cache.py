"""The decoded-clip cache: every video of a dataset decoded once into one memory-mappable file.

`harness data cache` decodes each video of a split (decode order, as `FrameReader`), scales
its short side to `short_side` (`store_resize`, the resize `harness data prepare` uses; `native`
keeps the decoded size) and appends the uint8 frames `(T, H, W, 3)` to one frames file.
`index.json` names that file and records, per video (keyed by its path under the root): the byte
offset, frame count and size, the source's size and mtime, and for the whole store the short
side, the decoder (PyAV and libavcodec versions) and the root.

A training clip is then a slice of a memory map, not a decode (`CacheReader`), and a clip read
from the cache is pixel for pixel the clip `FrameReader(short_side=…)` decodes from the video
(tested on the synthetic AVIs and the real fixture videos). A cache is used only where it still
describes the source: a video whose size or mtime changed, or whose decoded frame count differs
from the frame index's, is stale, and a run refuses it with a message naming the videos and the
command that rebuilds them. (A JPEG frame folder's stamp is the folder's own: rewriting its
images in place, same names and count, goes unnoticed; delete the cache after `harness data
prepare` into the same folder.) Rebuilding copies the unchanged videos' frames from the old store
and decodes the stale, new and previously failed ones, into a new frames file; the new index
replaces the old one only when that file is complete, and the old file is removed after.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from pathlib import Path
from shlex import quote

import numpy as np

from harness.data.clips import FrameReader
from harness.data.datasets import (
    DatasetConfig,
    Entry,
    FrameIndex,
    cache_dir,
    listed_reasons,
    open_dataset,
    require_any_present,
    source_stamp,
)
from harness.data.pool import worker_pool
from harness.data.splits import DataError
from harness.data.torchcodec_reader import pyav_version
from harness.data.video import VideoIndex
from harness.folders import lies_within

CACHE_VERSION = 2  # 2: the index names its frames file (one per build)
INDEX_FILE = "index.json"
LOCK_FILE = ".lock"
DEFAULT_SHORT_SIDE = 128  # as `harness data prepare`; HMDB-51's 70 % training part ≈ 23 GB
CHANNELS = 3


@dataclass(frozen=True)
class CachedVideo:
    """Where one video's frames lie in `frames.u8`, and the source they were decoded from."""

    offset: int  # bytes
    frames: int  # 0: nothing decoded (`error` says why)
    height: int
    width: int
    stamp: list[int]  # the source's [size, mtime_ns] when it was decoded
    error: str = ""

    @property
    def bytes(self) -> int:
        return self.frames * self.height * self.width * CHANNELS


def default_folder(config: DatasetConfig, short_side: int | None) -> Path:
    """Where `harness data cache` writes unless told (`--out`), and a spec finds it (unless
    `dataset.cache` says): under the harness cache, by dataset root and short side."""
    key = hashlib.sha1(str(config.root.resolve()).encode()).hexdigest()[:12]
    side = f"s{short_side}" if short_side else "native"
    return cache_dir() / "clips" / f"{config.name}-{key}-{side}"


def side_name(short_side: int | None) -> str:
    """How a message names a short side (`None`: frames kept at their decoded size)."""
    return f"short side {short_side}" if short_side else "native size"


class ClipCache:
    """A cache folder opened for reading: its index, and the frames file that index names, mapped
    at once. Each build writes a frames file of its own name and removes the previous one only
    after the new index is in place, so a process that opened the cache keeps reading the frames
    its index describes even while the cache is rebuilt (the mapping holds the old file); forked
    loader workers inherit the mapping, spawned ones map the file again by name."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        index_path = self.folder / INDEX_FILE
        try:
            header = json.loads(index_path.read_text(encoding="utf-8"))
            version = header["version"]
            if version == CACHE_VERSION:
                self.short_side = header["short_side"]  # an int, or None: as decoded
                self.decoder = str(header["decoder"])
                self.frames_file = str(header["frames_file"])
                self.videos = {k: CachedVideo(**v) for k, v in header["videos"].items()}
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(
                f"{str(index_path)!r} is not a readable clip cache index ({error}). Build the "
                "cache with `harness data cache DATASET --root ROOT --out FOLDER`."
            ) from None
        if version != CACHE_VERSION:
            raise DataError(
                f"{str(self.folder)!r} is a version {version} clip cache; this harness reads "
                f"version {CACHE_VERSION}. Build it again with `harness data cache`."
            )
        self._frames = self._map()

    def _map(self) -> np.ndarray:
        """The frames file, mapped; a `DataError` when it is missing or shorter than the index
        says (a copy cut short, a disk that filled up)."""
        path = self.folder / self.frames_file
        needed = max((r.offset + r.bytes for r in self.videos.values()), default=0)
        size = path.stat().st_size if path.is_file() else -1
        if size < needed:
            state = "missing" if size < 0 else f"{size} bytes, the index needs {needed}"
            raise DataError(
                f"the clip cache {str(self.folder)!r} is damaged: {self.frames_file} is "
                f"{state}. Build it again with `harness data cache` (delete the folder first)."
            )
        if needed == 0:
            return np.zeros(0, np.uint8)  # nothing decoded: an empty file cannot be mapped
        return np.memmap(path, dtype=np.uint8, mode="r")

    def __getstate__(self) -> dict:
        return self.__dict__ | {"_frames": None}  # a spawned process maps the file again

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._frames = self._map()

    def video(self, found: str) -> np.ndarray:
        """All frames of one video, `(T, H, W, 3)` uint8, a view of the memory map."""
        record = self.videos[found]
        flat = self._frames[record.offset : record.offset + record.bytes]
        return flat.reshape(record.frames, record.height, record.width, CHANNELS)

    def unreadable(self, entries: list[Entry]) -> dict[str, str]:
        """`{path as the split names it: why}` for the split's videos whose decoding failed
        when they were cached (they hold no frames; `harness data cache` tries them again)."""
        records = {e.relative: self.videos.get(e.found or "") for e in entries}
        return {
            path: f"no frames cached ({record.error or 'no frame decodes'})"
            for path, record in records.items()
            if record is not None and record.frames == 0
        }

    def problems(self, root: Path, entries: list[Entry], indexes: dict[str, VideoIndex]) -> dict:
        """`{path as the split names it: why the cache cannot serve it}`: not cached, changed
        since it was cached, or cached with another frame count than the index measures."""
        found = {}
        for entry in entries:
            if entry.found is None:
                continue
            record = self.videos.get(entry.found)
            reason = _stale_reason(record, root / entry.found, indexes.get(entry.found))
            if reason:
                found[entry.relative] = reason
        return found


def _stale_reason(record: CachedVideo | None, source: Path, index: VideoIndex | None) -> str:
    if record is None:
        return "not in the cache"
    if record.stamp != source_stamp(source):
        return "the source changed after it was cached (size or modification time)"
    if not record.error and index is not None and record.frames != index.frames:
        return f"{record.frames} frames cached, {index.frames} decode now"
    return ""


class CacheReader:
    """`FrameReader`'s interface over a `ClipCache`: reading frames is slicing the map."""

    def __init__(self, cache: ClipCache) -> None:
        self.cache = cache

    def frame_count(self, entry: Entry) -> int:
        record = self.cache.videos.get(entry.found or "")
        return record.frames if record else 0

    def frame_shape(self, entry: Entry) -> tuple[int, int]:
        record = self.cache.videos[entry.found]
        return record.height, record.width

    def read(self, entry: Entry, indices: list[int]) -> np.ndarray:
        return np.ascontiguousarray(self.cache.video(entry.found)[indices])  # (T, H, W, 3)


def cache_command(config: DatasetConfig, short_side: int | None, folder: Path) -> str:
    """The `harness data cache` command line that builds (or updates) this cache."""
    located = [("--split-dir", config.split_dir), ("--annotations", config.annotations),
               ("--split-file", config.split_file), ("--train-list", config.train_list),
               ("--test-list", config.test_list)]  # fmt: skip
    extra = "".join(f" {flag} {quote(str(value))}" for flag, value in located if value)
    return (
        f"harness data cache {config.name} --root {quote(str(config.root))} --split "
        f"{config.split}{extra} --short-side {short_side or 'native'} --out {quote(str(folder))}"
    )


def _require_outside_root(folder: Path, root: Path) -> None:
    """A cache folder inside the dataset root would lie among the videos, which `harness data
    cache` refuses to write: refuse it here too, before suggesting that command."""
    if lies_within(folder, root):
        root = root.resolve()
        raise DataError(
            f"dataset.cache {str(folder)!r} lies inside dataset.root {str(root)!r}: a clip "
            "cache is kept outside the videos' folder (`harness data cache` will not write "
            f"among them). Set dataset.cache to a folder outside it, e.g. "
            f"{str(root.parent / (root.name + '-cache'))!r}, or leave it out for the default "
            "under HARNESS_CACHE."
        )


def open_cache(folder: Path, config: DatasetConfig, entries: list[Entry],
               indexes: dict[str, VideoIndex], short_side: int | None) -> ClipCache:  # fmt: skip
    """The cache at `folder`, checked against the split's videos: a missing cache, another
    short side or any stale video is a `DataError` naming them and the command that fixes it."""
    _require_outside_root(folder, Path(config.root))
    rebuild = cache_command(config, short_side, folder)
    if not (folder / INDEX_FILE).is_file():
        raise DataError(
            f"dataset.layout is 'cache' but {str(folder)!r} holds no clip cache. Build it with "
            f"`{rebuild}` (it decodes every video once), or set dataset.layout: files."
        )
    cache = ClipCache(folder)
    if cache.short_side != short_side:
        raise DataError(
            f"the clip cache {str(folder)!r} holds frames at {side_name(cache.short_side)}, the "
            f"spec asks for {side_name(short_side)} (dataset.short_side). Build one with "
            f"`{rebuild}`."
        )
    _warn_decoder(cache)
    stale = cache.problems(config.root, entries, indexes)
    if stale:
        raise DataError(
            f"the clip cache {str(folder)!r} cannot be used for {len(stale)} of {len(entries)} "
            f"videos of {config.name} split {config.split}: {listed_reasons(stale)}. Update it "
            f"with `{rebuild}` (unchanged videos are copied, only these are decoded again)."
        )
    return cache


_WARNED: set[Path] = set()  # cache folders whose decoder difference this process has said


def _warn_decoder(cache: ClipCache) -> None:
    """Say (once per folder) when the cache was decoded by another PyAV or libavcodec than this
    process has: the frames are what that decoder gave, which `layout: files` may not match."""
    if cache.decoder != pyav_version() and cache.folder not in _WARNED:
        _WARNED.add(cache.folder)
        print(
            f"warning: the clip cache {cache.folder} was decoded with {cache.decoder}; this "
            f"process decodes with {pyav_version()}. Its frames stay as that decoder gave "
            "them; rebuild it (delete the folder, then `harness data cache`) for this decoder's.",
            file=sys.stderr,
        )


def build_cache(
    config: DatasetConfig, out: Path, *, short_side: int | None = DEFAULT_SHORT_SIDE,
    workers: int | None = None,
) -> dict:  # fmt: skip
    """Decode the split's videos into the cache at `out`, reusing what an existing cache there
    holds unchanged (videos that failed to decode are tried again); returns counts: of the
    split's `videos` on disk, those `decoded`, `reused` and `failed` (and `failed_videos`), and
    those the lists name but the root lacks (`missing`: none at all is an error); `kept`,
    other videos (other splits') still current and kept; `bytes` and `frames` of the store.
    One build at a time per folder (a lock file); a build with nothing to decode or drop
    leaves the store as it is."""
    _require_same_root(out, config.root)
    _require_cache_folder(out)
    _, train, test = open_dataset(config)
    require_any_present(config, train + test)  # a mistyped --root: would drop every video
    entries = list({e.found: e for e in train + test if e.found is not None}.values())
    indexes = FrameIndex(config.root).lookup(entries, workers)
    with _locked(out):
        previous = _previous(out, short_side)
        current = _current(previous, config.root, entries, indexes)
        decode = [e for e in entries if e.found not in current]
        if previous is not None and not decode and current == set(previous.videos):
            records = previous.videos  # nothing changed: no rewrite
        else:
            records = _write(out, config.root, previous, sorted(current), decode, indexes,
                             short_side, workers)  # fmt: skip
    failed = [e.relative for e in decode if records[e.found].error]
    in_split = {e.found for e in entries}
    return {
        "videos": len(entries), "decoded": len(decode) - len(failed),
        "reused": len(entries) - len(decode), "kept": len(current - in_split),
        "failed": len(failed), "failed_videos": failed,
        "missing": len({e.relative for e in train + test if e.found is None}),
        "bytes": sum(r.bytes for r in records.values()),
        "frames": sum(r.frames for r in records.values()),
    }  # fmt: skip


def _current(previous: ClipCache | None, root: Path, entries: list[Entry],
             indexes: dict[str, VideoIndex]) -> set[str]:  # fmt: skip
    """The previous store's videos that can be copied as they are: decoded without error and
    unchanged since (for other splits' videos, still present and unchanged)."""
    if previous is None:
        return set()
    usable = {found for found, record in previous.videos.items() if not record.error}
    in_split = {e.found: e for e in entries}
    return {
        found for found in usable
        if (found in in_split and not _stale_reason(previous.videos[found], root / found,
                                                    indexes[found]))
        or (found not in in_split and (root / found).exists()
            and not _stale_reason(previous.videos[found], root / found, None))
    }  # fmt: skip


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """An exclusive lock on the cache folder: a second build waits for the first."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = (out / LOCK_FILE).open("w")
    except OSError as error:
        raise DataError(f"cannot write the clip cache into {str(out)!r}: {error}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        for partial in out.glob("*.partial"):  # left by a build that was killed
            partial.unlink(missing_ok=True)
        yield


def _require_same_root(out: Path, root: Path) -> None:
    """A cache folder holds one dataset root's videos: building another root's there would drop
    every one of them (none is under the new root)."""
    try:
        held = json.loads((out / INDEX_FILE).read_text(encoding="utf-8")).get("root")
    except (OSError, ValueError, AttributeError):
        return  # no cache there, or an unreadable one: rebuilt from the sources
    if held and Path(held) != root.resolve():
        raise DataError(
            f"{str(out)!r} holds the clip cache of {held!r}; building the cache of "
            f"{str(root.resolve())!r} there would delete it. Give another folder (--out; the "
            "default is one folder per root and short side)."
        )


# what may lie in a cache folder: what a build writes (the index, the lock, frames files; a killed
# build's partials, `frames.u8.<pid>.partial` in older versions) and what the file system adds
# (NFS keeps a frames file removed while a trial still reads it as `.nfs…`; a mount's lost+found)
OWNED = (INDEX_FILE, LOCK_FILE, "frames*.u8", "frames*.partial", f"{INDEX_FILE}*.partial", ".nfs*",
         "lost+found")  # fmt: skip


def _require_cache_folder(out: Path) -> None:
    """A clip cache is built in a new or empty folder, or over a clip cache: in any other folder
    (a mistyped --out or dataset.cache, the videos' parent) its files would lie among the
    folder's own, and a build removes what it takes for its leftovers (`*.partial`)."""
    try:
        others = sorted(e.name for e in out.iterdir() if not any(fnmatch(e.name, p) for p in OWNED))
    except (FileNotFoundError, NotADirectoryError):
        return  # made by the build; a file in the way is refused where the folder is made
    if others:
        shown = ", ".join(repr(name) for name in others[:3]) + (", ..." if others[3:] else "")
        default = "" if lies_within(out, cache_dir()) else (
            ", or leave it out for the default under HARNESS_CACHE"
        )  # fmt: skip
        raise DataError(
            f"{str(out)!r} is not a clip cache folder: it holds {len(others)} file(s) of its own "
            f"({shown}), and a clip cache is built only in a new or empty folder or over a clip "
            f"cache. Give another folder (--out, or dataset.cache){default}."
        )


def _previous(out: Path, short_side: int | None) -> ClipCache | None:
    """The cache already at `out` when it can give frames to the new one (same short side)."""
    if not (out / INDEX_FILE).is_file():
        return None
    try:
        cache = ClipCache(out)
    except DataError:
        return None  # unreadable or another version: rebuilt from the sources
    return cache if cache.short_side == short_side else None


def _write(out: Path, root: Path, previous: ClipCache | None, reused: list[str],
           decode: list[Entry], indexes: dict, short_side: int | None,
           workers: int | None) -> dict[str, CachedVideo]:  # fmt: skip
    """Write a new frames file and the index naming it (under a temporary name, then moved into
    place), then remove the previous frames file; a failure leaves the previous store whole
    and no partial file behind."""
    name = f"frames-{uuid.uuid4().hex[:12]}.u8"
    partial, index_partial = out / f"{name}.partial", out / f"{INDEX_FILE}.{name}.partial"
    stamps = {e.found: source_stamp(root / e.found) for e in decode}  # before decoding them
    stamps |= {found: previous.videos[found].stamp for found in reused}
    try:
        records = _write_frames(partial, root, previous, reused, decode, indexes, short_side,
                                workers, stamps)  # fmt: skip
        header = {"version": CACHE_VERSION, "short_side": short_side, "frames_file": name,
                  "decoder": pyav_version(), "root": str(root.resolve()),
                  "videos": {k: asdict(v) for k, v in records.items()}}  # fmt: skip
        index_partial.write_text(json.dumps(header), encoding="utf-8")
        partial.replace(out / name)
        index_partial.replace(out / INDEX_FILE)
    except OSError as error:
        raise DataError(
            f"writing the clip cache into {str(out)!r} failed: {error}. Free space there (the "
            f"cache needs about {_estimate(decode, indexes, previous, reused) / 1e9:.1f} GB) "
            "or give another --out."
        ) from None
    finally:
        partial.unlink(missing_ok=True)
        index_partial.unlink(missing_ok=True)
    for stale in out.glob("frames*.u8"):  # the previous store's (open maps keep reading it)
        if stale.name != name:  # and any older one, e.g. of another cache version
            stale.unlink(missing_ok=True)
    return records


def _write_frames(partial: Path, root, previous, reused, decode, indexes, short_side, workers,
                  stamps) -> dict[str, CachedVideo]:  # fmt: skip
    records: dict[str, CachedVideo] = {}
    offset = 0
    with partial.open("wb") as sink:
        for found, frames, error in _sources(root, previous, reused, decode, indexes,
                                             short_side, workers):  # fmt: skip
            height, width = frames.shape[1:3] if len(frames) else (0, 0)
            records[found] = CachedVideo(offset, len(frames), height, width, stamps[found], error)
            sink.write(np.ascontiguousarray(frames).data)
            offset += frames.nbytes
    return records


def _estimate(decode, indexes, previous, reused) -> int:
    """Bytes of the store, guessing 128×171 frames for the videos still to decode."""
    kept = sum(previous.videos[f].bytes for f in reused) if previous else 0
    return kept + sum(indexes[e.found].frames for e in decode) * 128 * 171 * CHANNELS


def _sources(root, previous, reused, decode, indexes, short_side,
             workers) -> Iterator[tuple[str, np.ndarray, str]]:  # fmt: skip
    """`(path, frames, error)`: the reused videos' frames from the old map, then the decoded
    ones, in the order of `decode` (decoded in parallel processes)."""
    for found in reused:
        yield found, previous.video(found), ""
    jobs = [(str(root), e.found, e.kind, indexes[e.found], short_side) for e in decode]
    if not jobs:
        return
    with worker_pool(min(workers or os.cpu_count() or 1, len(jobs))) as pool:
        for entry, (frames, error) in zip(decode, pool.map(_decode, jobs), strict=True):
            yield entry.found, frames, error


def _decode(job: tuple) -> tuple[np.ndarray, str]:
    """One video's frames at the short side, or no frames and the reason."""
    root, found, kind, index, short_side = job
    empty = np.zeros((0, 1, 1, CHANNELS), np.uint8)
    if index.frames == 0:
        return empty, index.error or "no frame decodes"
    entry = Entry(found, 0, found, kind)
    reader = FrameReader(Path(root), {found: index}, short_side=short_side)
    try:
        return reader.read(entry, list(range(index.frames))), ""
    except (RuntimeError, OSError, ValueError) as error:
        return empty, f"{type(error).__name__}: {error}"
