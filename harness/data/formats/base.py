"""What a dataset format is: a name, how its split lists are read, and where its files go.

A format is one `DatasetFormat` value, usually in a file of its own (`ucf101.py`, or a plugin's
single module). `harness.data.datasets.read_lists` does what every format shares before calling
the format's `read_lists`: another tool's lists given on the command line or in the spec
(`annotations`, `train_list`/`test_list`) replace the format's own, the split number is checked
against `splits`, and `config.split_dir` is filled in from `split_folder`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.data.splits import SplitLists
from registry.registry import Registry


@dataclass(frozen=True)
class DatasetConfig:
    """Where a dataset is and which of its layouts to read."""

    name: str  # a registered format
    root: Path
    split: int = 1
    split_dir: Path | None = None
    annotations: Path | None = None  # 3D-ResNets-PyTorch JSON over frame folders
    train_list: Path | None = None  # mmaction2 lists
    test_list: Path | None = None
    split_file: Path | None = None  # `folder` datasets


@dataclass(frozen=True)
class DatasetFormat:
    """One way a dataset lies on disk.

    `read_lists(config)` returns the lists of split `config.split`, paths relative to
    `config.root`; it is called with `config.split_dir` set when the format has a `split_folder`
    (the one given, else that folder found in the root or its parent). `description` says what
    goes where in one line that follows "Put the …" (missing-data messages, command help).
    """

    name: str
    description: str
    read_lists: Callable[[DatasetConfig], SplitLists]
    split_folder: str | None = None  # the split files' usual folder, e.g. "ucfTrainTestlist"
    splits: tuple[int, ...] = ()  # numbered splits (UCF101, HMDB51: 1, 2, 3); () = just one


FORMATS: Registry[DatasetFormat] = Registry("dataset")
