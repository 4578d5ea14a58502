"""What a spec gives that changes nothing in the runs it describes, told as warnings.

A `reference` or `per_trial` entry whose `match` matches no trial (a `frames: 61` for 16) is
silently unused: no report row shows its values, no trial trains with its settings.

The optimiser and the schedule each read only some of `train`'s keys (`harness.train.optim`):
AdamW ignores `momentum` and `dampening`; only EAM's eq. 12 schedule (`schedule: eam`) reads
`warmup_epochs` and `milestones`, only it and `plateau` read `gamma`, only `plateau` reads
`plateau_patience`. A value given for a key the run ignores, a milestone at or past the last
epoch, or a warm-up as long as the training, is most often a mistake (a schedule left out, epochs
cut by `--set train.epochs=5`), but a run with it is still well defined: warned, not refused.
"""

from __future__ import annotations

from collections import Counter

from harness.config.pairs import two_stream_pairs
from harness.config.sections import TrainSection
from harness.config.spec import Spec
from harness.config.trial import matches

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
    """The spec's match blocks that match no trial, then `inert_settings` of every trial's
    train settings, each line once; every line names the spec and, when `per_trial` confines
    a setting to some trials, how many."""
    unmatched = [f"{spec.path}: {line}" for line in unmatched_blocks(spec)]
    return unmatched + _inert_in_trials(spec)


def unmatched_blocks(spec: Spec) -> list[str]:
    """The `reference` entries (cited rows aside) and `per_trial` entries matching no trial
    (a reference may match a two-stream pair's fused row)."""
    rows = [t.fields() for t in spec.trials] + [p.fields() for p in two_stream_pairs(spec)]
    lines = [
        f"reference[{i}] matches no trial ({reference.match}): its values appear in no report row."
        for i, reference in enumerate(spec.references)
        if not reference.cited and not any(matches(row, reference.match) for row in rows)
    ]
    return lines + [
        f"per_trial[{i}] matches no trial ({match}): its train settings change nothing."
        for i, (match, _) in enumerate(spec.per_trial)
        if not any(matches(trial.fields(), match) for trial in spec.trials)
    ]


def _inert_in_trials(spec: Spec) -> list[str]:
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
