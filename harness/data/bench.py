"""`harness bench data`: the training-clip pipeline against the raw PyAV decode rate.

Three rates over the same videos, on the same machine, in one run:

- raw decode: every frame of each video decoded and converted to RGB by PyAV, one process;
- pipeline, one worker: training clips (random window, crop, resize, flip, normalise) made
  in-process, reported in clips/s and in delivered frames/s;
- pipeline, N workers: the same through a DataLoader with N worker processes.

The targets: one worker delivers at least 70 % of the raw decode rate (frames/s per core), and the
prepared layout (JPEG frames, `harness data prepare`) at least 2× the raw-video pipeline.
"""

from __future__ import annotations

import time
from dataclasses import replace

from harness.data.clips import ClipProtocol, FrameReader, TrainClips, make_loader
from harness.data.datasets import DatasetConfig, FrameIndex, open_dataset
from harness.data.video import read_frames


def bench_data(
    config: DatasetConfig,
    *,
    protocol: ClipProtocol,
    workers: int,
    videos: int = 48,
    clips: int = 96,
    prepared_root=None,
) -> dict:
    layouts = {"videos": config}
    if prepared_root is not None:
        layouts["prepared"] = replace(config, root=prepared_root)
    results = {}
    for name, layout in layouts.items():
        reader, entries = _reader(layout, videos)
        row = {"videos": len(entries)}
        if name == "videos":
            row["raw_decode_fps"] = _raw_decode_fps(reader, entries)
        dataset = TrainClips(reader, entries, protocol)
        row["clips_per_s_1"] = _in_process_rate(dataset, clips)
        row["clips_per_s_n"] = _loader_rate(dataset, clips, workers)
        row["frames_per_s_1"] = row["clips_per_s_1"] * protocol.frames
        results[name] = row
    raw = results["videos"]["raw_decode_fps"]
    results["videos"]["pipeline_vs_raw_per_core"] = results["videos"]["frames_per_s_1"] / raw
    if "prepared" in results:
        results["prepared"]["speedup_vs_videos_1"] = (
            results["prepared"]["clips_per_s_1"] / results["videos"]["clips_per_s_1"]
        )
        results["prepared"]["speedup_vs_videos_n"] = (
            results["prepared"]["clips_per_s_n"] / results["videos"]["clips_per_s_n"]
        )
    results["workers"] = workers
    results["clip"] = f"{protocol.frames}x{protocol.size}x{protocol.size}"
    return results


def _reader(config: DatasetConfig, videos: int):
    _, train, _ = open_dataset(config)
    found = [e for e in train if e.found is not None]
    step = max(len(found) // videos, 1)
    entries = found[::step][:videos]  # spread over classes
    return FrameReader(config.root, FrameIndex(config.root).lookup(entries)), entries


def _raw_decode_fps(reader: FrameReader, entries) -> float:
    start, frames = time.perf_counter(), 0
    for entry in entries:
        count = reader.frame_count(entry)
        read_frames(reader.root / entry.found, list(range(count)))
        frames += count
    return frames / (time.perf_counter() - start)


def _in_process_rate(dataset: TrainClips, clips: int) -> float:
    dataset[0]  # warm caches (imports, codec setup)
    start = time.perf_counter()
    for i in range(clips):
        dataset[i % len(dataset)]
    return clips / (time.perf_counter() - start)


def _loader_rate(dataset: TrainClips, clips: int, workers: int) -> float:
    batch = 8
    loader = make_loader(dataset, batch_size=batch, workers=workers, shuffle=True)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start, delivered = time.perf_counter(), 0
    while delivered < clips:
        try:
            delivered += len(next(iterator)["label"])
        except StopIteration:
            iterator = iter(loader)
    return delivered / (time.perf_counter() - start)


def format_bench(results: dict) -> str:
    lines = [f"clip {results['clip']}, {results['workers']} workers"]
    videos = results["videos"]
    lines.append(f"raw PyAV decode (1 process):        {videos['raw_decode_fps']:8.0f} frames/s")
    for name in ("videos", "prepared"):
        if name not in results:
            continue
        row = results[name]
        lines.append(
            f"{name:9} pipeline, 1 worker:       {row['clips_per_s_1']:8.1f} clips/s "
            f"({row['frames_per_s_1']:.0f} frames/s)"
        )
        lines.append(
            f"{name:9} pipeline, {results['workers']} workers:      "
            f"{row['clips_per_s_n']:8.1f} clips/s"
        )
    lines.append(
        f"pipeline / raw decode per core: {videos['pipeline_vs_raw_per_core']:.2f} (target >= 0.70)"
    )
    if "prepared" in results:
        prepared = results["prepared"]
        lines.append(
            f"prepared / raw-video pipeline: {prepared['speedup_vs_videos_1']:.2f}x at 1 worker, "
            f"{prepared['speedup_vs_videos_n']:.2f}x at {results['workers']} (target >= 2x)"
        )
    return "\n".join(lines)
