"""A user's own videos: `<class>/<video>` under the root, and a split file (`--split-file`,
`dataset.split_file`) of `<class>/<video> train|test` lines; classes sorted by name."""

from __future__ import annotations

from harness.data.formats.base import DatasetConfig, DatasetFormat
from harness.data.splits import DataError, SplitLists, folder_split


def read_lists(config: DatasetConfig) -> SplitLists:
    if config.split_file is None:
        raise DataError(
            "A 'folder' dataset needs --split-file ('<class>/<video> train|test' lines)."
        )
    return folder_split(config.split_file)


FORMAT = DatasetFormat(
    name="folder",
    description="videos as <class>/<video>, and a split file of '<class>/<video> train|test' "
    "lines (--split-file, dataset.split_file)",
    read_lists=read_lists,
)
