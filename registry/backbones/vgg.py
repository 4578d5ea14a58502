"""VGG16 (Simonyan and Zisserman, ICLR 2015) with torchvision's parameter names.

`features.{0,2,5,…,28}` are the thirteen 3×3 convolutions, `classifier.{0,3,6}` the three fully
connected layers, so ImageNet weights saved from torchvision load strictly; `classifier.6` is the
layer fine-tuning replaces. Two-stream networks use it with `in_channels=20` for optical flow.

Data flow::

    frame (N, C_in, 224, 224)
      → conv1 group (2 convs) → pool → conv2 (2) → pool → conv3 (3) → pool → conv4 (3) → pool
      → conv5 (3) → pool → adaptive avg pool 7×7 → fc 4096 → fc 4096 → fc num_classes

Attention modules are kept outside `features` (in `attention`), so torchvision's indices stay
intact: at ``convK.blockI`` after the I-th convolution (and its ReLU) of group K, and at
``convK.out`` after group K's pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from registry.backbones.base import (
    AttentionAt,
    BackboneEntry,
    HeadAttention,
    head_points,
    no_attention,
)
from registry.placement import InsertionPoint

GROUPS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (width, convolutions) per group


class VGG16(nn.Module):
    """VGG16 with attention modules where `attention_at` puts them."""

    def __init__(
        self, *, num_classes: int, in_channels: int = 3, attention_at: AttentionAt = no_attention
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self.attention = nn.ModuleDict()
        self._after: dict[int, str] = {}  # index in `features` → attention key to apply after it
        channels = in_channels
        for group, (width, convs) in enumerate(GROUPS, start=1):
            for i in range(convs):
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                self._place(attention_at, f"conv{group}.block{i}", len(layers) - 1)
                channels = width
            layers.append(nn.MaxPool2d(2, 2))
            self._place(attention_at, f"conv{group}.out", len(layers) - 1)
        self.features = nn.Sequential(*layers)
        # A parameter-free tap on the last spatial map, pool5's output after any attention at
        # ``conv5.out`` (`(N, 512, 7, 7)` for 224×224 frames). Hooks on `features` itself never
        # fire (`forward` walks its layers one by one), and `features.30` (pool5) would miss that
        # attention, so Grad-CAM reads this (`gradcam_layer`).
        self.feature_map = nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(0.5),
            nn.Linear(4096, num_classes),
        )
        self.head_attention = HeadAttention(attention_at)
        _init_weights(self)

    def _place(self, attention_at: AttentionAt, point: str, index: int) -> None:
        module = attention_at(point)
        if module is not None:
            key = point.replace(".", "_")
            self.attention[key] = module
            self._after[index] = key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._after:
                x = self.attention[self._after[index]](x)
        x = self.avgpool(self.feature_map(x)).flatten(1)  # (N, 25088)
        hidden = self.classifier[:6](x)  # (N, 4096)
        return self.head_attention(hidden, self.classifier[6])


def _init_weights(model: nn.Module) -> None:
    """torchvision's VGG initialisation (attention modules keep their own)."""
    for name, module in model.named_modules():
        if "attention" in name:
            continue
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


def _points(*, num_classes: int = 1, in_channels: int = 3) -> tuple[InsertionPoint, ...]:
    points = []
    for group, (width, convs) in enumerate(GROUPS, start=1):
        stage = f"conv{group}"
        points += [InsertionPoint(f"{stage}.block{i}", "block", stage, width) for i in range(convs)]
        points.append(InsertionPoint(f"{stage}.out", "stage_output", stage, width))
    return tuple(points) + head_points(4096, num_classes)


def _build(
    *, num_classes: int, attention_at: AttentionAt = no_attention, in_channels: int = 3
) -> VGG16:
    return VGG16(num_classes=num_classes, in_channels=in_channels, attention_at=attention_at)


def entries() -> list[BackboneEntry]:
    return [
        BackboneEntry(
            name="vgg16",
            build=_build,
            points=_points,
            dims=2,
            input_shape=(3, 224, 224),
            classifier="classifier.6",
            first_conv="features.0",
            description="VGG16 (torchvision naming); in_channels 3 (RGB) or 20 (flow)",
            display_name="VGG16",
            gradcam_layer="feature_map",
            min_side=32,  # five 2×2 max pools: a side under 32 leaves no pixel to pool
        )
    ]
