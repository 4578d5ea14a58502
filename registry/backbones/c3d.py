"""C3D (Tran et al., "Learning Spatiotemporal Features with 3D Convolutional Networks", ICCV 2015).

Parameter names follow the widely used PyTorch port of the Sports-1M weights (`conv1`, `conv2`,
`conv3a/b`, `conv4a/b`, `conv5a/b`, `fc6`, `fc7`, `fc8`). The input is fixed at 16×112×112:
`fc6` expects the 512×1×4×4 output of `pool5`.

Data flow::

    clip (N, 3, 16, 112, 112)
      → conv1 64 → pool1 1×2×2 → conv2 128 → pool2 → conv3a/b 256 → pool3 → conv4a/b 512 → pool4
      → conv5a/b 512 → pool5 (pad 0,1,1)                          (N, 512, 1, 4, 4)
      → fc6 4096 → fc7 4096 → fc8 num_classes

Attention modules go at ``convK.out``, after group K's pooling (C3D has no residual blocks).
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
from registry.max_pool3d import MaxPool3d
from registry.placement import InsertionPoint

# group → (convolution names, output width, pooling kernel, pooling padding)
GROUPS = (
    ("conv1", ("conv1",), 64, (1, 2, 2), 0),
    ("conv2", ("conv2",), 128, (2, 2, 2), 0),
    ("conv3", ("conv3a", "conv3b"), 256, (2, 2, 2), 0),
    ("conv4", ("conv4a", "conv4b"), 512, (2, 2, 2), 0),
    ("conv5", ("conv5a", "conv5b"), 512, (2, 2, 2), (0, 1, 1)),
)


class C3D(nn.Module):
    """C3D with attention modules at the outputs of the convolution groups `attention_at` names."""

    def __init__(self, *, num_classes: int, attention_at: AttentionAt = no_attention) -> None:
        super().__init__()
        channels = 3
        self.stage_attention = nn.ModuleDict()
        for index, (group, convs, width, kernel, padding) in enumerate(GROUPS, start=1):
            for name in convs:
                self.add_module(name, nn.Conv3d(channels, width, 3, padding=1))
                channels = width
            self.add_module(f"pool{index}", MaxPool3d(kernel, kernel, padding=padding))
            module = attention_at(f"{group}.out")
            if module is not None:
                self.stage_attention[group] = module
        # A parameter-free tap on the last convolutional feature map before flattening,
        # `(N, 512, 1, 4, 4)`: pool5's output (post-activation: pool5 max-pools conv5b's ReLU
        # output) after any attention at ``conv5.out``. Hooking `pool5` would miss that
        # attention, and `self.relu` is one module shared by every layer (its hook fires ten
        # times per forward), so Grad-CAM reads this instead (`gradcam_layer`).
        self.feature_map = nn.Identity()
        self.fc6 = nn.Linear(8192, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        self.head_attention = HeadAttention(attention_at)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The `pool5` output, `(N, 512, 1, 4, 4)` for a 16×112×112 clip."""
        for index, (group, convs, *_) in enumerate(GROUPS, start=1):
            for name in convs:
                x = self.relu(getattr(self, name)(x))
            x = getattr(self, f"pool{index}")(x)
            if group in self.stage_attention:
                x = self.stage_attention[group](x)
        return self.feature_map(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)  # (N, 8192)
        x = self.dropout(self.relu(self.fc6(x)))
        x = self.dropout(self.relu(self.fc7(x)))  # (N, 4096)
        return self.head_attention(x, self.fc8)


def _points(*, num_classes: int = 1) -> tuple[InsertionPoint, ...]:
    stages = tuple(
        InsertionPoint(f"{group}.out", "stage_output", group, width)
        for group, _, width, *_ in GROUPS
    )
    return stages + head_points(4096, num_classes)


def _build(*, num_classes: int, attention_at: AttentionAt = no_attention) -> C3D:
    return C3D(num_classes=num_classes, attention_at=attention_at)


def entries() -> list[BackboneEntry]:
    return [
        BackboneEntry(
            name="c3d",
            build=_build,
            points=_points,
            dims=3,
            input_shape=(3, 16, 112, 112),
            classifier="fc8",
            first_conv="conv1",
            description="C3D (Tran et al. 2015), fixed 16×112×112 input",
            display_name="C3D",
            fixed_input=(3, 16, 112, 112),  # fc6 takes pool5's 512×1×4×4 = 8192 features only
            gradcam_layer="feature_map",
        )
    ]
