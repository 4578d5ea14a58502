"""The sections of a spec (`dataset`, `train`, `eval`, `tracking`, `report`) as typed dataclasses.

Each field's type hint and default is the schema: `parse_section` rejects unknown keys and values
of the wrong type, naming the key and the accepted values; a field whose metadata names a
`registry` (the dataset name) must be one of its names. Paths are kept as strings here and
resolved relative to the working directory when a run starts.
"""

from __future__ import annotations

import math
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Literal

from harness.data.formats import FORMATS
from registry import ConfigError
from registry.options import check_value

SEED_LIMIT = 2**32 - 1  # NumPy's seeds are 32-bit
SHORT_SIDE_LIMIT = 4096  # pixels; beyond, a typo that allocates gigabytes per frame
BATCH_LIMIT = 65_536  # clips; beyond, a typo (no GPU holds 65k clips of 16 frames)


def bounded(default: Any = MISSING, *, low: float | None = None, high: float | None = None,
            above: float | None = None, below: float | None = None,
            nonempty: bool = False) -> Any:  # fmt: skip
    """A field whose number (or each number of its list) must lie within the bounds: `low` and
    `high` inclusive, `above` and `below` exclusive; `nonempty` lists need a value. Checked at
    load time (so `--dry-run` catches them), with the key named."""
    bounds = {"low": low, "high": high, "above": above, "below": below, "nonempty": nonempty}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"bounds": bounds})
    return field(default=default, metadata={"bounds": bounds})


@dataclass(frozen=True)
class DatasetSection:
    """Where the data is and the clip protocol. `root: synthetic:tiny` generates that preset
    into the cache on first use.

    `short_side` scales decoded frames to that short side before the clip protocol (None: as
    the videos or frame folders hold them). `layout: cache` reads the frames from the
    decoded-clip cache (`harness data cache`, at `cache` or its default folder) instead of
    decoding: the same pixels as `layout: files` at the same `short_side`, so layout, cache
    folder and `augment_on` (where crops, flips and normalisation run: `auto` puts them on the
    GPU when training on one from a cache) leave a run's configuration hash unchanged."""

    name: str = field(metadata={"registry": FORMATS})  # a dataset format (harness.data.formats)
    root: str
    split_dir: str | None = None
    annotations: str | None = None
    split_file: str | None = None
    splits: list[int] = bounded([1], low=1, nonempty=True)
    normalisation: Literal["activitynet", "kinetics", "imagenet"] = "activitynet"
    crop: Literal["multiscale_corner", "random_resized", "random"] = "multiscale_corner"
    workers: int | None = bounded(None, low=0, high=1024)  # loader processes; None: as cores allow
    flow_root: str | None = None  # TSN-style flow images (`harness data flow`), for flow streams
    segments: int = bounded(3, low=1, high=256)  # TSN segments per training video (2D backbones)
    subset: int | None = bounded(None, low=1)  # only the first N train and test videos per class
    # frames scaled first; None: as stored
    short_side: int | None = bounded(None, low=8, high=SHORT_SIDE_LIMIT)
    layout: Literal["files", "cache"] = "files"  # cache: `harness data cache`'s store
    cache: str | None = None  # the cache folder; None: where `harness data cache` writes by default
    augment_on: Literal["auto", "host", "device"] = "auto"  # auto: the GPU when reading a cache

    def __post_init__(self) -> None:
        numbered = FORMATS.get(self.name).splits if self.name in FORMATS else ()
        missing = [split for split in self.splits if numbered and split not in numbered]
        if missing:
            raise ConfigError(
                f"key 'dataset.splits' = {self.splits!r} is not accepted: {self.name} has "
                f"splits {', '.join(map(str, numbered))}, not {missing[0]}."
            )


@dataclass(frozen=True)
class TrainSection:
    """Optimiser, schedule and what trains. `schedule: eam` is EAM's eq. 12: linear warm-up over
    `warmup_epochs`, then ×`gamma` at each of `milestones`.

    `batch_size` is the global batch: under `torchrun` each of the W ranks takes batch_size / W.
    The speed settings (`bf16`, `channels_last`, `fused_optimizer`, `cudnn_benchmark`) are `null`
    by default, meaning on for a CUDA device and off on the CPU (`harness.train.step`); SGD with
    momentum steps with the foreach kernel, whatever `fused_optimizer` says, for a model whose
    parameters may sit out a step (AARM's STAM with χ > 0; the run logs `false`);
    `deterministic: true` asks for deterministic kernels (and sets `CUBLAS_WORKSPACE_CONFIG` on
    a GPU); `sync_every` is how many steps run between the checks of the loss for NaN.
    `normalisation` overrides `dataset.normalisation` for the trials it applies to (a recipe
    decides its input normalisation: ImageNet weights want ImageNet's, Hara's from-scratch recipe
    ActivityNet's mean); `preset` fills in a named recipe (`harness.config.presets`)."""

    epochs: int = bounded(1, low=1, high=100_000)
    batch_size: int = bounded(8, low=1, high=BATCH_LIMIT)  # global: the sum over the ranks
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = bounded(0.001, above=0)  # too high: the trial fails with NonFiniteLoss
    momentum: float = bounded(0.9, low=0, below=1)
    dampening: float = bounded(0.0, low=0, below=1)  # SGD's; Hara's 2018 code uses 0.9
    weight_decay: float = bounded(1e-5, low=0, high=1)
    schedule: Literal["constant", "eam", "cosine", "plateau"] = "constant"
    plateau_patience: int = bounded(2, low=1)  # epochs without a lower loss before ×gamma
    warmup_epochs: int = bounded(0, low=0)
    milestones: list[int] = bounded([], low=1)
    gamma: float = bounded(0.1, above=0, high=1)
    trainable: str | list[str] = "all"
    pretrained: str | None = None
    grad_clip: float | None = bounded(None, above=0)
    seeds: list[int] = bounded([0], low=0, high=SEED_LIMIT, nonempty=True)
    save_checkpoint: bool = False  # log the trained weights as an MLflow artifact
    bf16: bool | None = None  # bf16 autocast
    channels_last: bool | None = None  # channels-last (3D) memory for the model and its input
    fused_optimizer: bool | None = None  # the optimiser's fused kernel
    cudnn_benchmark: bool | None = None  # cuDNN autotuning (off when deterministic)
    compile: bool = False  # torch.compile the model
    deterministic: bool = False
    sync_every: int = bounded(50, low=1)  # steps between the host's looks at the loss
    normalisation: Literal["activitynet", "kinetics", "imagenet"] | None = None  # None: dataset's
    preset: str | None = None  # a name of `harness.config.presets.PRESETS`, checked there

    def __post_init__(self) -> None:
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:], strict=False)):
            raise ConfigError(
                f"key 'train.milestones' = {self.milestones!r} is not accepted: expected epochs "
                "in increasing order, each once (e.g. [30, 60])."
            )


@dataclass(frozen=True)
class EvalSection:
    """Test clips: `sliding` (non-overlapping, EAM) or `count` evenly spaced (`even`).

    Two-stream trials (the same 2D model with an RGB and a flow input) are fused at test time by
    a weighted average of their per-video scores, RGB and flow weighted by `fusion_weights`
    (TSN's 1 : 1.5 by default)."""

    clips: Literal["sliding", "even"] = "sliding"
    count: int = bounded(10, low=1, high=1000)  # even clips per video; 2D: TSN test segments
    batch_size: int = bounded(16, low=1, high=BATCH_LIMIT)
    fusion_weights: list[float] = bounded([1.0, 1.5], low=0)  # RGB, flow

    def __post_init__(self) -> None:
        weights = self.fusion_weights
        if len(weights) != 2 or sum(weights) <= 0:
            raise ConfigError(
                f"key 'eval.fusion_weights' = {weights!r} is not accepted: expected two "
                "non-negative weights, RGB then flow, not both zero (TSN: [1.0, 1.5])."
            )


@dataclass(frozen=True)
class TrackingSection:
    """The MLflow store; default `sqlite:///mlflow.db` (or `MLFLOW_TRACKING_URI`)."""

    uri: str | None = None


@dataclass(frozen=True)
class ReportSection:
    """What `harness report` tests beyond each attention row against its baseline, fixed in the
    spec before the runs, so that the tests are planned rather than picked after the results.

    `contrasts`: pairs of attention names `[a, b]`: every row with module `a` against the row
    with module `b` on the same backbone and settings (`[eam, eca]`: does EAM beat ECA?), run by
    run, in one Holm family with the baseline comparisons. `min_effect`: the smallest
    difference worth detecting, in percentage points, for which the report gives the runs a
    comparison needs for 80 % power (`harness report --min-effect` overrides it)."""

    contrasts: list[list[str]] = field(default_factory=list)
    min_effect: float | None = bounded(None, above=0, high=100)

    def __post_init__(self) -> None:
        for pair in self.contrasts:
            if len(pair) != 2 or pair[0] == pair[1]:
                raise ConfigError(
                    f"key 'report.contrasts' = {self.contrasts!r}: {pair!r} is not accepted: "
                    "expected pairs of two different attention names of the grid, the module "
                    "then the one it is tested against, e.g. [[eam, eca]]."
                )


def parse_section(cls: type, raw: Any, key: str) -> Any:
    """`cls` built from the mapping `raw`; `ConfigError` names `key.field` on any mistake."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"key '{key}': expected a mapping, got {raw!r}.")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for name in raw:
        if name not in known:
            raise ConfigError(f"unknown key '{name}' in {key}. Accepted keys: {', '.join(known)}.")
    values = {}
    for name, spec_field in known.items():
        if name in raw:
            values[name] = check_value(f"key '{key}.{name}'", hints[name], raw[name])
            if values[name] == "":
                raise ConfigError(f"key '{key}.{name}' is an empty string: give a value, or "
                                  "leave the key out for its default.")  # fmt: skip
            check_bounds(f"key '{key}.{name}'", values[name], spec_field.metadata.get("bounds"))
            registry = spec_field.metadata.get("registry")
            if registry is not None and values[name] not in registry:
                raise ConfigError(f"key '{key}.{name}': {registry.unknown_message(raw[name])}")
        elif spec_field.default is MISSING and spec_field.default_factory is MISSING:
            raise ConfigError(f"key '{key}.{name}' is missing.")
    return cls(**values)


def check_bounds(where: str, value: Any, bounds: dict | None) -> None:
    """`ConfigError` naming `where` when `value` (a number, or each number of a list) is not
    finite or lies outside `bounds` (see `bounded`), or when a list repeats a value."""
    numbers = value if isinstance(value, list) else [value]
    if bounds and bounds["nonempty"] and not numbers:
        raise ConfigError(f"{where} = []: give at least one value.")
    repeated = [n for i, n in enumerate(numbers) if n in numbers[:i]]
    if isinstance(value, list) and repeated:  # seeds [0, 0]: one trial twice, not two runs
        raise ConfigError(f"{where} = {value!r} lists {repeated[0]!r} twice: give each once.")
    for number in numbers:
        if not isinstance(number, int | float) or isinstance(number, bool):
            continue
        problem = _out_of_bounds(number, bounds or {})
        if problem:
            raise ConfigError(f"{where} = {value!r} is not accepted: {problem}.")


def _out_of_bounds(number: float, bounds: dict) -> str | None:
    if not math.isfinite(number):
        return "expected a finite number"
    low, high, above, below = (bounds.get(k) for k in ("low", "high", "above", "below"))
    limits = [
        (low is not None and number < low, f"at least {low}"),
        (high is not None and number > high, f"at most {high}"),
        (above is not None and number <= above, f"greater than {above}"),
        (below is not None and number >= below, f"less than {below}"),
    ]
    wanted = [text for broken, text in limits if broken]
    return f"expected a value {' and '.join(wanted)}" if wanted else None
