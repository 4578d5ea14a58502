"""Experiment specs: YAML files validated into typed objects at load time.

A spec is flat and its values are registry keys::

    name: eam_table4
    model: {num_classes: 51, frames: 16, size: 112}
    grid:                      # every combination of these axes is a trial
      backbone: [resnet3d_50, resnext3d_101]
      attention: [none, se, eca, cbam, eam]
      placement: [stage_output]
      frames: [16, 64]
    exclude:                   # drop the grid trials matching every key given
      - {backbone: resnet3d_50, frames: 64}
    include: []                # extra trials: axis values, others from the first grid value
                               # (a null value drops that axis, e.g. in_channels for C3D)
    reference:                 # what the paper prints for a row (used by reports)
      - match: {backbone: resnet3d_50, attention: none}
        label: ResNet-50       # optional: the row's name as printed
        values: {params_m: 46.30, gflops: 10.102, hmdb51_split1: 62.5}
      - cited: TSN (RGB+Flow) [10]   # another method's row the paper cites
        values: {hmdb51: 69.4, ucf101: 94.2}

Reference value keys: `params_m` (millions), `gflops`, and accuracies in percent as `<dataset>`
(mean over the three splits) or `<dataset>_split<N>`, with `<dataset>` a dataset name
(`hmdb51`, `ucf101`).

Grid axes are `backbone`, `attention`, `placement`, `frames`, `size`, `num_classes`, and any option
of a backbone or attention module (e.g. `k_c`, `order`, `shortcut`). Every mistake is a
`SpecError` naming the file, the key and the accepted values. A spec without a `dataset` section
is profile-only (`harness profile`); with one, `dataset`, `train`, `eval` and `tracking` sections
(`harness.config.sections`) describe the runs, and every grid row runs once per split and seed.
`--set key.path=value` overrides any value before validation.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from harness.config.overrides import reach_every_trial
from harness.config.presets import with_preset
from harness.config.sections import (
    DatasetSection,
    EvalSection,
    ReportSection,
    TrackingSection,
    TrainSection,
    parse_section,
)
from harness.config.smoke import smoke_raw
from harness.config.trial import Trial, matches
from harness.data.formats import FORMATS
from harness.data.synthetic import synthetic_preset
from registry import (
    ATTENTION,
    BACKBONES,
    ConfigError,
    parse_placement,
)
from registry.options import check_value, options_of, yaml_boolean_hint

TOP_LEVEL_KEYS = (
    "name", "description", "model", "grid", "include", "exclude", "reference",
    "dataset", "train", "per_trial", "eval", "tracking", "report",
)  # fmt: skip
MODEL_KEYS = ("num_classes", "frames", "size", "options")
MODEL_AXES = ("backbone", "attention", "placement", "frames", "size", "num_classes")
# outside a result's identity: how it runs, and the lists whose one value the trial key holds
HOW_NOT_WHAT = (
    "workers",
    "sync_every",
    "save_checkpoint",
    "seeds",
    "splits",
    "compile",
    "cudnn_benchmark",
    "fused_optimizer",
    "channels_last",
    "layout",  # the cache holds the pixels the files give at the same short side (tested)
    "cache",
    "augment_on",  # the device ops equal the CPU transforms bit for bit (tested)
)
# train keys added after runs were logged: at these values they leave a run's config hash as it
# was, so a store's finished runs stay finished (a new value is a new configuration)
LATER_DEFAULTS = {"dampening": 0.0, "plateau_patience": 2, "normalisation": None, "preset": None}
LATER_DATASET_DEFAULTS = {"short_side": None}  # the same, for dataset keys
_UNSET = object()
AXIS_LIMITS = {"num_classes": 100_000, "frames": 1024, "size": 1024}  # beyond: a typo
SPEC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # it names folders and an experiment
UNSAFE_IN_KEYS = ("/", "\\", "\0")  # a trial key names a checkpoint folder
STREAMS = ("rgb", "flow", "two-stream")  # what a match's `stream` may name (Trial.fields)


class SpecError(ConfigError):
    """A spec file that cannot be used as written."""


@dataclass(frozen=True)
class Reference:
    """Values a paper prints for the trials matching `match`.

    `label` names the row as the paper prints it (reports use it). A `cited` reference is a row
    of another method the paper cites (e.g. TSN in EAM Table 5): it matches no trial and its
    values appear in reports as cited, never as measured.
    """

    match: dict[str, Any]
    values: dict[str, Any]
    label: str = ""
    cited: bool = False


@dataclass(frozen=True)
class Spec:
    """A validated spec: its trials in grid order and the paper's reference values."""

    path: Path
    name: str
    description: str
    trials: tuple[Trial, ...]
    references: tuple[Reference, ...] = field(default=())
    content_hash: str = ""
    dataset: DatasetSection | None = None
    train: TrainSection | None = None
    eval: EvalSection = field(default_factory=EvalSection)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    report: ReportSection = field(default_factory=ReportSection)
    resolved: dict = field(default_factory=dict)  # the validated YAML, overrides applied
    per_trial: tuple[tuple[dict[str, Any], dict[str, Any]], ...] = ()  # (match, train changes)

    def train_for(self, trial: Trial) -> TrainSection | None:
        """The train settings of `trial`: `train` with the changes of every matching `per_trial`
        entry applied in order (e.g. ResNeXt-101's learning rate and checkpoint in EAM Table 4,
        the flow stream's epochs in AARM's specs)."""
        changes = [c for match, c in self.per_trial if matches(trial.fields(), match)]
        if self.train is None or not changes:
            return self.train
        merged = with_preset(self.resolved.get("train"), "train")
        for change in changes:
            merged |= with_preset(change, "per_trial.train")
        return parse_section(TrainSection, merged, "train")

    def config_hash(self, trial: Trial) -> str:
        """A hash of everything that shapes `trial`'s result: its model, split and seed, its
        train settings, the dataset and the evaluation protocol (not how many loader workers,
        how often the loss is read, or which other seeds and splits the spec lists). A finished
        run is reused only under the same hash."""
        train = {
            k: v for k, v in asdict(self.train_for(trial)).items()
            if k not in HOW_NOT_WHAT and LATER_DEFAULTS.get(k, _UNSET) != v
        }  # fmt: skip
        dataset = {
            k: v for k, v in asdict(self.dataset).items()
            if k not in HOW_NOT_WHAT and LATER_DATASET_DEFAULTS.get(k, _UNSET) != v
        }  # fmt: skip
        payload = {"trial": trial.key, "train": train, "dataset": dataset,
                   "eval": asdict(self.eval)}  # fmt: skip
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def reference_for(self, trial: Trial) -> dict[str, Any]:
        """The paper's values for `trial` (later references override earlier ones)."""
        values: dict[str, Any] = {}
        for reference in self.references:
            if not reference.cited and matches(trial.fields(), reference.match):
                values.update(reference.values)
        return values

    def label_for(self, trial: Trial) -> str:
        """The row name the paper prints for `trial` (the last matching `label`), or ""."""
        labels = [
            r.label for r in self.references
            if not r.cited and r.label and matches(trial.fields(), r.match)
        ]  # fmt: skip
        return labels[-1] if labels else ""

    @property
    def cited(self) -> tuple[Reference, ...]:
        """Rows of other methods the paper cites, in spec order."""
        return tuple(r for r in self.references if r.cited)


def load_spec(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, smoke: bool = False
) -> Spec:
    """Read and validate `path`; raises `SpecError` naming the file and key on any mistake.

    `smoke` shrinks the spec to a short CPU run on synthetic data (`harness.config.smoke`); then
    `overrides`, `key.path=value` strings (values parsed as YAML), apply before validation.
    """
    path = Path(path)
    raw, text = _read_yaml(path)
    if smoke:
        raw = smoke_raw(raw)
    for override in overrides:  # after --smoke, so `--smoke --set train.epochs=2` trains two
        raw = _apply_override(raw, override, path)
    raw = reach_every_trial(raw, overrides)  # and every trial, per_trial's included
    content = yaml.safe_dump(raw, sort_keys=False) if overrides or smoke else text
    try:
        return parse_spec(raw, path, hashlib.sha256(content.encode()).hexdigest())
    except SpecError as error:
        raise _blamed_on_override(error, path, overrides) from None


def _blamed_on_override(error: SpecError, path: Path, overrides: Sequence[str]) -> SpecError:
    """`error` told as the mistake of the `--set` that gave the key it names (the spec file
    itself holds no such value), or `error` unchanged when no override names that key."""
    message = str(error)
    for override in reversed(overrides):  # the last --set of a key is the one that counts
        key, _, value = override.partition("=")
        names = key.split(".")
        prefixes = [".".join(names[:n]) for n in range(1, len(names) + 1)]  # an unknown section
        named = any(_names_key(message, prefix) for prefix in prefixes)
        named = named or _trial_names_value(message, names[-1], value)
        if named and message.startswith(f"{path}: "):
            problem = message.removeprefix(f"{path}: ")
            return SpecError(f"--set {override!r} (applied to {path}): {problem}")
    return error


def _names_key(message: str, key: str) -> bool:
    """Whether a spec error `message` is about `key` (`a.b`): "key 'a.b'" or "'b' in a."."""
    parent, _, last = key.rpartition(".")
    return f"'{key}'" in message or f"'{last}' in {parent or 'the top level'}." in message


def _trial_names_value(message: str, name: str, value: str) -> bool:
    """Whether `message` is a trial's error ("trial (…, name=v): problem") whose problem names
    a value the override gave `name` (an unknown placement, a kernel size): not an error of the
    trial's other values that merely shares the trial with it."""
    trial = re.search(r": trial \(([^)]*)\): (.*)", message, re.S)
    if not (trial and re.search(rf"(^|, ){re.escape(name)}=", trial.group(1))):
        return False
    try:
        given = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:  # a value the spec's own loader reads and safe_load does not
        given = value
    items = given if isinstance(given, list) else [given]
    return any(str(item) in trial.group(2) for item in items if item is not None)


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML in which a key given twice in one mapping is an error, not "the last wins",
    every key is a name (a string), and `1e-3` is a float, as YAML 1.2 and every researcher read
    it (PyYAML's YAML 1.1 wants `1.0e-3` and reads `1e-3` as a string). Merge keys (`<<: *base`)
    work as in YAML: a key given beside them overrides the merged one."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise SpecError(
                    f"key {key!r} (line {line}) is not a name: every key of a spec is a word "
                    "such as k_c or epochs. Quote it if it is one."
                )
            if key in seen:
                raise SpecError(f"key {key!r} appears twice in one mapping (line {line}); YAML "
                                "would silently keep the last. Remove one.")  # fmt: skip
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


MERGE_TAG = "tag:yaml.org,2002:merge"


_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str, where: str) -> Any:
    """`text` as YAML (safe, duplicate keys refused); `SpecError` naming `where` otherwise."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as error:
        raise SpecError(f"{where}: not valid YAML: {' '.join(str(error).split())}") from None
    except SpecError as error:
        raise SpecError(f"{where}: {error}") from None


def _read_yaml(path: Path) -> tuple[Any, str]:
    """The spec file's YAML and its text; one-paragraph errors for a missing, unreadable or
    non-UTF-8 file."""
    if path.is_dir():
        raise SpecError(f"Spec file {str(path)!r} is a folder: give one YAML file in it "
                        "(specs live in experiments/).")  # fmt: skip
    if path.exists() and not path.is_file():  # a FIFO, a socket, a device: reading could block
        raise SpecError(f"Spec file {str(path)!r} is not a regular file: give a YAML file (specs "
                        "live in experiments/).")  # fmt: skip
    if not path.is_file():
        raise SpecError(f"Spec file {str(path)!r} does not exist. Specs live in experiments/.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(
            f"Spec file {str(path)!r} is not UTF-8 text (byte {error.start}): save it as UTF-8."
        ) from None
    except OSError as error:
        raise SpecError(f"Spec file {str(path)!r} cannot be read: {error.strerror}.") from None
    if not text.strip():
        raise SpecError(f"Spec file {str(path)!r} is empty: a spec needs at least name, model "
                        "and grid (see experiments/quickstart.yaml).")  # fmt: skip
    return parse_yaml(text, str(path)), text


def select_trials(spec: Spec, patterns: list[str]) -> Spec:
    """Only the trials whose key is, or matches, one of the shell `patterns` (all when none
    given). A key given whole always matches, though placement labels such as
    `stage_output[res2]` read as character classes to a shell pattern."""
    if not patterns:
        return spec
    chosen = tuple(
        t for t in spec.trials
        if any(t.key == p or fnmatch.fnmatchcase(t.key, p) for p in patterns)  # keys hold [ ]
    )  # fmt: skip
    if not chosen:
        raise SpecError(
            f"{spec.path}: --trial {' '.join(patterns)} matches none of the {len(spec.trials)} "
            "trials; `harness run SPEC --dry-run` lists their keys."
        )
    return replace(spec, trials=chosen)


def _apply_override(raw: Any, override: str, path: Path) -> Any:
    key, separator, value = override.partition("=")
    if not separator or not all(key.split(".")):
        raise SpecError(f"--set {override!r}: expected key.path=value, e.g. train.lr=0.01 "
                        "(names joined by single dots).")  # fmt: skip
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the top level must be a mapping to apply --set {override!r}.")
    target = raw
    *parents, last = key.split(".")
    for parent in parents:
        target = target.setdefault(parent, {})
        if not isinstance(target, dict):
            raise SpecError(f"--set {override!r}: '{parent}' is not a mapping in {path}.")
    target[last] = parse_yaml(value, f"--set {override!r}")
    return raw


def parse_spec(raw: Any, path: Path, content_hash: str = "") -> Spec:
    where = _Where(path)
    raw = where.mapping(raw, "the top level")
    where.only_keys(raw, TOP_LEVEL_KEYS, "the top level")
    sections = _sections(where, raw)
    name = _check_name(where, where.typed(raw, "name", str))
    model = where.mapping(raw.get("model", {}), "model")
    where.only_keys(model, MODEL_KEYS, "model")
    defaults = {
        "num_classes": where.typed(model, "num_classes", int, "model."),
        "frames": where.typed(model, "frames", int, "model.", default=16),
        "size": where.typed(model, "size", int, "model.", default=112),
    }
    fixed_options = where.mapping(model.get("options", {}), "model.options")
    axes = _grid_axes(where, raw.get("grid", {}))
    rows = _expand_grid(where, axes, raw)
    trials = tuple(_trial(where, row, defaults, fixed_options) for row in rows)
    if sections["dataset"] is not None:
        trials = tuple(
            replace(trial, split=split, seed=seed)
            for trial in trials
            for split in sections["dataset"].splits
            for seed in sections["train"].seeds
        )
    if not trials:
        raise where.error("exclude", "it removes every trial of the grid, leaving nothing to "
                          "run; remove the rule that matches them all.")  # fmt: skip
    duplicates = sorted(k for k, n in Counter(t.key for t in trials).items() if n > 1)
    if duplicates:
        raise where.error("grid", f"it produces duplicate trials {duplicates}; remove repeats.")
    _check_contrasts(where, sections["report"])
    references = tuple(_references(where, raw.get("reference", [])))
    description = where.typed(raw, "description", str, default="")
    per_trial = _per_trial(where, raw)
    return Spec(
        path, name, description, trials, references, content_hash, resolved=dict(raw),
        per_trial=per_trial, **sections,
    )  # fmt: skip


def _check_contrasts(where: _Where, report: ReportSection) -> None:
    """Each contrast names registered attention modules: a typo would silently test nothing.
    A registered module the grid lacks (a grid narrowed by `--set grid.attention=[none, eam]`)
    leaves its contrast without rows to compare, and the report without that comparison."""
    for pair in report.contrasts:
        unknown = [name for name in pair if name not in ATTENTION]
        if unknown:
            raise where.error(
                "report.contrasts", f"{pair!r}: {ATTENTION.unknown_message(unknown[0])}"
            )


def _per_trial(where: _Where, raw: Mapping) -> tuple:
    """`per_trial: [{match: {...}, train: {...}}]`: train settings for the matching trials."""
    entries = _listed(where, raw, "per_trial")
    if entries and "dataset" not in raw:
        raise where.error("per_trial", "per-trial train settings need a 'dataset' section.")
    found = []
    for i, entry in enumerate(entries):
        entry = where.mapping(entry, f"per_trial[{i}]")
        where.only_keys(entry, ("match", "train"), f"per_trial[{i}]")
        changes = where.mapping(entry.get("train", {}), f"per_trial[{i}].train")
        if "seeds" in changes:
            raise where.error(f"per_trial[{i}].train.seeds", "seeds decide which trials exist, "
                              "so they are set once, in train.seeds, for every trial.")  # fmt: skip
        try:  # each entry checked here; train_for combines the entries matching a trial
            merged = {**with_preset(raw.get("train"), "train"),
                      **with_preset(changes, f"per_trial[{i}].train")}  # fmt: skip
            parse_section(TrainSection, merged, f"per_trial[{i}].train")
        except ConfigError as error:
            raise SpecError(f"{where.path}: {error}") from None
        match = where.mapping(entry.get("match", {}), f"per_trial[{i}].match")
        found.append((_check_match(where, match, f"per_trial[{i}].match"), dict(changes)))
    return tuple(found)


def _sections(where: _Where, raw: Mapping) -> dict[str, Any]:
    """The training sections, validated; `dataset` and `train` are None for profile-only specs."""
    try:
        dataset = (
            parse_section(DatasetSection, raw["dataset"], "dataset") if "dataset" in raw else None
        )
        train = (
            parse_section(TrainSection, with_preset(raw.get("train"), "train"), "train")
            if dataset
            else None
        )
        if "train" in raw and dataset is None:
            raise ConfigError("key 'train': a training section needs a 'dataset' section too.")
        _require_no_lists_beside_a_preset(dataset)
        return {
            "dataset": dataset,
            "train": train,
            "eval": parse_section(EvalSection, raw.get("eval"), "eval"),
            "tracking": parse_section(TrackingSection, raw.get("tracking"), "tracking"),
            "report": parse_section(ReportSection, raw.get("report"), "report"),
        }
    except ConfigError as error:
        raise SpecError(f"{where.path}: {error}") from None


def _require_no_lists_beside_a_preset(dataset: DatasetSection | None) -> None:
    """A `synthetic:<preset>` root writes its own split lists: lists given beside it would be
    silently unread."""
    if dataset is None or synthetic_preset(dataset.root) is None:
        return
    lists = {"split_dir": dataset.split_dir, "annotations": dataset.annotations,
             "split_file": dataset.split_file}  # fmt: skip
    given = [key for key, value in lists.items() if value]
    if given:
        raise ConfigError(
            f"key 'dataset.{given[0]}': the root {dataset.root} generates its videos with their "
            f"own split lists, so it reads no other; remove dataset.{given[0]}, or give the real "
            "dataset's root."
        )


def _grid_axes(where: _Where, grid: Any) -> dict[str, list[Any]]:
    grid = where.mapping(grid, "grid")
    accepted = set(MODEL_AXES) | _option_names()
    axes = {}
    for axis, values in grid.items():
        if axis not in accepted:
            raise where.error(
                f"grid.{axis}",
                f"unknown axis. Accepted axes: {', '.join(MODEL_AXES)}, or an option of a backbone "
                f"or attention module ({', '.join(sorted(_option_names()))}).",
            )
        values = values if isinstance(values, list) else [values]
        if not values:
            raise where.error(f"grid.{axis}", "the list is empty; give at least one value.")
        axes[axis] = values
        _check_registered(where, axis, values, f"grid.{axis}")
    for required in ("backbone",):
        if required not in axes:
            raise where.error("grid", f"the grid needs a '{required}' axis.")
    return axes


def _expand_grid(where: _Where, axes: dict[str, list[Any]], raw: Mapping) -> list[dict[str, Any]]:
    names = list(axes)
    rows = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]
    excludes = [
        where.mapping(rule, f"exclude[{i}]")
        for i, rule in enumerate(_listed(where, raw, "exclude"))
    ]
    excludes = [_excluded(where, axes, rule, f"exclude[{i}]") for i, rule in enumerate(excludes)]
    rows = [row for row in rows if not any(matches(_labelled(row), r) for r in excludes)]
    for i, extra in enumerate(_listed(where, raw, "include")):
        extra = where.mapping(extra, f"include[{i}]")
        for axis, value in extra.items():  # a null drops the axis (below): nothing to check
            _check_registered(where, axis, [value] if value is not None else [],
                              f"include[{i}].{axis}")  # fmt: skip
        row = {**{axis: values[0] for axis, values in axes.items()}, **extra}
        rows.append({k: v for k, v in row.items() if v is not None})  # null drops an axis
    return rows


def _check_registered(where: _Where, axis: str, values: list[Any], key: str) -> None:
    """A grid, include or match value of `backbone` or `attention` must be a registered name,
    blamed on its key (so a `--set grid.backbone=…` typo is told as that override's)."""
    registry = {"backbone": BACKBONES, "attention": ATTENTION}.get(axis)
    for value in values if registry is not None else []:
        if not isinstance(value, str):
            none = " (no attention module: none)" if axis == "attention" else ""
            raise where.error(key, f"expected a registry name{none}, got {value!r}."
                                   f"{yaml_boolean_hint(value)}")  # fmt: skip
        if value not in registry:
            raise where.error(key, registry.unknown_message(value))


def _excluded(where: _Where, axes: dict[str, list[Any]], rule: Mapping, key: str) -> dict:
    """An `exclude` rule with its placement labelled as trials' are; every key must be a grid
    axis and every value one of that axis's values (else the rule would silently drop
    nothing)."""
    for axis in rule:
        if axis not in axes:
            raise where.error(f"{key}.{axis}", f"not a grid axis ({', '.join(axes)}).")
    rule = _labelled_match(where, rule, key)
    for axis, value in rule.items():
        values = [_labelled({axis: v})[axis] for v in axes[axis]]
        if value not in values:
            raise where.error(f"{key}.{axis}", f"{value!r} is none of the grid's values "
                              f"{values}, so the rule would exclude nothing.")  # fmt: skip
    return rule


def _trial(where: _Where, row: dict[str, Any], defaults: dict, fixed: Mapping) -> Trial:
    values = {**defaults, **row}
    options = {**fixed, **{k: v for k, v in row.items() if k not in MODEL_AXES}}
    context = ", ".join(f"{k}={v}" for k, v in row.items())
    try:
        if "backbone" not in values:
            raise ConfigError("no backbone: a null in an include row drops an axis, but every "
                              "trial needs a backbone; give one (e.g. backbone: c3d).")  # fmt: skip
        for axis in ("backbone", "attention"):
            if axis in values and not isinstance(values[axis], str):
                raise ConfigError(f"{axis} must be a registry name, got {values[axis]!r}.")
        for axis, limit in AXIS_LIMITS.items():
            if not 1 <= check_value(axis, int, values[axis]) <= limit:
                raise ConfigError(
                    f"{axis} = {values[axis]}: expected an integer from 1 to {limit}."
                )
        trial = Trial(
            backbone=values["backbone"],
            attention=values.get("attention", "none"),
            placement=parse_placement(values.get("placement", "none")),
            num_classes=values["num_classes"],
            frames=values["frames"],
            size=values["size"],
            options=tuple(sorted(options.items())),
        )
        resolved = trial.resolve()  # names, options, placement vs backbone
        _check_input(trial, resolved)
        trial = _stages_in_order(trial, resolved)
        if any(unsafe in trial.key for unsafe in UNSAFE_IN_KEYS):
            raise ConfigError(f"an option value makes the trial key {trial.key!r}, which would "
                              "name a folder: values may not contain '/' or '\\'.")  # fmt: skip
    except ConfigError as error:
        raise SpecError(f"{where.path}: trial ({context}): {error}") from None
    return trial


def _stages_in_order(trial: Trial, resolved) -> Trial:
    """`trial` with its placement's stages in the backbone's order: `[res3, res2]` builds the
    model `[res2, res3]` does, so both get that one key (and a grid holding both, a duplicate)."""
    if trial.placement.stages is None:
        return trial
    points = resolved.backbone.points(num_classes=trial.num_classes, **resolved.backbone_options)
    order = list(dict.fromkeys(point.stage for point in points))
    rank = {stage: i for i, stage in enumerate(order)}
    ordered = tuple(sorted(trial.placement.stages, key=lambda stage: rank.get(stage, len(order))))
    if ordered == trial.placement.stages:
        return trial
    return replace(trial, placement=replace(trial.placement, stages=ordered))


def _check_name(where: _Where, name: str) -> str:
    if not SPEC_NAME.fullmatch(name) or ".." in name:
        raise where.error(
            "name", f"{name!r} is not accepted: a spec's name names its folders "
            "(checkpoints/<name>/, reports/<name>/) and its MLflow experiment, so it must be 1 to "
            "100 letters, digits, '.', '_' or '-', starting with a letter or digit, without '..'.",
        )  # fmt: skip
    return name


def _check_match(where: _Where, match: Mapping, key: str) -> dict[str, Any]:
    """A `match` block's keys must be trial fields, as in the grid (a misspelt key would
    silently match nothing)."""
    accepted = set(MODEL_AXES) | _option_names() | {"stream"}
    for name in match:
        if name not in accepted:
            raise where.error(
                f"{key}.{name}", f"unknown key: a match names trial fields ({', '.join(MODEL_AXES)}"
                ", stream, or an option of a backbone or attention module).",
            )  # fmt: skip
    for name in ("backbone", "attention"):
        if name in match:
            _check_registered(where, name, [match[name]], f"{key}.{name}")
    if match.get("stream", "rgb") not in STREAMS:
        raise where.error(f"{key}.stream", f"{match['stream']!r} is not a stream: expected one "
                          f"of {', '.join(STREAMS)}.")  # fmt: skip
    return _labelled_match(where, match, key)


def _labelled_match(where: _Where, match: Mapping, key: str) -> dict[str, Any]:
    """`match` with its placement as the label trials carry (`_label`)."""
    try:
        return (
            {**match, "placement": _label(match["placement"])}
            if "placement" in match
            else dict(match)
        )
    except ConfigError as error:
        raise where.error(f"{key}.placement", str(error)) from None


def _check_input(trial: Trial, resolved) -> None:
    """A backbone with a fixed input (C3D's fc6) takes clips of that shape only; one with a
    smallest side (VGG16's max pools) takes no smaller crop."""
    smallest = resolved.backbone.min_side
    if trial.size < smallest:
        raise ConfigError(
            f"{trial.backbone} takes crops of at least {smallest}×{smallest} pixels (its "
            f"pooling leaves nothing of a smaller one), not size {trial.size}: set size: "
            f"{smallest} or more for its trials."
        )
    fixed = resolved.backbone.fixed_input
    if fixed is not None and trial.input_shape(resolved) != tuple(fixed):
        frames, size = fixed[1], fixed[-1]
        raise ConfigError(
            f"{trial.backbone} takes {'×'.join(map(str, fixed))} clips only, not "
            f"{'×'.join(map(str, trial.input_shape(resolved)))}: set frames: {frames} and "
            f"size: {size} for its trials (e.g. in an include entry)."
        )


def _references(where: _Where, raw: Any) -> list[Reference]:
    if not isinstance(raw, list):
        raise where.error("reference", "expected a list of {match: {...}, values: {...}} entries.")
    found = []
    for i, entry in enumerate(raw):
        entry = where.mapping(entry, f"reference[{i}]")
        where.only_keys(entry, ("match", "values", "label", "cited"), f"reference[{i}]")
        values = _reference_values(where, entry.get("values", {}), f"reference[{i}].values")
        if "cited" in entry:
            cited = where.typed(entry, "cited", str, f"reference[{i}].")
            if "match" in entry:
                raise where.error(
                    f"reference[{i}]", "a cited row is another paper's method: give 'cited' "
                    "(its name) and 'values', not 'match'.",
                )  # fmt: skip
            found.append(Reference({}, values, label=cited, cited=True))
            continue
        found.append(
            Reference(
                _check_match(
                    where,
                    where.mapping(entry.get("match", {}), f"reference[{i}].match"),
                    f"reference[{i}].match",
                ),  # fmt: skip
                values,
                label=where.typed(entry, "label", str, f"reference[{i}].", default=""),
            )
        )
    return found


def _reference_values(where: _Where, raw: Any, key: str) -> dict[str, float]:
    """A reference row's values: numbers under the keys reports know (module docstring)."""
    values = dict(where.mapping(raw, key))
    datasets = "|".join(map(re.escape, FORMATS))
    for name, value in values.items():
        if not re.fullmatch(rf"params_m|gflops|(?:{datasets})(?:_split[1-9])?", str(name)):
            raise where.error(f"{key}.{name}", "unknown value key: expected params_m, gflops, "
                              f"or an accuracy as <dataset> or <dataset>_split<N> with <dataset> "
                              f"one of {', '.join(FORMATS)} (e.g. hmdb51_split1).")  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise where.error(f"{key}.{name}", f"expected a number as the paper prints it, "
                              f"got {value!r}.")  # fmt: skip
        low, high = (0, 100) if name not in ("params_m", "gflops") else (0, math.inf)
        if not (math.isfinite(value) and low <= value <= high):  # 150 %, −5 M params, .nan
            wanted = "an accuracy in percent (0 to 100)" if high == 100 else "a size or cost ≥ 0"
            raise where.error(f"{key}.{name}", f"{value!r}: expected {wanted}, as the paper "
                              "prints it.")  # fmt: skip
    return values


def _listed(where: _Where, raw: Mapping, key: str) -> list:
    value = raw.get(key, []) or []
    if not isinstance(value, list):
        raise where.error(key, "expected a list of mappings of axis values.")
    return value


def _labelled(row: Mapping[str, Any]) -> dict[str, Any]:
    """A grid row with its placement as its trial's label (`_label`); a placement that is no
    rule is left as written, for `_trial` to report with the row."""
    try:
        return {**row, "placement": _label(row["placement"])} if "placement" in row else dict(row)
    except ConfigError:
        return dict(row)


def _label(placement: Any) -> Any:
    """A placement as trials carry it: a string as written (a label such as `block[res3,res4]`),
    a mapping parsed to its label (`{where: block, stages: [res3, res4]}`)."""
    return placement if isinstance(placement, str) else parse_placement(placement).label


def _option_names() -> set[str]:
    names: set[str] = set()
    for backbone in BACKBONES:
        names |= set(options_of(BACKBONES.get(backbone).build))
    for attention in ATTENTION:
        names |= set(options_of(ATTENTION.get(attention).reference_class))
    return names


def _kind_name(kind: type) -> str:
    """`int` → "an integer", `str` → "a string": the type as a message says it."""
    names = {int: "an integer", str: "a string", float: "a number", bool: "true or false",
             list: "a list", dict: "a mapping"}  # fmt: skip
    return names.get(kind, f"a {kind.__name__}")


class _Where:
    """Builds messages that name the spec file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, problem: str) -> SpecError:
        return SpecError(f"{self.path}: key '{key}': {problem}")

    def mapping(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"expected a mapping of keys to values, got {value!r}.")
        return value

    def only_keys(self, value: Mapping, allowed: tuple[str, ...], key: str) -> None:
        for name in value:
            if name not in allowed:
                raise SpecError(
                    f"{self.path}: unknown key '{name}' in {key}. Accepted keys: "
                    f"{', '.join(allowed)}."
                )

    def typed(
        self, value: Mapping, key: str, kind: type, prefix: str = "", default: Any = ...
    ) -> Any:
        if key not in value:
            if default is ...:
                raise self.error(prefix + key, f"missing; expected {_kind_name(kind)}.")
            return default
        found = value[key]
        if not isinstance(found, kind) or isinstance(found, bool) and kind is not bool:
            problem = f"expected {_kind_name(kind)}, got {found!r} ({type(found).__name__})."
            word = kind is str or isinstance(kind, tuple) and str in kind
            raise self.error(prefix + key, problem + (yaml_boolean_hint(found) if word else ""))
        return found
