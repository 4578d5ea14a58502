"""Train settings that change nothing in the run a spec describes, told as warnings.

The optimiser and the schedule each read only some of `train`'s keys (`harness.train.optim`):
AdamW ignores `momentum` and `dampening`; only EAM's eq. 12 schedule (`schedule: eam`) reads
`warmup_epochs` and `milestones`, only it and `plateau` read `gamma`, only `plateau` reads
`plateau_patience`. A value given for a key the run ignores, a milestone at or past the last
epoch, or a warm-up as long as the training, is most often a mistake (a schedule left out, epochs
cut by `--set train.epochs=5`), but a run with it is still well defined: warned, not refused.
"""

from __future__ import annotations

from collections import Counter

from harness.config.sections import TrainSection
from harness.config.spec import Spec

DEFAULT = TrainSection()
READ_BY = {  # key: (the optimizer or schedule setting that decides, the values that read it)
    "momentum": ("optimizer", ("sgd",)),
    "dampening": ("optimizer", ("sgd",)),
    "warmup_epochs": ("schedule", ("eam",)),
    "milestones": ("schedule", ("eam",)),
    "gamma": ("schedule", ("eam", "plateau")),
    "plateau_patience": ("schedule", ("plateau",)),
}


def spec_warnings(spec: Spec) -> list[str]:
    """`inert_settings` of every trial's train settings, each line once, naming the spec and,
    when `per_trial` confines it to some trials, how many."""
    counts: Counter[str] = Counter()
    for trial in spec.trials:
        train = spec.train_for(trial)
        counts.update(inert_settings(train) if train is not None else [])
    total = len(spec.trials)
    return [
        f"{spec.path}: {line}" + ("" if count == total else f" ({count} of {total} trials)")
        for line, count in counts.items()
    ]


def inert_settings(train: TrainSection) -> list[str]:
    """What in `train` has no effect on training, one sentence each (none: an empty list)."""
    given = [key for key in READ_BY if getattr(train, key) != getattr(DEFAULT, key)]
    unread = [_unread(train, key) for key in given]
    return [line for line in unread if line] + _beyond_the_end(train)


def _unread(train: TrainSection, key: str) -> str:
    setting, readers = READ_BY[key]
    chosen = getattr(train, setting)
    if chosen in readers:
        return ""
    return (
        f"train.{key} = {getattr(train, key)!r} has no effect: {setting} {chosen!r} does not use "
        f"it (read only with {setting} {' or '.join(map(repr, readers))})."
    )


def _beyond_the_end(train: TrainSection) -> list[str]:
    """EAM eq. 12's warm-up and steps that the last epoch never reaches."""
    if train.schedule != "eam":
        return []
    lines = []
    if train.warmup_epochs >= train.epochs:
        lines.append(
            f"train.warmup_epochs = {train.warmup_epochs} is not shorter than train.epochs = "
            f"{train.epochs}: the learning rate warms up for the whole run and never trains at "
            "train.lr after the warm-up."
        )
    late = [m for m in train.milestones if m >= train.epochs]
    if late:
        lines.append(
            f"train.milestones {late} lie at or past train.epochs = {train.epochs}: the learning "
            "rate never steps down there (a milestone m takes effect from epoch m + 1)."
        )
    return lines
