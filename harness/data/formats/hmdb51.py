"""HMDB51 as distributed: `<class>/<clip>.avi` and `testTrainMulti_7030_splits/` (one file per
class and split, tags 1 = train, 2 = test, 0 = unused); labels are the sorted class names."""

from __future__ import annotations

from harness.data.formats.base import DatasetConfig, DatasetFormat
from harness.data.splits import SplitLists, hmdb51_split


def read_lists(config: DatasetConfig) -> SplitLists:
    return hmdb51_split(config.split_dir, config.split)


FORMAT = DatasetFormat(
    name="hmdb51",
    description="HMDB-51 videos as <class>/<clip>.avi, and the official split files "
    "(testTrainMulti_7030_splits/<class>_test_split<k>.txt)",
    read_lists=read_lists,
    split_folder="testTrainMulti_7030_splits",
    splits=(1, 2, 3),
)
