"""Named training recipes a spec's `train` mapping (top level or a `per_trial` entry) selects
with `preset: NAME`; the keys given beside it override the preset's.

`hara_scratch` is Hara et al.'s recipe for 3D CNNs trained from scratch on UCF-101/HMDB-51
("Can spatiotemporal 3D CNNs retrace the history of 2D CNNs and ImageNet?", CVPR 2018, §4.2;
the defaults of `opts.py` in kenshohara/3D-ResNets-PyTorch's 2018 code, which the AARM paper's
from-scratch baselines cite): SGD from lr 0.1 with momentum 0.9, dampening 0.9 and weight decay
1e-3, the learning rate divided by 10 when the loss stops falling for 10 epochs (Hara watches the
validation loss; the harness has no per-epoch validation pass and watches the training loss),
batches of 128, 200 epochs at most, random initialisation, and only the ActivityNet mean
subtracted from 0–255 pixels (`--mean_dataset activitynet`, no std division).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    "hara_scratch": {
        "pretrained": None,
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "dampening": 0.9,
        "weight_decay": 1e-3,
        "schedule": "plateau",
        "plateau_patience": 10,
        "gamma": 0.1,
        "batch_size": 128,
        "epochs": 200,
        "normalisation": "activitynet",
    },
}


def with_preset(train: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    """`train` with its `preset`'s settings filled in under the keys it gives itself."""
    if train is not None and not isinstance(train, Mapping):
        raise ConfigError(f"key '{key}': expected a mapping of training settings, got {train!r}.")
    given = dict(train or {})
    name = given.get("preset")
    if name is None:
        return given
    if not isinstance(name, str) or name not in PRESETS:
        raise ConfigError(
            f"key '{key}.preset' = {name!r} is not a training preset. Accepted: "
            f"{', '.join(PRESETS)} (or leave it out)."
        )
    return {**PRESETS[name], **given}
