"""`harness data check`: counts and health of a dataset split."""

from __future__ import annotations

from harness.data.datasets import DatasetConfig, FrameIndex, open_dataset, require_any_present

# Not healthy (exit 1): missing stops training, unreadable is left out of it and unscored, truncated
# trains on what decodes. too_short is loop-padded, as the papers' loaders do: not a failure.
FAILING = ("missing", "unreadable", "truncated")


def check_dataset(
    config: DatasetConfig, *, min_frames: int = 16, workers: int | None = None
) -> dict:
    """`{"split", "classes", "train", "test", "videos": {path: {"frames", "status"}}}`."""
    lists, train, test = open_dataset(config)
    require_any_present(config, train + test)  # a mistyped --root, not 'all missing'
    indexes = FrameIndex(config.root).lookup(train + test, workers)
    videos = {}
    for entry in train + test:
        if entry.found is None:
            videos[entry.relative] = {"frames": 0, "status": "missing"}
        else:
            index = indexes[entry.found]
            videos[entry.relative] = {"frames": index.frames, "status": index.status(min_frames)}
    return {
        "split": config.split,
        "classes": len(lists.classes),
        "train": len(train),
        "test": len(test),
        "videos": videos,
    }


def failing(report: dict) -> int:
    """How many of the report's videos are not healthy (`FAILING`)."""
    return sum(video["status"] in FAILING for video in report["videos"].values())


def summary(report: dict) -> str:
    counts: dict[str, int] = {}
    for video in report["videos"].values():
        counts[video["status"]] = counts.get(video["status"], 0) + 1
    lines = [
        f"split {report['split']}: {report['classes']} classes, "
        f"{report['train']} train / {report['test']} test videos",
        "status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
    ]
    bad = [
        f"  {path}: {v['status']} ({v['frames']} frames)"
        for path, v in report["videos"].items()
        if v["status"] != "ok"
    ]
    if bad:
        lines.append("not ok:")
        lines += bad[:50] + ([f"  … {len(bad) - 50} more (use --json)"] if len(bad) > 50 else [])
    return "\n".join(lines)
