"""`harness bench data`: the training-clip paths against each other and the raw decode rate.

The same sampled videos, on the same machine, in one run:

- raw decode: every frame of each video decoded and converted to RGB, one process, by the decoder
  this process uses (torchcodec where it loads, else PyAV: `harness.data.torchcodec_reader`);
- `videos`: training clips (random window, crop, resize, flip, normalise) decoded from the videos;
- `videos_pyav`: the same with PyAV, and PyAV's raw rate, when torchcodec is the decoder: the
  measurement behind making it the default;
- `prepared`: the same from JPEG frames (`harness data prepare`), when `--prepared` is given;
- `cache`: the same read from the decoded-clip cache (`harness data cache`, `--cache`), with
  the augmentation on the host, as a CPU trial runs;
- `cache_slices`: what the host does when the augmentation runs on the GPU (`ClipBatches`):
  the window's crop box sliced from the memory map into a batch, nothing else.

Each path is measured with one worker in-process (clips/s per core) and with N workers (DataLoader
processes; threads for `cache_slices`). The projection multiplies the per-core rate by `cores`
and compares it with `train_rate`, the clips/s the GPU trains at: the GPU waits for
1 − data/train of each step when data is slower. The targets: one worker delivers at least 70 %
of the raw decode rate, the prepared layout at least 2× the raw-video pipeline, the cache's
slices at least 10× the prepared layout per core.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from harness.data.batches import ClipBatches
from harness.data.cache import CacheReader, ClipCache, open_cache
from harness.data.clips import ClipProtocol, FrameReader, TrainClips, make_loader
from harness.data.datasets import DatasetConfig, FrameIndex, open_dataset, require_any_present
from harness.data.torchcodec_reader import decoder_in_use, forced_decoder, uses_torchcodec
from harness.data.video import read_frames

LOADER_BATCH = 8
PATHS = ("videos", "videos_pyav", "prepared", "cache", "cache_slices")
TRAIN_RATE = 1000.0  # clips/s: 3D ResNet-50 on an H100, measured 998 (bench train, bf16, batch 32)


def bench_data(
    config: DatasetConfig,
    *,
    protocol: ClipProtocol,
    workers: int,
    videos: int = 48,
    clips: int = 96,
    prepared_root: Path | None = None,
    cache_folder: Path | None = None,
    train_rate: float = TRAIN_RATE,
    cores: int | None = None,
) -> dict:
    """Every path's rates (see the module docstring) and sizes, in one dictionary."""
    import cv2

    cv2.setNumThreads(1)  # per core: OpenCV's own threads would inflate the in-process rates
    reader, entries = _reader(config, videos)
    results: dict = {"decoder": decoder_in_use()}
    results["videos"] = _video_rates(reader, entries, protocol, clips, workers)
    if uses_torchcodec():
        with forced_decoder("pyav"):
            results["videos_pyav"] = _video_rates(reader, entries, protocol, clips, workers)
    if prepared_root is not None:
        prepared, prepared_entries = _reader(replace(config, root=prepared_root), videos)
        row = _rates(TrainClips(prepared, prepared_entries, protocol), clips, workers)
        results["prepared"] = row | {"bytes": _folder_bytes(prepared_root, prepared_entries)}
    if cache_folder is not None:
        side = ClipCache(cache_folder).short_side  # whatever it is: the bench checks the rest
        cache = open_cache(cache_folder, config, entries, reader.indexes, side)
        cached = TrainClips(CacheReader(cache), entries, protocol)
        size = sum(cache.videos[e.found].bytes for e in entries)
        results["cache"] = _rates(cached, clips, workers) | {"bytes": size}
        results["cache_slices"] = _slice_rates(cached, clips, workers) | {"bytes": size}
        results["cache_short_side"] = cache.short_side
    cores = cores or os.cpu_count() or 1
    for name in PATHS:
        if name in results:
            _project(results[name], protocol, cores, train_rate)
    _ratios(results)
    results |= {"workers": workers, "cores": cores, "train_rate": train_rate}
    results["clip"] = f"{protocol.frames}x{protocol.size}x{protocol.size}"
    return results


def _reader(config: DatasetConfig, videos: int):
    _, train, _ = open_dataset(config)
    require_any_present(config, train)  # a sample may skip missing videos, but needs one
    found = [e for e in train if e.found is not None]
    step = max(len(found) // videos, 1)
    entries = found[::step][:videos]  # spread over classes
    return FrameReader(config.root, FrameIndex(config.root).lookup(entries)), entries


def _video_rates(reader: FrameReader, entries, protocol, clips: int, workers: int) -> dict:
    row = _rates(TrainClips(reader, entries, protocol), clips, workers)
    row["raw_decode_fps"] = _raw_decode_fps(reader, entries)
    row["bytes"] = sum((reader.root / e.found).stat().st_size for e in entries)
    return row


def _rates(dataset: TrainClips, clips: int, workers: int) -> dict:
    return {
        "clips_per_s_1": _in_process_rate(dataset, clips),
        "clips_per_s_n": _loader_rate(dataset, clips, workers),
    }


def _raw_decode_fps(reader: FrameReader, entries) -> float:
    start, frames = time.perf_counter(), 0
    for entry in entries:
        count = reader.frame_count(entry)
        read_frames(reader.root / entry.found, list(range(count)), reader.indexes[entry.found])
        frames += count
    return frames / (time.perf_counter() - start)


def _in_process_rate(dataset: TrainClips, clips: int) -> float:
    dataset[0]  # warm caches (imports, codec setup, the memory map)
    start = time.perf_counter()
    for i in range(clips):
        dataset[i % len(dataset)]
    return clips / (time.perf_counter() - start)


def _loader_rate(dataset: TrainClips, clips: int, workers: int) -> float:
    loader = make_loader(dataset, batch_size=LOADER_BATCH, workers=workers, shuffle=True)
    return _drain(loader, clips)


def _slice_rates(dataset: TrainClips, clips: int, workers: int) -> dict:
    """`ClipBatches`' host work: one thread in this process, then `workers` threads."""
    single = ClipBatches(dataset, batch_size=LOADER_BATCH, seed=0, threads=1, pin=False)
    single.batch(list(range(LOADER_BATCH)))  # warm the memory map
    start, made = time.perf_counter(), 0
    while made < clips:
        made += len(single.batch([(made + i) % len(dataset) for i in range(LOADER_BATCH)])["label"])
    rate_1 = made / (time.perf_counter() - start)
    threaded = ClipBatches(dataset, batch_size=LOADER_BATCH, seed=0, threads=workers, pin=False)
    rate_n = _drain(threaded, clips)
    threaded.close()  # its batches still under way would slow what is measured next
    return {"clips_per_s_1": rate_1, "clips_per_s_n": rate_n}


def _drain(loader, clips: int) -> float:
    """Clips/s delivered by `loader` after its first batch (start-up is not throughput),
    starting epochs over as needed."""
    iterator = iter(loader)
    next(iterator)
    start, delivered = time.perf_counter(), 0
    while delivered < clips:
        try:
            delivered += len(next(iterator)["label"])
        except StopIteration:  # the next epoch, as training asks for it
            loader.sampler.set_epoch(loader.sampler.epoch + 1)
            iterator = iter(loader)
    return delivered / (time.perf_counter() - start)


def _folder_bytes(root: Path, entries) -> int:
    return sum(f.stat().st_size for e in entries for f in (root / e.found).iterdir())


def _project(row: dict, protocol: ClipProtocol, cores: int, train_rate: float) -> None:
    """Frames/s per core, the rate `cores` such workers would give, and the GPU's wait."""
    row["frames_per_s_1"] = row["clips_per_s_1"] * protocol.frames
    row["projected_clips_per_s"] = row["clips_per_s_1"] * cores
    row["projected_gpu_wait"] = max(0.0, 1 - row["projected_clips_per_s"] / train_rate)


def _ratios(results: dict) -> None:
    videos = results["videos"]
    for row in (results[name] for name in ("videos", "videos_pyav") if name in results):
        row["pipeline_vs_raw_per_core"] = row["frames_per_s_1"] / row["raw_decode_fps"]
    for name in ("videos_pyav", "prepared", "cache", "cache_slices"):
        if name in results:
            for n in ("1", "n"):
                rate = results[name][f"clips_per_s_{n}"]
                results[name][f"speedup_vs_videos_{n}"] = rate / videos[f"clips_per_s_{n}"]
                if "prepared" in results and name != "prepared":
                    prepared = results["prepared"][f"clips_per_s_{n}"]
                    results[name][f"speedup_vs_prepared_{n}"] = rate / prepared


def format_bench(results: dict) -> str:
    workers, cores = results["workers"], results["cores"]
    lines = [
        f"clip {results['clip']}, {workers} workers; projection: {cores} cores against a GPU "
        f"training {results['train_rate']:.0f} clips/s",
        f"decoder: {results['decoder']}",
        *(
            f"raw decode (1 process{', PyAV' if name == 'videos_pyav' else ''}): "
            f"{results[name]['raw_decode_fps']:8.0f} frames/s"
            for name in ("videos", "videos_pyav")
            if name in results
        ),
        f"{'path':13} {'1 worker':>9} {f'{workers} workers':>10} {'per core':>9} "
        f"{f'x{cores} cores':>10} {'GPU wait':>9} {'size':>9}",
    ]
    for name in PATHS:
        if name in results:
            row = results[name]
            lines.append(
                f"{name:13} {row['clips_per_s_1']:9.1f} {row['clips_per_s_n']:10.1f} "
                f"{row['speedup_vs_videos_1'] if name != 'videos' else 1.0:8.2f}x "
                f"{row['projected_clips_per_s']:10.0f} {row['projected_gpu_wait']:9.0%} "
                f"{row['bytes'] / 1e6:7.1f} MB"
            )
    lines.append("(clips/s; 'per core' is against the videos path; 'GPU wait' the share of each")
    lines.append(" training step the GPU would wait, cores scaling linearly)")
    lines += _targets(results)
    return "\n".join(lines)


def _targets(results: dict) -> list[str]:
    videos = results["videos"]
    lines = [
        f"pipeline / raw decode per core: {videos['pipeline_vs_raw_per_core']:.2f} (target >= 0.70)"
    ]
    if "videos_pyav" in results:
        pyav = results["videos_pyav"]
        raw = videos["raw_decode_fps"] / pyav["raw_decode_fps"]
        lines.append(
            f"torchcodec / PyAV: raw decode {raw:.2f}x"
            f", training clips {1 / pyav['speedup_vs_videos_1']:.2f}x at 1 worker, "
            f"{1 / pyav['speedup_vs_videos_n']:.2f}x at {results['workers']}"
        )
    if "prepared" in results:
        prepared = results["prepared"]
        lines.append(
            f"prepared / raw-video pipeline: {prepared['speedup_vs_videos_1']:.2f}x at 1 worker, "
            f"{prepared['speedup_vs_videos_n']:.2f}x at {results['workers']} (target >= 2x)"
        )
    if "cache_slices" in results and "prepared" in results:
        slices, host = results["cache_slices"], results["cache"]
        lines.append(
            f"cache slices / prepared per core: {slices['speedup_vs_prepared_1']:.1f}x (target "
            f">= 10x); cache with host augmentation: {host['speedup_vs_prepared_1']:.1f}x"
        )
    return lines
