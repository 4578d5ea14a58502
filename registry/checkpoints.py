"""Loading released checkpoints into registry models, strictly, and never executing them.

Two 3D-ResNets-PyTorch layouts are accepted (`shared/reference/backbones-and-checkpoints.md`):

- 2018 release: `{'epoch', 'arch', 'state_dict', 'optimizer'}`, keys prefixed `module.`
  (DataParallel), no BatchNorm `num_batches_tracked` entries, 400 classes;
- 2020 release: the same dict plus `'scheduler'`, no prefix, 700 (or other) classes;

and a bare state dict (what torchvision-style ImageNet weights are saved as). The classifier is
always replaced for the target classes; every other backbone tensor must be in the file with the
right shape, and every tensor in the file must be used. Attention modules are new and keep their
initialisation.

A model whose first convolution takes other than 3 input channels (the 20-channel optical-flow
stream of a two-stream network) loading RGB weights gets TSN's cross-modality initialisation
(Wang et al. 2016): the RGB kernels averaged over their 3 input channels, repeated for each input.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from registry.errors import ConfigError

NEW_MODULE_SEGMENTS = frozenset({"attention", "stage_attention", "head_attention"})
OPTIONAL_SUFFIXES = ("num_batches_tracked",)  # absent from the 2018 release


class CheckpointError(ConfigError):
    """A checkpoint file that is missing, unsafe, or does not fit the model."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, `module.` prefixes removed; nothing in it is executed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"Pretrained checkpoint {str(path)!r} does not exist. Give the path of a downloaded "
            "file (e.g. resnet-50-kinetics.pth or r3d50_K_200ep.pth); the harness never downloads."
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(error)
        if "GLOBAL" in reason:
            raise CheckpointError(
                f"Refused to load {str(path)!r}: it is not a plain tensor checkpoint; loading it "
                f"would run code it contains ({reason}). Re-export the weights as a state dict."
            ) from None
        raise CheckpointError(
            f"Cannot read checkpoint {str(path)!r}: {reason}. Expected a file written by "
            "torch.save; re-download it if it is truncated or corrupt."
        ) from None
    except Exception as error:  # truncated or not a torch file at all
        raise CheckpointError(
            f"Cannot read checkpoint {str(path)!r}: {type(error).__name__}: {error}. Expected a "
            "file written by torch.save; re-download it if it is truncated."
        ) from None
    state = loaded.get("state_dict", loaded) if isinstance(loaded, Mapping) else None
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds no state dict: expected a dict of tensors or a dict "
            "with a 'state_dict' entry (the 3D-ResNets-PyTorch release layout)."
        )
    return {_strip_prefix(k): v for k, v in state.items()}


def load_pretrained(
    model: nn.Module, path: str | Path, *, classifier: str, first_conv: str = ""
) -> list[str]:
    """Load `path` into `model` except the `classifier` layer; returns the keys left as initialised.

    Raises `CheckpointError` listing every missing, unexpected and shape-mismatched key at once.
    """
    kept = fitted_state(model, read_state_dict(path), path, classifier=classifier,
                        first_conv=first_conv)  # fmt: skip
    model.load_state_dict(kept, strict=False)
    return [k for k in model.state_dict() if k not in kept]


def fitted_state(
    model: nn.Module,
    source: Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    classifier: str,
    first_conv: str = "",
) -> dict[str, torch.Tensor]:
    """The tensors of `source` (read from `path`) that `load_pretrained` loads into `model`;
    `CheckpointError` listing every missing, unexpected and shape-mismatched key at once. Only
    shapes are compared, so `model` may live on the meta device."""
    target = model.state_dict()
    head = classifier + "."
    kept = {k: v for k, v in source.items() if not k.startswith(head)}
    if first_conv:
        _adapt_first_conv(kept, target, f"{first_conv}.weight")
    expected = [k for k in target if not k.startswith(head) and not is_attention_key(k)]
    missing = [k for k in expected if k not in kept and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in kept if k not in target]
    mismatched = [
        f"{k}: file {tuple(kept[k].shape)} vs model {tuple(target[k].shape)}"
        for k in kept
        if k in target and kept[k].shape != target[k].shape
    ]
    if missing or unexpected or mismatched:
        raise CheckpointError(_mismatch_message(path, missing, unexpected, mismatched))
    return kept


def cross_modality_weights(rgb: torch.Tensor, in_channels: int) -> torch.Tensor:
    """TSN's initialisation of a flow stream's first kernels from RGB ones, `(O, 3, …)` →
    `(O, in_channels, …)`: the mean over the RGB channels, repeated."""
    mean = rgb.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, *([1] * (rgb.dim() - 2)))


def _adapt_first_conv(kept: dict, target: Mapping, key: str) -> None:
    if key not in kept or key not in target:
        return
    source, wanted = kept[key].shape, target[key].shape
    if source[1] == 3 and wanted[1] != 3 and (source[0], *source[2:]) == (wanted[0], *wanted[2:]):
        kept[key] = cross_modality_weights(kept[key], wanted[1])


def _unpickler_reason(error: Exception) -> str:
    """The one informative line of torch's long weights-only error."""
    lines = [line.strip() for line in str(error).splitlines()]
    useful = [line for line in lines if "GLOBAL" in line or line.startswith("Unsupported")]
    return (useful or lines or ["unreadable"])[0]


def _strip_prefix(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def is_attention_key(key: str) -> bool:
    """Whether a parameter or buffer name belongs to a module placed by the harness (attention
    in blocks, at stage outputs, or around the classifier): new, never in a released file."""
    return bool(NEW_MODULE_SEGMENTS.intersection(key.split(".")))


def _mismatch_message(
    path: str | Path, missing: list[str], unexpected: list[str], mismatched: list[str]
) -> str:
    def listed(title: str, keys: list[str]) -> str:
        shown = ", ".join(keys[:12]) + (f", … ({len(keys)} in all)" if len(keys) > 12 else "")
        return f"{title} ({len(keys)}): {shown or 'none'}."

    return (
        f"Checkpoint {str(path)!r} does not fit this backbone. "
        + " ".join(
            [
                listed("Missing keys", missing),
                listed("Unexpected keys", unexpected),
                listed("Shape mismatches", mismatched),
            ]
        )
        + " Check that the backbone (depth, shortcut type A|B, ResNet vs ResNeXt) matches the "
        "checkpoint's 'arch'."
    )
