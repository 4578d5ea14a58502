"""UCF101 as distributed: `<Class>/v_<Class>_gXX_cYY.avi` and `ucfTrainTestlist/` (classInd.txt,
trainlist0k.txt, testlist0k.txt; CRLF); labels come from classInd.txt."""

from __future__ import annotations

from harness.data.formats.base import DatasetConfig, DatasetFormat
from harness.data.splits import SplitLists, ucf101_split


def read_lists(config: DatasetConfig) -> SplitLists:
    return ucf101_split(config.split_dir, config.split)


FORMAT = DatasetFormat(
    name="ucf101",
    description="UCF101 videos as <Class>/v_<Class>_gXX_cYY.avi, and the official split files "
    "(ucfTrainTestlist/classInd.txt, trainlist0k.txt, testlist0k.txt)",
    read_lists=read_lists,
    split_folder="ucfTrainTestlist",
    splits=(1, 2, 3),
)
