"""Dataset formats by name: the built-ins, one file each, and those that installed packages
register through the `harness.datasets` entry point group (loaded when this package is first
imported, as `registry` loads attention and backbone plugins)::

    # a plugin's pyproject.toml; my_format.py defines FORMAT = DatasetFormat(name="my_format", …)
    [project.entry-points."harness.datasets"]
    my_format = "my_format:FORMAT"

Specs (`dataset.name`), `harness data …` and the missing-data messages all read `FORMATS`.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from harness.data.formats import folder, hmdb51, synthetic, ucf101
from harness.data.formats.base import FORMATS, DatasetConfig, DatasetFormat
from registry.plugins import register_guarded

DATASET_GROUP = "harness.datasets"

for _format in (ucf101.FORMAT, hmdb51.FORMAT, synthetic.FORMAT, folder.FORMAT):
    FORMATS.add(_format.name, _format)


def load_plugins() -> list[str]:
    """Register every installed dataset format; returns the names added. A broken plugin is
    reported on stderr and skipped, so one bad package cannot disable the harness."""
    added = []
    for point in entry_points(group=DATASET_GROUP):
        added += register_guarded(point, _add_format)
    return added


def _add_format(name: str, found: object) -> str:
    if not isinstance(found, DatasetFormat):
        raise TypeError(f"expected a DatasetFormat, got {type(found).__name__}")
    if found.name != name:
        raise ValueError(f"entry point name {name!r} differs from the format's name {found.name!r}")
    if name in FORMATS:
        raise ValueError(f"dataset {name!r} already exists")
    FORMATS.add(name, found)
    return name


PLUGINS = load_plugins()

__all__ = ["DATASET_GROUP", "FORMATS", "PLUGINS", "DatasetConfig", "DatasetFormat"]
